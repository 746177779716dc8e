"""Fulfilment (SPEC §3): approved orders reserve stock; a short line is backordered, and the rep
(in Slack) and billing are told, with the choices ship partial / wait / cancel line.

Reservations use a conditional UPDATE (`... WHERE on_hand - reserved >= :qty`), so two orders
racing for the last units cannot both get them, on SQLite or PostgreSQL; the products table
checks `0 <= reserved <= on_hand` as the last word.

Locks: a change that reads an order's lines and then writes them locks the order's customer
and the order row first (`orders.lock_order`), and takes product rows (by UPDATE, in product
id order) only after its orders. Restocking follows the same order: `upsert_product` locks
the customers of the product's backordered orders, those orders, then the product, then
reserves (`reserve_backorders`); where a product row is already held, orders (or customers)
another transaction holds are skipped (SKIP LOCKED), never waited for.

The backorder choices, each for the order's sales rep or an admin (checked here, whatever
the button showed), each audited:
* ship partial: billing is told to ship what is reserved now; the rest stays backordered;
* wait: nothing changes; the choice is recorded, and restocking reserves for the order,
  oldest order first, moving it back to approved when nothing is short any more;
* cancel line: the short (backordered) quantity of a line is cancelled; what is reserved
  still ships. When nothing is left short the order goes back to approved.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    AuditEvent,
    Customer,
    Invoice,
    Order,
    OrderLine,
    OrderStatus,
    OutboxMessage,
    Product,
    Role,
)
from workflows import audit, outbox
from workflows import validation as v
from workflows.errors import InvalidTransition, PermissionDenied, ValidationFailed
from workflows.orders import (
    lock_order,
    order_lines,
    order_snapshot,
    recompute_cancelled,
    transition,
    try_lock_customer,
)
from workflows.users import has_role, only_for

# Orders whose short lines wait for stock (an order on hold does not take scarce stock).
WAITING = (OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED)
CHOICES = {"ship_partial": "ship partial", "wait": "wait", "cancel_line": "cancel line",
           "cancel_rest": "cancel the rest"}
CHOICE_ACTION = "order.backorder_choice"


def _take(session: Session, product_id: int, qty: int) -> bool:
    table = Product.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id == product_id, table.c.on_hand - table.c.reserved >= qty)
        .values(reserved=table.c.reserved + qty))
    return result.rowcount == 1


def _free(session: Session, product_id: int) -> int:
    table = Product.__table__
    on_hand, reserved = session.execute(
        sa.select(table.c.on_hand, table.c.reserved).where(table.c.id == product_id)).one()
    return max(on_hand - reserved, 0)


def _reserve_up_to(session: Session, product_id: int, wanted: int) -> int:
    """Reserve as much of `wanted` as is free (never more); returns how much."""
    while wanted > 0:
        take = min(wanted, _free(session, product_id))
        if take <= 0:
            return 0
        if _take(session, product_id, take):
            return take
        # someone else reserved meanwhile; try what is left
    return 0


def short_lines(lines: list[OrderLine]) -> list[dict]:
    """What a backorder notice lists: each line still short of stock."""
    return [{"line_no": line.line_no, "sku": line.sku, "ordered": line.quantity,
             "reserved": line.qty_reserved, "backordered": line.qty_backordered}
            for line in lines if line.qty_backordered > 0]


def reserve_stock(session: Session, order: Order, *, actor: str,
                  now: datetime | None = None) -> list[dict]:
    """Reserve each line's open quantity; return the short lines (and backorder the order)."""
    lines = lock_order(session, order)
    for line in sorted(lines, key=lambda li: li.product_id):  # products in id order
        wanted = line.qty_open - line.qty_reserved
        if wanted <= 0:
            continue
        take = _reserve_up_to(session, line.product_id, wanted)
        line.qty_reserved += take
        line.qty_backordered = wanted - take
        session.add(line)
    session.flush()
    short = short_lines(lines)
    if short and order.status == OrderStatus.APPROVED:
        transition(session, order, OrderStatus.BACKORDERED, actor=actor, now=now,
                   reason=f"{len(short)} line(s) short of stock")
        customer = session.get(Customer, order.customer_id)
        snapshot = order_snapshot(order, customer)
        outbox.post_to_user(session, user_id=order.sales_rep_id, template="backorder_notice",
                            context={"order": snapshot, "lines": short})
        outbox.post_to_channel(session, channel="ar", template="backorder_notice",
                               context={"order": snapshot, "lines": short,
                                        "audience": "billing"})
    return short


