"""Order intake: validate, price, total, number, then submit through the credit and discount
checks. One function per transition; each writes its audit event and notifications into the
caller's transaction (the caller commits once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlmodel import Session, select

from models import (
    Approval,
    ApprovalStatus,
    Customer,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    User,
    can_cancel,
    can_transition,
    money,
)
from workflows import audit, numbering, outbox, policy, webhooks
from workflows import validation as v
from workflows.credit import approval_needs
from workflows.errors import FieldError, InvalidTransition, NotFound, ValidationFailed
from workflows.masterdata import customer_by_external_id

MAX_LINES = 200


@dataclass
class LineIn:
    sku: str
    quantity: int
    unit_price: str | None = None
    discount_pct: str | None = None


@dataclass
class OrderIn:
    customer: str  # external_id
    sales_rep: str  # Slack user id
    currency: str
    lines: list[LineIn] = field(default_factory=list)
    external_id: str | None = None
    order_date: date | str | None = None
    notes: str | None = None


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
    """Lock the order's row until the transaction ends, re-read it, and return its lines as
    committed now.

    Every change that reads an order's lines and then writes them (shipping, cancelling,
    reserving stock, a backorder choice) calls this first, so two of them on one order run
    one after the other and the second sees what the first did (PostgreSQL: FOR UPDATE at
    READ COMMITTED; SQLite: write transactions already serialise with BEGIN IMMEDIATE, and
    SQLAlchemy leaves FOR UPDATE out there). Orders are locked before products everywhere."""
    session.exec(select(Order).where(Order.id == order.id).with_for_update()
                 .execution_options(populate_existing=True)).one()
    return list(session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.line_no)
        .execution_options(populate_existing=True)))


def cancelled_value_minor(order: Order, lines: list[OrderLine], tax_rate_bp: int) -> int:
    """The value (after discount, with tax) of the lines' cancelled quantities, each line
    rounded once as when it was priced; never more than the order's total."""
    value = 0
    for line in lines:
        if not line.qty_cancelled:
            continue
        kept = money.line_total(line.quantity - line.qty_cancelled, line.unit_price_minor,
                                line.discount_bp, order.currency)
        value += line.line_total_minor - kept
        value += (money.percent_of(line.line_total_minor, tax_rate_bp, order.currency)
                  - money.percent_of(kept, tax_rate_bp, order.currency))
    return min(max(value, 0), order.total_minor)


def recompute_cancelled(session: Session, order: Order, lines: list[OrderLine]) -> None:
    """After quantities were cancelled: `cancelled_minor` again matches the lines (the totals
    keep describing what was ordered)."""
    customer = session.get(Customer, order.customer_id)
    order.cancelled_minor = cancelled_value_minor(order, lines, customer.tax_rate_bp)
    session.add(order)


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
        lines.append(OrderLine(
            line_no=i + 1, product_id=product.id, sku=product.sku, description=product.name,
            quantity=line.quantity, unit_price_minor=price, discount_bp=discount,
            line_total_minor=money.line_total(line.quantity, price, discount, currency)))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.detail}" for e in errors),
                               errors=errors)
    return lines


def compute_totals(order: Order, lines: list[OrderLine], tax_rate_bp: int) -> None:
    """Subtotal, discount, tax and total from lines rounded per line (SPEC §3)."""
    gross = sum(money.line_total(li.quantity, li.unit_price_minor, 0, order.currency)
                for li in lines)
    net = sum(li.line_total_minor for li in lines)
    tax = sum(money.percent_of(li.line_total_minor, tax_rate_bp, order.currency) for li in lines)
    order.subtotal_minor, order.discount_minor = gross, gross - net
    order.tax_minor, order.total_minor = tax, net + tax


def create_order(session: Session, data: OrderIn, *, actor: str, now: datetime,
                 source: str = "api") -> Order:
    """Validate, price and number a new order, then submit it (credit/discount checks).
    Without an `order_date` the order is dated today in the business time zone."""
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
                  now: datetime) -> None:
    """-> approved, then reserve stock (which may leave it backordered); tell the rep."""
    from workflows import fulfilment

    transition(session, order, OrderStatus.APPROVED, actor=actor, reason=reason, now=now)
    short = fulfilment.reserve_stock(session, order, actor=actor, now=now)
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer), "reasons": [reason],
                                 "short_lines": short})


def pending_approvals(session: Session, order_id: int) -> list[Approval]:
    return list(session.exec(select(Approval).where(Approval.order_id == order_id,
                                                    Approval.status == ApprovalStatus.PENDING)))


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
    released = fulfilment.release_stock(session, order)
    for line in lines:
        line.qty_cancelled += line.qty_open
        session.add(line)
    recompute_cancelled(session, order, lines)
    transition(session, order, OrderStatus.CANCELLED, actor=actor, reason=reason, now=now)
    approvals.cancel_pending(session, order, actor=actor, now=now, reason="order cancelled")
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer), "reasons": [reason]})
    for product_id in released:  # freed stock goes to the orders waiting for it
        fulfilment.reserve_backorders(session, product_id, actor, now=now, skip_locked=True)
