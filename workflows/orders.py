"""Order intake: validate, price, total, number, then submit through the credit and discount
checks. One function per transition; each writes its audit event and notifications into the
caller's transaction (the caller commits once).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Approval,
    ApprovalStatus,
    Customer,
    Invoice,
    InvoiceLine,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    RevenueType,
    User,
    can_cancel,
    can_transition,
    limits,
    money,
)
from models.orders import UNINVOICED_APPROVED
from workflows import audit, customer_notices, exposure, numbering, outbox, policy, webhooks
from workflows import validation as v
from workflows.credit import approval_needs
from workflows.errors import FieldError, InvalidTransition, NotFound, ValidationFailed
from workflows.inputs import OrderIn
from workflows.masterdata import customer_by_external_id

MAX_LINES = 200


def order_snapshot(order: Order, customer: Customer | None = None) -> dict:
    """What notifications about an order show, frozen at the time of the event."""
    return {"number": order.number, "status": order.status, "currency": order.currency,
            "total_minor": order.total_minor, "customer": customer.name if customer else None,
            "sales_rep": order.sales_rep_id}


def get_order(session: Session, number: str) -> Order:
    order = session.exec(select(Order).where(Order.number == number.strip().upper())).first()
    if order is None:
        raise NotFound(f"no order {number}")
    return order


def order_lines(session: Session, order_id: int) -> list[OrderLine]:
    return list(session.exec(
        select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)))


def lock_order(session: Session, order: Order) -> list[OrderLine]:
    """Lock the order's customer, then the order's row, until the transaction ends; re-read
    the order and return its lines as committed now.

    Every change that reads an order's lines and then writes them (shipping, cancelling,
    reserving stock, a backorder choice, billing or cancelling a subscription period) calls
    this first, so two of them on one order run one after the other and the second sees what
    the first did (PostgreSQL: FOR UPDATE at READ COMMITTED; SQLite: write transactions
    already serialise with BEGIN IMMEDIATE, and SQLAlchemy leaves FOR UPDATE out there).

    One lock order everywhere, so two transactions never wait for each other in a circle
    (PostgreSQL's "deadlock detected"): the customer (`lock_customer`), its orders, their
    lines, the products (in id order), then the approval rows (the waiting cards refreshed at
    commit, `approvals.refresh_waiting_cards`). The customer comes first because an approval
    decision holds it while it reserves stock, and anything that ships, cancels or restocks
    the customer's other orders refreshes that decision's card when it commits."""
    lock_customer(session, order.customer_id)
    session.exec(select(Order).where(Order.id == order.id).with_for_update()
                 .execution_options(populate_existing=True)).one()
    return list(session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.line_no)
        .execution_options(populate_existing=True)))


def lock_customer(session: Session, customer_id: int) -> Customer:
    """Lock the customer's row until the transaction ends, and re-read it.

    Credit checks of one customer's orders (an order submitted, an order's approval decided)
    call this first, so they run one after the other and each sees the orders the one before
    approved: two of them at the same moment never both fit into the same room under the
    limit (PostgreSQL: FOR UPDATE at READ COMMITTED; SQLite's writers are serialised already).
    The first lock of the global order (`lock_order`): taken before the customer's orders,
    products and approval rows (a new order's number is drawn before it)."""
    return session.exec(select(Customer).where(Customer.id == customer_id).with_for_update()
                        .execution_options(populate_existing=True)).one()


def try_lock_customer(session: Session, customer_id: int) -> bool:
    """Lock the customer's row if no other transaction holds it (True; also when this one
    does), without waiting (False). For a path already holding product rows, which may not
    wait for a customer any more (`lock_order`'s order) and leaves that customer's orders
    for later instead."""
    return session.exec(select(Customer.id).where(Customer.id == customer_id)
                        .with_for_update(skip_locked=True)).first() is not None


def cancelled_value_minor(order: Order, lines: list[OrderLine], tax_rate_bp: int,
                          billed: dict[int, tuple[int, int]]) -> int:
    """The value (after discount, with tax) the order no longer bills: its total (what was
    ordered, `order_tax_minor`) less what it now bills (`will_bill_minor`) — the cancelled
    part at the rate the rest is billed at, so the total less it is what the order's
    invoices come to whatever rate the order was entered at. 0 when nothing is cancelled;
    never below 0 nor above the total. `billed`: the order's `billed_by_line`."""
    if not any(line.qty_cancelled or line.cancelled_from is not None for line in lines):
        return 0
    value = order.total_minor - will_bill_minor(lines, billed, tax_rate_bp, order.currency)
    return min(max(value, 0), order.total_minor)


def billed_by_line(session: Session, *where: object) -> dict[int, tuple[int, int]]:
    """Per order line, the (net, tax) our invoices billed for it so far (shipments and
    subscription periods), of the invoices and orders `where` picks (e.g.
    `Invoice.order_id == order.id`)."""
    rows = session.exec(
        select(InvoiceLine.order_line_id, sa.func.sum(InvoiceLine.line_total_minor),
               sa.func.sum(InvoiceLine.tax_minor))
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Order, Order.id == Invoice.order_id)
        .where(*where, InvoiceLine.order_line_id.is_not(None))
        .group_by(InvoiceLine.order_line_id)).all()
    return {line_id: (int(net or 0), int(tax or 0)) for line_id, net, tax in rows}


def will_bill_minor(lines: list[OrderLine], billed: dict[int, tuple[int, int]],
                    tax_rate_bp: int, currency: str) -> int:
    """What the lines' invoices come to in all (net and tax): what was billed already, at
    the rate it was billed at, and the rest they keep at `tax_rate_bp`, today's
    (`invoicing.rest_to_bill_minor`)."""
    from workflows.invoicing import rest_to_bill_minor

    total = 0
    for line in lines:
        net, tax = billed.get(line.id, (0, 0))
        total += net + tax + rest_to_bill_minor(line, net, tax_rate_bp, currency)
    return total


def order_tax_minor(lines: list[OrderLine], billed: dict[int, tuple[int, int]],
                    tax_rate_bp: int, currency: str) -> int:
    """The tax of what was ordered: per line, the tax billed already and the rest of its
    net (cancelled quantities included) at `tax_rate_bp` by cumulative rounding
    (`invoicing.part_tax`). Nothing billed, that is each line's tax at that rate, as
    `compute_totals` prices a new order."""
    from workflows.invoicing import part_tax

    tax = 0
    for line in lines:
        net, billed_tax = billed.get(line.id, (0, 0))
        tax += billed_tax + (part_tax(net, line.line_total_minor, tax_rate_bp, currency)
                             if net < line.line_total_minor else 0)
    return tax


def kept_net_minor(line: OrderLine, currency: str) -> int:
    """The net amount (after discount, before tax) the line still bills or has billed: the
    line of its quantity not cancelled, rounded once; a subscription cancelled from a period
    on, its periods before (`subscription_kept_minor`)."""
    if line.cancelled_from is not None and not line.qty_cancelled:
        return subscription_kept_minor(line)
    if not line.qty_cancelled:
        return line.line_total_minor
    return money.line_total(line.quantity - line.qty_cancelled, line.unit_price_minor,
                            line.discount_bp, currency)


def subscription_periods(line: OrderLine) -> list[tuple[date, date, int]]:
    """A subscription line billed by period: its periods and the net amount each invoices
    (equal installments of the line's net amount, `revenue_schedule.installments`)."""
    from models.revenue import BILLING_MONTHS, Billing
    from workflows.revenue_schedule import term_installments

    return term_installments(line.service_start, line.service_end,
                             BILLING_MONTHS[Billing(line.billing)], line.line_total_minor)


def subscription_kept_minor(line: OrderLine) -> int:
    """The net amount a billed subscription still bills or has billed: its periods starting
    before `cancelled_from` (all of them when it is not cancelled); 0 once the line itself is
    cancelled."""
    if line.qty_cancelled:
        return 0
    return sum(amount for first, _, amount in subscription_periods(line)
               if line.cancelled_from is None or first < line.cancelled_from)


def recompute_cancelled(session: Session, order: Order, lines: list[OrderLine]) -> None:
    """After quantities were cancelled: `cancelled_minor` again matches the lines (the totals
    keep describing what was ordered)."""
    customer = session.get(Customer, order.customer_id)
    billed = billed_by_line(session, Invoice.order_id == order.id)
    order.cancelled_minor = cancelled_value_minor(order, lines, customer.tax_rate_bp, billed)
    session.add(order)
    exposure.moved(session, order.customer_id)


REPRICED_ON_TAX_CHANGE = (OrderStatus.DRAFT, OrderStatus.PENDING_APPROVAL, OrderStatus.ON_HOLD,
                          *UNINVOICED_APPROVED)


def reprice_for_tax_rate(session: Session, customer: Customer, *, before_bp: int,
                         actor: str) -> list[Order]:
    """The customer's tax rate changed (`masterdata.upsert_customer`, holding the customer's
    lock): each of their orders still to be invoiced (in part) is worth what it will bill —
    later shipments and subscription periods are taxed at the rate of their day — so its
    tax and total are priced again (`order_tax_minor`: what was invoiced at the rate it was,
    the rest at the new one) and its cancelled value with them. Every surface then shows one
    value: the order's card and API, its approval card and tier, the exposure. Audited per
    order (`order.repriced`); the pending approvals of those orders carry the new amount and
    their tiers are measured again (`approvals.retier_waiting`)."""
    from workflows.approvals import retier_waiting  # approvals imports this module

    ids = session.exec(select(Order.id).where(
        Order.customer_id == customer.id, Order.status.in_(list(REPRICED_ON_TAX_CHANGE)))
        .order_by(Order.id)).all()
    repriced = []
    for order_id in ids:
        order = session.get(Order, order_id)
        lines = lock_order(session, order)
        if order.status not in REPRICED_ON_TAX_CHANGE:
            continue  # moved on meanwhile
        billed = billed_by_line(session, Invoice.order_id == order.id)
        tax = order_tax_minor(lines, billed, customer.tax_rate_bp, order.currency)
        if tax == order.tax_minor:
            continue
        before = (order.tax_minor, order.total_minor, order.cancelled_minor)
        order.tax_minor = tax
        order.total_minor = sum(line.line_total_minor for line in lines) + tax
        order.cancelled_minor = cancelled_value_minor(order, lines, customer.tax_rate_bp,
                                                      billed)
        session.add(order)
        for approval in session.exec(select(Approval).where(
                Approval.order_id == order.id, Approval.status == ApprovalStatus.PENDING)):
            approval.amount_minor = order.total_minor
            session.add(approval)
        audit.record(session, actor=actor, action="order.repriced", entity_type="order",
                     entity_id=order.id, from_state=order.status, to_state=order.status,
                     reason="customer's tax rate changed", number=order.number,
                     tax_rate_bp=[before_bp, customer.tax_rate_bp],
                     tax_minor=[before[0], order.tax_minor],
                     total_minor=[before[1], order.total_minor],
                     cancelled_minor=[before[2], order.cancelled_minor])
        repriced.append(order)
    if repriced:
        session.flush()
        exposure.moved(session, customer.id)
        retier_waiting(session, customer.id, actor=actor)
    return repriced


def _build_lines(session: Session, data: OrderIn, currency: str) -> list[OrderLine]:
    errors: list[FieldError] = []
    if not data.lines:
        raise ValidationFailed.of("lines", "an order needs at least one line")
    if len(data.lines) > MAX_LINES:
        raise ValidationFailed.of("lines", f"at most {MAX_LINES} lines per order")
    skus = {line.sku for line in data.lines}
    products = {p.sku: p for p in session.exec(select(Product).where(Product.sku.in_(skus)))}
    lines: list[OrderLine] = []
    for i, line in enumerate(data.lines):
        where = f"lines[{i}]"
        try:
            product = products.get(line.sku)
            if product is None or not product.active:
                raise ValidationFailed.of(f"{where}.sku", f"unknown SKU {line.sku!r}")
            v.quantity(f"{where}.quantity", line.quantity)
            if line.unit_price is not None:
                price = v.amount_minor(f"{where}.unit_price", line.unit_price, currency)
            elif product.currency != currency:
                raise ValidationFailed.of(f"{where}.unit_price", f"{product.sku} is priced in "
                                          f"{product.currency}; give a {currency} unit_price")
            else:
                price = product.unit_price_minor
            discount = (v.percent_bp(f"{where}.discount_pct", line.discount_pct)
                        if line.discount_pct not in (None, "") else 0)
            # quantity x unit price is stored (subtotal) and paid: within the bound too
            v.within_amount_bound(f"{where}.quantity", line.quantity * price, currency)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        try:
            start, end, billing = service_terms(where, product, line.service_start,
                                                line.service_end, line.billing)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        lines.append(OrderLine(
            line_no=i + 1, product_id=product.id, sku=product.sku, description=product.name,
            quantity=line.quantity, unit_price_minor=price, discount_bp=discount,
            line_total_minor=money.line_total(line.quantity, price, discount, currency),
            revenue_type=product.revenue_type, ssp_minor=unit_ssp(product, currency, price),
            service_start=start, service_end=end, billing=billing))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.detail}" for e in errors),
                               errors=errors)
    return lines