def release_stock(session: Session, order: Order) -> list[int]:
    """Give back what an order reserved (it was cancelled or put on hold for good); returns
    the products that got stock back. The caller has locked the order."""
    table = Product.__table__
    released = []
    for line in sorted(order_lines(session, order.id), key=lambda li: li.product_id):
        if line.qty_reserved:
            session.execute(sa.update(table).where(table.c.id == line.product_id)
                            .values(reserved=table.c.reserved - line.qty_reserved))
            line.qty_reserved = 0
            released.append(line.product_id)
        line.qty_backordered = 0
        session.add(line)
    session.flush()
    return sorted(set(released))


# -- restocking ---------------------------------------------------------------------------------

def lock_backorders(session: Session, product_id: int, *, skip_locked: bool = False
                    ) -> list[Order]:
    """Lock the customers of the orders waiting for `product_id` (in id order), then those
    orders (in id order, in one statement); the orders oldest first.

    Called before the product row is touched, so restocking takes its locks in the same order
    as shipping (`orders.lock_order`: customers, orders, then products). `skip_locked` locks
    no customer and leaves out orders another transaction holds (used where a product row is
    already locked: they are served next time); an order whose customer this transaction
    does not hold is served only if that customer is free at once (`reserve_backorders`)."""
    waiting = (select(OrderLine.order_id).join(Order, Order.id == OrderLine.order_id)
               .where(OrderLine.product_id == product_id, OrderLine.qty_backordered > 0,
                      Order.status.in_(list(WAITING))))
    if not skip_locked:
        session.exec(select(Customer.id).where(Customer.id.in_(
            select(Order.customer_id).where(Order.id.in_(waiting))))
            .order_by(Customer.id).with_for_update()).all()
    locked = list(session.exec(
        select(Order).where(Order.id.in_(waiting)).order_by(Order.id)
        .with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)))
    return sorted(locked, key=lambda o: (o.order_date, o.id))


def reserve_backorders(session: Session, product_id: int, actor: str, *,
                       now: datetime | None = None, skip_locked: bool = False) -> list[dict]:
    """Stock of `product_id` became free (a restock, a cancelled order): reserve it for the
    backordered lines, oldest order first. An order whose lines are then all reserved goes
    back to approved; each rep whose order got stock is told. Returns what was reserved.
    (`now`, when given, stamps the transitions; otherwise their recording time does.)"""
    served = []
    for order in lock_backorders(session, product_id, skip_locked=skip_locked):
        if _free(session, product_id) <= 0:
            break  # nothing free any more: younger orders get nothing either
        if order.status not in WAITING:
            continue
        if not try_lock_customer(session, order.customer_id):
            continue  # its customer is busy (e.g. deciding on an order): served next time
        lines = lock_order(session, order)
        got = []
        for line in lines:
            if line.product_id != product_id or line.qty_backordered <= 0:
                continue
            take = _reserve_up_to(session, product_id, line.qty_backordered)
            if take:
                line.qty_reserved += take
                line.qty_backordered -= take
                session.add(line)
                got.append({"line_no": line.line_no, "sku": line.sku, "reserved": take})
        if not got:
            continue  # served meanwhile
        session.flush()
        still_short = short_lines(lines)
        reserved = quantities(got, "reserved")
        if order.status == OrderStatus.BACKORDERED and not still_short:
            transition(session, order, OrderStatus.APPROVED, actor=actor, now=now,
                       reason=f"stock arrived: {reserved} reserved; nothing is short any more")
        audit.record(session, actor=actor, action="order.stock_reserved", entity_type="order",
                     entity_id=order.id, reason="restocked", number=order.number, lines=got,
                     at=now)
        reasons = [f"stock arrived: {reserved} reserved"]
        if still_short:
            reasons.append("still short: " + quantities(still_short, "backordered"))
        else:
            reasons.append("ready to ship")
        customer = session.get(Customer, order.customer_id)
        outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                            context={"order": order_snapshot(order, customer),
                                     "reasons": reasons})
        served.append({"order": order.number, "status": order.status, "lines": got})
    return served


