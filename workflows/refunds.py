"""Refunds: money given back on a payment reverses what it paid.

A refund first takes the payment's unapplied credit (money we were holding for the customer
anyway), then reverses its allocations, the latest first: each reversal is a negative
allocation (method "refund") dated on the refund's value date — never before the payment's
value date nor the latest of its allocations on the invoices it reverses — so the invoice is
open again from that day (the as-of reports see it then, not before), `paid_at` is cleared, and an
order that was paid goes back to invoiced. On an invoice a credit note credited after it
was paid, part of the money on it became customer credit (`workflows.credit_notes`): money
we owe back, so the reversal gives that back first — the credit note's customer credit is
set against the invoice (a write-off of reason `customer_credit`, same day: it settles the
invoice as the note would have had it come before the payment) — and only the rest reopens
the invoice. 100.00 paid, credited 30.00, refunded 30.00: no credit left, the invoice paid
(70.00 of money, 30.00 of note); refunded 100.00: it owes 70.00, with no credit beside.
Fee and discount write-offs made with the payment stay (they were our decision); a deduction
the payment left on an invoice all of its money left is resolved as "reversed" when still open
(`workflows.deductions.refunded`: nobody stands short there any more). The
payment keeps its amount; `refunded_minor` says how much went back, so amount =
allocations (net) + unapplied + refunded (`workflows.invariants`).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    Invoice,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    WriteOff,
    WriteOffReason,
    money,
)
from workflows import audit, exposure, periods
from workflows.errors import Conflict, NotFound, ValidationFailed
from workflows.invoicing import lock_invoices

_INVOICES = Invoice.__table__
_REOPEN = (sa.update(_INVOICES)
           .where(_INVOICES.c.id == sa.bindparam("invoice"),
                  _INVOICES.c.balance_minor + sa.bindparam("amount") <= _INVOICES.c.total_minor)
           .values(balance_minor=_INVOICES.c.balance_minor + sa.bindparam("amount"),
                   paid_at=None)
           .returning(_INVOICES.c.balance_minor))


def refund_payment(session: Session, *, payment: Payment, amount_minor: int, external_id: str,
                   value_date: date, actor: str, reason: str | None = None
                   ) -> tuple[Refund, list[dict]] | None:
    """Give back `amount_minor` of a payment, once per `external_id` (None when it was given
    back before): the refund and the invoices it reopened (`{"invoice", "amount"}`). Raises
    Conflict when the payment has less left than that."""
    if amount_minor <= 0:
        raise ValidationFailed.of("amount", "a refund must be greater than zero")
    if session.exec(select(Refund.id).where(Refund.external_id == external_id)).first():
        return None
    payment = lock_payment(session, payment.id)
    # money goes back no earlier than it came in: a refund dated before its payment's value
    # date would reopen the invoices on days the payment had not settled them yet (aging and
    # statements of those days showing more open than the invoices' totals)
    value_date = max(value_date, payment.value_date)
    held = payment.amount_minor - payment.refunded_minor
    if amount_minor > held:
        raise Conflict(f"payment {payment.id} has {money.to_str(held, payment.currency)} "
                       f"{payment.currency} left to refund, not "
                       f"{money.to_str(amount_minor, payment.currency)}")
    from_credit = min(payment.unapplied_minor, amount_minor)
    payment.unapplied_minor -= from_credit
    payment.refunded_minor += amount_minor
    left = amount_minor - from_credit
    plan: list[tuple[Invoice, int]] = []
    emptied: list[int] = []  # invoices all of its money left (its deductions there: reversed)
    for invoice, net in applied_by_invoice(session, payment.id):
        if left == 0:
            break
        take = min(net, left)
        if take == net:
            emptied.append(invoice.id)
        plan.append((invoice, take))
        left -= take
    # nor before the money it takes back was on those invoices: customer credit moved onto
    # another invoice today (`workflows.customer_credit`) reversed by a refund dated last week
    # would leave that invoice more open than its total on the days between
    value_date = max(value_date, _applied_until(session, payment.id,
                                                [invoice.id for invoice, _ in plan]))
    # every invoice it reverses locked first, in id order, as corrections, the pay modal and
    # customer credit lock theirs: reversing the latest first while locking one at a time
    # (invoice 2, then 1) deadlocked against a correction locking 1 then 2 (PostgreSQL
    # aborting one of them). The reversals keep their order, latest first.
    lock_invoices(session, [invoice.id for invoice, _ in plan])
    left = amount_minor - from_credit
    reopened: list[dict] = []
    for invoice, take in plan:
        opened = _reverse(session, payment=payment, invoice=invoice, amount_minor=take,
                          value_date=value_date, actor=actor)
        if opened:
            reopened.append({"invoice": invoice.number,
                             "amount": money.to_str(opened, payment.currency)})
        left -= take
    if left:  # allocations were written off or moved meanwhile: refuse, change nothing
        raise Conflict(f"payment {payment.id}: {money.to_str(left, payment.currency)} of the "
                       "refund is not on any invoice it paid")
    if payment.refunded_minor == payment.amount_minor:
        payment.status = PaymentStatus.REFUNDED
    elif payment.unapplied_minor == payment.amount_minor - payment.refunded_minor:
        payment.status = PaymentStatus.UNAPPLIED
    else:
        payment.status = (PaymentStatus.APPLIED if payment.unapplied_minor == 0
                          else PaymentStatus.PARTIALLY_APPLIED)
    session.add(payment)
    refund = Refund(payment_id=payment.id, external_id=external_id, amount_minor=amount_minor,
                    currency=payment.currency, from_unapplied_minor=from_credit,
                    value_date=value_date, reason=reason)
    session.add(refund)
    session.flush()
    from workflows import deductions

    deductions.refunded(session, payment_id=payment.id, invoice_ids=emptied, by=actor,
                        now=refund.created_at)
    audit.record(session, actor=actor, action="payment.refunded", entity_type="payment",
                 entity_id=payment.id, to_state=payment.status, reason=reason,
                 amount_minor=amount_minor, external_id=external_id,
                 from_unapplied_minor=from_credit, reopened=reopened,
                 value_date=value_date.isoformat())
    return refund, reopened


def lock_payment(session: Session, payment_id: int) -> Payment:
    """The payment row, locked until the transaction ends and read fresh (PostgreSQL: FOR
    UPDATE; SQLite's write transactions are serialised already). NotFound when there is none."""
    payment = session.exec(select(Payment).where(Payment.id == payment_id).with_for_update()
                           .execution_options(populate_existing=True)).first()
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def _applied_until(session: Session, payment_id: int, invoice_ids: list[int]) -> date:
    """The latest value date of the payment's allocations on those invoices (date.min: none)."""
    if not invoice_ids:
        return date.min
    latest = session.exec(select(sa.func.max(Allocation.value_date)).where(
        Allocation.payment_id == payment_id, Allocation.invoice_id.in_(invoice_ids))).one()
    return latest or date.min


def applied_by_invoice(session: Session, payment_id: int) -> list[tuple[Invoice, int]]:
    """What the payment still has on each invoice (net of earlier reversals), the invoice it
    was applied to last first."""
    rows = session.exec(
        select(Invoice, sa.func.sum(Allocation.amount_minor), sa.func.max(Allocation.id))
        .join(Allocation, Allocation.invoice_id == Invoice.id)
        .where(Allocation.payment_id == payment_id)
        .group_by(Invoice.id).order_by(sa.func.max(Allocation.id).desc())).all()
    return [(invoice, int(net)) for invoice, net, _ in rows if net and net > 0]


def _reverse(session: Session, *, payment: Payment, invoice: Invoice, amount_minor: int,
             value_date: date, actor: str) -> int:
    """Take `amount_minor` of the payment off the invoice: first the customer credit its
    notes gave (module docstring), then reopen it by the rest, which it returns."""
    from workflows import disputes
    from workflows.credit_notes import customer_credit_of
    from workflows.invoicing import lock_invoice
    from workflows.orders import transition

    # the invoice locked first: two refunds of two payments on it (or a credit note issued
    # meanwhile) would both read the same customer credit and give it back twice
    lock_invoice(session, invoice.id)
    credit = min(customer_credit_of(session, invoice.id), amount_minor)
    reopen = amount_minor - credit
    if reopen:
        balance = session.connection().execute(_REOPEN, {"invoice": invoice.id,
                                                         "amount": reopen}).scalar()
        if balance is None:
            raise Conflict(f"invoice {invoice.number} cannot be reopened by "
                           f"{money.to_str(reopen, invoice.currency)}")
        session.refresh(invoice)
    booked = periods.booking(session, value_date, not_before=invoice.issue_date)
    session.add(Allocation(payment_id=payment.id, invoice_id=invoice.id,
                           amount_minor=-amount_minor, method="refund", created_by=actor,
                           value_date=booked.value_date, effective_date=booked.effective_date))
    audit.record(session, actor=actor, action="payment.allocation_refunded",
                 entity_type="payment", entity_id=payment.id, invoice=invoice.number,
                 amount_minor=-amount_minor, reason=booked.note, **booked.as_dict())
    if credit:  # the customer credit is what went back: it settles the invoice instead
        session.add(WriteOff(invoice_id=invoice.id, payment_id=payment.id,
                             amount_minor=credit, reason=WriteOffReason.CUSTOMER_CREDIT,
                             value_date=booked.value_date, effective_date=booked.effective_date,
                             created_by=actor))
        audit.record(session, actor=actor, action="invoice.customer_credit_refunded",
                     entity_type="invoice", entity_id=invoice.id, payment_id=payment.id,
                     amount_minor=credit, reason="the customer credit its credit notes gave "
                     "was refunded with the payment", **booked.as_dict())
    if not reopen:
        return reopen
    if invoice.order_id is not None:
        order = session.get(Order, invoice.order_id)
        if order.status == OrderStatus.PAID:
            transition(session, order, OrderStatus.INVOICED, actor=actor,
                       reason=f"{invoice.number} reopened by a refund")
    # what its open disputes hold is in dispute again (left out of dunning); its pay-now
    # link asks for the new balance
    disputes.refresh_invoice(session, invoice)
    exposure.moved(session, invoice.customer_id)
    return reopen
