"""Statement of account (issue 19): what a customer owed at the start of a period, every
document of the period, what they owe at its end, and how old it is.

Lines are dated by the day the books count them on (`effective_date`, so a statement of a
closed month never changes): invoices (+ total, on their issue date), payments applied
(- amount; a refund's negative allocation adds back), credit notes (- what they took off an
invoice) and write-offs (- amount). Opening balance = the sum of those before the period;
closing = opening + the period's lines, which is the customers' open invoice balance at the
end of the period (SPEC §5.8: balance = total - allocations - credit notes - write-offs).
Unapplied cash and customer credit are listed apart: they are not on any invoice yet, they are
what we hold for the customer. A credit note on a paid invoice takes little or nothing off it
(its line shows what it did take) and the rest became customer credit: its line says how much
(`credit_minor`), and `customer_credit_minor` is all the customer credit the customer's notes
gave by the period's end (by effective date), less what a refund of the money behind it
gave back (`workflows.refunds`) or what was applied to another invoice
(`workflows.customer_credit`: the credit moved off its invoice and applied to the other,
lines of their own): a line of its own, "customer credit used", takes it off the invoice. So
closing - unapplied - customer credit (`net_minor`) is what the customer owes us on balance.
Aging is `receivables.aging_by_currency` at the period's end. One currency per statement
(the customer's unless asked): its documents and cash only, amounts never mix. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    ClosedPeriod,
    CreditNote,
    Customer,
    Invoice,
    Payment,
    Refund,
    WriteOff,
    WriteOffReason,
)
from workflows import outbox
from workflows.customer_credit import METHOD as CREDIT_MOVED
from workflows.errors import ValidationFailed
from workflows.numbering import number_order
from workflows.receivables import Aging, aging_by_currency


@dataclass
class StatementLine:
    day: date
    kind: str  # "invoice", "payment", "credit_note", "write_off"
    reference: str
    amount_minor: int  # + what the customer owes more, - less
    balance_minor: int = 0  # running, after this line
    credit_minor: int = 0  # a credit note's part that became customer credit (not in the balance)


@dataclass
class Statement:
    customer: Customer
    currency: str
    start: date
    end: date
    opening_minor: int
    lines: list[StatementLine]
    closing_minor: int
    aging: dict[str, int]
    unapplied_minor: int
    open_invoices: list[Invoice] = field(default_factory=list)
    customer_credit_minor: int = 0  # customer credit from credit notes by the end (apart)

    @property
    def net_minor(self) -> int:
        """What the customer owes on balance: the closing balance less what we hold for them
        (unapplied cash and customer credit); negative when we owe them."""
        return self.closing_minor - self.unapplied_minor - self.customer_credit_minor


def _entries(session: Session, customer: Customer, end: date,
             currency: str) -> list[StatementLine]:
    # the customer's invoices in the statement's currency (amounts never mix)
    invoice = select(Invoice.__table__).where(Invoice.currency == currency).subquery()
    found = [StatementLine(i.issue_date, "invoice", i.number, i.total_minor)
             for i in session.exec(select(Invoice).where(Invoice.customer_id == customer.id,
                                                         Invoice.currency == currency,
                                                         Invoice.issue_date <= end))]
    for allocation, number, payment in session.exec(
            select(Allocation, invoice.c.number, Payment)
            .join(invoice, invoice.c.id == Allocation.invoice_id)
            .join(Payment, Payment.id == Allocation.payment_id)
            .where(invoice.c.customer_id == customer.id, Allocation.effective_date <= end)):
        what = payment.reference or payment.external_id or f"payment {payment.id}"
        if allocation.method == CREDIT_MOVED:  # `workflows.customer_credit`
            what = ("customer credit applied to" if allocation.amount_minor > 0 else
                    "customer credit moved off")
            found.append(StatementLine(allocation.effective_date, "payment",
                                       f"{what} {number}", -allocation.amount_minor))
            continue
        found.append(StatementLine(allocation.effective_date, "payment",
                                   f"{what} on {number}"[:120], -allocation.amount_minor))
    for note, number in session.exec(
            select(CreditNote, invoice.c.number)
            .join(invoice, invoice.c.id == CreditNote.invoice_id)
            .where(invoice.c.customer_id == customer.id, CreditNote.effective_date <= end)):
        found.append(StatementLine(note.effective_date, "credit_note",
                                   f"{note.number} on {number}", -note.amount_minor,
                                   credit_minor=note.customer_credit_minor))
    for write_off, number in session.exec(
            select(WriteOff, invoice.c.number)
            .join(invoice, invoice.c.id == WriteOff.invoice_id)
            .where(invoice.c.customer_id == customer.id, WriteOff.effective_date <= end)):
        if write_off.reason == WriteOffReason.CUSTOMER_CREDIT:  # refunded or applied: used
            found.append(StatementLine(write_off.effective_date, "write_off",
                                       f"customer credit used, set against {number}",
                                       -write_off.amount_minor,
                                       credit_minor=-write_off.amount_minor))
            continue
        found.append(StatementLine(write_off.effective_date, "write_off",
                                   f"write-off on {number}", -write_off.amount_minor))
    order = {"invoice": 0, "credit_note": 1, "payment": 2, "write_off": 3}
    return sorted(found, key=lambda e: (e.day, order[e.kind], number_order(e.reference)))


def statement(session: Session, customer: Customer, *, start: date, end: date,
              currency: str | None = None) -> Statement:
    """The statement in `currency` (default: the customer's): only that currency's
    documents and cash, so its closing balance is `aging_by_currency(...)[currency].total`."""
    currency = currency or customer.currency
    entries = _entries(session, customer, end, currency)
    opening = sum(e.amount_minor for e in entries if e.day < start)
    lines, running = [], opening
    for entry in entries:
        if entry.day >= start:
            running += entry.amount_minor
            entry.balance_minor = running
            lines.append(entry)
    aging = aging_by_currency(session, end, customer_id=customer.id).get(currency)
    return Statement(customer=customer, currency=currency, start=start, end=end,
                     opening_minor=opening, lines=lines, closing_minor=running,
                     aging=dict(aging.buckets if aging else Aging(currency).buckets),
                     unapplied_minor=_unapplied_at(session, customer, end, currency),
                     open_invoices=_open_at(session, customer, end, currency),
                     customer_credit_minor=sum(e.credit_minor for e in entries))


def _sum(session: Session, query) -> int:
    return int(session.exec(query).one() or 0)


def _unapplied_at(session: Session, customer: Customer, end: date, currency: str) -> int:
    """The customer's money held unapplied at the end of `end`, not today: what arrived by
    then less what was applied (net of reversals) and given back by then (a payment's amount
    = its allocations + unapplied + refunded, `workflows.invariants`).

    A payment or refund counts on its value date — unless that day was in a closed month
    when it was recorded: then, as its allocations, on the first open day (`_booked_by`), so
    a closed month's statement never changes."""
    theirs = (Payment.customer_id == customer.id, Payment.currency == currency)
    arrived = _sum(session, select(sa.func.sum(Payment.amount_minor))
                   .where(*theirs, _booked_by(Payment, end)))
    applied = _sum(session, select(sa.func.sum(Allocation.amount_minor))
                   .join(Payment, Payment.id == Allocation.payment_id)
                   .where(*theirs, Allocation.effective_date <= end))
    refunded = _sum(session, select(sa.func.sum(Refund.amount_minor))
                    .join(Payment, Payment.id == Refund.payment_id)
                    .where(*theirs, _booked_by(Refund, end)))
    return max(arrived - applied - refunded, 0)


def _booked_by(model: type, end: date) -> sa.ColumnElement:
    """SQL: a payment or refund (`value_date`, `created_at`) counts by the end of `end`.
    Booked as a settlement is (`periods.booking`): on its value date, or, when that fell in a
    month already closed when it was recorded, the day after that close's lock date — which
    is after `end` exactly when a close recorded by then covers `end`."""
    covered = (select(ClosedPeriod.period)
               .where(ClosedPeriod.closed_at <= model.created_at,
                      ClosedPeriod.last_day >= end)
               .exists())
    return sa.and_(model.value_date <= end, sa.not_(covered))


def _open_at(session: Session, customer: Customer, end: date,
             currency: str) -> list[Invoice]:
    """The customer's invoices open at the end of `end` (issued by then, not settled by
    then), oldest due first."""
    invoices = session.exec(select(Invoice).where(Invoice.customer_id == customer.id,
                                                  Invoice.currency == currency,
                                                  Invoice.issue_date <= end)).all()
    settled: dict[int, int] = {}
    for model in (Allocation, CreditNote, WriteOff):
        for invoice_id, amount in session.exec(
                select(model.invoice_id, sa.func.sum(model.amount_minor))
                .join(Invoice, Invoice.id == model.invoice_id)
                .where(Invoice.customer_id == customer.id, model.effective_date <= end)
                .group_by(model.invoice_id)):
            settled[invoice_id] = settled.get(invoice_id, 0) + int(amount or 0)
    return sorted((i for i in invoices if i.total_minor - settled.get(i.id, 0) > 0),
                  key=lambda i: (i.due_date, i.id))


def previous_month(today: date) -> tuple[date, date]:
    """The first and last day of the month before `today`'s."""
    from datetime import timedelta

    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def send_statement(session: Session, *, customer: Customer, start: date, end: date,
                   actor: str, now: datetime, dedupe_key: str | None = None):
    """E-mail the statement of account for [start, end] (PDF attached, rendered at delivery
    from the books) to the customer's billing contact; audited. None when the customer has no
    billing e-mail (the caller says so)."""
    from workflows import audit

    if end < start:
        raise ValidationFailed.of("period", "the period ends before it starts")
    to = customer.billing_email
    if not to:
        return None
    message = outbox.send_email(
        session, to=to, template="statement", dedupe_key=dedupe_key,
        context={"statement": {"customer": customer.external_id, "start": start.isoformat(),
                               "end": end.isoformat()}},
        attachments=[{"kind": "statement_pdf"}])
    audit.record(session, actor=actor, action="customer.statement_sent",
                 entity_type="customer", entity_id=customer.id,
                 reason=f"statement {start.isoformat()} to {end.isoformat()} to {to}",
                 start=start.isoformat(), end=end.isoformat(), outbox_id=message.id, at=now)
    return message


def send_monthly(session: Session, *, today: date, now: datetime) -> dict:
    """Last month's statement to every customer who wants one, once per customer and month
    (the outbox's dedupe key), whenever in the month the job runs."""
    start, end = previous_month(today)
    sent = skipped = 0
    for customer in session.exec(select(Customer).where(Customer.monthly_statement)
                                 .order_by(Customer.id)):
        key = f"statement:{customer.id}:{start.isoformat()[:7]}"
        if outbox.has_message(session, key):
            continue
        if send_statement(session, customer=customer, start=start, end=end, actor="system",
                          now=now, dedupe_key=key) is None:
            skipped += 1
        else:
            sent += 1
    return {"period": start.isoformat()[:7], "sent": sent, "no_email": skipped}


def by_external_id(session: Session, external_id: str) -> Customer:
    customer = session.exec(select(Customer).where(Customer.external_id == external_id)).first()
    if customer is None:
        raise ValidationFailed.of("customer", f"no customer {external_id}")
    return customer