# -- the rep's choices --------------------------------------------------------------------------

def _check_chooser(session: Session, order: Order, actor: str, choice: str) -> None:
    """Who decides what happens to a backorder: the order's sales rep while they hold the
    sales role (one whose role was removed decides nothing more, SPEC §5.7), or an admin."""
    if actor == order.sales_rep_id and has_role(session, actor, Role.SALES):
        return  # (admins hold every role)
    if has_role(session, actor, Role.ADMIN):
        return
    if actor == order.sales_rep_id:
        raise PermissionDenied(only_for((Role.SALES,)), actor=actor,
                               action=f"{CHOICE_ACTION}.{choice}", entity_type="order",
                               entity_id=order.id)
    raise PermissionDenied(f"Only the sales rep of {order.number} or an admin can choose "
                           f"“{CHOICES[choice]}” for its backorder. Nothing was changed.",
                           actor=actor, action=f"{CHOICE_ACTION}.{choice}",
                           entity_type="order", entity_id=order.id)


def _short_order(session: Session, order: Order, actor: str, choice: str,
                 by_customer: bool = False, override_reason: str | None = None
                 ) -> list[OrderLine]:
    """Lock the order and check a choice may be made. `by_customer`: the customer chose
    through their signed backorder link (`workflows.customer_links`), which is their
    authority; otherwise the rep or an admin, checked here, with a reason when it overrides
    the customer's choice."""
    lines = lock_order(session, order)
    if not by_customer:
        _check_chooser(session, order, actor, choice)
        _check_override(session, order, actor=actor, choice=choice, reason=override_reason)
    if order.status not in (OrderStatus.APPROVED, *WAITING) or not short_lines(lines):
        raise InvalidTransition(f"order {order.number} is {order.status.replace('_', ' ')} "
                                "and nothing on it is short of stock any more; there is "
                                "nothing to choose")
    return lines


def _repeats_last_choice(session: Session, order: Order, *, actor: str, choice: str,
                         **data: object) -> bool:
    """A double click, or the same choice again with nothing changed since, records and
    tells nothing new (the order is locked, so concurrent clicks see each other)."""
    last = session.exec(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "order", AuditEvent.entity_id == str(order.id),
               AuditEvent.action.not_like("refused.%"))
        .order_by(AuditEvent.id.desc()).limit(1)).first()
    return (last is not None and last.action == CHOICE_ACTION and last.actor == actor
            and last.data.get("choice") == choice
            and all(last.data.get(key) == value for key, value in data.items()))


def short_order_lines(session: Session, order: Order) -> list[OrderLine]:
    """The lines of an order waiting for a choice (locked), or InvalidTransition."""
    return _short_order(session, order, "customer", "cancel_line", by_customer=True)


def _check_override(session: Session, order: Order, *, actor: str, choice: str,
                    reason: str | None) -> None:
    """The rep (or an admin) choosing after the customer did overrides the customer's
    choice: only with a reason (`/o2c backorder <order> <choice> <reason>`), and the override
    is in the order's history next to the customer's choice."""
    from workflows.customer_links import CHOICE_LABELS, customer_choice

    link = customer_choice(session, order.id)
    if link is None:
        return
    reason = (reason or "").strip()
    if not reason:
        chosen = CHOICE_LABELS.get(link.choice, link.choice)
        raise ValidationFailed.of("reason", f"the customer chose to {chosen} for "
                                  f"{order.number} through their link; to override it, say "
                                  f"why: `/o2c backorder {order.number} <ship|wait|cancel> "
                                  "<reason>`")
    v.text("reason", reason)
    audit.record(session, actor=actor, action="order.backorder_override",
                 entity_type="order", entity_id=order.id, reason=reason,
                 number=order.number, choice=choice, customer_choice=link.choice)


