"""Invoicing: one invoice per shipment (SPEC §3), ERP-issued invoices, credit notes.

Payment terms: `NET<n>`, `<d>/<n> NET<m>` (d % off if paid within n days, else due in m),
`DUE_ON_RECEIPT`. An issued invoice never changes except its settlement fields (balance,
paid_at); corrections are credit notes.

A line shipped in parts is billed by cumulative rounding (`_shipped_part`), so its invoices
add up to exactly the line's net amount (SPEC §3: rounded once per line) and tax: with
`before` units of the line invoiced already for a net N, a shipment of q units bills the net of
`before + q` units (quantity x unit price x (1 - discount), rounded half-up once, as a line of
that quantity) less N, and tax `t(that net) - t(N)` at the customer's current rate. The parts
so add up to the line of the units shipped, whatever each part's rounding (3 x 8.54 = 25.62
for a line of 25.63 when each part was rounded on its own), and stay exact when the line's
short rest is cancelled between or after its shipments: the line the customer keeps is the
line of the units it takes, rounded once, which is what the order's cancelled value assumes
(a share of the ordered line's net billed 0.86 for one unit of 2 x 1.00 at 14.57 % off, a
line of 0.85, and lost a cent of tax when part of a line was cancelled between shipments).

Closed periods (`workflows.periods`): an invoice never changes a closed month's AR. One of
ours — a shipment's, a subscription period's, a late fee's (`workflows.late_fees`) — whose day
falls in a closed month (a shipment recorded after the close with its real `shipped_at`, a job
run late `--as-of` a closed day) is issued on the first day of the first open month, as a
settlement is booked (`booked_issue_date`): numbered, due and aged from that day, with the
document's own day kept where it is shown (`ship_date`, the subscription's period, the fee's
interest days) and in the audit log (`dated`, `note`). Revenue recognises such a shipment in
the first open month too, so AR and revenue agree. An ERP's invoice dated in a closed month is
refused (422 naming `issue_date`): it is the ERP's document, with its own date and due date,
which we may neither rewrite nor let change the closed month — the ERP issues it in an open
period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    Allocation,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    Order,
    OrderStatus,
    Payment,
    Shipment,
    ShipmentLine,
    WriteOff,
    money,
)
from models.base import UTCDateTime
from models.orders import OrderLine
from workflows import (
    audit,
    bulk,
    exposure,
    numbering,
    outbox,
    payment_links,
    periods,
    webhooks,
)
from workflows import validation as v
from workflows.errors import Conflict, DomainError, NotFound, ValidationFailed
from workflows.inputs import InvoiceIn


@dataclass(frozen=True)
class Terms:
    net_days: int
    discount_pct: Decimal = Decimal(0)
    discount_days: int = 0

    @classmethod
    def parse(cls, text: str) -> Terms:
        match = v.TERMS.match(" ".join(text.upper().split()))
        if not match:
            raise ValueError(f"unknown payment terms {text!r}")
        net, pct, days, net2 = match.groups()
        if net:
            return cls(int(net))
        if pct:
            return cls(int(net2), Decimal(pct), int(days))
        return cls(0)

    def due_date(self, issue_date: date) -> date:
        return issue_date + timedelta(days=self.net_days)


def get_invoice(session: Session, number: str) -> Invoice:
    invoice = session.exec(select(Invoice).where(Invoice.number == number.strip())).first()
    if invoice is None:
        raise NotFound(f"no invoice {number}")
    return invoice


def lock_invoice(session: Session, invoice_id: int) -> Invoice:
    """The invoice row, locked until the transaction ends and read fresh (PostgreSQL: FOR
    UPDATE; SQLite's write transactions are serialised already)."""
    return session.exec(select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                        .execution_options(populate_existing=True)).one()


def lock_invoices(session: Session, invoice_ids: Iterable[int]) -> dict[int, Invoice]:
    """`lock_invoice` of each, in id order: two transactions locking invoices they share wait
    for one another instead of deadlocking. Invoice id -> the invoice, read fresh."""
    return {invoice_id: lock_invoice(session, invoice_id)
            for invoice_id in sorted(set(invoice_ids))}


def booked_issue_date(session: Session, day: date) -> periods.Booking:
    """The day an invoice of ours dated `day` is issued on: `day`, or the first day of the
    first open month when `day` is in a closed one (module docstring)."""
    return periods.booking(session, day)


def booking_audit(booked: periods.Booking) -> dict:
    if not booked.moved:
        return {}
    return {"dated": booked.value_date.isoformat(), "booked_in_open_period": True,
            "note": booked.note}


def invoice_shipment(session: Session, shipment: Shipment, *, shipped_on: date, actor: str,
                     now: datetime | None = None) -> Invoice:
    """Invoice a shipment, issued on `shipped_on`, the business day it shipped (the day
    `shipping` checked against today, from the same read of the business time zone) — or,
    that day being in a closed month, on the first open day (`ship_date` keeps the day)."""
    order = session.get(Order, shipment.order_id)
    customer = session.get(Customer, order.customer_id)
    shipped = shipped_on
    booked = booked_issue_date(session, shipped)
    issue = booked.effective_date
    terms = Terms.parse(customer.payment_terms)
    invoice = Invoice(
        number=numbering.next_free_invoice_number(session, issue), customer_id=customer.id,
        order_id=order.id, shipment_id=shipment.id, currency=order.currency, issue_date=issue,
        due_date=terms.due_date(issue), payment_terms=customer.payment_terms,
        order_date=order.order_date, ship_date=shipped,
        billing_address=customer.billing_address, shipping_address=customer.shipping_address,
        total_minor=0, balance_minor=0, **({"created_at": now} if now else {}))
    rows = session.exec(select(ShipmentLine, OrderLine)
                        .join(OrderLine, OrderLine.id == ShipmentLine.order_line_id)
                        .where(ShipmentLine.shipment_id == shipment.id)
                        .order_by(OrderLine.line_no)).all()
    lines = []
    billed = _billed_before(session, [order_line.id for _, order_line in rows])
    for number, (ship_line, order_line) in enumerate(rows, start=1):
        net, tax = _shipped_part(order_line, ship_line.quantity, billed.get(order_line.id),
                                 customer.tax_rate_bp, order.currency)
        gross = money.line_total(ship_line.quantity, order_line.unit_price_minor, 0,
                                 order.currency)
        invoice.subtotal_minor += gross
        invoice.discount_minor += gross - net
        invoice.tax_minor += tax
        lines.append(InvoiceLine(
            line_no=number, sku=order_line.sku, description=order_line.description,
            quantity=ship_line.quantity, unit_price_minor=order_line.unit_price_minor,
            discount_bp=order_line.discount_bp, line_total_minor=net, tax_minor=tax,
            order_line_id=order_line.id, revenue_type=order_line.revenue_type,
            service_start=order_line.service_start, service_end=order_line.service_end))
    _issue(session, invoice, lines, order=order, customer=customer, actor=actor, now=now,
           **booking_audit(booked))
    return invoice


def _billed_before(session: Session, order_line_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per order line, (units, net) already invoiced for its shipments."""
    if not order_line_ids:
        return {}
    rows = session.exec(
        select(InvoiceLine.order_line_id, sa.func.sum(InvoiceLine.quantity),
               sa.func.sum(InvoiceLine.line_total_minor))
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(InvoiceLine.order_line_id.in_(order_line_ids), Invoice.shipment_id.is_not(None))
        .group_by(InvoiceLine.order_line_id)).all()
    return {line_id: (int(units or 0), int(net or 0)) for line_id, units, net in rows}


def _shipped_part(line: OrderLine, quantity: int, billed: tuple[int, int] | None,
                  tax_rate_bp: int, currency: str) -> tuple[int, int]:
    """(net, tax) to bill for `quantity` more units of `line`, `billed` (units, net) having
    been invoiced already: cumulative rounding (module docstring)."""
    before, net_before = billed or (0, 0)
    takes = line.quantity - line.qty_cancelled
    if takes <= 0 or before + quantity > takes:  # beyond the line: priced as it stands
        net = money.line_total(quantity, line.unit_price_minor, line.discount_bp, currency)
        return net, money.percent_of(net, tax_rate_bp, currency)
    through = money.line_total(before + quantity, line.unit_price_minor, line.discount_bp,
                               currency)
    return through - net_before, part_tax(net_before, through, tax_rate_bp, currency)


def rest_to_bill_minor(line: OrderLine, billed_net_minor: int, tax_rate_bp: int,
                       currency: str) -> int:
    """What the line's invoices still to come bill in all (net and tax), `billed_net_minor`
    having been invoiced already: the rest of the net it keeps (`orders.kept_net_minor`),
    taxed by cumulative rounding at `tax_rate_bp` — today's rate, the one its later
    shipments or periods are taxed at (`part_tax`), whatever rate the order was taken at."""
    from workflows.orders import kept_net_minor

    kept = kept_net_minor(line, currency)
    if kept <= billed_net_minor:
        return 0
    return kept - billed_net_minor + part_tax(billed_net_minor, kept, tax_rate_bp, currency)


def part_tax(net_before: int, net_through: int, tax_rate_bp: int, currency: str) -> int:
    """The tax of one part of a line billed in parts (shipments, subscription periods):
    t(net through this part) - t(net of the parts before), t the tax at today's rate, so the
    parts bill exactly the line's tax whatever each part's rounding (module docstring)."""
    return (money.percent_of(net_through, tax_rate_bp, currency)
            - money.percent_of(net_before, tax_rate_bp, currency))


def _issue(session: Session, invoice: Invoice, lines: list[InvoiceLine], *, order: Order,
           customer: Customer, actor: str, now: datetime | None,
           **audit_data: object) -> None:
    """Total, store and send an invoice of ours with its lines (one transaction)."""
    invoice.total_minor = invoice.subtotal_minor - invoice.discount_minor + invoice.tax_minor \
        + invoice.fees_minor
    invoice.balance_minor = invoice.total_minor
    session.add(invoice)
    session.flush()
    exposure.moved(session, invoice.customer_id)
    for line in lines:
        line.invoice_id = invoice.id
        session.add(line)
    audit.record(session, actor=actor, action="invoice.issued", entity_type="invoice",
                 entity_id=invoice.id, to_state="open", number=invoice.number,
                 total_minor=invoice.total_minor, order=order.number, **audit_data)
    webhooks.emit(session, "invoice.issued", lambda: webhooks.invoice_data(session, invoice),
                  key=f"invoice.issued:{invoice.id}", at=now)
    if customer.billing_email:
        outbox.send_email(session, to=customer.billing_email, template="invoice",
                          context={"invoice_number": invoice.number},
                          attachments=[{"kind": "invoice_pdf", "number": invoice.number}],
                          dedupe_key=f"invoice-email:{invoice.number}")
    session.flush()


def invoice_subscription_period(session: Session, *, order: Order, line: OrderLine,
                                first: date, last: date, amount_minor: int, issue_date: date,
                                actor: str, now: datetime) -> Invoice:
    """Invoice one period of a subscription billed in advance: one line of the period's net
    amount (`orders.subscription_periods`), tax at the customer's rate by cumulative rounding
    over the line's periods (as a shipment's: the periods bill the line's tax), issued on
    `issue_date` (the period's first day, or the day a late run catches it up) — or, that day
    being in a closed month, on the first open day."""
    from workflows.orders import subscription_periods

    customer = session.get(Customer, order.customer_id)
    booked = booked_issue_date(session, issue_date)
    issue_date = booked.effective_date
    terms = Terms.parse(customer.payment_terms)
    # cumulative rounding, as a shipment's part (3 x 3.33 = 9.99 for 10.00 before)
    before = sum(part for start, _, part in subscription_periods(line) if start < first)
    tax = part_tax(before, before + amount_minor, customer.tax_rate_bp, order.currency)
    invoice = Invoice(
        number=numbering.next_free_invoice_number(session, issue_date), customer_id=customer.id,
        order_id=order.id, currency=order.currency, issue_date=issue_date,
        due_date=terms.due_date(issue_date), payment_terms=customer.payment_terms,
        order_date=order.order_date, billing_address=customer.billing_address,
        shipping_address=customer.shipping_address, subtotal_minor=amount_minor,
        tax_minor=tax, total_minor=0, balance_minor=0, created_at=now)
    quantity = f"{line.quantity} × " if line.quantity != 1 else ""
    description = (f"{quantity}{line.description}, {first.isoformat()} to "
                   f"{last.isoformat()}")[:200]
    invoice_line = InvoiceLine(
        line_no=1, sku=line.sku, description=description, quantity=1,
        unit_price_minor=amount_minor, line_total_minor=amount_minor, tax_minor=tax,
        order_line_id=line.id, revenue_type=line.revenue_type, service_start=first,
        service_end=last)
    _issue(session, invoice, [invoice_line], order=order, customer=customer, actor=actor,
           now=now, line_no=line.line_no, period_start=first.isoformat(),
           period_end=last.isoformat(), **booking_audit(booked))
    return invoice


# An order no invoice may bill: it never became a contract, or it was withdrawn.
NOT_BILLABLE = (OrderStatus.CANCELLED, OrderStatus.REJECTED)


def _checked_erp_invoice(data: InvoiceIn, *, exists: bool,
                         customer: Customer | None, order: Order | None,
                         closed_through: date | None = None) -> dict:
    """The invoice an ERP sends, checked (ValidationFailed or Conflict naming the field), as
    the values of its row: the rules of `ingest_erp_invoice` and `ingest_erp_invoices`.
    `exists`: an invoice of that number is stored already; `customer`, `order`: what its
    `customer` and `order` name (None when unknown); `closed_through`: the lock date (an
    issue date on or before it is refused, module docstring)."""
    if not data.number.strip():
        raise ValidationFailed.of("number", "must not be empty")
    v.text("number", data.number)
    if exists:
        raise _exists(data.number.strip())
    if customer is None:
        raise ValidationFailed.of("customer", f"unknown customer {data.customer!r}")
    currency = v.currency("currency", data.currency)
    if currency != customer.currency:
        raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                  f"{customer.currency}, not {currency}")
    total = v.amount_minor("total", data.total, currency, positive=True)
    issue = v.parse_date("issue_date", data.issue_date)
    due = v.parse_date("due_date", data.due_date)
    if closed_through is not None and issue <= closed_through:
        raise ValidationFailed.of("issue_date", (
            f"{issue.isoformat()} is in a closed period (closed through "
            f"{periods.period_of(closed_through)}); issue it on "
            f"{(closed_through + timedelta(days=1)).isoformat()} or later"))
    if due < issue:
        raise ValidationFailed.of("due_date", "must not be before issue_date")
    # The ERP's own terms when it sends them; otherwise plain NET<days> from its dates — never
    # the customer's current terms, whose early-payment discount this invoice may not carry.
    terms = (v.payment_terms("payment_terms", data.payment_terms) if data.payment_terms
             else f"NET{(due - issue).days}" if due > issue else "DUE_ON_RECEIPT")
    if data.order and (order is None or order.customer_id != customer.id):
        raise ValidationFailed.of("order", f"unknown order {data.order!r} for this customer")
    if data.order and order.status in NOT_BILLABLE:
        raise ValidationFailed.of("order", f"order {order.number} is {order.status}; an "
                                  "invoice cannot bill it")
    return {"number": data.number.strip(), "customer_id": customer.id,
            "order_id": order.id if data.order else None, "source": "erp",
            "currency": currency, "issue_date": issue, "due_date": due,
            "payment_terms": terms, "subtotal_minor": total, "total_minor": total,
            "balance_minor": total, "billing_address": customer.billing_address,
            "shipping_address": customer.shipping_address}


def _exists(number: str) -> Conflict:
    return Conflict(f"invoice {number} already exists; issued invoices are immutable, send a "
                    "credit note instead")


def ingest_erp_invoice(session: Session, data: InvoiceIn, *, actor: str) -> Invoice:
    """An invoice issued by the ERP: stored as issued (immutable), its balance open."""
    from workflows.masterdata import customer_by_external_id

    if not data.number.strip():
        raise ValidationFailed.of("number", "must not be empty")
    v.text("number", data.number)
    exists = session.exec(select(Invoice.id).where(
        Invoice.number == data.number.strip())).first()
    customer = None if exists else customer_by_external_id(session, data.customer)
    order = (session.exec(select(Order).where(Order.number == data.order)).first()
             if data.order and customer is not None else None)
    values = _checked_erp_invoice(data, exists=exists is not None, customer=customer,
                                  order=order, closed_through=periods.lock_date(session))
    currency, total = values["currency"], values["total_minor"]
    invoice = Invoice(**values)
    session.add(invoice)
    session.flush()
    exposure.moved(session, invoice.customer_id)
    line_total = 0
    for i, line in enumerate(data.lines or []):
        where = f"lines[{i}]"
        quantity = v.quantity(f"{where}.quantity", line.quantity)
        v.text(f"{where}.description", line.description)
        v.text(f"{where}.sku", line.sku)
        amount = (v.amount_minor(f"{where}.amount", line.amount, currency)
                  if line.amount is not None else None)
        if line.unit_price is not None:
            price = v.amount_minor(f"{where}.unit_price", line.unit_price, currency)
        elif amount is not None:  # an amount-only line: its unit price is what it says
            price = amount if quantity == 1 else 0
        else:
            raise ValidationFailed.of(where, "needs a unit_price or an amount")
        if amount is None:
            v.within_amount_bound(f"{where}.quantity", quantity * price, currency)
            amount = money.line_total(quantity, price, 0, currency)
        line_total += amount
        session.add(InvoiceLine(invoice_id=invoice.id, line_no=i + 1, sku=line.sku,
                                description=(line.description or line.sku or "")[:200],
                                quantity=quantity, unit_price_minor=price,
                                line_total_minor=amount))
    # The total is the ERP's word and its lines are informational (its net lines may leave
    # tax, freight or other charges unitemised: less than the total is fine), but lines worth
    # more than the invoice contradict it.
    if data.lines and line_total > total:
        raise ValidationFailed.of("lines", (
            f"lines add up to {money.to_str(line_total, currency)}, "
            f"{money.to_str(line_total - total, currency)} more than the invoice total "
            f"{money.to_str(total, currency)}"))
    audit.record(session, actor=actor, action="invoice.ingested", entity_type="invoice",
                 entity_id=invoice.id, to_state="open", number=invoice.number,
                 total_minor=total)
    webhooks.emit(session, "invoice.issued", lambda: webhooks.invoice_data(session, invoice),
                  key=f"invoice.issued:{invoice.id}")
    return invoice


def ingest_erp_invoices(session: Session, items: list[InvoiceIn], *, actor: str
                        ) -> list[int | DomainError]:
    """Many ERP invoices at once (a CSV file): for each, its new id or why it was refused —
    the same rules as `ingest_erp_invoice` (`_checked_erp_invoice`), with what they need read
    in a few queries for all and the rows written with one statement per table, each new
    invoice announced as one at a time announces it (`invoice.issued`). A number
    twice in `items` is a Conflict the second time. Invoices with `lines` go one by one
    (`ingest_erp_invoice`), each in a savepoint so a refused one leaves nothing behind. A
    number another transaction stored meanwhile is that row's Conflict (the rows are then
    written one by one)."""
    numbers = {d.number.strip() for d in items if d.number and d.number.strip()}
    existing: set[str] = set()
    customers: dict[str, Customer] = {}
    orders: dict[str, Order] = {}
    inv = _INVOICES
    for chunk in _chunked(sorted(numbers)):
        existing |= set(session.execute(sa.select(inv.c.number).where(
            inv.c.number.in_(chunk))).scalars())
    for chunk in _chunked(sorted({d.customer for d in items if d.customer})):
        customers.update((c.external_id, c) for c in session.exec(
            select(Customer).where(Customer.external_id.in_(chunk))).all())
    for chunk in _chunked(sorted({d.order for d in items if d.order})):
        orders.update((o.number, o) for o in session.exec(
            select(Order).where(Order.number.in_(chunk))).all())
    closed_through = periods.lock_date(session)
    results: list[int | DomainError | dict] = []
    for data in items:
        try:
            if data.lines:
                if data.number.strip() in existing:
                    raise _exists(data.number.strip())
                try:
                    with session.begin_nested():
                        results.append(ingest_erp_invoice(session, data, actor=actor).id)
                except IntegrityError as error:
                    results.append(_clash(session, data.number.strip(), error))
                existing.add(data.number.strip())
                continue
            values = _checked_erp_invoice(data, exists=data.number.strip() in existing,
                                          customer=customers.get(data.customer),
                                          order=orders.get(data.order or ""),
                                          closed_through=closed_through)
        except DomainError as exc:
            results.append(exc)
            continue
        existing.add(values["number"])
        results.append(values)
    rows = [r for r in results if isinstance(r, dict)]
    if not rows:
        return results  # type: ignore[return-value]
    try:
        with session.begin_nested():
            ids: list[int | DomainError] = list(bulk.insert_with_ids(session, inv, rows))
    except IntegrityError:  # stored meanwhile by another transaction: find which, row by row
        insert = sa.insert(inv).returning(inv.c.id)
        ids = []
        for row in rows:
            try:
                with session.begin_nested():
                    ids.append(session.connection().execute(insert, row).scalar_one())
            except IntegrityError as error:
                ids.append(_clash(session, row["number"], error))
    for invoice_id, row in zip(ids, rows, strict=True):
        if isinstance(invoice_id, int):
            exposure.moved(session, row["customer_id"])
    audit.record_rows(session, [
        audit.row(actor=actor, action="invoice.ingested", entity_type="invoice",
                  entity_id=invoice_id, to_state="open", number=row["number"],
                  total_minor=row["total_minor"])
        for invoice_id, row in zip(ids, rows, strict=True) if isinstance(invoice_id, int)])
    if webhooks.wanted(session, "invoice.issued"):  # each as `ingest_erp_invoice` emits it
        for invoice_id in ids:
            if isinstance(invoice_id, int):
                webhooks.emit(session, "invoice.issued",
                              lambda i=invoice_id: webhooks.invoice_data(
                                  session, session.get(Invoice, i)),
                              key=f"invoice.issued:{invoice_id}")
    it = iter(ids)
    return [next(it) if isinstance(r, dict) else r for r in results]


def _clash(session: Session, number: str, error: IntegrityError) -> Conflict:
    """An insert the database refused: the number stored meanwhile by another transaction (a
    Conflict for that row), or else `error` itself."""
    if session.connection().execute(sa.select(_INVOICES.c.id).where(
            _INVOICES.c.number == number)).first() is None:
        raise error
    return _exists(number)


def _chunked(values: list, size: int = 500) -> list[list]:
    return [values[i:i + size] for i in range(0, len(values), size)]


_INVOICES = Invoice.__table__
_LEFT = _INVOICES.c.balance_minor - sa.bindparam("amount")
# What stays in dispute when the balance goes down: never more than the balance
# (`workflows.disputes`).
_STILL_DISPUTED = sa.case((_INVOICES.c.disputed_minor > _LEFT, _LEFT),
                          else_=_INVOICES.c.disputed_minor)
# Built once (it runs for every allocation, credit note and write-off): lower the balance only
# if enough is open, stamp paid_at (with the settlement time given) when it reaches zero, and
# return both.
_REDUCE_BALANCE = (
    sa.update(_INVOICES)
    .where(_INVOICES.c.id == sa.bindparam("invoice"),
           _INVOICES.c.balance_minor >= sa.bindparam("amount"))
    .values(balance_minor=_LEFT,
            disputed_minor=_STILL_DISPUTED,
            disputed=_STILL_DISPUTED > 0,
            paid_at=sa.case((sa.and_(_LEFT == 0, _INVOICES.c.paid_at.is_(None)),
                             sa.bindparam("settled_at", type_=UTCDateTime)),
                            else_=_INVOICES.c.paid_at))
    .returning(_INVOICES.c.balance_minor, _INVOICES.c.paid_at, _INVOICES.c.disputed_minor,
               _INVOICES.c.disputed))


def reduce_balance(session: Session, invoice: Invoice, amount_minor: int, *,
                   settled_at: datetime | None) -> None:
    """Lower an invoice's open balance; refuses to go below zero even under concurrency.

    `settled_at` is when this reduction happened in the customer's terms, not when we
    processed it: for money, the payment's `received_at` (a statement imported days later, or
    a suggestion applied by hand after review, does not make the customer late); for a
    write-off of our own (bad debt), its own time. A credit note passes None: it corrects what
    was owed, it is not a payment.

    When the balance reaches zero, `paid_at` — what late-payment history compares with the due
    date (`credit.payment_history`, the collections risk factor) — is the LATEST settlement of
    the invoice: money received in two parts settled it when the second part arrived, whatever
    order they were applied in. An invoice closed by a credit note gets the latest settlement
    before it (the customer paid all it really owed then; a dispute we resolve weeks later
    must not count as a late payment), and one closed by credit notes alone keeps paid_at
    NULL: it was cancelled, not paid, and counts neither as paid on time nor late."""
    from sqlalchemy.orm.attributes import set_committed_value

    from workflows.errors import OverallocationError

    left = session.connection().execute(_REDUCE_BALANCE, {
        "invoice": invoice.id, "amount": amount_minor, "settled_at": settled_at}).first()
    if left is None:
        raise OverallocationError(f"invoice {invoice.number} has less than "
                                  f"{money.format_money(amount_minor, invoice.currency)} open")
    balance, paid_at, disputed_minor, disputed = left
    if balance == 0 and amount_minor < invoice.total_minor:  # earlier reductions: look back
        earlier = _last_settlement(session, invoice.id)
        if earlier is not None and (paid_at is None or earlier > paid_at):
            paid_at = earlier
            session.connection().execute(
                sa.update(_INVOICES).where(_INVOICES.c.id == invoice.id)
                .values(paid_at=paid_at))
    # the database's values after the conditional UPDATE (RETURNING saves a re-read)
    set_committed_value(invoice, "balance_minor", balance)
    set_committed_value(invoice, "paid_at", paid_at)
    set_committed_value(invoice, "disputed_minor", disputed_minor)
    set_committed_value(invoice, "disputed", bool(disputed))
    payment_links.balance_changed(session, invoice)
    exposure.moved(session, invoice.customer_id)
    from workflows import deductions  # (it imports this module)

    deductions.balance_lowered(session, [invoice.id])  # a deduction's card shows it
    if invoice.balance_minor == 0:
        _maybe_mark_order_paid(session, invoice)
        if paid_at is not None:  # settled with money (not cancelled by credit notes alone)
            webhooks.emit(session, "invoice.paid",
                          lambda: webhooks.invoice_data(session, invoice),
                          key=f"invoice.paid:{invoice.id}:{paid_at.isoformat()}")


def write_off_settled_at(recorded: datetime, value_date: date) -> datetime:
    """When a write-off of our own settled: when it was recorded if it is dated that day,
    else noon UTC of its effective date (as a bank statement's booking day)."""
    if recorded.astimezone(UTC).date() == value_date:
        return recorded
    return datetime.combine(value_date, time(12), tzinfo=UTC)


def _last_settlement(session: Session, invoice_id: int) -> datetime | None:
    """When the latest money (or write-off of our own) already applied to the invoice settled:
    payments by their `received_at`, write-offs without a payment by their effective date."""
    received = session.exec(
        select(Payment.received_at).join(Allocation, Allocation.payment_id == Payment.id)
        .where(Allocation.invoice_id == invoice_id)).all()
    written = session.exec(
        select(Payment.received_at, WriteOff.created_at, WriteOff.value_date)
        .select_from(WriteOff).outerjoin(Payment, Payment.id == WriteOff.payment_id)
        .where(WriteOff.invoice_id == invoice_id)).all()
    times = [*received, *(paid or write_off_settled_at(recorded, value)
                          for paid, recorded, value in written)]
    return max((t for t in times if t is not None), default=None)


def _maybe_mark_order_paid(session: Session, invoice: Invoice) -> None:
    from workflows.orders import transition

    if invoice.order_id is None:
        return
    order = session.get(Order, invoice.order_id)
    if order.status != OrderStatus.INVOICED:
        return
    open_left = session.exec(select(sa.func.count()).select_from(Invoice).where(
        Invoice.order_id == order.id, Invoice.balance_minor > 0)).one()
    if not open_left:
        transition(session, order, OrderStatus.PAID, actor="system",
                   reason=f"{invoice.number} settled")


def issue_credit_note(session: Session, *, invoice_number: str, amount: str, reason: str,
                      actor: str, now: datetime, issue_date: date | None = None
                      ) -> CreditNote:
    """A credit note against one invoice's open balance, issued at once (no approval), dated
    by its `issue_date` (default: the business date of `now`, when it is recorded; an ERP
    sends its own), which may neither precede the invoice's issue date nor lie after today. A
    date in a closed month is booked in the first open month (`workflows.periods`).

    People ask for credit notes through `workflows.credit_notes` (approved by a credit
    approver); this is for the callers that issue one of their own (the demo seed, scripts)."""
    from workflows import credit_notes

    return credit_notes.issue_direct(session, invoice_number=invoice_number, amount=amount,
                                     reason=reason, actor=actor, now=now,
                                     issue_date=issue_date)
