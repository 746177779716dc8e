"""Customer credit applied to another invoice of the same customer (SPEC §3 "Back office").

A credit note on an invoice already (partly) paid leaves customer credit: the money paid on
that invoice which the note made too much (`workflows.credit_notes`). Besides a refund
(`workflows.refunds`), finance applies it to another open invoice of the same customer in
the same currency. The credit *is* money the customer paid, so applying it moves that money:
of the payments on the note's invoice (the one applied last first), `amount` comes off that
invoice (a negative allocation, method `customer_credit`) with the credit set against it (a
write-off of reason `customer_credit`, as a refund of it does: the note's invoice stays
settled, its credit is used), and goes onto the other invoice (an allocation of the same
payment, method `customer_credit`). Every payment still adds up (allocations + unapplied +
refunded = amount), both invoices' balances equal total - settlements, and the credit left
is never below zero nor above the money still on the note's invoice
(`invariants.validate_customer_credit`). A later refund of that payment reverses the
application like any allocation (the other invoice opens again).

Never more than the credit the note's invoice still holds (all its notes' credit, less what
was refunded or applied), nor more than the other invoice's undisputed open balance (what a
dispute holds waits for the dispute's outcome: a credit note, or its rejection); either is a
422 naming both amounts. Dated today (the business date), booked in an open period; the
other invoice counts as settled when the credit was applied.

Exactly once: the payments, then both invoices are locked (payments before invoices, as cash
application and refunds take them; invoices in id order), so two applications at once spend
the credit once — the second reads what the first left. By key: the AR channel is told in the
same transaction under the dedupe key `customer-credit:<key>` (unique in the outbox, which
keeps every row), so the same key again changes nothing and answers what was done; the same
key for another application is a 409. Audited `customer_credit.applied`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    AuditEvent,
    CreditNote,
    Invoice,
    Role,
    WriteOff,
    WriteOffReason,
    money,
)
from workflows import audit, outbox, periods, policy
from workflows import validation as v
from workflows.credit_notes import customer_credit_of
from workflows.disputes import undisputed_open
from workflows.errors import Conflict, NotFound, ValidationFailed
from workflows.invoicing import get_invoice, lock_invoices, reduce_balance
from workflows.refunds import lock_payment
from workflows.users import require_role

METHOD = "customer_credit"  # the allocations that move the credit (`Allocation.method`)
ACTION = "customer_credit.applied"
KEY_MAX = 150
# who applies customer credit (admins hold every role): cash application's and credit's people
ROLES = (Role.COLLECTOR, Role.CREDIT_APPROVER)


@dataclass(frozen=True)
class CreditApplied:
    """What an application did (or, `created` False, did before under the same key)."""

    key: str
    credit_note: str
    source_invoice: str
    invoice: str
    customer_id: int
    amount_minor: int
    currency: str
    credit_left_minor: int  # on the note's invoice, after
    invoice_balance_minor: int  # the other invoice's, after
    by: str
    at: str  # ISO moment
    created: bool = True


def dedupe_key(key: str) -> str:
    return f"customer-credit:{key}"


def apply_customer_credit(session: Session, *, credit_note: str, invoice: str, amount: str,
                          by: str, key: str, now: datetime,
                          customer_id: int | None = None) -> CreditApplied:
    """Apply `amount` of the customer credit credit note `credit_note` left on its invoice to
    `invoice` (see the module docstring). `customer_id`, when given, must be theirs."""
    key = (v.text("key", key) or "").strip()
    if not key:
        raise ValidationFailed.of("key", "an application of customer credit needs a key "
                                  "(Idempotency-Key), so a retry does not spend it twice")
    if len(key) > KEY_MAX:
        raise ValidationFailed.of("key", f"at most {KEY_MAX} characters")
    if not v.SLACK_USER_ID.match(by or ""):
        raise ValidationFailed.of("by", "must be a Slack user id such as U012AB3CD")
    require_role(session, user_id=by, roles=ROLES, action="customer_credit.apply",
                 entity_type="credit_note", entity_id=(credit_note or "-")[:64])
    note = session.exec(select(CreditNote).where(
        CreditNote.number == (credit_note or "").strip())).first()
    if note is None:
        raise NotFound(f"no credit note {credit_note}")
    target = get_invoice(session, invoice)
    done = _done_before(session, key)
    if done is not None:
        return _same(done, note, target, amount)
    source = session.get(Invoice, note.invoice_id)
    if customer_id is not None and source.customer_id != customer_id:
        raise ValidationFailed.of("credit_note", f"{note.number} is another customer's")
    if target.customer_id != source.customer_id:
        raise ValidationFailed.of("invoice", f"{target.number} is another customer's than "
                                  f"{note.number} (on {source.number}); customer credit is "
                                  "applied to the same customer's invoices only")
    if target.currency != source.currency:
        raise ValidationFailed.of("invoice", f"{target.number} is in {target.currency}; the "
                                  f"credit of {note.number} is in {source.currency}")
    if target.id == source.id:
        raise ValidationFailed.of("invoice", f"{note.number} credited {source.number} "
                                  "itself; name another invoice")
    minor = v.amount_minor("amount", amount, source.currency, positive=True)
    # payments first, then the invoices (the order cash application and refunds lock in)
    for payment_id in sorted(pid for pid, _ in _paid_on(session, source.id)):
        lock_payment(session, payment_id)
    locked = lock_invoices(session, (source.id, target.id))  # (read fresh)
    source, target = locked[source.id], locked[target.id]
    done = _done_before(session, key)  # the same key, committed while this one waited
    if done is not None:
        return _same(done, note, target, amount)
    cur = source.currency
    credit = customer_credit_of(session, source.id)
    if minor > credit:
        raise ValidationFailed.of("amount", (
            f"{source.number} holds {money.format_money(max(credit, 0), cur)} of customer "
            f"credit, not {money.format_money(minor, cur)}"))
    open_ = undisputed_open(target)
    if minor > open_:
        held = (f" ({money.format_money(target.disputed_minor, cur)} of its "
                f"{money.format_money(target.balance_minor, cur)} is in dispute)"
                if target.disputed_minor else "")
        raise ValidationFailed.of("amount", (
            f"{target.number} has {money.format_money(open_, cur)} open to settle{held}, "
            f"not {money.format_money(minor, cur)}"))
    today = policy.business_date(session, now)
    _move(session, source=source, target=target, amount_minor=minor, by=by, now=now,
          today=today)
    left = customer_credit_of(session, source.id)
    applied = CreditApplied(key=key, credit_note=note.number, source_invoice=source.number,
                            invoice=target.number, customer_id=source.customer_id,
                            amount_minor=minor, currency=cur, credit_left_minor=left,
                            invoice_balance_minor=target.balance_minor, by=by,
                            at=now.isoformat())
    audit.record(session, actor=by, action=ACTION, entity_type="invoice", entity_id=target.id,
                 reason=f"customer credit of {note.number} applied", at=now,
                 key=key, credit_note=note.number, source_invoice=source.number,
                 invoice=target.number, amount_minor=minor, currency=cur,
                 credit_left_minor=left, invoice_balance_minor=target.balance_minor)
    outbox.post_to_channel(session, channel="ar", template="text", dedupe_key=dedupe_key(key),
                           context={"text": (
                               f"Customer credit applied: {money.format_money(minor, cur)} "
                               f"of {note.number}'s credit (on {source.number}) to "
                               f"{target.number} by {by}. {target.number} has "
                               f"{money.format_money(target.balance_minor, cur)} open; "
                               f"{money.format_money(left, cur)} of credit is left on "
                               f"{source.number}.")})
    session.flush()
    return applied


def _paid_on(session: Session, invoice_id: int) -> list[tuple[int, int]]:
    """(payment id, what it still has on the invoice), the payment applied last first."""
    rows = session.exec(
        select(Allocation.payment_id, sa.func.sum(Allocation.amount_minor),
               sa.func.max(Allocation.id))
        .where(Allocation.invoice_id == invoice_id)
        .group_by(Allocation.payment_id).order_by(sa.func.max(Allocation.id).desc())).all()
    return [(int(pid), int(net)) for pid, net, _ in rows if net and net > 0]


def _move(session: Session, *, source: Invoice, target: Invoice, amount_minor: int, by: str,
          now: datetime, today) -> None:
    """The payments' money behind the credit, off `source` (the credit set against it) and
    onto `target`."""
    out = periods.booking(session, today, not_before=source.issue_date)
    into = periods.booking(session, today, not_before=target.issue_date)
    left = amount_minor
    for payment_id, net in _paid_on(session, source.id):
        if left == 0:
            break
        take = min(net, left)
        session.add(Allocation(payment_id=payment_id, invoice_id=source.id,
                               amount_minor=-take, method=METHOD, created_by=by,
                               value_date=out.value_date, effective_date=out.effective_date))
        session.add(WriteOff(invoice_id=source.id, payment_id=payment_id, amount_minor=take,
                             reason=WriteOffReason.CUSTOMER_CREDIT, value_date=out.value_date,
                             effective_date=out.effective_date, created_by=by))
        session.add(Allocation(payment_id=payment_id, invoice_id=target.id,
                               amount_minor=take, method=METHOD, created_by=by,
                               value_date=into.value_date, effective_date=into.effective_date))
        audit.record(session, actor=by, action="payment.credit_moved", entity_type="payment",
                     entity_id=payment_id, from_invoice=source.number, invoice=target.number,
                     amount_minor=take, reason=into.note or out.note, **into.as_dict())
        left -= take
    if left:  # the credit is never more than the money on its invoice (invariants)
        raise Conflict(f"{source.number}: {money.format_money(left, source.currency)} of the "
                       "credit is not on any payment; nothing was changed")
    session.flush()
    reduce_balance(session, target, amount_minor, settled_at=now)


def _done_before(session: Session, key: str) -> AuditEvent | None:
    if not outbox.has_message(session, dedupe_key(key)):
        return None
    return session.exec(select(AuditEvent).where(
        AuditEvent.action == ACTION,
        AuditEvent.data["key"].as_string() == key).order_by(AuditEvent.id)).first()


def _same(event: AuditEvent, note: CreditNote, target: Invoice, amount: str) -> CreditApplied:
    data = event.data
    minor = v.amount_minor("amount", amount, data["currency"], positive=True)
    if (data["credit_note"], data["invoice"], data["amount_minor"]) != (
            note.number, target.number, minor):
        raise Conflict(f"key {data['key']} was already used to apply "
                       f"{money.format_money(data['amount_minor'], data['currency'])} of "
                       f"{data['credit_note']} to {data['invoice']}; nothing was changed")
    return CreditApplied(key=data["key"], credit_note=data["credit_note"],
                         source_invoice=data["source_invoice"], invoice=data["invoice"],
                         customer_id=target.customer_id, amount_minor=data["amount_minor"],
                         currency=data["currency"], credit_left_minor=data["credit_left_minor"],
                         invoice_balance_minor=data["invoice_balance_minor"], by=event.actor,
                         at=event.at.isoformat(), created=False)
