"""The CRM connector's side of the O2C rules (HubSpot; plain data, no HTTP here).

A closed-won deal becomes an order (`import_deal`), credit- and discount-checked like any
other; the order is linked to its deal (`crm_deals`, once per deal). From then on every
outbound event about that order (`workflows.webhooks.emit` calls `on_event`) queues a deal
update in the outbox (transport "hubspot"); the worker computes the deal's properties at
delivery time from the order as it is then (`deal_status`), so updates delivered late or out
of order still leave the deal showing the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import InvalidOperation

from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from models import AuditEvent, CrmDeal, Invoice, Product, money
from workflows import audit, orders, outbox
from workflows import validation as v
from workflows.errors import ValidationFailed
from workflows.inputs import OrderIn, build
from workflows.masterdata import customer_by_external_id

TRANSPORT = "hubspot"
_CACHE = "crm.linked"


def any_linked(session: Session) -> bool:
    """Whether any order came from a CRM deal (read once per transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is None or cached[0] is not transaction:
        table = CrmDeal.__table__
        found = session.execute(sa_select(table.c.id).where(
            table.c.order_id.is_not(None)).limit(1)).first() is not None
        cached = (transaction, found)
        session.info[_CACHE] = cached
    return cached[1]


def _order_numbers(session: Session, event_type: str, data: dict) -> set[str]:
    if event_type.startswith("order."):
        return {data["order"]["number"]}
    if event_type.startswith("invoice."):
        return {data["invoice"]["order"]} if data["invoice"].get("order") else set()
    if event_type.startswith("payment."):
        numbers = [a["invoice"] for a in data["payment"].get("allocations") or []]
        if not numbers:
            return set()
        from models import Order

        rows = session.execute(sa_select(Order.__table__.c.number)
                               .join(Invoice.__table__,
                                     Invoice.__table__.c.order_id == Order.__table__.c.id)
                               .where(Invoice.__table__.c.number.in_(numbers))).all()
        return {number for (number,) in rows}
    return set()


def on_event(session: Session, event_type: str, data: dict) -> None:
    """Queue an update of the deal of every order the event is about."""
    numbers = _order_numbers(session, event_type, data)
    if not numbers:
        return
    from models import Order

    deals = CrmDeal.__table__
    orders = Order.__table__
    rows = session.execute(sa_select(deals.c.provider, deals.c.deal_id, orders.c.id)
                           .join(orders, orders.c.id == deals.c.order_id)
                           .where(orders.c.number.in_(sorted(numbers)))).all()
    for provider, deal_id, order_id in rows:
        outbox._add(session, transport=provider, method="deal.update",
                    payload={"deal_id": deal_id, "order_id": order_id, "event": event_type})


# -- a won deal becomes an order -----------------------------------------------------------------
@dataclass
class DealLine:
    sku: str | None
    quantity: str | int | None
    price: str | None = None  # the deal's unit price (a decimal string): what the order bills
    discount_pct: str | None = None  # the line's own discount percentage
    name: str | None = None
    discount: str | None = None  # HubSpot's "unit discount": an amount off each unit


@dataclass
class DealIn:
    """What the connector read from the CRM (plain values; the mapping was applied)."""

    provider: str
    deal_id: str
    name: str | None
    customer: str | None  # our customer's external_id
    sales_rep: str | None  # Slack user id
    currency: str | None
    lines: list[DealLine] = field(default_factory=list)


def import_deal(session: Session, data: DealIn, *, now: datetime) -> tuple[CrmDeal, bool]:
    """The order of a won deal, once per deal: (link, created). The deal is claimed first
    (`crm_deals`, unique per provider and deal), so a second event for the same deal, or the
    same event in two processes, makes no second order. A deal refused before (unknown
    customer, SKU...) is tried again. Raises the order's own validation errors (the caller
    records the refusal with `refuse_deal`)."""
    link = session.exec(select(CrmDeal).where(CrmDeal.provider == data.provider,
                                              CrmDeal.deal_id == data.deal_id)
                        .with_for_update()).first()
    if link is not None and link.status == "imported":
        report_changes(session, link, data)
        return link, False
    if link is None:
        link = CrmDeal(provider=data.provider, deal_id=data.deal_id, status="importing")
        session.add(link)
        session.flush()  # a concurrent twin blocks here, then fails on the unique key
    if not data.customer:
        raise ValidationFailed.of("customer", "the deal names no customer we know (the "
                                  "company's customer id property is empty)")
    if not data.sales_rep:
        raise ValidationFailed.of("sales_rep", "no sales rep for the deal's owner (set "
                                  "sales_rep_by_owner or default_sales_rep in the mapping)")
    customer = customer_by_external_id(session, data.customer)
    currency = (data.currency or customer.currency).upper()
    lines = [{"sku": line.sku or "", "quantity": _quantity(i, line.quantity),
              "unit_price": _unit_price(i, line, currency),
              "discount_pct": str(line.discount_pct) if line.discount_pct not in (None, "")
              else None}
             for i, line in enumerate(data.lines)]
    order = orders.create_order(session, build(
        OrderIn, customer=data.customer, sales_rep=data.sales_rep, currency=currency,
        lines=lines, external_id=f"{data.provider}-deal-{data.deal_id}",
        notes=f"{data.provider.capitalize()} deal {data.name or data.deal_id}"[:1000]),
        actor=data.provider, source=data.provider, now=now)
    link.order_id, link.status, link.detail = order.id, "imported", None
    session.add(link)
    session.info.pop(_CACHE, None)
    audit.record(session, actor=data.provider, action="crm.deal_imported",
                 entity_type="order", entity_id=order.id, deal=data.deal_id,
                 number=order.number, provider=data.provider)
    queue_update(session, link)
    return link, True


def report_changes(session: Session, link: CrmDeal, data: DealIn) -> None:
    """A deal imported before and won again: the order stays as it is (it may be approved,
    shipped, invoiced — issued invoices are immutable), but when the deal now sells something
    else (lines, quantities, prices, discounts, customer) AR is told what differs, once per
    difference, and it is audited, so the two are reconciled by a person (a credit note, a
    change of the order) instead of drifting apart unseen."""
    import hashlib

    from models import Customer, Order, OrderLine

    order = session.get(Order, link.order_id)
    kept = [(li.sku, li.quantity, li.unit_price_minor, li.discount_bp) for li in session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.line_no))]
    customer = session.get(Customer, order.customer_id)
    try:
        sold = _sold_lines(session, data, order.currency)
        now = "; ".join(_describe(line, order.currency) for line in sold)
    except ValidationFailed as bad:
        sold, now = None, f"lines that cannot be read ({bad.detail[:300]})"
    moved = data.customer not in (None, customer.external_id)
    if sold == kept and not moved:
        return
    was = "; ".join(_describe(line, order.currency) for line in kept)
    if moved:
        now = f"customer {data.customer}: {now}"
        was = f"customer {customer.external_id}: {was}"
    digest = hashlib.sha256(now.encode()).hexdigest()[:32]
    key = f"crm-changed:{data.provider}:{data.deal_id}:{digest}"[:200]
    if outbox.has_message(session, key):
        return
    audit.record(session, actor=data.provider, action="crm.deal_changed", entity_type="order",
                 entity_id=order.id, deal=data.deal_id, provider=data.provider,
                 order_lines=was[:1000], deal_lines=now[:1000])
    outbox.post_to_channel(session, channel="ar", template="text", dedupe_key=key, context={
        "text": f"{data.provider.capitalize()} deal {data.deal_id} was won again but no "
                f"longer matches order {order.number}, made from it (left as it is): the deal "
                f"now sells {now[:600]}; the order has {was[:600]}. Change the order or "
                f"issue a credit note if the deal is right."})


