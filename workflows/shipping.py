"""Shipping: record a shipment against an approved order, move stock, invoice it at once."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from models import (
    Customer,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    Shipment,
    ShipmentLine,
    can_ship,
)
from workflows import audit, customer_notices, outbox, policy
from workflows import validation as v
from workflows.errors import InvalidTransition, ValidationFailed
from workflows.inputs import ShipmentLineIn
from workflows.invoicing import invoice_shipment
from workflows.orders import get_order, lock_order, order_snapshot, transition
from workflows.subscriptions import order_fulfilled


def ship_order(session: Session, *, order_number: str, carrier: str, tracking_number: str,
               shipped_at: datetime, lines: list[ShipmentLineIn] | None = None, actor: str,
               now: datetime) -> Shipment:
    """Ship `lines` (every open quantity by default) of an approved order and invoice them:
    stock leaves the shelf, the order moves on (partially shipped, shipped, invoiced), the
    shipment is in its history and the rep gets a DM. One transaction, the caller's."""
    order = get_order(session, order_number)
    # Lock the order before reading its lines: two shipments of one order queue up here, and
    # the second sees what the first shipped (never over-shipped, never stock below zero).
    all_lines = lock_order(session, order)
    shipped_on = _check_shipment(session, order, carrier=carrier,
                                 tracking_number=tracking_number, shipped_at=shipped_at, now=now)
    to_ship = _lines_to_ship(order, all_lines, lines)
    wanted = [(line, qty) for line, qty, _ in to_ship]
    customer = session.get(Customer, order.customer_id)
    shipment = Shipment(order_id=order.id, carrier=carrier.strip(),
                        tracking_number=tracking_number.strip(), shipped_at=shipped_at,
                        recognize_at_delivery=customer.goods_recognized_at == "delivery",
                        created_at=now)
    session.add(shipment)
    session.flush()
    _take_from_stock(session, shipment, to_ship)
    _record_shipment(session, order, all_lines, shipment, wanted, shipped_on=shipped_on,
                     actor=actor, now=now)
    return shipment


def _check_shipment(session: Session, order: Order, *, carrier: str, tracking_number: str,
                    shipped_at: datetime, now: datetime) -> date:
    """Refuse what cannot ship; return the business day it shipped, the day its invoice is
    dated (`invoice_shipment`), from the same read of the business time zone as the today it
    was checked against."""
    if not can_ship(order.status):
        raise InvalidTransition(f"order {order.number} is {order.status}; only approved, "
                                "backordered or partially shipped orders ship")
    if not carrier.strip():
        raise ValidationFailed.of("carrier", "must not be empty")
    if not tracking_number.strip():
        raise ValidationFailed.of("tracking_number", "must not be empty")
    if shipped_at.tzinfo is None:
        raise ValidationFailed.of("shipped_at", "needs a time zone, e.g. 2026-11-23T10:00:00Z")
    v.in_years("shipped_at", shipped_at)  # before the invoice's due date is computed from it
    # the invoice is issued on the day it shipped: never on a day that has not come yet (a
    # later hour of today passes, for a sender's clock a little ahead of ours)
    zone = policy.business_zone(session)
    day, today = shipped_at.astimezone(zone).date(), now.astimezone(zone).date()
    if day > today:
        raise ValidationFailed.of("shipped_at", f"{day.isoformat()} is in the future (today "
                                  f"is {today.isoformat()}); record a shipment once it has "
                                  "shipped")
    v.text("carrier", carrier)
    v.text("tracking_number", tracking_number)
    return day


def _lines_to_ship(order: Order, all_lines: list[OrderLine],
                   lines: list[ShipmentLineIn] | None) -> list[tuple[OrderLine, int, int]]:
    """(order line, quantity, index of the request's line) to ship: every open quantity, or
    the SKUs asked for, each named once and within what is open of it on the order. A SKU on
    several lines (at different prices or discounts) ships from them in line order, what
    they have reserved first (`_spread`)."""
    if lines is None:
        wanted = [(line, line.qty_open, i)
                  for i, line in enumerate(li for li in all_lines if li.qty_open > 0)]
    else:
        by_sku: dict[str, list[OrderLine]] = {}
        for line in all_lines:
            by_sku.setdefault(line.sku, []).append(line)
        wanted, seen = [], set()
        for i, item in enumerate(lines):
            same = by_sku.get(item.sku)
            if same is None:
                raise ValidationFailed.of(f"lines[{i}].sku", f"{item.sku!r} is not on "
                                          f"order {order.number}")
            if item.sku in seen:
                raise ValidationFailed.of(f"lines[{i}].sku", f"{item.sku!r} is listed twice; "
                                          "give each SKU once with its whole quantity")
            seen.add(item.sku)
            shippable = [line for line in same if not line.billing]
            if not shippable:
                raise ValidationFailed.of(f"lines[{i}].sku", f"{item.sku!r} is a subscription "
                                          f"billed {same[0].billing}: it is invoiced each "
                                          "period, never shipped")
            open_qty = sum(line.qty_open for line in shippable)
            if not open_qty:
                raise ValidationFailed.of(f"lines[{i}].quantity", f"nothing of {item.sku!r} is "
                                          f"left to ship on {order.number} ("
                                          f"{sum(li.qty_cancelled for li in shippable)} "
                                          "cancelled, "
                                          f"{sum(li.qty_shipped for li in shippable)} shipped)")
            if not isinstance(item.quantity, int) or not 0 < item.quantity <= open_qty:
                raise ValidationFailed.of(f"lines[{i}].quantity",
                                          f"must be between 1 and {open_qty} (open)")
            wanted += [(line, qty, i) for line, qty in _spread(shippable, item.quantity)]
    if not wanted:
        raise ValidationFailed.of("lines", "nothing left to ship on this order")
    return wanted


