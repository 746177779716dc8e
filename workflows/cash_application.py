"""Cash application: record incoming payments and allocate them to open invoices.

This first version applies a payment only when its remittance text names open invoices of the
right currency exactly; everything else stays unapplied for a person (or the matching engine)
to handle. The primitives here — `allocate`, `write_off` — keep the AR invariants
(`workflows.invariants`) under concurrency: balances move by conditional UPDATEs only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    Customer,
    Invoice,
    Payment,
    PaymentStatus,
    WriteOff,
    money,
)
from models.base import utcnow
from workflows import audit
from workflows import validation as v
from workflows.errors import NotFound, OverallocationError, ValidationFailed
from workflows.invoicing import reduce_balance
from workflows.masterdata import customer_by_external_id

TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_/]*[A-Za-z0-9]")


@dataclass
class PaymentIn:
    amount: str
    currency: str
    received_at: datetime
    payer_name: str | None = None
    reference: str | None = None
    customer: str | None = None  # external_id
    method: str | None = None
    external_id: str | None = None


def get_payment(session: Session, payment_id: int) -> Payment:
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def payment_allocations(session: Session, payment_id: int) -> list[tuple[Allocation, Invoice]]:
    return list(session.exec(select(Allocation, Invoice)
                             .join(Invoice, Invoice.id == Allocation.invoice_id)
                             .where(Allocation.payment_id == payment_id)
                             .order_by(Allocation.id)).all())


def record_payment(session: Session, data: PaymentIn, *, actor: str, source: str = "api"
                   ) -> tuple[Payment, bool]:
    """Store a payment (or return the one already stored under its external_id) and apply it.

    Returns (payment, created)."""
    if data.external_id:
        existing = session.exec(
            select(Payment).where(Payment.external_id == data.external_id)).first()
        if existing is not None:
            return existing, False
    currency = v.currency("currency", data.currency)
    amount = v.amount_minor("amount", data.amount, currency, positive=True)
    if data.received_at.tzinfo is None:
        raise ValidationFailed.of("received_at", "needs a time zone, e.g. 2026-11-23T10:00:00Z")
    customer: Customer | None = None
    if data.customer:
        customer = customer_by_external_id(session, data.customer)
        if customer.currency != currency:
            raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                      f"{customer.currency}, not {currency}")
    payment = Payment(external_id=data.external_id or None,
                      customer_id=customer.id if customer else None, amount_minor=amount,
                      currency=currency, received_at=data.received_at,
                      payer_name=data.payer_name, reference=data.reference, method=data.method,
                      source=source, unapplied_minor=amount, status=PaymentStatus.UNAPPLIED)
    session.add(payment)
    session.flush()
    audit.record(session, actor=actor, action="payment.received", entity_type="payment",
                 entity_id=payment.id, amount_minor=amount, currency=currency,
                 external_id=payment.external_id)
    apply_payment(session, payment, actor=actor)
    return payment, True


def referenced_open_invoices(session: Session, payment: Payment) -> list[Invoice]:
    """Open invoices, in the payment's currency, whose number appears verbatim in the
    remittance text (and belong to the payment's customer when it is known)."""
    tokens = {t.upper() for t in TOKEN.findall(payment.reference or "")}
    if not tokens:
        return []
    query = select(Invoice).where(sa.func.upper(Invoice.number).in_(tokens),
                                  Invoice.balance_minor > 0,
                                  Invoice.currency == payment.currency)
    if payment.customer_id is not None:
        query = query.where(Invoice.customer_id == payment.customer_id)
    found = {inv.number.upper(): inv for inv in session.exec(query).all()}
    order = [t.upper() for t in TOKEN.findall(payment.reference or "")]
    return [found[t] for t in dict.fromkeys(order) if t in found]


def apply_payment(session: Session, payment: Payment, *, actor: str) -> None:
    for invoice in referenced_open_invoices(session, payment):
        if payment.unapplied_minor == 0:
            break
        allocate(session, payment=payment, invoice=invoice,
                 amount_minor=min(payment.unapplied_minor, invoice.balance_minor),
                 method="reference", actor=actor)
    refresh_status(session, payment)


def refresh_status(session: Session, payment: Payment) -> None:
    """Payment status derived from amounts: applied / partially_applied / unapplied."""
    if payment.unapplied_minor == 0:
        payment.status = PaymentStatus.APPLIED
    elif payment.unapplied_minor < payment.amount_minor:
        payment.status = PaymentStatus.PARTIALLY_APPLIED
    elif payment.status != PaymentStatus.NEEDS_REVIEW:
        payment.status = PaymentStatus.UNAPPLIED
    session.add(payment)


def allocate(session: Session, *, payment: Payment, invoice: Invoice, amount_minor: int,
             method: str, actor: str) -> Allocation:
    """Move `amount_minor` of a payment onto an invoice; never more than either has open."""
    if amount_minor <= 0:
        raise ValidationFailed.of("amount", "must be greater than zero")
    if invoice.currency != payment.currency:
        raise ValidationFailed.of("currency", f"payment is {payment.currency}, invoice "
                                  f"{invoice.number} is {invoice.currency}")
    table = Payment.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id == payment.id, table.c.unapplied_minor >= amount_minor)
        .values(unapplied_minor=table.c.unapplied_minor - amount_minor))
    if result.rowcount != 1:
        raise OverallocationError(f"payment {payment.id} has less than "
                                  f"{money.format_money(amount_minor, payment.currency)} left")
    reduce_balance(session, invoice, amount_minor)
    session.refresh(payment)
    allocation = Allocation(payment_id=payment.id, invoice_id=invoice.id,
                            amount_minor=amount_minor, method=method, created_by=actor)
    session.add(allocation)
    if payment.customer_id is None:
        payment.customer_id = invoice.customer_id
        session.add(payment)
    session.flush()
    audit.record(session, actor=actor, action="payment.allocated", entity_type="payment",
                 entity_id=payment.id, invoice=invoice.number, amount_minor=amount_minor,
                 method=method)
    return allocation


def write_off(session: Session, *, invoice: Invoice, amount_minor: int, reason: str,
              actor: str, payment: Payment | None = None) -> WriteOff:
    """Write off part of an invoice's balance (bank fee, early-payment discount, bad debt)."""
    reduce_balance(session, invoice, amount_minor)
    row = WriteOff(invoice_id=invoice.id, payment_id=payment.id if payment else None,
                   amount_minor=amount_minor, reason=reason, created_by=actor,
                   created_at=utcnow())
    session.add(row)
    session.flush()
    audit.write_off(session, actor=actor, invoice_id=invoice.id, amount_minor=amount_minor,
                    currency=invoice.currency, reason=reason,
                    payment_id=payment.id if payment else None)
    return row