def _sold_lines(session: Session, data: DealIn, currency: str) -> list[tuple]:
    """The deal's lines as order lines would have them: (sku, quantity, unit price, discount
    in basis points); the list price where the deal gives no price."""
    found = []
    for i, line in enumerate(data.lines):
        price = _unit_price(i, line, currency)
        if price is None:
            product = session.exec(select(Product).where(Product.sku == line.sku)).first()
            minor = product.unit_price_minor if product is not None else None
        else:
            minor = money.to_minor(price, currency)
        discount = (v.percent_bp(f"lines[{i}].discount_pct", str(line.discount_pct))
                    if line.discount_pct not in (None, "") else 0)
        found.append((line.sku or "", _quantity(i, line.quantity), minor, discount))
    return found


def _describe(line: tuple, currency: str) -> str:
    sku, quantity, price, discount = line
    text = f"{quantity} x {sku} at " + (money.to_str(price, currency) if price is not None
                                         else "no price")
    return text + (f" less {money.bp_to_pct(discount)} %" if discount else "")


def imported(session: Session, provider: str, deal_id: str) -> CrmDeal | None:
    """The deal's link to the order it became here (None when it did not)."""
    return session.exec(select(CrmDeal).where(
        CrmDeal.provider == provider, CrmDeal.deal_id == deal_id,
        CrmDeal.status == "imported")).first()


def report_left_won(session: Session, *, provider: str, deal_id: str, stage: str) -> bool:
    """A deal that became an order is no longer won (moved to `stage`: lost, or back in the
    pipeline): the order stays as it is — it may be approved, shipped, invoiced — and AR is
    told, once per deal and stage, and it is audited, so a person cancels the order if the
    sale fell through. True when reported now."""
    from models import Order

    link = imported(session, provider, deal_id)
    if link is None or link.order_id is None:
        return False
    key = f"crm-left-won:{provider}:{deal_id}:{stage}"[:200]
    if outbox.has_message(session, key):
        return False
    order = session.get(Order, link.order_id)
    audit.record(session, actor=provider, action="crm.deal_left_won", entity_type="order",
                 entity_id=order.id, deal=deal_id, provider=provider, stage=stage[:100],
                 order_status=order.status)
    outbox.post_to_channel(session, channel="ar", template="text", dedupe_key=key, context={
        "text": f"{provider.capitalize()} deal {deal_id} is no longer won (now in stage "
                f"{stage[:100]}), but order {order.number} was made from it and is "
                f"{order.status} (left as it is): cancel the order if the sale fell through."})
    return True


