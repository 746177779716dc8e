"""Deductions (SPEC §3 "Back office"): a short payment beyond the bank-fee tolerance.

Cash application applies what was paid and flags the rest (`flag`, called from
`workflows.cash_application`): a `Deduction` row and a card in the AR channel — who paid,
which invoice, how much is missing, the remittance text — so nothing sits unseen. A collector
acts on the card, once (each is a conditional UPDATE of the deduction's status):

* **Open dispute** — a dispute on the invoice for what is left of the deduction
  (`workflows.disputes`, source "deduction"); when its credit note is issued the deduction is
  resolved ("credited") — or, when the credit was less than what was left and the invoice
  still has something open, open again for the rest (`credited`); when the dispute is rejected
  or withdrawn the deduction is open again;
* **Write off** — a write-off request (kind "deduction") a credit approver decides
  (`workflows.write_offs`); approved -> resolved ("written_off"; "settled" when the invoice
  had nothing left to write off by then), rejected -> open again;
* **Bill back** — the deduction stays open and the customer is e-mailed a reminder that the
  amount is still due — what of it is still open, when they have paid part of it since — (at
  most once a day per deduction).

What is *left* of a deduction (`left_minor`) is its amount less the credit notes issued for the
disputes opened from it — derived from those rows, never stored, so a past day's figure is
exact (`credited_minor(before=...)`). The buttons act on what is left (at most what of the
invoice is open). A deduction counts as outstanding (KPIs) for what is left, at most its
invoice's balance, while it is not resolved and its invoice still has something open; once
the invoice has nothing open (the customer paid the rest, or it was credited or written off),
the next click on its card resolves it ("settled", audited, the card updated, its buttons
gone; `settle_if_closed`) instead of acting.

One shortfall, one deduction: a later short payment on an invoice whose deduction is still
being worked pays part of it and flags nothing (`being_worked`; `invariants.validate_deductions`
checks an invoice never has two); its card is updated then to show the balance left and what
of the deduction is still due (`balance_lowered`, in the payment's transaction; so does any
other lowering of its balance: a credit note, a write-off). A payment all of whose money on
the invoice is refunded later leaves its open deduction resolved as "reversed" (`refunded`),
as a correction does (`reverse`).
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    CreditNote,
    CreditNoteRequest,
    Customer,
    Deduction,
    DeductionStatus,
    Dispute,
    Invoice,
    OutboxMessage,
    Payment,
    Role,
    WriteOffKind,
    money,
)
from workflows import audit, outbox, policy
from workflows.errors import AlreadyDecided, Conflict, NotFound, ValidationFailed
from workflows.inputs import DisputeOpenIn, build
from workflows.invoicing import lock_invoice
from workflows.users import require_role

ROLES = (Role.COLLECTOR,)  # admins hold every role
ACTIVE = (DeductionStatus.OPEN, DeductionStatus.DISPUTED, DeductionStatus.WRITE_OFF_PENDING)


def being_worked(session: Session, invoice_ids: Any, *,
                 payment_id: int | None = None) -> set[int]:
    """Those of `invoice_ids` with a deduction not resolved (open, disputed, waiting for a
    write-off) — of another payment than `payment_id`, when given. A later short payment on
    such an invoice is applied and flags nothing: it pays part of what that deduction is
    about, whose buttons act on what is left of it, at most the invoice's balance
    (`due_minor`); a second deduction would count the same shortfall twice (SPEC §3; the
    engine, a person's suggestion, a payment picked or corrected by hand alike;
    `invariants.validate_deductions`)."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return set()
    query = select(Deduction.invoice_id).where(
        Deduction.invoice_id.in_(ids), Deduction.status.in_([str(s) for s in ACTIVE]))
    if payment_id is not None:
        query = query.where(Deduction.payment_id != payment_id)
    return set(session.exec(query).all())


