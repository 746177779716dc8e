"""Fulfilment: approved orders reserve stock; short lines are backordered and the rep is told.

Reservations use a conditional UPDATE (`... WHERE on_hand - reserved >= :qty`), so two orders
racing for the last units cannot both get them, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from models import Customer, Order, OrderStatus, Product
from workflows import outbox
from workflows.orders import order_lines, order_snapshot, transition


def _take(session: Session, product_id: int, qty: int) -> bool:
    table = Product.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id == product_id, table.c.on_hand - table.c.reserved >= qty)
        .values(reserved=table.c.reserved + qty))
    return result.rowcount == 1


def reserve_stock(session: Session, order: Order, *, actor: str,
                  now: datetime | None = None) -> list[dict]:
    """Reserve each line's open quantity; return the short lines (and backorder the order)."""
    short: list[dict] = []
    for line in order_lines(session, order.id):
        wanted = line.quantity - line.qty_shipped - line.qty_cancelled - line.qty_reserved
        if wanted <= 0:
            continue
        product = session.get(Product, line.product_id)
        session.refresh(product)
        available = max(product.on_hand - product.reserved, 0)
        take = min(wanted, available)
        while take > 0 and not _take(session, line.product_id, take):
            session.refresh(product)  # someone else reserved meanwhile; try what is left
            take = min(wanted, max(product.on_hand - product.reserved, 0))
        line.qty_reserved += max(take, 0)
        line.qty_backordered = wanted - max(take, 0)
        session.add(line)
        if line.qty_backordered:
            short.append({"line_no": line.line_no, "sku": line.sku,
                          "ordered": line.quantity, "backordered": line.qty_backordered})
    session.flush()
    if short and order.status == OrderStatus.APPROVED:
        transition(session, order, OrderStatus.BACKORDERED, actor=actor, now=now,
                   reason=f"{len(short)} line(s) short of stock")
        customer = session.get(Customer, order.customer_id)
        outbox.post_to_user(session, user_id=order.sales_rep_id, template="backorder_notice",
                            context={"order": order_snapshot(order, customer), "lines": short})
        outbox.post_to_channel(session, channel="ar", template="backorder_notice",
                               context={"order": order_snapshot(order, customer),
                                        "lines": short, "audience": "billing"})
    return short


def release_stock(session: Session, order: Order) -> None:
    """Give back what an order reserved (it was cancelled or put on hold for good)."""
    table = Product.__table__
    for line in order_lines(session, order.id):
        if line.qty_reserved:
            session.execute(sa.update(table).where(table.c.id == line.product_id)
                            .values(reserved=table.c.reserved - line.qty_reserved))
            line.qty_reserved = 0
        line.qty_backordered = 0
        session.add(line)
    session.flush()