def tell_billing(session: Session, order: Order, *, choice: str, actor: str) -> None:
    """Billing (the AR channel) hears of a backorder choice."""
    _tell_billing(session, order, order_lines(session, order.id), choice=choice, actor=actor)


def _tell_billing(session: Session, order: Order, lines: list[OrderLine], *, choice: str,
                  actor: str, **extra: object) -> None:
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_channel(session, channel="ar", template="backorder_notice",
                           context={"order": order_snapshot(order, customer),
                                    "lines": short_lines(lines), "audience": "billing",
                                    "choice": choice, "by": actor, **extra})
    _show_choice(session, order, lines, choice=choice, actor=actor, **extra)


def _show_choice(session: Session, order: Order, lines: list[OrderLine], *, choice: str,
                 actor: str, **extra: object) -> None:
    """The rep's backorder notice is updated in place: the choice made, and only the buttons
    that can still change something (issue 13)."""
    notices = session.exec(
        select(OutboxMessage.id, OutboxMessage.payload)
        .where(OutboxMessage.method == "chat.postMessage",
               OutboxMessage.payload["template"].as_string() == "backorder_notice",
               OutboxMessage.payload["channel"].as_string() == order.sales_rep_id)
        .order_by(OutboxMessage.id.desc()).limit(50)).all()
    customer = session.get(Customer, order.customer_id)
    for row_id, payload in notices:
        if ((payload.get("context") or {}).get("order") or {}).get("number") != order.number:
            continue
        outbox.update_message(session, target_outbox_id=row_id, template="backorder_notice",
                              context={"order": order_snapshot(order, customer),
                                       "lines": short_lines(lines), "audience": "rep",
                                       "choice": choice, "by": actor, **extra})


def ship_partial(session: Session, *, order: Order, actor: str,
                 now: datetime | None = None, by_customer: bool = False,
                 override_reason: str | None = None) -> list[dict]:
    """"Ship partial": record the choice and tell billing to ship what is reserved now (the
    shipment itself is posted by the ERP, `POST /shipments`); the short quantities stay
    backordered. Returns what is to ship."""
    lines = _short_order(session, order, actor, "ship_partial", by_customer, override_reason)
    to_ship = [{"line_no": line.line_no, "sku": line.sku, "quantity": line.qty_reserved}
               for line in lines if line.qty_reserved > 0]
    if not to_ship:
        raise InvalidTransition(f"nothing on {order.number} is reserved yet, so there is "
                                "nothing to ship; wait for stock or cancel the short line")
    if _repeats_last_choice(session, order, actor=actor, choice="ship_partial", ship=to_ship):
        return to_ship
    audit.record(session, actor=actor, action=CHOICE_ACTION, entity_type="order",
                 entity_id=order.id, to_state=order.status, reason="ship partial",
                 number=order.number, choice="ship_partial", ship=to_ship, at=now)
    _tell_billing(session, order, lines, choice="ship_partial", actor=actor, ship=to_ship)
    return to_ship


def wait_for_stock(session: Session, *, order: Order, actor: str,
                   now: datetime | None = None, by_customer: bool = False,
                   override_reason: str | None = None) -> list[dict]:
    """"Wait": nothing changes; the choice is recorded. Restocking reserves for the order
    (oldest first) and tells the rep. Returns the short lines."""
    lines = _short_order(session, order, actor, "wait", by_customer, override_reason)
    short = short_lines(lines)
    if _repeats_last_choice(session, order, actor=actor, choice="wait", lines=short):
        return short
    audit.record(session, actor=actor, action=CHOICE_ACTION, entity_type="order",
                 entity_id=order.id, to_state=order.status, reason="wait for stock",
                 number=order.number, choice="wait", lines=short, at=now)
    _show_choice(session, order, lines, choice="wait", actor=actor)
    return short


