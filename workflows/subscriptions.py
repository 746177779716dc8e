"""Subscriptions billed by period (issue 15): invoiced in advance on each period's first day,
exactly once per period, and renewed or cancelled through the API.

A subscription line with a `billing` frequency (monthly, quarterly, annual) runs whole billing
periods from its `service_start` (checked when the order is entered); each period invoices an
equal installment of the line's net amount (`orders.subscription_periods`). Such a line is
never shipped: the `subscription-billing` job (`bot.revenue_jobs`) calls `bill_period` for
every period that has started and is not invoiced yet.

Exactly once: `bill_period` locks the order (its customer first, `orders.lock_order`, as a
cancellation does) before it looks for the period's `SubscriptionBilling`, so two processes
billing the same period queue up and the second sees the first's invoice, and a period
cancelled meanwhile is not billed; the primary key (order line, period start) is the last
word. One period per transaction, so a failure stops one invoice, not the run.

An order is billable once approved (a contract) and while it is not on hold: the periods of an
order on hold are billed when it is released, dated the day they are billed.

Cancellation stops a subscription from a period that is not invoiced yet (`cancelled_from`,
its first day): nothing is refunded, the order's cancelled value grows by what will not be
billed, and revenue recognition shortens the service period to the day before. From a period
that has started already (on or before today: served, or being served, and not invoiced
because the job has not caught up or the order was on hold) it forgoes billing service
delivered — a finance decision like a write-off: only a credit approver or an admin takes
it (never the order's sales rep; through the API, the person named in `by`), and the audit
records the net amount and the periods forgone (`_may_forgo`). Renewal is a
new contract: a new order for the next term (same product, quantity, price — for a term of
another length, in proportion to it — discount and billing), through the credit and
discount checks like any order; a line is renewed once (again only if that renewal order
was cancelled or rejected). A line whose renewal stands is not cancelled (409 naming the
renewal order, to be withdrawn first): the customer would be billed the next term after
leaving. Cancelled from its first day, before anything was invoiced, an order with nothing
else on it is cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import Customer, Invoice, Order, OrderLine, OrderStatus, Role, money
from models.revenue import BILLING_MONTHS, Billing, SubscriptionBilling
from workflows import audit, invoicing, orders, policy, users
from workflows import validation as v
from workflows.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.inputs import OrderIn, build
from workflows.revenue_schedule import add_months, half_up, whole_months

# Orders whose subscriptions are billed: contracts (approved or later) not on hold.
BILLABLE = (OrderStatus.APPROVED, OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED,
            OrderStatus.SHIPPED, OrderStatus.INVOICED, OrderStatus.PAID, OrderStatus.CLOSED)
ACTOR = "system"
# A renewal order in one of these never became the next term: the line may be renewed again.
NOT_RENEWED = (OrderStatus.CANCELLED, OrderStatus.REJECTED)
# Who may cancel from a period already under way, forgoing what was served (`_may_forgo`):
# finance, as for a write-off.
FORGO_ROLES = (Role.CREDIT_APPROVER,)


@dataclass(frozen=True)
class DuePeriod:
    order_line_id: int
    period_start: date


def live_periods(line: OrderLine) -> list[tuple[date, date, int]]:
    """The periods a billed subscription bills: all, or those before `cancelled_from`; none
    once the line is cancelled with its order."""
    if not line.billing or line.qty_cancelled:
        return []
    return [p for p in orders.subscription_periods(line)
            if line.cancelled_from is None or p[0] < line.cancelled_from]


def billed_starts(session: Session, line_ids: list[int]) -> dict[int, set[date]]:
    out: dict[int, set[date]] = {}
    if line_ids:
        for line_id, start in session.exec(
                select(SubscriptionBilling.order_line_id, SubscriptionBilling.period_start)
                .where(SubscriptionBilling.order_line_id.in_(line_ids))):
            out.setdefault(line_id, set()).add(start)
    return out


def due_periods(session: Session, as_of: date) -> list[DuePeriod]:
    """Every period that has started on or before `as_of` and is not invoiced yet, of the
    billed subscriptions of billable orders, oldest first."""
    lines = list(session.exec(
        select(OrderLine).join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.billing.is_not(None), OrderLine.service_start <= as_of,
               Order.status.in_(list(BILLABLE)))
        .order_by(OrderLine.id)))
    billed = billed_starts(session, [line.id for line in lines])
    due = [DuePeriod(line.id, first) for line in lines for first, _, _ in live_periods(line)
           if first <= as_of and first not in billed.get(line.id, set())]
    return sorted(due, key=lambda d: (d.period_start, d.order_line_id))


def fully_billed(session: Session, line: OrderLine) -> bool:
    """Every live period of a billed subscription is invoiced (True for other lines)."""
    if not line.billing:
        return True
    starts = billed_starts(session, [line.id]).get(line.id, set())
    return all(first in starts for first, _, _ in live_periods(line))


def order_fulfilled(session: Session, lines: list[OrderLine]) -> bool:
    """Nothing left to ship and every subscription period invoiced: the order is complete."""
    return all(line.qty_open == 0 for line in lines) and all(
        fully_billed(session, line) for line in lines if line.billing)


def complete_order(session: Session, order: Order, lines: list[OrderLine], *, actor: str,
                   now: datetime, reason: str) -> None:
    """Move an order whose last subscription period was just invoiced (or cancelled) on to
    shipped and invoiced, like an order whose last shipment was invoiced; or, when nothing
    of it shipped nor is billed (a subscription cancelled from its first day, before any
    period was invoiced), to cancelled — there is no invoice to be paid (as
    `fulfilment.cancel_line` does for an order whose short lines were all cancelled). An
    order on hold whose subscription is cancelled so that nothing is left to bill moves on
    the same way: a hold stops shipping and billing, and there is none left to stop (left on
    hold, then released, it would wait as approved for ever, for a billing that never
    comes)."""
    if order.status not in (OrderStatus.APPROVED, OrderStatus.PARTIALLY_SHIPPED,
                            OrderStatus.ON_HOLD):
        return
    if not order_fulfilled(session, lines):
        return
    if not any(line.qty_shipped or live_periods(line) for line in lines):
        orders.transition(session, order, OrderStatus.CANCELLED, actor=actor, now=now,
                          reason=f"{reason}; nothing is left on the order")
        return
    orders.transition(session, order, OrderStatus.SHIPPED, actor=actor, now=now, reason=reason)
    orders.transition(session, order, OrderStatus.INVOICED, actor=ACTOR, now=now,
                      reason="every subscription period and shipment is invoiced")
    open_left = session.exec(select(sa.func.count()).select_from(Invoice).where(
        Invoice.order_id == order.id, Invoice.balance_minor > 0)).one()
    if not open_left:
        orders.transition(session, order, OrderStatus.PAID, actor=ACTOR, now=now,
                          reason="every invoice is settled")


def bill_period(session: Session, *, order_line_id: int, period_start: date, as_of: date,
                now: datetime, actor: str = ACTOR) -> Invoice | None:
    """Invoice one period of a billed subscription, once. None when it is already invoiced
    or not billable (any more): the order is on hold, cancelled, or the line was cancelled
    from an earlier period."""
    line = session.get(OrderLine, order_line_id)
    if line is None:
        return None
    # the customer, the order, then the line (`orders.lock_order`, the order a cancellation
    # locks in): a cancellation and this billing run one after the other, never in a circle
    order = session.get(Order, line.order_id)
    line = next(li for li in orders.lock_order(session, order) if li.id == order_line_id)
    if not line.billing:
        return None
    if session.get(SubscriptionBilling, (line.id, period_start)) is not None:
        return None
    if order.status not in BILLABLE:
        return None
    period = next((p for p in live_periods(line) if p[0] == period_start), None)
    if period is None or period_start > as_of:
        return None
    first, last, amount = period
    invoice = invoicing.invoice_subscription_period(
        session, order=order, line=line, first=first, last=last, amount_minor=amount,
        issue_date=as_of, actor=actor, now=now)
    session.add(SubscriptionBilling(order_line_id=line.id, period_start=first,
                                    period_end=last, invoice_id=invoice.id,
                                    amount_minor=amount, created_at=now))
    session.flush()
    audit.record(session, actor=actor, action="subscription.billed", entity_type="order",
                 entity_id=order.id, reason=f"period {first.isoformat()} to {last.isoformat()}",
                 number=order.number, line_no=line.line_no, invoice=invoice.number,
                 amount_minor=amount, at=now)
    complete_order(session, order, orders.order_lines(session, order.id), actor=actor, now=now,
                   reason=f"last subscription period invoiced ({invoice.number})")
    return invoice


# -- the API: cancel and renew --------------------------------------------------------------------
def _subscription_line(session: Session, order: Order, line_no: int) -> OrderLine:
    line = session.exec(select(OrderLine).where(OrderLine.order_id == order.id,
                                                OrderLine.line_no == line_no)).first()
    if line is None:
        raise NotFound(f"order {order.number} has no line {line_no}")
    if line.revenue_type != "subscription" or line.service_start is None:
        raise ValidationFailed.of("line_no", f"line {line_no} of {order.number} ({line.sku}) "
                                  "is not a subscription")
    return line


def cancel_subscription(session: Session, *, order_number: str, line_no: int,
                        reason: str, actor: str, now: datetime,
                        effective: date | str | None = None) -> OrderLine:
    """Stop a billed subscription from the first day of a period not invoiced yet (default:
    the next period to start after today, business date: a period under way — served, or
    being served — is still invoiced, even when the job has not caught up with it yet).
    Idempotent: cancelling again from the same day, or again without a day while it stops
    from the next period already, changes nothing."""
    order = orders.get_order(session, order_number)
    lines = orders.lock_order(session, order)
    line = _subscription_line(session, order, line_no)
    line = next(li for li in lines if li.id == line.id)
    if not line.billing:
        raise ValidationFailed.of("line_no", f"line {line_no} of {order.number} was invoiced "
                                  "in full; a refund is a credit note")
    if order.status not in BILLABLE and order.status != OrderStatus.ON_HOLD:
        raise InvalidTransition(f"order {order.number} is {order.status}; its subscription "
                                "is not running")
    if not (reason or "").strip():
        raise ValidationFailed.of("reason", "say why the subscription is cancelled")
    v.text("reason", reason)
    billed = billed_starts(session, [line.id]).get(line.id, set())
    periods = live_periods(line)
    open_starts = [first for first, _, _ in periods if first not in billed]
    today = policy.business_date(session, now)
    if effective in (None, ""):
        if line.cancelled_from is not None and line.cancelled_from == next(
                (first for first, _, _ in orders.subscription_periods(line) if first > today),
                None):
            return line  # sent again: it stops from the next period already
        coming = [first for first in open_starts if first > today]
        if not coming:
            raise InvalidTransition(f"every period of line {line_no} of {order.number} is "
                                    "invoiced or under way already; nothing is left to cancel")
        day = coming[0]
    else:
        day = v.parse_date("effective", effective)
    if line.cancelled_from is not None and day == line.cancelled_from:
        return line
    if day not in open_starts or (billed and day < max(billed)):
        choices = ", ".join(d.isoformat() for d in open_starts[:3]) or "none left"
        raise ValidationFailed.of("effective", "must be the first day of a billing period "
                                  f"not invoiced yet ({choices})")
    # periods served (or being served) that will now never be invoiced
    forgone = [(first, amount) for first, _, amount in periods if day <= first <= today]
    if forgone:
        _may_forgo(session, order=order, line=line, actor=actor, day=day,
                   forgone_minor=sum(amount for _, amount in forgone))
    renewal = _renewal(session, line)
    if renewal is not None and renewal[1].status not in NOT_RENEWED:
        raise Conflict(f"line {line_no} of {order.number} is renewed by {renewal[1].number}; "
                       "cancel that order first")
    before = line.cancelled_from
    line.cancelled_from = day
    session.add(line)
    orders.recompute_cancelled(session, order, lines)
    session.flush()
    audit.record(session, actor=actor, action="subscription.cancelled", entity_type="order",
                 entity_id=order.id, reason=reason.strip(), number=order.number,
                 line_no=line.line_no, cancelled_from=day.isoformat(),
                 before=before.isoformat() if before else None,
                 cancelled_minor=order.cancelled_minor, at=now,
                 **({"forgone_minor": sum(amount for _, amount in forgone),
                     "currency": order.currency,
                     "forgone_periods": [first.isoformat() for first, _ in forgone]}
                    if forgone else {}))
    complete_order(session, order, lines, actor=actor, now=now,
                   reason=f"subscription cancelled from {day.isoformat()}")
    return line


def _may_forgo(session: Session, *, order: Order, line: OrderLine, actor: str, day: date,
               forgone_minor: int) -> None:
    """A cancellation from a period that has started gives up billing service delivered: a
    finance decision, like a write-off — a credit approver's (or an admin's), never the
    order's sales rep's nor an unnamed integration's (the API names the person in `by`).
    Refused otherwise, naming the net amount (before tax) forgone; audited when it goes
    through (`forgone_minor`)."""
    what = (f"cancelling line {line.line_no} of {order.number} from {day.isoformat()} leaves "
            f"{money.to_str(forgone_minor, order.currency)} {order.currency} of service "
            "already under way never invoiced")
    if not v.SLACK_USER_ID.match(actor or ""):
        raise ValidationFailed.of("by", f"{what}: name the credit approver or admin who "
                                  "decides it")
    refusal = {"actor": actor, "action": "subscription.cancel_served", "entity_type": "order",
               "entity_id": order.id}
    if not users.has_role(session, actor, *FORGO_ROLES):
        raise PermissionDenied(f"{what}; {users.only_for(FORGO_ROLES)}", **refusal)
    if actor == order.sales_rep_id:
        raise PermissionDenied(f"{what}; the order's sales rep may not decide it. Nothing "
                               "was changed.", **refusal)


def for_term(amount_minor: int, renewed: OrderLine, start: date, end: date) -> int:
    """A price of `renewed`'s term (its unit price, or its product's list price) for a
    renewal running [start, end]: in proportion to the new term's length — by whole months
    when both terms run whole months (six months of a year: half), else by days (both days
    included) — half-up to the minor unit. The same length (or an end before the start,
    which the new order refuses) keeps the price."""
    months = whole_months(renewed.service_start, renewed.service_end)
    new_months = whole_months(start, end)
    if months and new_months:
        length, new_length = months, new_months
    else:
        length = (renewed.service_end - renewed.service_start).days + 1
        new_length = (end - start).days + 1
    if new_length <= 0 or new_length == length:
        return amount_minor
    return half_up(amount_minor * new_length, length)


def _renewal(session: Session, line: OrderLine) -> tuple[OrderLine, Order] | None:
    """The line (and order) renewing `line`, if any."""
    return session.exec(select(OrderLine, Order).join(Order, Order.id == OrderLine.order_id)
                        .where(OrderLine.renewal_of_line_id == line.id)).first()


def _renewable(order: Order, line: OrderLine) -> None:
    if line.cancelled_from is not None or line.qty_cancelled:
        raise InvalidTransition(f"line {line.line_no} of {order.number} is cancelled; it "
                                "cannot be renewed")
    if order.status not in BILLABLE:
        raise InvalidTransition(f"order {order.number} is {order.status}; only a running "
                                "contract can be renewed")


def renew_subscription(session: Session, *, order_number: str, line_no: int, actor: str,
                       now: datetime, service_end: date | str | None = None,
                       external_id: str | None = None) -> Order:
    """A new order for the next term of a subscription line: from the day after its service
    period ends, for the same length (as many months when it runs whole months: a year for a
    year, leap or not; else as many days) or up to `service_end` (then priced for that term,
    `for_term`: six months of a year at half its price); same product, quantity, price,
    discount and billing; through the credit and discount checks. A line is renewed
    once: again only when its renewal was cancelled or rejected (it never became a term)."""
    order = orders.get_order(session, order_number)
    line = _subscription_line(session, order, line_no)
    _renewable(order, line)
    earlier = _renewal(session, line)
    if earlier is not None and earlier[1].status not in NOT_RENEWED:
        raise Conflict(f"line {line_no} of {order.number} is already renewed by "
                       f"{earlier[1].number}")
    if earlier is not None:  # withdrawn or rejected: it never became the next term
        earlier[0].renewal_of_line_id = None
        session.add(earlier[0])
        session.flush()
    start = line.service_end + timedelta(days=1)
    if service_end in (None, ""):
        if line.billing:
            step = BILLING_MONTHS[Billing(line.billing)]
            count = len(orders.subscription_periods(line))
            end = add_months(start, count * step) - timedelta(days=1)
        elif months := whole_months(line.service_start, line.service_end):
            end = add_months(start, months) - timedelta(days=1)  # a year for a year, leap or not
        else:
            end = start + (line.service_end - line.service_start)
    else:
        end = v.parse_date("service_end", service_end)
    unit_price = for_term(line.unit_price_minor, line, start, end)
    customer = session.get(Customer, order.customer_id)
    data = build(
        OrderIn,
        customer=customer.external_id, sales_rep=order.sales_rep_id, currency=order.currency,
        external_id=external_id, notes=f"renewal of {order.number} line {line.line_no}",
        lines=[dict(
            sku=line.sku, quantity=line.quantity,
            unit_price=money.to_str(unit_price, order.currency),
            discount_pct=str(money.bp_to_pct(line.discount_bp)) if line.discount_bp else None,
            service_start=start, service_end=end, billing=line.billing)])
    try:
        renewed = orders.create_order(session, data, actor=actor, now=now, source="renewal",
                                      renewal_of_line_id=line.id)
    except ValidationFailed as exc:  # the new line's fields are this request's
        raise ValidationFailed(exc.detail.replace("lines[0].", ""), errors=[
            type(e)(e.field.replace("lines[0].", ""), e.detail) for e in exc.errors]) from None
    # Read again under the order's lock (the customer's is held since the new order was
    # submitted: `lock_order`'s order): a cancellation that committed while this renewal was
    # on its way refuses it (the caller rolls the new order back).
    _renewable(order, next(li for li in orders.lock_order(session, order) if li.id == line.id))
    audit.record(session, actor=actor, action="subscription.renewed", entity_type="order",
                 entity_id=order.id, number=order.number, line_no=line.line_no,
                 renewal=renewed.number,
                 **({"replaces": earlier[1].number} if earlier is not None else {}),
                 service_start=start.isoformat(),
                 service_end=end.isoformat(), at=now)
    return renewed

