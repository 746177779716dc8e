"""AR invariants as named checks, each returning a list of violations (empty = healthy).

Used by tests (including Hypothesis property tests over random workflows) and runnable against
a live database. Each says why it exists.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    CreditNote,
    Invoice,
    Order,
    OrderLine,
    Payment,
    Product,
    WriteOff,
)


def validate_payment_allocations(session: Session) -> list[str]:
    """A payment can never pay out more than it brought in: allocations (net of refund
    reversals) + unapplied + refunded = amount."""
    alloc = (select(Allocation.payment_id, sa.func.sum(Allocation.amount_minor).label("s"))
             .group_by(Allocation.payment_id).subquery())
    rows = session.exec(
        select(Payment.id, Payment.amount_minor, Payment.unapplied_minor,
               Payment.refunded_minor, sa.func.coalesce(alloc.c.s, 0))
        .outerjoin(alloc, alloc.c.payment_id == Payment.id)).all()
    return [f"payment {pid}: allocated {a} + unapplied {u} + refunded {r} != amount {amt}"
            for pid, amt, u, r, a in rows
            if a + u + r != amt or a > amt or u < 0 or a < 0 or r < 0]


def validate_invoice_balances(session: Session) -> list[str]:
    """balance = total - allocations - credit notes - write-offs, and never negative."""
    def summed(model: type, column: sa.Column) -> sa.Subquery:
        return (select(model.invoice_id, sa.func.sum(column).label("s"))
                .group_by(model.invoice_id).subquery())

    a = summed(Allocation, Allocation.amount_minor)
    c = summed(CreditNote, CreditNote.amount_minor)
    w = summed(WriteOff, WriteOff.amount_minor)
    rows = session.exec(
        select(Invoice.number, Invoice.total_minor, Invoice.balance_minor,
               sa.func.coalesce(a.c.s, 0), sa.func.coalesce(c.c.s, 0),
               sa.func.coalesce(w.c.s, 0))
        .outerjoin(a, a.c.invoice_id == Invoice.id)
        .outerjoin(c, c.c.invoice_id == Invoice.id)
        .outerjoin(w, w.c.invoice_id == Invoice.id)).all()
    problems = []
    for number, total, balance, alloc, credit, wo in rows:
        if balance != total - alloc - credit - wo:
            problems.append(f"invoice {number}: balance {balance} != {total} - {alloc} - "
                            f"{credit} - {wo}")
        if balance < 0:
            problems.append(f"invoice {number}: negative balance {balance}")
    return problems


def validate_order_totals(session: Session) -> list[str]:
    """An order's net (total - tax) equals the sum of its lines, each rounded once: totals
    describe what was ordered. What was cancelled since is `cancelled_minor`, between 0 and
    the total, and 0 when no quantity is cancelled (exposure counts total - cancelled).
    """
    sums = (select(OrderLine.order_id, sa.func.sum(OrderLine.line_total_minor).label("s"),
                   sa.func.sum(OrderLine.qty_cancelled).label("c"))
            .group_by(OrderLine.order_id).subquery())
    rows = session.exec(select(Order.number, Order.total_minor, Order.tax_minor,
                               Order.cancelled_minor, sums.c.s, sums.c.c)
                        .join(sums, sums.c.order_id == Order.id)).all()
    problems = [f"order {n}: total {t} - tax {tax} != lines {s}"
                for n, t, tax, _, s, _ in rows if t - tax != s]
    problems += [f"order {n}: cancelled value {cv} outside 0..{t}"
                 for n, t, _, cv, _, _ in rows if not 0 <= cv <= t]
    problems += [f"order {n}: cancelled value {cv} but no unit cancelled"
                 for n, _, _, cv, _, c in rows if cv > 0 and not c]
    return problems


def validate_order_lines(session: Session) -> list[str]:
    """Each line's quantities add up: shipped + cancelled never exceed what was ordered, and
    what is reserved and backordered never exceeds what is still open."""
    rows = session.exec(
        select(Order.number, OrderLine.line_no, OrderLine.quantity, OrderLine.qty_shipped,
               OrderLine.qty_cancelled, OrderLine.qty_reserved, OrderLine.qty_backordered)
        .join(Order, Order.id == OrderLine.order_id)
        .where(sa.or_(OrderLine.qty_shipped < 0, OrderLine.qty_cancelled < 0,
                      OrderLine.qty_reserved < 0, OrderLine.qty_backordered < 0,
                      OrderLine.qty_shipped + OrderLine.qty_cancelled > OrderLine.quantity,
                      OrderLine.qty_reserved + OrderLine.qty_backordered
                      > OrderLine.quantity - OrderLine.qty_shipped - OrderLine.qty_cancelled))
    ).all()
    return [f"order {n} line {no}: ordered {q}, shipped {s}, cancelled {c}, reserved {r}, "
            f"backordered {b}" for n, no, q, s, c, r, b in rows]


def validate_stock(session: Session) -> list[str]:
    """A product's reserved stock is what its order lines hold, and 0 <= reserved <= on hand:
    stock is never promised twice nor shipped below zero."""
    held = (select(OrderLine.product_id, sa.func.sum(OrderLine.qty_reserved).label("r"))
            .group_by(OrderLine.product_id).subquery())
    rows = session.exec(select(Product.sku, Product.on_hand, Product.reserved,
                               sa.func.coalesce(held.c.r, 0))
                        .outerjoin(held, held.c.product_id == Product.id)).all()
    return [f"product {sku}: on hand {oh}, reserved {r}, order lines hold {h}"
            for sku, oh, r, h in rows if not 0 <= r <= oh or r != h]


ALL = [validate_payment_allocations, validate_invoice_balances, validate_order_totals,
       validate_order_lines, validate_stock]


def validate_all(session: Session) -> list[str]:
    return [problem for check in ALL for problem in check(session)]