def unit_ssp(product: Product, currency: str, price_minor: int) -> int:
    """A line's standalone selling price per unit, fixed when the order is entered (SPEC §3):
    the product's `ssp`, else its list price; the line's own price when the product is priced
    in another currency (its list price would not compare with the order's other lines)."""
    if product.currency != currency:
        return price_minor
    return product.ssp_minor if product.ssp_minor is not None else product.unit_price_minor


def service_terms(where: str, product: Product, service_start: date | str | None,
                  service_end: date | str | None, billing: str | None
                  ) -> tuple[date | None, date | None, str | None]:
    """A line's service period and billing frequency, checked against its product's revenue
    type: required for services and subscriptions, refused for goods; a billing frequency
    only for subscriptions, over whole billing periods (so every invoice bills a whole one)."""
    from models.revenue import BILLING_MONTHS, Billing
    from workflows.revenue_schedule import add_months, billing_periods, whole_periods

    start = (v.parse_date(f"{where}.service_start", service_start)
             if service_start not in (None, "") else None)
    end = (v.parse_date(f"{where}.service_end", service_end)
           if service_end not in (None, "") else None)
    billing = (billing or "").strip().lower() or None
    kind = product.revenue_type
    if kind == RevenueType.GOODS:
        if start or end:
            field = f"{where}.service_start" if start else f"{where}.service_end"
            raise ValidationFailed.of(field, f"{product.sku} is goods (recognised when it "
                                      "ships); only services and subscriptions have a service "
                                      "period")
        if billing:
            raise ValidationFailed.of(f"{where}.billing", "only subscriptions are billed by "
                                      f"period; {product.sku} is goods")
        return None, None, None
    if start is None:
        raise ValidationFailed.of(f"{where}.service_start", f"{product.sku} is a {kind}: give "
                                  "the first day of the period it covers")
    if end is None:
        raise ValidationFailed.of(f"{where}.service_end", f"{product.sku} is a {kind}: give "
                                  "the last day of the period it covers")
    if end < start:
        raise ValidationFailed.of(f"{where}.service_end", "must not be before service_start")
    if (end - start).days + 1 > limits.MAX_SERVICE_DAYS:
        raise ValidationFailed.of(f"{where}.service_end", "a service period is at most "
                                  f"{limits.MAX_SERVICE_DAYS} days")
    if billing is None:
        return start, end, None
    if kind != RevenueType.SUBSCRIPTION:
        raise ValidationFailed.of(f"{where}.billing", f"only subscriptions are billed by "
                                  f"period; {product.sku} is a {kind}")
    if billing not in Billing.__members__.values():
        raise ValidationFailed.of(f"{where}.billing", "must be monthly, quarterly or annual")
    step = BILLING_MONTHS[Billing(billing)]
    if not whole_periods(start, end, step):
        periods = len(billing_periods(start, end, step))
        suggestion = add_months(start, periods * step) - timedelta(days=1)
        raise ValidationFailed.of(f"{where}.service_end", f"a subscription billed {billing} "
                                  "runs whole billing periods from service_start: end it on "
                                  f"the day before a period would start (e.g. "
                                  f"{suggestion.isoformat()})")
    return start, end, billing


