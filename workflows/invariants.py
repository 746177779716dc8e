"""AR invariants as named checks, each returning a list of violations (empty = healthy).

Used by tests (including Hypothesis property tests over random workflows) and runnable against
a live database. Each says why it exists.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from models import Allocation, CreditNote, Invoice, Order, OrderLine, Payment, WriteOff


def validate_payment_allocations(session: Session) -> list[str]:
    """A payment can never pay out more than it brought in: allocations + unapplied = amount."""
    alloc = (select(Allocation.payment_id, sa.func.sum(Allocation.amount_minor).label("s"))
             .group_by(Allocation.payment_id).subquery())
    rows = session.exec(
        select(Payment.id, Payment.amount_minor, Payment.unapplied_minor,
               sa.func.coalesce(alloc.c.s, 0))
        .outerjoin(alloc, alloc.c.payment_id == Payment.id)).all()
    return [f"payment {pid}: allocated {a} + unapplied {u} != amount {amt}"
            for pid, amt, u, a in rows if a + u != amt or a > amt or u < 0]


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
    """An order's net (total - tax) equals the sum of its lines, each rounded once."""
    sums = (select(OrderLine.order_id, sa.func.sum(OrderLine.line_total_minor).label("s"))
            .group_by(OrderLine.order_id).subquery())
    rows = session.exec(select(Order.number, Order.total_minor, Order.tax_minor, sums.c.s)
                        .join(sums, sums.c.order_id == Order.id)).all()
    return [f"order {n}: total {t} - tax {tax} != lines {s}"
            for n, t, tax, s in rows if t - tax != s]


ALL = [validate_payment_allocations, validate_invoice_balances, validate_order_totals]


def validate_all(session: Session) -> list[str]:
    return [problem for check in ALL for problem in check(session)]