def refuse_deal(session: Session, data: DealIn, reason: str) -> CrmDeal:
    """A won deal that cannot become an order: kept as refused (tried again on its next
    event), AR is told, and the deal shows why."""
    link = session.exec(select(CrmDeal).where(CrmDeal.provider == data.provider,
                                              CrmDeal.deal_id == data.deal_id)).first()
    if link is None:
        link = CrmDeal(provider=data.provider, deal_id=data.deal_id, status="refused")
    if link.status == "imported":
        return link
    link.status, link.detail = "refused", reason[:1000]
    session.add(link)
    session.flush()
    audit.record(session, actor=data.provider, action="crm.deal_refused", entity_type="deal",
                 entity_id=data.deal_id, reason=reason[:2000], provider=data.provider)
    outbox.post_to_channel(session, channel="ar", template="crm_deal_refused", context={
        "deal_id": data.deal_id, "deal_name": data.name, "reason": reason[:1500]})
    outbox._add(session, transport=data.provider, method="deal.update",
                payload={"deal_id": data.deal_id, "order_id": None, "refused": reason[:500]})
    return link


def queue_update(session: Session, link: CrmDeal) -> None:
    outbox._add(session, transport=link.provider, method="deal.update",
                payload={"deal_id": link.deal_id, "order_id": link.order_id,
                         "event": "order.imported"})


def _quantity(i: int, value: str | int | None) -> int:
    """A line item's quantity as a whole number ("3" or "3.0"), parsed as amounts are
    (`money.D`: ASCII digits, finite), so "Infinity", "sNaN" or "１２" are refused by name
    instead of crashing the import or being read as a number."""
    text = str(value).strip()
    try:
        number = money.D(text)
    except (InvalidOperation, ValueError):
        raise ValidationFailed.of(f"lines[{i}].quantity", f"{value!r} is not a number") from None
    if number != number.to_integral_value():
        raise ValidationFailed.of(f"lines[{i}].quantity", f"{text} is not a whole number")
    return int(number)


def _deal_amount(field: str, value: str | None, currency: str) -> int | None:
    """An amount from a line item as HubSpot writes it ("95.5", "1e2", "1250.00") -> minor
    units, exactly: more decimals than the currency has, a sign, NaN or an amount out of
    bounds is refused by name, never rounded. None when the line has none."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        number = money.D(text)
    except (InvalidOperation, ValueError):
        raise ValidationFailed.of(field, f"{text!r} is not an amount") from None
    try:
        return v.amount_minor(field, number, currency)
    except InvalidOperation:  # too many digits even to round ("1e30")
        raise ValidationFailed.of(field, f"{text} is too large an amount") from None


def _unit_price(i: int, line: DealLine, currency: str) -> str | None:
    """The line's unit price as the deal sold it: its price less HubSpot's unit discount
    (an amount off each unit), exact to the cent, as the order's `unit_price`. The order
    bills it, and the discount check measures it against the list price (a price below list
    is a discount too), so a deal above list bills what it sold, one below list is checked,
    and no percentage rounds it. None without a price: the product's list price."""
    price = _deal_amount(f"lines[{i}].unit_price", line.price, currency)
    off = _deal_amount(f"lines[{i}].discount", line.discount, currency)
    if price is None:
        if off:
            raise ValidationFailed.of(f"lines[{i}].discount", "a unit discount needs the "
                                      "line's price")
        return None
    if off and off > price:
        raise ValidationFailed.of(f"lines[{i}].discount", f"{money.to_str(off, currency)} "
                                  f"off each unit is more than its price "
                                  f"{money.to_str(price, currency)}")
    return money.to_str(price - (off or 0), currency)


def deal_status(session: Session, order_id: int) -> dict:
    """What the deal shows, from the order as it is now: number, status, approval status
    (and why a rejected one was rejected), invoices, payment status, total."""
    from models import Order

    order = session.get(Order, order_id)
    invoices = list(session.exec(select(Invoice).where(Invoice.order_id == order_id)
                                 .order_by(Invoice.id)))
    if not invoices:
        payment = "not invoiced"
    elif all(i.balance_minor == 0 for i in invoices):
        payment = "paid"
    elif any(i.balance_minor < i.total_minor for i in invoices):
        payment = "partially paid"
    else:
        payment = "unpaid"
    approval = {"pending_approval": "pending", "rejected": "rejected",
                "on_hold": "on hold", "draft": "pending",
                "cancelled": "cancelled"}.get(order.status, "approved")
    rejected = session.exec(select(AuditEvent.reason).where(
        AuditEvent.entity_type == "order", AuditEvent.entity_id == str(order.id),
        AuditEvent.to_state == "rejected").order_by(AuditEvent.id.desc())).first()
    return {"order_number": order.number, "order_status": order.status,
            "approval_status": approval,
            "rejection_reason": (rejected or "") if order.status == "rejected" else "",
            "invoice_numbers": ", ".join(i.number for i in invoices),
            "payment_status": payment,
            "order_total": money.to_str(order.total_minor, order.currency)}