def compute_totals(order: Order, lines: list[OrderLine], tax_rate_bp: int) -> None:
    """Subtotal, discount, tax and total from lines rounded per line (SPEC §3)."""
    gross = sum(money.line_total(li.quantity, li.unit_price_minor, 0, order.currency)
                for li in lines)
    net = sum(li.line_total_minor for li in lines)
    tax = sum(money.percent_of(li.line_total_minor, tax_rate_bp, order.currency) for li in lines)
    order.subtotal_minor, order.discount_minor = gross, gross - net
    order.tax_minor, order.total_minor = tax, net + tax


def create_order(session: Session, data: OrderIn, *, actor: str, now: datetime,
                 source: str = "api", renewal_of_line_id: int | None = None) -> Order:
    """Validate, price and number a new order, then submit it (credit/discount checks).
    Without an `order_date` the order is dated today in the business time zone.
    `renewal_of_line_id`: the subscription line its one line renews (`workflows.subscriptions`),
    known to the discount check."""
    customer = customer_by_external_id(session, data.customer)
    currency = v.currency("currency", data.currency)
    if currency != customer.currency:
        raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                  f"{customer.currency}, not {currency}")
    if not v.SLACK_USER_ID.match(data.sales_rep or "") or session.get(User, data.sales_rep) is None:
        raise ValidationFailed.of("sales_rep", f"unknown user {data.sales_rep!r}; add it with "
                                  "PUT /api/v1/users/{id}")
    if data.external_id and session.exec(
            select(Order.id).where(Order.external_id == data.external_id)).first():
        raise ValidationFailed.of("external_id", f"order {data.external_id!r} already exists")
    v.text("external_id", data.external_id)
    v.text("notes", data.notes)
    order_date = (v.parse_date("order_date", data.order_date) if data.order_date
                  else policy.business_date(session, now))
    lines = _build_lines(session, data, currency)
    if renewal_of_line_id is not None:
        lines[0].renewal_of_line_id = renewal_of_line_id
    order = Order(number=numbering.next_order_number(session), external_id=data.external_id,
                  customer_id=customer.id, sales_rep_id=data.sales_rep, currency=currency,
                  status=OrderStatus.DRAFT, order_date=order_date, source=source,
                  notes=data.notes, created_at=now, updated_at=now)
    compute_totals(order, lines, customer.tax_rate_bp)
    v.within_amount_bound("lines", max(order.subtotal_minor, order.total_minor), currency)
    session.add(order)
    session.flush()
    for line in lines:
        line.order_id = order.id
        session.add(line)
    session.flush()
    audit.order_transition(session, order_id=order.id, number=order.number, actor=actor,
                           from_state=None, to_state=OrderStatus.DRAFT, reason="created",
                           source=source, total_minor=order.total_minor)
    webhooks.emit(session, "order.created", lambda: webhooks.order_data(session, order),
                  key=f"order.created:{order.id}", at=now)
    submit_order(session, order, lines=lines, actor=actor, now=now)
    return order