def flag(session: Session, *, payment: Payment, invoice: Invoice, amount_minor: int,
         actor: str) -> Deduction:
    """Record a short payment beyond tolerance and post its card in the AR channel."""
    deduction = Deduction(payment_id=payment.id, invoice_id=invoice.id,
                          amount_minor=amount_minor)
    session.add(deduction)
    session.flush()
    audit.record(session, actor=actor, action="payment.deduction", entity_type="invoice",
                 entity_id=invoice.id, amount_minor=amount_minor, payment_id=payment.id,
                 deduction_id=deduction.id,
                 reason="short payment beyond the bank-fee tolerance")
    card = outbox.post_to_channel(session, channel="ar", template="deduction_card",
                                  context=card_context(session, deduction, payment=payment,
                                                       invoice=invoice),
                                  dedupe_key=f"deduction-card:{deduction.id}")
    deduction.card_outbox_id = card.id
    session.add(deduction)
    return deduction


_DED = Deduction.__table__
_OUT = OutboxMessage.__table__
_CUST = Customer.__table__
_INSERT_DEDUCTIONS = sa.insert(_DED).returning(_DED.c.id, sort_by_parameter_order=True)
_INSERT_CARDS = sa.insert(_OUT).returning(_OUT.c.id, sort_by_parameter_order=True)
_SET_CARD = (sa.update(_DED).where(_DED.c.id == sa.bindparam("deduction"))
             .values(card_outbox_id=sa.bindparam("card")))


def flag_many(session: Session, flags: list[tuple[Any, Any, int]], *,
              actor: str) -> list[int]:
    """`flag` for many short payments at once (a bank statement's chunk), in order: the same
    rows, audit events and cards, with a few statements for all (Core inserts: nothing is
    kept in the session). `flags` are (payment, invoice as the payment left it, amount):
    anything with a `Payment`'s and an `Invoice`'s attributes; returns the deductions'
    ids."""
    if not flags:
        return []
    conn = session.connection()
    ids = [r[0] for r in conn.execute(_INSERT_DEDUCTIONS, [
        {"payment_id": payment.id, "invoice_id": invoice.id, "amount_minor": amount,
         "status": DeductionStatus.OPEN, "bill_backs": 0} for payment, invoice, amount in flags])]
    customers = {invoice.customer_id for _, invoice, _ in flags}
    names = dict(conn.execute(sa.select(_CUST.c.id, _CUST.c.name)
                              .where(_CUST.c.id.in_(sorted(customers)))).all())
    audit.record_rows(session, [
        audit.row(actor=actor, action="payment.deduction", entity_type="invoice",
                  entity_id=invoice.id, amount_minor=amount, payment_id=payment.id,
                  deduction_id=did, reason="short payment beyond the bank-fee tolerance")
        for (payment, invoice, amount), did in zip(flags, ids, strict=True)])
    cards = [r[0] for r in conn.execute(_INSERT_CARDS, [
        {"transport": "slack", "method": "chat.postMessage",
         "dedupe_key": f"deduction-card:{did}",
         "payload": {"channel": "ar", "template": "deduction_card", "context": _context(
             SimpleNamespace(id=did, status=DeductionStatus.OPEN, resolution=None,
                             amount_minor=amount, resolved_by=None, billed_back_at=None,
                             bill_backs=0), payment, invoice, names[invoice.customer_id],
             None, left_minor=amount)}}
        for (payment, invoice, amount), did in zip(flags, ids, strict=True)])]
    conn.execute(_SET_CARD, [{"deduction": did, "card": card}
                             for did, card in zip(ids, cards, strict=True)])
    return ids


def card_context(session: Session, deduction: Deduction, *, payment: Payment | None = None,
                 invoice: Invoice | None = None, note: str | None = None) -> dict:
    """What the card shows (JSON, frozen when written)."""
    payment = payment or session.get(Payment, deduction.payment_id)
    invoice = invoice or session.get(Invoice, deduction.invoice_id)
    customer = session.get(Customer, invoice.customer_id)
    dispute = session.exec(select(Dispute).where(Dispute.deduction_id == deduction.id)
                           .order_by(Dispute.id.desc())).first()
    return _context(deduction, payment, invoice, customer.name,
                    dispute.id if dispute is not None else None, note,
                    left_minor=left_minor(session, deduction) if dispute is not None
                    else deduction.amount_minor)