def cancel_line(session: Session, *, order: Order, line_no: int, actor: str, reason: str,
                now: datetime | None = None, by_customer: bool = False,
                override_reason: str | None = None) -> dict:
    """"Cancel line": cancel the short (backordered) quantity of one line; what is reserved
    still ships. The order's cancelled value is recomputed (its totals keep describing what
    was ordered); with nothing left short it goes back to approved (or, with nothing left to
    ship at all, to cancelled, or on to shipped and invoiced). Billing is told, and the rep
    too when an admin chose."""
    lines = _short_order(session, order, actor, "cancel_line", by_customer, override_reason)
    line = next((li for li in lines if li.line_no == line_no), None)
    if line is None:
        raise ValidationFailed.of("line_no", f"{order.number} has no line {line_no}")
    if line.qty_backordered <= 0:
        raise InvalidTransition(f"line {line_no} of {order.number} ({line.sku}) is not short "
                                "of stock; there is nothing to cancel on it")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed.of("reason", "say why the short quantity is cancelled")
    before = order.status
    quantity = line.qty_backordered
    line.qty_cancelled += quantity
    line.qty_backordered = 0
    session.add(line)
    recompute_cancelled(session, order, lines)
    session.flush()
    audit.record(session, actor=actor, action="order.line_cancelled", entity_type="order",
                 entity_id=order.id, reason=reason, number=order.number, line_no=line_no,
                 sku=line.sku, quantity=quantity, cancelled_minor=order.cancelled_minor, at=now)
    _after_cancel(session, order, lines, actor=actor, now=now)
    cancelled = {"line_no": line_no, "sku": line.sku, "quantity": quantity,
                 "reserved": line.qty_reserved, "status": order.status,
                 "status_before": before}
    _tell_billing(session, order, lines, choice="cancel_line", actor=actor, cancelled=cancelled)
    if actor != order.sales_rep_id and not by_customer:  # the customer's choice tells the rep
        customer = session.get(Customer, order.customer_id)
        outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                            context={"order": order_snapshot(order, customer), "reasons": [
                                f"an admin cancelled {quantity} × {line.sku} (line "
                                f"{line_no}, short of stock): {reason}"]})
    return cancelled


def cancel_rest(session: Session, *, order: Order, actor: str, reason: str,
                now: datetime | None = None) -> list[dict]:
    """"Cancel the rest" of a partly shipped order the customer no longer wants: every line's
    quantity not shipped — reserved or short — is cancelled, its reserved stock released and
    given to the orders waiting for it (as `orders.cancel_order` does), `cancelled_minor`
    recomputed; nothing being left to ship, the order moves on to shipped and invoiced (paid
    when its invoices are). For the order's rep or an admin, with a reason; audited per line;
    the rep and billing are told. Returns [{line_no, sku, quantity, released}]."""
    lines = lock_order(session, order)
    _check_chooser(session, order, actor, "cancel_rest")
    if order.status != OrderStatus.PARTIALLY_SHIPPED:
        why = ("nothing of it has shipped: cancel the order instead" if order.status in (
            OrderStatus.APPROVED, OrderStatus.BACKORDERED) else "nothing is left to cancel")
        raise InvalidTransition(f"order {order.number} is {order.status.replace('_', ' ')}; "
                                f"{why}")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed.of("reason", "say why the rest of the order is cancelled")
    v.text("reason", reason)
    _check_override(session, order, actor=actor, choice="cancel_rest", reason=reason)
    rest = [{"line_no": line.line_no, "sku": line.sku, "quantity": line.qty_open,
             "released": line.qty_reserved} for line in lines if line.qty_open > 0]
    released = release_stock(session, order)
    for line in lines:
        line.qty_cancelled += line.qty_open
        session.add(line)
    recompute_cancelled(session, order, lines)
    session.flush()
    for done in rest:
        audit.record(session, actor=actor, action="order.line_cancelled", entity_type="order",
                     entity_id=order.id, reason=reason, number=order.number, rest=True,
                     cancelled_minor=order.cancelled_minor, at=now, **done)
    _after_cancel(session, order, lines, actor=actor, now=now, why="rest cancelled")
    what = quantities(rest)
    customer = session.get(Customer, order.customer_id)
    who = "the sales rep" if actor == order.sales_rep_id else "an admin"
    told = {"order": order_snapshot(order, customer), "reasons": [
        f"{who} cancelled the rest: {what} (not to ship): {reason}"]}
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context=told)
    outbox.post_to_channel(session, channel="ar", template="order_status", context=told)
    for product_id in released:  # freed stock goes to the orders waiting for it
        reserve_backorders(session, product_id, actor, now=now, skip_locked=True)
    return rest