def transition(session: Session, order: Order, to: str, *, actor: str,
               reason: str | None = None, now: datetime | None = None, **data: object) -> None:
    """The one way an order changes state: guard, set, audit. `now` is when it happened;
    without it (a consequence of something else, e.g. the last invoice paid) the row's
    recording time stands."""
    if not can_transition(order.status, to):
        raise InvalidTransition(f"order {order.number} is {order.status}; cannot become {to}")
    before = order.status
    order.status = to
    if now is not None:
        order.updated_at = now
    session.add(order)
    if before in UNINVOICED_APPROVED or to in UNINVOICED_APPROVED:
        exposure.moved(session, order.customer_id)  # approved-not-invoiced counts (SPEC §3)
    audit.order_transition(session, order_id=order.id, number=order.number, actor=actor,
                           from_state=before, to_state=to, reason=reason, at=now, **data)
    event = ORDER_EVENTS.get(to)
    if event is not None:
        webhooks.emit(session, event, lambda: webhooks.order_data(
            session, order, previous_status=before, reason=reason), at=now)


# order transitions that are outbound events (SPEC §4)
ORDER_EVENTS = {OrderStatus.APPROVED: "order.approved", OrderStatus.REJECTED: "order.rejected",
                OrderStatus.SHIPPED: "order.shipped"}


