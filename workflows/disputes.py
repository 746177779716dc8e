"""Disputes (SPEC §3 "Back office"): a customer contests an invoice's amount.

* **Opened** on an invoice — for its open balance or an amount up to it — with a reason code
  (`pricing`, `quantity`, `damaged`, `not_received`, `duplicate`, `tax`, `other`) and a note:
  from Slack (the invoice card, a digest or worklist row, a deduction card) or the API. One
  open dispute per invoice (a unique index).
* **Held**: while it is open, its amount is left out of dunning (an invoice whose whole balance
  is held gets no dunning e-mail), collector priority and the overdue figures, and shows as
  "in dispute" in aging. `invoices.disputed_minor` = min(what the invoice's disputes hold,
  its balance): set here, and lowered with the balance by `invoicing.reduce_balance`.
* **Owner**: the customer's sales rep, or the `O2C_DISPUTES_CHANNEL` when one is set (else,
  with no rep, the AR channel). The owner gets a card: Accept (a credit-note request for up to
  the disputed amount, approved by a credit approver like any other) · Reject (a reason is
  required; dunning resumes) · Reassign. Reminders after `dispute_reminder_days` working days
  (2), escalation to the alerts channel after `dispute_escalation_days` (5).
* **Accepted**: the credit asked for stays held until its credit note is issued (the invoice's
  balance falls) or rejected (dunning resumes); then nothing is held (`released_at`).

Exactly once: a resolution is a conditional UPDATE of the open dispute (`status = 'open'`);
a double click, a retry or a second resolver is told who resolved it. Whoever may resolve:
the owner, a collector or a credit approver (admins hold every role); the refusal is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    AuditEvent,
    CreditNote,
    CreditNoteRequest,
    Customer,
    Deduction,
    Dispute,
    DisputeReason,
    DisputeStatus,
    Invoice,
    Role,
    money,
)
from workflows import audit, outbox, payment_links, policy, webhooks
from workflows import validation as v
from workflows.errors import (
    AlreadyDecided,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.inputs import CreditNoteIn, DisputeOpenIn
from workflows.invoicing import get_invoice, lock_invoice
from workflows.users import has_role, require_role
from workflows.workcalendar import Holidays, working_days_between, zone_or_utc

NOTE_MAX = 2000
REASONS = tuple(r.value for r in DisputeReason)
OPENER_ROLES = (Role.COLLECTOR, Role.SALES, Role.CREDIT_APPROVER)
RESOLVER_ROLES = (Role.COLLECTOR, Role.CREDIT_APPROVER)  # besides the owner
OWNER_ROLES = (Role.SALES, *RESOLVER_ROLES)  # who may own a dispute (and act on it as owner)
OUTCOMES = tuple(s.value for s in (DisputeStatus.ACCEPTED, DisputeStatus.REJECTED,
                                   DisputeStatus.WITHDRAWN))


def _is_slack_user(user_id: str | None) -> bool:
    return bool(user_id) and v.SLACK_USER_ID.match(user_id) is not None


def _note(value: str | None, field: str = "note") -> str | None:
    text = (v.text(field, value) or "").strip() or None
    if text and len(text) > NOTE_MAX:
        raise ValidationFailed.of(field, f"at most {NOTE_MAX} characters")
    return text


def _lock(session: Session, dispute_id: int) -> Dispute:
    dispute = session.exec(select(Dispute).where(Dispute.id == dispute_id).with_for_update()
                           .execution_options(populate_existing=True)).first()
    if dispute is None:
        raise NotFound(f"no dispute #{dispute_id}")
    return dispute


def refresh_invoice(session: Session, invoice: Invoice) -> None:
    """`disputed_minor` = min(what the invoice's disputes hold, its balance); the flag with it.
    The caller holds the invoice row."""
    held = int(session.exec(select(sa.func.coalesce(sa.func.sum(Dispute.held_minor), 0))
                            .where(Dispute.invoice_id == invoice.id)).one())
    invoice.disputed_minor = min(held, invoice.balance_minor)
    invoice.disputed = invoice.disputed_minor > 0
    session.add(invoice)
    session.flush()
    payment_links.balance_changed(session, invoice)  # its "Pay now" asks for the rest


def undisputed_open(invoice: Invoice) -> int:
    return max(invoice.balance_minor - invoice.disputed_minor, 0)


# -- opening --------------------------------------------------------------------------------------
def _opener(session: Session, number: str, data: DisputeOpenIn, actor: str) -> str:
    """Who opens it: the Slack user acting (their role is checked), or "api" (then
    `data.opened_by`, when given, is who stands behind it)."""
    if _is_slack_user(actor):
        require_role(session, user_id=actor, roles=OPENER_ROLES, action="dispute.open",
                     entity_type="invoice", entity_id=(number or "-")[:64])
        return actor
    if data.opened_by:
        if not _is_slack_user(data.opened_by):
            raise ValidationFailed.of("opened_by", "must be a Slack user id such as "
                                      "U012AB3CD")
        return data.opened_by
    return actor


def _reason(data: DisputeOpenIn) -> str:
    reason = (data.reason or "").strip().lower()
    if reason not in REASONS:
        raise ValidationFailed.of("reason", f"one of {', '.join(REASONS)}")
    return reason


def _amount_to_hold(session: Session, invoice: Invoice, data: DisputeOpenIn) -> int:
    """What the new dispute holds: `data.amount`, or what is open and not yet in dispute."""
    if invoice.balance_minor == 0:
        raise Conflict(f"{invoice.number} has nothing open to dispute")
    current = session.exec(select(Dispute).where(Dispute.invoice_id == invoice.id,
                                                 Dispute.status == DisputeStatus.OPEN)).first()
    if current is not None:
        raise Conflict(f"{invoice.number} already has an open dispute (#{current.id}, "
                       f"{money.format_money(current.amount_minor, invoice.currency)}); "
                       "resolve it first")
    left = undisputed_open(invoice)
    amount = (v.amount_minor("amount", data.amount, invoice.currency, positive=True)
              if data.amount not in (None, "") else left)
    if amount <= 0:
        raise Conflict(f"the whole balance of {invoice.number} is already held in dispute")
    if amount > left:
        raise ValidationFailed.of("amount", f"at most the open balance not already in dispute,"
                                  f" {money.to_str(left, invoice.currency)}")
    return amount


def check_open(session: Session, number: str, data: DisputeOpenIn, *, actor: str) -> None:
    """What `open_dispute` would refuse, found with reads only (the role, the reason, the
    note, the invoice and the amount): a modal runs it before its ack, so each refusal shows
    under its field; opening checks it all again with the invoice locked."""
    _opener(session, number, data, actor)
    _reason(data)
    _note(data.note)
    _amount_to_hold(session, get_invoice(session, number), data)


def open_dispute(session: Session, number: str, data: DisputeOpenIn, *, actor: str,
                 now: datetime, source: str = "slack", deduction_id: int | None = None,
                 external_id: str | None = None) -> Dispute:
    """Open a dispute on invoice `number` (see the module docstring). `actor`: the Slack user
    (role checked) or "api" (then `data.opened_by`, when given, is who stands behind it)."""
    opened_by = _opener(session, number, data, actor)
    reason = _reason(data)
    note = _note(data.note)
    invoice = lock_invoice(session, get_invoice(session, number).id)
    amount = _amount_to_hold(session, invoice, data)
    customer = session.get(Customer, invoice.customer_id)
    channel = policy.current(session).disputes_channel.strip()
    owner = None if channel else customer.sales_rep_id
    dispute = Dispute(invoice_id=invoice.id, customer_id=customer.id,
                      currency=invoice.currency, amount_minor=amount, held_minor=amount,
                      reason=reason, note=note, source=source, opened_by=opened_by,
                      opened_at=now, owner_id=owner,
                      owner_channel=channel or (None if owner else "ar"),
                      deduction_id=deduction_id, external_id=external_id, created_at=now)
    try:
        with session.begin_nested():  # a concurrent twin on the same invoice: one wins
            session.add(dispute)
            session.flush()
    except IntegrityError:
        raise Conflict(f"{invoice.number} already has an open dispute; resolve it first"
                       ) from None
    refresh_invoice(session, invoice)
    audit.record(session, actor=actor, action="dispute.opened", entity_type="dispute",
                 entity_id=dispute.id, to_state=DisputeStatus.OPEN, reason=note,
                 invoice=invoice.number, amount_minor=amount, currency=invoice.currency,
                 code=reason, source=source, opened_by=opened_by, owner=owner or channel,
                 at=now)
    dispute.card_outbox_id = _post_card(session, dispute).id
    session.add(dispute)
    webhooks.emit(session, "dispute.opened",
                  lambda: webhooks.dispute_data(session, dispute, invoice),
                  key=f"dispute.opened:{dispute.id}", at=now)
    return dispute


def _post_card(session: Session, dispute: Dispute, *, dedupe_key: str | None = None,
               reminder: int | None = None):
    context = card_context(session, dispute, reminder=reminder)
    if dispute.owner_id:
        return outbox.post_to_user(session, user_id=dispute.owner_id, template="dispute_card",
                                   context=context, dedupe_key=dedupe_key)
    return outbox.post_to_channel(session, channel=dispute.owner_channel or "ar",
                                  template="dispute_card", context=context,
                                  dedupe_key=dedupe_key)


def card_context(session: Session, dispute: Dispute, *, reminder: int | None = None) -> dict:
    """What the owner's card shows (JSON, frozen when written)."""
    invoice = session.get(Invoice, dispute.invoice_id)
    customer = session.get(Customer, dispute.customer_id)
    request = credit_request_of(session, dispute.id)
    note = (session.exec(select(CreditNote).where(CreditNote.request_id == request.id)).first()
            if request is not None else None)
    return {"dispute_id": dispute.id, "status": dispute.status, "reason": dispute.reason,
            "note": dispute.note, "amount_minor": dispute.amount_minor,
            "currency": dispute.currency, "customer": customer.name,
            "invoice": {"number": invoice.number, "total_minor": invoice.total_minor,
                        "balance_minor": invoice.balance_minor,
                        "due_date": invoice.due_date.isoformat()},
            "opened_by": dispute.opened_by, "opened_at": dispute.opened_at.isoformat(),
            "source": dispute.source, "owner_id": dispute.owner_id,
            "owner_channel": dispute.owner_channel, "resolved_by": dispute.resolved_by,
            "resolved_at": dispute.resolved_at.isoformat() if dispute.resolved_at else None,
            "resolution_note": dispute.resolution_note,
            "credit_amount_minor": dispute.credit_amount_minor,
            "credit_status": request.status if request is not None else None,
            "credit_note": note.number if note is not None else None,
            "reminder": reminder}


def _update_card(session: Session, dispute: Dispute) -> None:
    if dispute.card_outbox_id is not None:
        outbox.update_message(session, target_outbox_id=dispute.card_outbox_id,
                              template="dispute_card", context=card_context(session, dispute))


# -- who may act ----------------------------------------------------------------------------------
def may_resolve(session: Session, dispute: Dispute, user_id: str) -> bool:
    """A collector or a credit approver, or the dispute's owner while they hold a role an
    owner is given (`_check_reassign`): an owner whose role was removed — the customer's
    rep of record who left sales, say — decides nothing more (SPEC §5.7)."""
    if has_role(session, user_id, *RESOLVER_ROLES):
        return True
    return user_id == dispute.owner_id and has_role(session, user_id, *OWNER_ROLES)


def check_resolver(session: Session, dispute: Dispute, user_id: str, action: str) -> None:
    if not may_resolve(session, dispute, user_id):
        raise PermissionDenied("Only the dispute's owner, a collector or a credit approver "
                               "can do that. Nothing was changed.", actor=user_id,
                               action=action, entity_type="dispute", entity_id=dispute.id)


def already_resolved(dispute: Dispute) -> AlreadyDecided:
    when = f" at {dispute.resolved_at:%Y-%m-%d %H:%M} UTC" if dispute.resolved_at else ""
    return AlreadyDecided(f"Dispute #{dispute.id} was already {dispute.status} by "
                          f"{dispute.resolved_by or 'someone else'}{when}. Nothing was "
                          "changed.", decided_by=dispute.resolved_by, status=dispute.status)


def ensure_open(session: Session, *, dispute_id: int, user_id: str, action: str) -> Dispute:
    """The checks of `resolve` / `reassign` without acting: before a modal opens, so a refused
    click is explained (and audited) at once."""
    dispute = session.get(Dispute, dispute_id)
    if dispute is None:
        raise NotFound(f"no dispute #{dispute_id}")
    check_resolver(session, dispute, user_id, action)
    if dispute.status != DisputeStatus.OPEN:
        raise already_resolved(dispute)
    return dispute


# -- resolving ------------------------------------------------------------------------------------
def _outcome_and_resolver(outcome: str, by: str) -> str:
    outcome = (outcome or "").strip().lower()
    if outcome not in OUTCOMES:
        raise ValidationFailed.of("outcome", f"one of {', '.join(OUTCOMES)}")
    if not _is_slack_user(by):
        raise ValidationFailed.of("by", "must be the Slack user id of whoever resolves it")
    return outcome


def _resolution(dispute: Dispute, outcome: str, note: str | None,
                credit_amount: str | None) -> tuple[str | None, int | None]:
    """The resolution's note and credit (accepted: `credit_amount`, default the disputed
    amount, at most that)."""
    note = _note(note)
    if outcome == DisputeStatus.REJECTED and not note:
        raise ValidationFailed.of("note", "say why the dispute is rejected; the customer's "
                                  "contact will hear it")
    credit = None
    if outcome == DisputeStatus.ACCEPTED:
        credit = (v.amount_minor("credit_amount", credit_amount, dispute.currency,
                                 positive=True)
                  if credit_amount not in (None, "") else dispute.amount_minor)
        if credit > dispute.amount_minor:
            raise ValidationFailed.of("credit_amount", "at most the disputed amount, "
                                      f"{money.to_str(dispute.amount_minor, dispute.currency)}")
    elif credit_amount not in (None, ""):
        raise ValidationFailed.of("credit_amount", "only an accepted dispute asks for a credit")
    return note, credit


def check_resolve(session: Session, *, dispute_id: int, outcome: str, by: str,
                  note: str | None = None, credit_amount: str | None = None) -> None:
    """What `resolve` would refuse, found with reads only (a modal's ack runs it): the
    resolver, the dispute still open, the note, the credit and what the invoice can still be
    credited."""
    outcome = _outcome_and_resolver(outcome, by)
    dispute = get_dispute(session, dispute_id)
    check_resolver(session, dispute, by, f"dispute.{outcome}")
    if dispute.status != DisputeStatus.OPEN:
        raise already_resolved(dispute)
    _, credit = _resolution(dispute, outcome, note, credit_amount)
    if credit:
        from workflows import credit_notes

        invoice = session.get(Invoice, dispute.invoice_id)
        credit_notes.check_credit_cap(session, invoice, credit, field="credit_amount")


def resolve(session: Session, *, dispute_id: int, outcome: str, by: str, now: datetime,
            note: str | None = None, credit_amount: str | None = None,
            system: bool = False) -> Dispute:
    """Accept (a credit-note request for `credit_amount`, default the disputed amount),
    reject (a reason is required) or withdraw, once. `system`: decided by what a provider
    reported (`by` is it, e.g. "stripe": a chargeback won), not by a person's role."""
    if system:
        outcome = (outcome or "").strip().lower()
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
    else:
        outcome = _outcome_and_resolver(outcome, by)
    dispute = _lock(session, dispute_id)
    if not system:
        check_resolver(session, dispute, by, f"dispute.{outcome}")
    if dispute.status != DisputeStatus.OPEN:
        raise already_resolved(dispute)
    note, credit = _resolution(dispute, outcome, note, credit_amount)
    invoice = lock_invoice(session, dispute.invoice_id)
    table = Dispute.__table__
    taken = session.execute(
        sa.update(table).where(table.c.id == dispute.id, table.c.status == DisputeStatus.OPEN)
        .values(status=outcome, resolved_by=by, resolved_at=now, resolution_note=note,
                credit_amount_minor=credit, held_minor=credit or 0,
                released_at=None if credit else now)).rowcount
    session.refresh(dispute)
    if taken != 1:
        raise already_resolved(dispute)
    audit.record(session, actor=by, action=f"dispute.{outcome}", entity_type="dispute",
                 entity_id=dispute.id, from_state=DisputeStatus.OPEN, to_state=outcome,
                 reason=note, invoice=invoice.number, credit_amount_minor=credit, at=now)
    if credit:
        from workflows import credit_notes

        code = dispute.reason.replace("_", " ")
        request, _ = credit_notes.request_credit_note(session, CreditNoteIn(
            invoice=invoice.number, amount=money.to_str(credit, dispute.currency),
            reason=(f"dispute #{dispute.id} ({code}) accepted"
                    + (f": {note}" if note else ""))[:credit_notes.REASON_MAX]),
            actor=by, now=now, via="dispute", dispute_id=dispute.id)
    refresh_invoice(session, invoice)
    _deduction_follows(session, dispute, now=now, by=by)
    _update_card(session, dispute)
    webhooks.emit(session, "dispute.resolved",
                  lambda: webhooks.dispute_data(session, dispute, invoice),
                  key=f"dispute.resolved:{dispute.id}", at=now)
    _tell_opener(session, dispute)
    return dispute


def credit_request_of(session: Session, dispute_id: int) -> CreditNoteRequest | None:
    return session.exec(select(CreditNoteRequest).where(
        CreditNoteRequest.dispute_id == dispute_id).order_by(CreditNoteRequest.id.desc())
    ).first()


def _release(session: Session, dispute_id: int, *, now: datetime) -> Dispute:
    dispute = _lock(session, dispute_id)
    dispute.held_minor = 0
    dispute.released_at = dispute.released_at or now
    session.add(dispute)
    session.flush()
    refresh_invoice(session, lock_invoice(session, dispute.invoice_id))
    return dispute


def credit_issued(session: Session, dispute_id: int, *, note: CreditNote, now: datetime
                  ) -> None:
    """The accepted dispute's credit note was issued: nothing is held any more."""
    dispute = _release(session, dispute_id, now=now)
    audit.record(session, actor="system", action="dispute.credited", entity_type="dispute",
                 entity_id=dispute.id, reason=f"credit note {note.number} issued", at=now,
                 credit_note=note.number)
    _deduction_follows(session, dispute, now=now, by=note.created_by, credited=note.number)
    _update_card(session, dispute)


def credit_rejected(session: Session, dispute_id: int, *, now: datetime,
                    note: str | None) -> None:
    """The accepted dispute's credit note was rejected: dunning resumes on the amount."""
    dispute = _release(session, dispute_id, now=now)
    audit.record(session, actor="system", action="dispute.credit_rejected",
                 entity_type="dispute", entity_id=dispute.id, reason=note, at=now)
    _deduction_follows(session, dispute, now=now, by="system")
    _update_card(session, dispute)


def _deduction_follows(session: Session, dispute: Dispute, *, now: datetime, by: str,
                       credited: str | None = None) -> None:
    """A dispute opened for a deduction settles it: credited (by the credit note numbered
    `credited`) -> resolved, or open again for what the credit left of it; rejected,
    withdrawn or not credited -> the deduction is open again."""
    if dispute.deduction_id is None:
        return
    from workflows import deductions

    if credited:
        deductions.credited(session, dispute.deduction_id, credit_note=credited, by=by,
                            now=now)
    elif dispute.status != DisputeStatus.ACCEPTED or dispute.held_minor == 0:
        deductions.reopen(session, dispute.deduction_id, now=now,
                          why=f"dispute #{dispute.id} {dispute.status}")


def _tell_opener(session: Session, dispute: Dispute) -> None:
    if _is_slack_user(dispute.opened_by) and dispute.opened_by != dispute.resolved_by:
        outbox.post_to_user(session, user_id=dispute.opened_by, template="dispute_resolved",
                            context=card_context(session, dispute),
                            dedupe_key=f"dispute-resolved:{dispute.id}")


# -- reassigning ----------------------------------------------------------------------------------
def _check_reassign(session: Session, dispute: Dispute, to_user: str, by: str) -> None:
    check_resolver(session, dispute, by, "dispute.reassign")
    if dispute.status != DisputeStatus.OPEN:
        raise already_resolved(dispute)
    if not has_role(session, to_user, *OWNER_ROLES):
        raise ValidationFailed.of("owner", f"<@{to_user}> holds no sales, collector or credit "
                                  "approver role")
    if to_user == dispute.owner_id:
        raise ValidationFailed.of("owner", "already owns it")


def check_reassign(session: Session, *, dispute_id: int, to_user: str, by: str) -> None:
    """What `reassign` would refuse, found with reads only (a modal's ack runs it)."""
    if not _is_slack_user(to_user):
        raise ValidationFailed.of("owner", "pick a person")
    _check_reassign(session, get_dispute(session, dispute_id), to_user, by)


def reassign(session: Session, *, dispute_id: int, to_user: str, by: str, now: datetime
             ) -> Dispute:
    """Give an open dispute to someone else: a fresh card to them, the old one says so."""
    if not _is_slack_user(to_user):
        raise ValidationFailed.of("owner", "pick a person")
    dispute = _lock(session, dispute_id)
    _check_reassign(session, dispute, to_user, by)
    before = dispute.owner_id or dispute.owner_channel
    old_card = dispute.card_outbox_id
    dispute.owner_id, dispute.owner_channel = to_user, None
    dispute.reminders_sent, dispute.last_reminded_at = 0, now
    session.add(dispute)
    session.flush()
    audit.record(session, actor=by, action="dispute.reassigned", entity_type="dispute",
                 entity_id=dispute.id, from_state=str(before)[:32], to_state=to_user, at=now)
    if old_card is not None:
        outbox.update_message(session, target_outbox_id=old_card, template="dispute_card",
                              context={**card_context(session, dispute),
                                       "reassigned_to": to_user})
    dispute.card_outbox_id = _post_card(session, dispute).id
    session.add(dispute)
    return dispute


# -- reminders (`o2c run dispute-reminders`) ------------------------------------------------------
def send_reminders(session: Session, *, now: datetime) -> dict:
    """Nudge the owner of every dispute open `dispute_reminder_days` working days (again
    `dispute_reminder_days` working days after the last reminder, or after it was
    reassigned), and escalate to the alerts channel once after `dispute_escalation_days`.
    Each claimed by a conditional UPDATE, so several processes send each once."""
    rules = policy.current(session)
    tz = zone_or_utc(rules.business_timezone)
    closed = Holidays.of(rules.holidays)
    today = now.astimezone(tz).date()
    table = Dispute.__table__
    reminded, escalated = [], []
    for dispute in session.exec(select(Dispute).where(Dispute.status == DisputeStatus.OPEN)
                                .order_by(Dispute.opened_at, Dispute.id)).all():
        waited = working_days_between(dispute.opened_at.astimezone(tz).date(), today, closed)
        # counted from the last reminder (or reassignment), not from the opening: a job that
        # did not run for days, or a card just given to a new owner, is reminded once, not
        # once an hour until a count from the opening catches up
        since = dispute.last_reminded_at or dispute.opened_at
        if (rules.dispute_reminder_days > 0 and working_days_between(
                since.astimezone(tz).date(), today, closed) >= rules.dispute_reminder_days):
            seen = dispute.reminders_sent
            if session.execute(sa.update(table).where(
                    table.c.id == dispute.id, table.c.status == DisputeStatus.OPEN,
                    table.c.reminders_sent == seen)
                    .values(reminders_sent=seen + 1, last_reminded_at=now)).rowcount == 1:
                session.refresh(dispute)
                _post_card(session, dispute, reminder=seen + 1,
                           dedupe_key=f"dispute-reminder:{dispute.id}:"
                           f"{dispute.owner_id or dispute.owner_channel}:{seen + 1}")
                reminded.append(dispute.id)
        escalate = (rules.dispute_escalation_days > 0 and dispute.escalated_at is None
                    and waited >= rules.dispute_escalation_days)
        if escalate and session.execute(sa.update(table).where(
                table.c.id == dispute.id, table.c.status == DisputeStatus.OPEN,
                table.c.escalated_at.is_(None)).values(escalated_at=now)).rowcount == 1:
            session.refresh(dispute)
            outbox.post_to_channel(session, channel="alerts", template="dispute_escalated",
                                   context={**card_context(session, dispute),
                                            "working_days": waited},
                                   dedupe_key=f"dispute-escalation:{dispute.id}")
            audit.record(session, actor="system", action="dispute.escalated",
                         entity_type="dispute", entity_id=dispute.id, at=now,
                         reason=f"open {waited} working days")
            escalated.append(dispute.id)
    return {"as_of": today.isoformat(), "reminded": reminded, "escalated": escalated}


# -- reading --------------------------------------------------------------------------------------
@dataclass
class DisputeRow:
    dispute: Dispute
    invoice: Invoice
    customer: Customer
    age_days: int


def open_disputes(session: Session, *, now: datetime, limit: int = 30
                  ) -> tuple[list[DisputeRow], int]:
    """Open disputes, oldest first (and how many there are). A dispute's age is in calendar
    days of the books' zone, from the business date it was opened to the business date of
    `now`: opened at 17:00 in Los Angeles (01:00 UTC the day after), it is 0 days old that
    evening and 1 day old the next morning, whoever looks."""
    zone = policy.business_zone(session)
    today = now.astimezone(zone).date()
    rows = session.exec(select(Dispute, Invoice, Customer)
                        .join(Invoice, Invoice.id == Dispute.invoice_id)
                        .join(Customer, Customer.id == Dispute.customer_id)
                        .where(Dispute.status == DisputeStatus.OPEN)
                        .order_by(Dispute.opened_at, Dispute.id).limit(limit)).all()
    total = session.exec(select(sa.func.count()).select_from(Dispute)
                         .where(Dispute.status == DisputeStatus.OPEN)).one()
    return ([DisputeRow(d, i, c, max((today - d.opened_at.astimezone(zone).date()).days, 0))
             for d, i, c in rows], int(total))


def disputes_of(session: Session, invoice_id: int) -> list[Dispute]:
    return list(session.exec(select(Dispute).where(Dispute.invoice_id == invoice_id)
                             .order_by(Dispute.id)))


def get_dispute(session: Session, dispute_id: int) -> Dispute:
    dispute = session.get(Dispute, dispute_id)
    if dispute is None:
        raise NotFound(f"no dispute #{dispute_id}")
    return dispute


def history(session: Session, dispute_id: int) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(
        AuditEvent.entity_type == "dispute", AuditEvent.entity_id == str(dispute_id))
        .order_by(AuditEvent.id)))


def deduction_of(session: Session, dispute: Dispute) -> Deduction | None:
    return session.get(Deduction, dispute.deduction_id) if dispute.deduction_id else None