def _after_cancel(session: Session, order: Order, lines: list[OrderLine], *, actor: str,
                  now: datetime, why: str = "short quantity cancelled") -> None:
    """Move the order on after a short quantity (or the rest of the order) was cancelled."""
    from workflows.subscriptions import live_periods, order_fulfilled

    if not order_fulfilled(session, lines):
        if order.status == OrderStatus.BACKORDERED and not short_lines(lines):
            transition(session, order, OrderStatus.APPROVED, actor=actor, now=now,
                       reason=f"{why}; nothing is short any more")
        return
    if not any(line.qty_shipped or live_periods(line) for line in lines):
        transition(session, order, OrderStatus.CANCELLED, actor=actor, now=now,
                   reason=f"{why}; nothing is left on the order")
        return
    # everything left has shipped, and every shipment was invoiced when it shipped
    transition(session, order, OrderStatus.SHIPPED, actor=actor, now=now,
               reason=f"{why}; everything else has shipped")
    transition(session, order, OrderStatus.INVOICED, actor="system", now=now,
               reason="every shipment is invoiced")
    open_left = session.exec(select(sa.func.count()).select_from(Invoice).where(
        Invoice.order_id == order.id, Invoice.balance_minor > 0)).one()
    if not open_left:
        transition(session, order, OrderStatus.PAID, actor="system", now=now,
                   reason="every invoice is settled")


def quantities(items: list[dict], key: str = "quantity") -> str:
    """Lines in words for the audit and the rep's messages: "2 × WID-1, 1 × GADGET" (`key`:
    which quantity of each item, e.g. "reserved" or "backordered")."""
    return ", ".join(f"{item[key]} × {item['sku']}" for item in items)


OVERRIDES = {"ship": "ship_partial", "wait": "wait", "cancel": "cancel_line",
             "cancel-rest": "cancel_rest"}


def override(session: Session, *, order: Order, choice: str, actor: str, reason: str,
             now: datetime | None = None) -> str:
    """`/o2c backorder <order> <ship|wait|cancel> <reason>`: the rep's (or an admin's)
    choice with a reason, which may override the customer's (then the reason is required and
    audited with it). `cancel` cancels the short quantity of every short line; `cancel-rest`
    everything not shipped of a partly shipped order (`cancel_rest`). Returns what was done,
    in words."""
    if choice not in OVERRIDES:
        raise ValidationFailed.of("choice", "one of ship, wait, cancel")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed.of("reason", "say why")
    if choice == "ship":
        to_ship = ship_partial(session, order=order, actor=actor, now=now,
                               override_reason=reason)
        return "ship partial: " + quantities(to_ship)
    if choice == "wait":
        wait_for_stock(session, order=order, actor=actor, now=now, override_reason=reason)
        tell_billing(session, order, choice="wait", actor=actor)
        return "wait for stock"
    if choice == "cancel-rest":
        rest = cancel_rest(session, order=order, actor=actor, reason=reason, now=now)
        return (f"cancelled the rest ({quantities(rest)}); the order is "
                f"{order.status.replace('_', ' ')}")
    short = [s["line_no"] for s in short_lines(lock_order(session, order))]
    if not short:
        raise InvalidTransition(f"nothing on {order.number} is short of stock any more")
    done = [cancel_line(session, order=order, line_no=line_no, actor=actor, reason=reason,
                        now=now, override_reason=reason) for line_no in short]
    return "cancelled " + quantities(done)