def submit_order(session: Session, order: Order, *, lines: list[OrderLine], actor: str,
                 now: datetime) -> None:
    """Draft -> pending_approval (with one approval per need) or -> approved."""
    lock_customer(session, order.customer_id)  # one credit check of a customer at a time
    needs = approval_needs(session, order, lines, policy.business_date(session, now))
    if not needs:
        approve_order(session, order, actor="system", reason="auto-approved: within policy",
                      now=now)
        return
    transition(session, order, OrderStatus.PENDING_APPROVAL, actor=actor, now=now,
               reason="; ".join(r["text"] for need in needs for r in need.reasons))
    from workflows import approvals  # the approvals workflow owns cards and decisions

    for need in needs:
        approvals.request_approval(session, order=order, need=need, requested_by=actor,
                                   now=now)
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer),
                                 "reasons": [r["text"] for n in needs for r in n.reasons]})


def approve_order(session: Session, order: Order, *, actor: str, reason: str,
                  now: datetime, tell_rep: bool = True) -> None:
    """-> approved, then reserve stock (which may leave it backordered); tell the rep
    (unless the caller's own DM already does: one message per decision, issue 13)."""
    from workflows import fulfilment

    transition(session, order, OrderStatus.APPROVED, actor=actor, reason=reason, now=now)
    short = fulfilment.reserve_stock(session, order, actor=actor, now=now)
    if not tell_rep:
        return
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer), "reasons": [reason],
                                 "short_lines": short})
    # the customer hears of it (issue 19): the confirmation, then what is short, with their
    # signed choice links
    customer_notices.order_confirmed(session, order=order, lines=order_lines(session, order.id),
                                     short=short, now=now)
    if order.status == OrderStatus.BACKORDERED:
        from workflows import customer_links

        link = customer_links.backorder_link(session, order=order, now=now)
        customer_notices.backordered(session, order=order, short=short, link=link, now=now)