def _context(deduction: Any, payment: Any, invoice: Any, customer_name: str,
             dispute_id: int | None, note: str | None = None, *, left_minor: int) -> dict:
    """The card of `deduction` (a `Deduction`, or its fields)."""
    return {"deduction_id": deduction.id, "status": deduction.status,
            "resolution": deduction.resolution, "amount_minor": deduction.amount_minor,
            "left_minor": left_minor,
            "currency": invoice.currency, "customer": customer_name,
            "invoice": {"number": invoice.number, "total_minor": invoice.total_minor,
                        "balance_minor": invoice.balance_minor},
            "payment": {"id": payment.id, "amount_minor": payment.amount_minor,
                        "payer_name": payment.payer_name, "reference": payment.reference,
                        "received_at": payment.received_at.isoformat()},
            "dispute_id": dispute_id,
            "resolved_by": deduction.resolved_by,
            "billed_back_at": (deduction.billed_back_at.isoformat()
                               if deduction.billed_back_at else None),
            "bill_backs": deduction.bill_backs, "note": note}


def _update_card(session: Session, deduction: Deduction, note: str | None = None, *,
                 invoice: Invoice | None = None) -> None:
    if deduction.card_outbox_id is not None:
        outbox.update_message(session, target_outbox_id=deduction.card_outbox_id,
                              template="deduction_card",
                              context=card_context(session, deduction, invoice=invoice,
                                                   note=note))