def _spread(lines: list[OrderLine], quantity: int) -> list[tuple[OrderLine, int]]:
    """`quantity` units of one SKU over its order lines: what they have reserved first, then
    what is open on them, each in line order."""
    taken: dict[int, int] = {}
    left = quantity
    for room in (lambda li: min(li.qty_reserved, li.qty_open), lambda li: li.qty_open):
        for line in lines:
            take = min(left, room(line) - taken.get(line.line_no, 0))
            if take > 0:
                taken[line.line_no] = taken.get(line.line_no, 0) + take
                left -= take
    return [(line, taken[line.line_no]) for line in lines if taken.get(line.line_no)]


def _take_from_stock(session: Session, shipment: Shipment,
                     wanted: list[tuple[OrderLine, int, int]]) -> None:
    """Stock leaves the shelf (what the line reserved first), the lines record what shipped.
    A conditional UPDATE per product: never below zero, whatever runs at the same time."""
    table = Product.__table__
    # products in id order, so shipments of different orders never wait on each other in a
    # circle
    for line, qty, i in sorted(wanted, key=lambda item: (item[0].product_id,
                                                          item[0].line_no)):
        from_reserved = min(qty, line.qty_reserved)
        result = session.execute(
            sa.update(table)
            .where(table.c.id == line.product_id,
                   table.c.on_hand - table.c.reserved + from_reserved >= qty)
            .values(on_hand=table.c.on_hand - qty, reserved=table.c.reserved - from_reserved))
        if result.rowcount != 1:
            raise ValidationFailed.of(f"lines[{i}].quantity",
                                      f"not enough {line.sku} in stock to ship {qty}")
        line.qty_shipped += qty
        line.qty_reserved -= from_reserved
        line.qty_backordered = max(line.qty_backordered - (qty - from_reserved), 0)
        session.add(line)
        session.add(ShipmentLine(shipment_id=shipment.id, order_line_id=line.id, quantity=qty))
    session.flush()


def _record_shipment(session: Session, order: Order, all_lines: list[OrderLine],
                     shipment: Shipment, wanted: list[tuple[OrderLine, int]], *,
                     shipped_on: date, actor: str, now: datetime) -> None:
    """The shipment in the order's history, the order's new status, the invoice, the DM."""
    # complete: nothing left to ship, and every subscription period billed already
    complete = order_fulfilled(session, all_lines)
    # The shipment itself is in the order's history whether or not the status moves: the
    # second, third... partial shipment leaves the order partially shipped.
    audit.record(session, actor=actor, action="order.shipment", entity_type="order",
                 entity_id=order.id, reason=f"{shipment.carrier} {shipment.tracking_number}",
                 number=order.number, shipment_id=shipment.id,
                 lines=[{"line_no": line.line_no, "sku": line.sku, "quantity": qty}
                        for line, qty in wanted], at=now)
    status = OrderStatus.SHIPPED if complete else OrderStatus.PARTIALLY_SHIPPED
    if order.status != status:
        transition(session, order, status, actor=actor, now=now,
                   reason=f"{shipment.carrier} {shipment.tracking_number}",
                   shipment_id=shipment.id)
    invoice = invoice_shipment(session, shipment, shipped_on=shipped_on, actor=actor, now=now)
    if complete:
        transition(session, order, OrderStatus.INVOICED, actor="system", now=now,
                   reason=f"invoiced as {invoice.number}")
    customer_notices.shipped(session, order=order, shipment=shipment, lines=wanted, now=now)
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_shipped",
                        context={"order": order_snapshot(order, customer),
                                 "carrier": shipment.carrier,
                                 "tracking_number": shipment.tracking_number,
                                 "invoice": invoice.number,
                                 "invoice_total_minor": invoice.total_minor})