def pending_approvals(session: Session, order_id: int) -> list[Approval]:
    return list(session.exec(select(Approval).where(Approval.order_id == order_id,
                                                    Approval.status == ApprovalStatus.PENDING)))


def _billed_subscriptions(session: Session, lines: list[OrderLine]) -> list[int]:
    from models.revenue import SubscriptionBilling

    ids = [line.id for line in lines if line.billing]
    if not ids:
        return []
    billed = set(session.exec(select(SubscriptionBilling.order_line_id)
                              .where(SubscriptionBilling.order_line_id.in_(ids))).all())
    return [line.line_no for line in lines if line.id in billed]


def _served_subscriptions(session: Session, order: Order, lines: list[OrderLine],
                          now: datetime) -> list[int]:
    """The subscription lines billed by period of a running (approved) order whose service
    has begun (business date): withdrawing the order would leave the days served unbilled
    (the billing job invoices a period once it starts, up to an hour later)."""
    from workflows.subscriptions import BILLABLE

    if order.status not in BILLABLE:
        return []
    today = policy.business_date(session, now)
    return [line.line_no for line in lines
            if line.billing and not line.qty_cancelled and line.service_start is not None
            and line.service_start <= today]


def cancel_order(session: Session, order: Order, *, actor: str, reason: str,
                 now: datetime) -> None:
    """Withdraw an order that has not shipped: release its reserved stock (and give it to
    orders waiting for it), cancel its open quantities and its pending approvals (their cards
    show it), tell the rep. Once anything has shipped the order cannot be cancelled: its short
    lines can (`fulfilment.cancel_line`), and returns are credit notes."""
    from workflows import approvals, fulfilment

    lines = lock_order(session, order)
    if not can_cancel(order.status):
        raise InvalidTransition(f"order {order.number} is {order.status}; it cannot be "
                                "cancelled any more")
    shipped = sum(line.qty_shipped for line in lines)
    if shipped:
        raise InvalidTransition(f"order {order.number} has already shipped {shipped} "
                                "unit(s), so it cannot be cancelled; cancel its short lines "
                                "instead, or issue a credit note for returned goods")
    if not reason.strip():
        raise ValidationFailed.of("reason", "say why the order is cancelled")
    billed = _billed_subscriptions(session, lines)
    if billed:
        raise InvalidTransition(f"order {order.number} has invoiced subscription periods "
                                f"(line {billed[0]}), so it cannot be cancelled; cancel the "
                                "subscription from its next period instead")
    started = _served_subscriptions(session, order, lines, now)
    if started:
        raise InvalidTransition(f"order {order.number}'s subscription (line {started[0]}) "
                                "has been served since its first day, so the order cannot be "
                                "withdrawn: cancel the subscription from its next period "
                                "(what was served is invoiced), or from its first day "
                                "naming that day")
    released = fulfilment.release_stock(session, order)
    for line in lines:
        # a subscription billed by period has nothing open to ship: the whole line goes
        line.qty_cancelled += (line.quantity - line.qty_cancelled if line.billing
                               else line.qty_open)
        session.add(line)
    recompute_cancelled(session, order, lines)
    transition(session, order, OrderStatus.CANCELLED, actor=actor, reason=reason, now=now)
    approvals.cancel_pending(session, order, actor=actor, now=now, reason="order cancelled")
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer), "reasons": [reason]})
    for product_id in released:  # freed stock goes to the orders waiting for it
        fulfilment.reserve_backorders(session, product_id, actor, now=now, skip_locked=True)