def balance_lowered(session: Session, invoice_ids: Any) -> int:
    """The invoices `invoice_ids` have less open than a moment ago (a payment — one at a time
    through `invoicing.reduce_balance`, or a bank statement's chunk, `cash_runs` —, a credit
    note, a write-off): the card of each deduction being worked on one of them is updated in
    place, in this transaction (the outbox), to show the balance now and what of the
    deduction is still due (`due_minor`, what its buttons act on) — it showed the balance
    when the deduction was flagged. One read for all of them (deductions and their invoices,
    read fresh); nothing more for invoices without a deduction being worked. Returns the cards
    updated."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return 0
    rows = session.exec(
        select(Deduction, Invoice).join(Invoice, Invoice.id == Deduction.invoice_id)
        .where(Deduction.invoice_id.in_(ids), Deduction.status.in_([str(s) for s in ACTIVE]),
               Deduction.card_outbox_id.is_not(None))
        .order_by(Deduction.id).execution_options(populate_existing=True)).all()
    for deduction, invoice in rows:
        due = due_minor(session, deduction, invoice)
        _update_card(session, deduction, invoice=invoice, note=(
            f"{invoice.number} now has "
            f"{money.format_money(invoice.balance_minor, invoice.currency)} open: "
            f"{money.format_money(due, invoice.currency)} of this deduction is still due."))
    return len(rows)


def credited_minor(session: Session, deduction_ids: Any, *, before: datetime | None = None,
                   per_invoice: bool = False) -> dict[int, int]:
    """{deduction id: what the credit notes of the disputes opened from it credited} for
    `deduction_ids` (ids, or a select of them) — those issued before `before`, when given (a
    credit note's total: what it took off the invoice and what became customer credit);
    `per_invoice`: summed per invoice id instead."""
    key = Dispute.invoice_id if per_invoice else Dispute.deduction_id
    query = (select(key, sa.func.sum(CreditNote.amount_minor
                                     + CreditNote.customer_credit_minor))
             .join(CreditNoteRequest, CreditNoteRequest.dispute_id == Dispute.id)
             .join(CreditNote, CreditNote.request_id == CreditNoteRequest.id)
             .where(Dispute.deduction_id.in_(deduction_ids))
             .group_by(key))
    if before is not None:
        query = query.where(CreditNote.created_at < before)
    return {did: int(total or 0) for did, total in session.exec(query).all()}


def left_minor(session: Session, deduction: Deduction) -> int:
    """What is still missing of the deduction: its amount less what was credited for it."""
    return deduction.amount_minor - credited_minor(session, [deduction.id]).get(deduction.id, 0)


def due_minor(session: Session, deduction: Deduction, invoice: Invoice) -> int:
    """What of the deduction the customer still owes (what a bill-back asks for): what is
    left of it, at most the invoice's balance (they may have paid part of it since)."""
    return min(left_minor(session, deduction), invoice.balance_minor)


def get(session: Session, deduction_id: int) -> Deduction:
    deduction = session.get(Deduction, deduction_id)
    if deduction is None:
        raise NotFound(f"no deduction #{deduction_id}")
    return deduction


def _already(deduction: Deduction) -> AlreadyDecided:
    state = deduction.status.replace("_", " ")
    if deduction.status == DeductionStatus.RESOLVED:
        state = f"resolved ({(deduction.resolution or '').replace('_', ' ')})"
    return AlreadyDecided(f"This deduction is already {state}"
                          + (f" by {deduction.resolved_by}" if deduction.resolved_by else "")
                          + ". Nothing was changed.", decided_by=deduction.resolved_by,
                          status=deduction.status)


def _claim(session: Session, deduction: Deduction, status: str) -> None:
    """open -> `status`, once (a conditional UPDATE); AlreadyDecided for everyone else."""
    table = Deduction.__table__
    taken = session.execute(sa.update(table).where(
        table.c.id == deduction.id, table.c.status == DeductionStatus.OPEN)
        .values(status=status)).rowcount
    session.refresh(deduction)
    if taken != 1:
        raise _already(deduction)


def check(session: Session, *, deduction_id: int, user_id: str, action: str) -> Deduction:
    """Role and state, before a modal opens (a refused click is explained and audited)."""
    require_role(session, user_id=user_id, roles=ROLES, action=action,
                 entity_type="deduction", entity_id=deduction_id)
    deduction = get(session, deduction_id)
    if deduction.status != DeductionStatus.OPEN:
        raise _already(deduction)
    return deduction


def settle_if_closed(session: Session, deduction_id: int, *, by: str, now: datetime) -> bool:
    """The collector `by` acts on an open deduction whose invoice has nothing open any more:
    resolve it ("settled") once — a conditional UPDATE; AlreadyDecided for a second click —
    and True. False (nothing changed) while the invoice still has something open."""
    deduction = check(session, deduction_id=deduction_id, user_id=by,
                      action="deduction.settle")
    invoice = lock_invoice(session, deduction.invoice_id)
    if invoice.balance_minor > 0:
        return False
    table = Deduction.__table__
    taken = session.execute(sa.update(table).where(
        table.c.id == deduction.id, table.c.status == DeductionStatus.OPEN)
        .values(status=DeductionStatus.RESOLVED, resolution="settled", resolved_by=by,
                resolved_at=now)).rowcount
    session.refresh(deduction)
    if taken != 1:
        raise _already(deduction)
    audit.record(session, actor=by, action="deduction.resolved", entity_type="deduction",
                 entity_id=deduction.id, from_state=DeductionStatus.OPEN,
                 to_state=DeductionStatus.RESOLVED, reason="settled", at=now,
                 invoice=invoice.number, why=f"{invoice.number} has nothing open any more")
    _update_card(session, deduction,
                 note=f"{invoice.number} has nothing open any more: nothing is missing.")
    return True


def _dispute_amount(session: Session, deduction: Deduction, invoice: Invoice,
                    amount: str | None) -> str:
    """What a dispute from the deduction holds: `amount`, default what is left of the
    deduction (at most what is open and not yet in dispute)."""
    from workflows import disputes

    if amount not in (None, ""):
        return amount
    open_part = disputes.undisputed_open(invoice)
    if open_part <= 0:
        raise Conflict(f"{invoice.number} has nothing open left to dispute")
    return money.to_str(min(left_minor(session, deduction), open_part), invoice.currency)


def check_open_dispute(session: Session, *, deduction_id: int, reason: str,
                       note: str | None, actor: str, amount: str | None = None) -> None:
    """What `open_dispute` would refuse, found with reads only (a modal's ack runs it)."""
    from workflows import disputes

    deduction = check(session, deduction_id=deduction_id, user_id=actor,
                      action="deduction.dispute")
    invoice = session.get(Invoice, deduction.invoice_id)
    disputes.check_open(session, invoice.number, build(
        DisputeOpenIn, reason=reason, note=note,
        amount=_dispute_amount(session, deduction, invoice, amount)), actor=actor)


def open_dispute(session: Session, *, deduction_id: int, reason: str, note: str | None,
                 actor: str, now: datetime, amount: str | None = None) -> Dispute:
    """A dispute for the deduction's amount (or less), from the card."""
    from workflows import disputes

    deduction = check(session, deduction_id=deduction_id, user_id=actor,
                      action="deduction.dispute")
    invoice = session.get(Invoice, deduction.invoice_id)
    _claim(session, deduction, DeductionStatus.DISPUTED)
    dispute = disputes.open_dispute(session, invoice.number, build(
        DisputeOpenIn, reason=reason, note=note,
        amount=_dispute_amount(session, deduction, invoice, amount)), actor=actor, now=now,
        source="deduction", deduction_id=deduction.id)
    audit.record(session, actor=actor, action="deduction.disputed", entity_type="deduction",
                 entity_id=deduction.id, from_state=DeductionStatus.OPEN,
                 to_state=DeductionStatus.DISPUTED, dispute_id=dispute.id, at=now)
    _update_card(session, deduction)
    return dispute


def write_off_amount(session: Session, deduction: Deduction, invoice: Invoice) -> int:
    """What a write-off of the deduction asks for: what is left of it, at most what of the invoice
    is open and not already asked for — in write-offs, or in credit notes waiting for approval
    (a write-off never takes what they will credit: `workflows.write_offs`)."""
    from workflows import write_offs

    amount = min(left_minor(session, deduction), write_offs.open_to_write_off(session, invoice))
    if amount <= 0:
        raise Conflict(f"{invoice.number} has nothing open to write off (or it is all in "
                       "write-off or credit-note requests already)")
    return amount


def check_write_off(session: Session, *, deduction_id: int, reason: str, actor: str) -> None:
    """What `write_off` would refuse, found with reads only (a modal's ack runs it)."""
    from workflows import write_offs

    deduction = check(session, deduction_id=deduction_id, user_id=actor,
                      action="deduction.write_off")
    invoice = session.get(Invoice, deduction.invoice_id)
    write_offs.check_request(session, invoice_number=invoice.number, reason=reason,
                             actor=actor, kind=WriteOffKind.DEDUCTION,
                             amount=money.to_str(write_off_amount(session, deduction, invoice),
                                                 invoice.currency))


def write_off(session: Session, *, deduction_id: int, reason: str, actor: str,
              now: datetime):
    """Ask for the deduction to be written off (an approval card follows)."""
    from workflows import write_offs

    deduction = check(session, deduction_id=deduction_id, user_id=actor,
                      action="deduction.write_off")
    invoice = session.get(Invoice, deduction.invoice_id)
    amount = write_off_amount(session, deduction, invoice)
    _claim(session, deduction, DeductionStatus.WRITE_OFF_PENDING)
    request = write_offs.request_write_off(
        session, invoice_number=invoice.number, reason=reason, actor=actor, now=now,
        kind=WriteOffKind.DEDUCTION, deduction_id=deduction.id, amount_minor=amount)
    audit.record(session, actor=actor, action="deduction.write_off_requested",
                 entity_type="deduction", entity_id=deduction.id,
                 from_state=DeductionStatus.OPEN, to_state=DeductionStatus.WRITE_OFF_PENDING,
                 write_off_request_id=request.id, at=now)
    _update_card(session, deduction)
    return request


def bill_back(session: Session, *, deduction_id: int, actor: str, now: datetime
              ) -> Deduction:
    """E-mail the customer that the short-paid amount is still due; the deduction stays
    open. Once a business day per deduction (the e-mail's dedupe key: the date in the
    business time zone, not the clicker's, else two collectors a date line apart would
    e-mail it twice within minutes). Its invoice has nothing open
    any more: nothing is sent, the deduction is resolved (`settle_if_closed`)."""
    deduction = check(session, deduction_id=deduction_id, user_id=actor,
                      action="deduction.bill_back")
    if settle_if_closed(session, deduction.id, by=actor, now=now):
        return deduction
    invoice = session.get(Invoice, deduction.invoice_id)
    customer = session.get(Customer, invoice.customer_id)
    payment = session.get(Payment, deduction.payment_id)
    due = due_minor(session, deduction, invoice)
    if not customer.billing_email:
        raise ValidationFailed.of("billing_email", f"{customer.name} has no billing e-mail on "
                                  "file; add one through the API or CSV import")
    context = {"customer_name": customer.name, "currency": invoice.currency,
               "invoice_number": invoice.number, "amount_minor": deduction.amount_minor,
               "due_minor": due, "balance_minor": invoice.balance_minor,
               "paid_minor": payment.amount_minor,
               # the day the books date the payment by (its statement line's), not the
               # UTC date: 23:30 in Los Angeles is the next day in UTC
               "received_at": payment.value_date.isoformat(),
               "reference": payment.reference or ""}
    try:
        with session.begin_nested():
            outbox.send_email(session, to=customer.billing_email, template="deduction_bill_back",
                              context=context,
                              dedupe_key=f"deduction-bill-back:{deduction.id}:"
                              f"{policy.business_date(session, now)}")
    except IntegrityError:
        raise Conflict("The customer was already billed back for this deduction today; "
                       "nothing more was sent.") from None
    deduction.bill_backs += 1
    deduction.billed_back_at = now
    session.add(deduction)
    audit.record(session, actor=actor, action="deduction.billed_back", entity_type="deduction",
                 entity_id=deduction.id, to_state=DeductionStatus.OPEN, at=now,
                 invoice=invoice.number, amount_minor=deduction.amount_minor,
                 due_minor=due, to=customer.billing_email)
    _update_card(session, deduction)
    return deduction


def settle(session: Session, deduction_id: int, *, resolution: str, by: str, now: datetime,
           note: str | None = None) -> None:
    """Resolved by what followed (credited, written off, settled)."""
    deduction = get(session, deduction_id)
    if deduction.status == DeductionStatus.RESOLVED:
        return
    before = deduction.status
    deduction.status, deduction.resolution = DeductionStatus.RESOLVED, resolution
    deduction.resolved_by, deduction.resolved_at = by, now
    session.add(deduction)
    session.flush()
    audit.record(session, actor=by, action="deduction.resolved", entity_type="deduction",
                 entity_id=deduction.id, from_state=before, to_state=DeductionStatus.RESOLVED,
                 reason=resolution, at=now)
    _update_card(session, deduction, note=note)


def credited(session: Session, deduction_id: int, *, credit_note: str, by: str,
             now: datetime) -> None:
    """The credit note `credit_note` of a dispute opened from the deduction was issued:
    resolved ("credited") when the credits cover the deduction; else, while its invoice
    still has something open, open again for what is left (audited, the card says so) —
    the buttons then act on the rest; when the customer paid the rest meanwhile, resolved
    ("settled")."""
    deduction = get(session, deduction_id)
    if deduction.status == DeductionStatus.RESOLVED:
        return
    left = left_minor(session, deduction)
    if left <= 0:
        settle(session, deduction_id, resolution="credited", by=by, now=now)
        return
    invoice = session.exec(select(Invoice).where(Invoice.id == deduction.invoice_id)
                           .execution_options(populate_existing=True)).one()
    if invoice.balance_minor <= 0:
        settle(session, deduction_id, resolution="settled", by=by, now=now,
               note=f"{invoice.number} has nothing open any more: nothing is missing.")
        return
    cur = invoice.currency
    reopen(session, deduction_id, now=now, left=left,
           why=f"{credit_note} credited {money.format_money(deduction.amount_minor - left, cur)}"
               f" of it: {money.format_money(left, cur)} is still missing")


def reverse(session: Session, deduction_id: int, *, by: str, now: datetime) -> None:
    """Resolved as "reversed": its payment was moved (`cash_application.correct_application`).
    Only an open one, taken with a conditional UPDATE: a collector who meanwhile opened a
    dispute or asked for a write-off for it wins, and the correction gets a Conflict."""
    if not _reversed(session, deduction_id, by=by, now=now):
        raise Conflict("A deduction of this payment is being dealt with or was resolved; "
                       "nothing changed.")


def _reversed(session: Session, deduction_id: int, *, by: str, now: datetime,
              note: str | None = None, **why: str) -> bool:
    """The deduction resolved as "reversed" if it is still open (a conditional UPDATE),
    audited, its card updated (with `note`); whether it was."""
    table = Deduction.__table__
    taken = session.execute(sa.update(table).where(
        table.c.id == deduction_id, table.c.status == DeductionStatus.OPEN)
        .values(status=DeductionStatus.RESOLVED, resolution="reversed", resolved_by=by,
                resolved_at=now)).rowcount
    if taken != 1:
        return False
    deduction = get(session, deduction_id)
    session.refresh(deduction)
    audit.record(session, actor=by, action="deduction.resolved", entity_type="deduction",
                 entity_id=deduction.id, from_state=DeductionStatus.OPEN,
                 to_state=DeductionStatus.RESOLVED, reason="reversed", at=now, **why)
    _update_card(session, deduction, note=note)
    return True


def refunded(session: Session, *, payment_id: int, invoice_ids: Any, by: str,
             now: datetime) -> list[int]:
    """All of the payment's money on `invoice_ids` went back (`workflows.refunds`: a bank's
    return, a Stripe refund or chargeback): its deductions there still open are resolved as
    "reversed", as when a person moves the payment (`reverse`) — no payment stands short on
    the invoice any more, it is open for what it was, and a card still offering Write off or
    Bill back "you paid 900.00, 100.00 is missing" would write off or ask for a shortfall of
    money we gave back. One being worked (disputed, waiting for a write-off) is left to its
    dispute or approval. Returns the ids resolved."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return []
    opened = session.exec(select(Deduction.id).where(
        Deduction.payment_id == payment_id, Deduction.invoice_id.in_(ids),
        Deduction.status == DeductionStatus.OPEN).order_by(Deduction.id)).all()
    return [deduction_id for deduction_id in opened if _reversed(
        session, deduction_id, by=by, now=now,
        note="The payment was refunded: nothing of it stands short any more.",
        why="the payment's money on the invoice was refunded")]


def reopen(session: Session, deduction_id: int, *, now: datetime, why: str,
           left: int | None = None) -> None:
    """What was tried did not settle it (dispute rejected, write-off rejected, credited in
    part): open again, for what is `left` of it (audited)."""
    deduction = get(session, deduction_id)
    if deduction.status in (DeductionStatus.OPEN, DeductionStatus.RESOLVED):
        return
    before = deduction.status
    deduction.status = DeductionStatus.OPEN
    session.add(deduction)
    session.flush()
    audit.record(session, actor="system", action="deduction.reopened", entity_type="deduction",
                 entity_id=deduction.id, from_state=before, to_state=DeductionStatus.OPEN,
                 reason=why, at=now,
                 left_minor=left if left is not None else left_minor(session, deduction))
    _update_card(session, deduction, note=why)


def outstanding(session: Session, *, as_of_end: datetime | None = None
                ) -> dict[str, tuple[int, int]]:
    """{currency: (count, amount)} of deductions not resolved whose invoice still has
    something open (recorded by `as_of_end`, when given): what is left of them, at most
    their invoice's balance (the KPI's figure for today: `workflows.kpis`)."""
    held = [Deduction.status.in_([str(s) for s in ACTIVE]), Invoice.balance_minor > 0]
    if as_of_end is not None:
        held.append(Deduction.created_at <= as_of_end)
    rows = session.exec(select(Invoice.id, Invoice.currency, Invoice.balance_minor,
                               Deduction.id, Deduction.amount_minor)
                        .join(Invoice, Invoice.id == Deduction.invoice_id).where(*held)).all()
    credited = credited_minor(session, [r[3] for r in rows]) if rows else {}
    per_invoice: dict[int, tuple[str, int, int, int]] = {}
    for invoice_id, cur, balance, did, amount in rows:
        _, _, n, left = per_invoice.get(invoice_id, (cur, balance, 0, 0))
        per_invoice[invoice_id] = (cur, balance, n + 1, left + amount - credited.get(did, 0))
    out: dict[str, tuple[int, int]] = {}
    for cur, balance, n, left in per_invoice.values():
        count, total = out.get(cur, (0, 0))
        out[cur] = (count + n, total + min(left, balance))
    return out
