"""Write-offs decided by people (SPEC §3 "Back office"): bad debt, accepted deductions and late
fees waived, plus the small balances the dunning job writes off by itself.

* **Bad debt / a deduction**: a collector or credit approver asks (`request_write_off`) with a
  reason; a credit approver (never the requester) decides on an approval card
  (`workflows.approvals`, kind `write_off`, tiers apply). Approved, it is executed once: the
  request's `write_off_id` is unique, and the write-off itself is a conditional UPDATE of the
  balance (`cash_application.write_off`). What was settled meanwhile is not written off: the
  write-off is the smaller of the request and what is still open (nothing left: the request
  ends `nothing_left`).
* **A late fee waived** (`waive_fee`): a collector waives a fee invoice's open balance at once
  when it is at or under `fee_waiver_approval` (50.00 in the home currency; a fee in another
  currency always asks, the bot holding no exchange rates), else it becomes an approval
  (kind `fee_waiver`). Audited either way.
* **Small balances** (`write_off_small_balances`, by the dunning job): what is left of an
  invoice that was partly settled, at or under `small_balance_write_off` (1.00) in the
  invoice's currency and not in dispute, is written off as `small_balance` (actor "system").
  Set the policy to 0 to turn it off.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    ApprovalKind,
    Customer,
    Invoice,
    Role,
    WriteOff,
    WriteOffKind,
    WriteOffReason,
    WriteOffRequest,
    WriteOffRequestStatus,
    money,
)
from workflows import approvals, audit, policy
from workflows import validation as v
from workflows.errors import Conflict, OverallocationError, ValidationFailed
from workflows.invoicing import get_invoice, lock_invoice
from workflows.users import require_role

REASON_MAX = 500
REQUESTER_ROLES = (Role.COLLECTOR, Role.CREDIT_APPROVER)
WAIVER_ROLES = (Role.COLLECTOR,)
REASON_OF_KIND = {WriteOffKind.BAD_DEBT: WriteOffReason.BAD_DEBT,
                  WriteOffKind.DEDUCTION: WriteOffReason.DEDUCTION,
                  WriteOffKind.FEE_WAIVER: WriteOffReason.FEE_WAIVED}
APPROVAL_OF_KIND = {WriteOffKind.BAD_DEBT: ApprovalKind.WRITE_OFF,
                    WriteOffKind.DEDUCTION: ApprovalKind.WRITE_OFF,
                    WriteOffKind.FEE_WAIVER: ApprovalKind.FEE_WAIVER}


def _reason(value: str | None) -> str:
    text = (v.text("reason", value) or "").strip()
    if not text:
        raise ValidationFailed.of("reason", "say why it is written off")
    if len(text) > REASON_MAX:
        raise ValidationFailed.of("reason", f"at most {REASON_MAX} characters")
    return text


def pending_minor(session: Session, invoice_id: int) -> int:
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(
        WriteOffRequest.amount_minor), 0)).where(
        WriteOffRequest.invoice_id == invoice_id,
        WriteOffRequest.status == WriteOffRequestStatus.PENDING)).one())


def credit_waiting(session: Session, invoice_id: int) -> int:
    """What the invoice's credit notes waiting for approval will take off it: they come
    before a write-off (a credit is what the customer is owed, a write-off our loss), so a
    write-off never takes what they will credit — else the credit note, approved after it,
    finds nothing left and the amount stays bad debt."""
    from workflows.credit_notes import waiting_minor

    return waiting_minor(session, invoice_id)


def open_to_write_off(session: Session, invoice: Invoice) -> int:
    """What of the invoice's balance a write-off (or a waiver) may take: not what write-off
    requests waiting already ask for (`pending_minor`), nor what credit notes waiting will
    credit (`credit_waiting`)."""
    return (invoice.balance_minor - pending_minor(session, invoice.id)
            - credit_waiting(session, invoice.id))


def approved_or_waiting(session: Session, invoice_id: int, kind: str) -> int:
    """The invoice's requests decided by the same kind of approval as `kind`, waiting or
    written off. An approval tier compares this with its amount, so a write-off split into
    requests each under the tier is still above it."""
    kinds = [k for k, approval in APPROVAL_OF_KIND.items()
             if approval == APPROVAL_OF_KIND[WriteOffKind(kind)]]
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(
        WriteOffRequest.amount_minor), 0)).where(
        WriteOffRequest.invoice_id == invoice_id, WriteOffRequest.kind.in_(kinds),
        WriteOffRequest.status.in_((WriteOffRequestStatus.PENDING,
                                    WriteOffRequestStatus.WRITTEN_OFF)))).one())


def _requester_roles(kind: str) -> tuple[str, ...]:
    return WAIVER_ROLES if kind == WriteOffKind.FEE_WAIVER else REQUESTER_ROLES


def _amount_to_write_off(session: Session, invoice: Invoice, amount: str | None,
                         amount_minor: int | None) -> int:
    """The request's amount: `amount` (or `amount_minor`), default what is open and not
    already asked for (in write-offs, or in credit notes waiting: `credit_waiting`), never
    more than that."""
    left = open_to_write_off(session, invoice)
    if amount_minor is None:
        amount_minor = (v.amount_minor("amount", amount, invoice.currency, positive=True)
                        if amount not in (None, "") else left)
    if left <= 0:
        raise Conflict(f"{invoice.number} has nothing open to write off (or it is all in "
                       "write-off or credit-note requests already)")
    if amount_minor > left:
        raise ValidationFailed.of("amount", "at most what is open and not already asked for, "
                                  f"{money.to_str(left, invoice.currency)}")
    return amount_minor


def check_request(session: Session, *, invoice_number: str, reason: str, actor: str,
                  amount: str | None = None, kind: str = WriteOffKind.BAD_DEBT) -> None:
    """What `request_write_off` would refuse, found with reads only (the role, the reason,
    the invoice and the amount): a modal runs it before its ack, so each refusal shows under
    its field; the request checks it all again with the invoice locked."""
    require_role(session, user_id=actor, roles=_requester_roles(kind),
                 action="write_off.request", entity_type="invoice",
                 entity_id=invoice_number[:64])
    _reason(reason)
    _amount_to_write_off(session, get_invoice(session, invoice_number), amount, None)


def request_write_off(session: Session, *, invoice_number: str, reason: str, actor: str,
                      now: datetime, amount: str | None = None,
                      kind: str = WriteOffKind.BAD_DEBT, deduction_id: int | None = None,
                      amount_minor: int | None = None) -> WriteOffRequest:
    """Ask for a write-off of (part of) an invoice's open balance; an approval card follows."""
    require_role(session, user_id=actor, roles=_requester_roles(kind),
                 action="write_off.request", entity_type="invoice",
                 entity_id=invoice_number[:64])
    text = _reason(reason)
    invoice = lock_invoice(session, get_invoice(session, invoice_number).id)
    amount_minor = _amount_to_write_off(session, invoice, amount, amount_minor)
    request = WriteOffRequest(invoice_id=invoice.id, customer_id=invoice.customer_id,
                              currency=invoice.currency, amount_minor=amount_minor, kind=kind,
                              reason=text, requested_by=actor, deduction_id=deduction_id,
                              created_at=now)
    session.add(request)
    session.flush()
    audit.record(session, actor=actor, action="write_off.requested",
                 entity_type="write_off_request", entity_id=request.id,
                 to_state=WriteOffRequestStatus.PENDING, reason=text, invoice=invoice.number,
                 amount_minor=amount_minor, currency=invoice.currency, kind=kind, at=now)
    approval = approvals.request_subject_approval(
        session, kind=APPROVAL_OF_KIND[WriteOffKind(kind)], subject_id=request.id,
        amount_minor=amount_minor, currency=invoice.currency, requested_by=actor, now=now,
        reasons=[{"code": kind, "text": text}],
        tier_amount_minor=approved_or_waiting(session, invoice.id, kind))  # (this one included)
    request.approval_id = approval.id
    session.add(request)
    return request


def _fee_left(session: Session, invoice: Invoice) -> int:
    """What of a late-fee invoice can be waived: its balance not already in a waiver request,
    nor in a credit note waiting for approval (`credit_waiting`: the credit comes first)."""
    if invoice.fee_for_invoice_id is None:
        raise ValidationFailed.of("invoice", f"{invoice.number} is not a late-fee invoice")
    left = open_to_write_off(session, invoice)
    if left <= 0:
        raise Conflict(f"the fee {invoice.number} has nothing open to waive (paid, waived, "
                       "waiting for a waiver's approval or in a credit note waiting for one)")
    return left


def check_waive(session: Session, *, invoice_number: str, reason: str, actor: str) -> None:
    """What `waive_fee` would refuse, found with reads only (a modal's ack runs it)."""
    require_role(session, user_id=actor, roles=WAIVER_ROLES, action="late_fee.waive",
                 entity_type="invoice", entity_id=invoice_number[:64])
    _reason(reason)
    _fee_left(session, get_invoice(session, invoice_number))


def waive_fee(session: Session, *, invoice_number: str, reason: str, actor: str,
              now: datetime) -> WriteOff | WriteOffRequest:
    """Waive a late fee's open balance: at once up to the threshold, else by approval."""
    require_role(session, user_id=actor, roles=WAIVER_ROLES, action="late_fee.waive",
                 entity_type="invoice", entity_id=invoice_number[:64])
    text = _reason(reason)
    invoice = lock_invoice(session, get_invoice(session, invoice_number).id)
    left = _fee_left(session, invoice)
    rules = policy.current(session)
    limit = Decimal(rules.fee_waiver_approval)
    if invoice.currency == rules.home_currency and money.from_minor(
            left, invoice.currency) <= limit:
        from workflows.cash_application import write_off

        row = write_off(session, invoice=invoice, amount_minor=left,
                        reason=WriteOffReason.FEE_WAIVED, actor=actor, now=now,
                        effective_date=_effective(session, invoice, now))
        audit.record(session, actor=actor, action="late_fee.waived", entity_type="invoice",
                     entity_id=invoice.id, reason=text, amount_minor=left,
                     currency=invoice.currency, at=now)
        return row
    return request_write_off(session, invoice_number=invoice.number, reason=text,
                             actor=actor, now=now, kind=WriteOffKind.FEE_WAIVER,
                             amount_minor=left)


def withdraw_fees(session: Session, numbers: list[str], *, now: datetime) -> list[str]:
    """Late fees no e-mail named after all (`dunning.fees_unnamed`: the dunning e-mail naming
    them was withdrawn, or left their invoice out, paid or put in dispute before it went) are
    waived by the system — a fee is charged with the e-mail that names it — for what of them
    is open (not already paid, waived, or in a waiver or credit note waiting). Audited
    (`late_fee.withdrawn`). Returns the fee invoices waived now; a second call waives
    nothing more."""
    from workflows.cash_application import write_off

    waived = []
    for number in numbers:
        found = session.exec(select(Invoice.id).where(Invoice.number == number)).first()
        if found is None:
            continue
        invoice = lock_invoice(session, found)
        if invoice.fee_for_invoice_id is None:
            continue
        left = open_to_write_off(session, invoice)
        if left <= 0:
            continue
        write_off(session, invoice=invoice, amount_minor=left,
                  reason=WriteOffReason.FEE_WAIVED, actor="system", now=now,
                  effective_date=_effective(session, invoice, now))
        original = session.get(Invoice, invoice.fee_for_invoice_id)
        audit.record(session, actor="system", action="late_fee.withdrawn",
                     entity_type="invoice", entity_id=invoice.id,
                     reason=f"the dunning e-mail naming it did not go: {original.number} was "
                            "paid or put in dispute before it went",
                     amount_minor=left, currency=invoice.currency, at=now)
        waived.append(invoice.number)
    return waived


def _effective(session: Session, invoice: Invoice, now: datetime) -> date:
    """Today (business date), but never before the invoice was issued."""
    return max(policy.business_date(session, now), invoice.issue_date)


# -- the approval's subject (workflows.approvals) -------------------------------------------------
def _approved(session: Session, approval, request: WriteOffRequest, user_id: str,
              now: datetime) -> None:
    from workflows.cash_application import write_off

    invoice = lock_invoice(session, request.invoice_id)
    request.decided_by, request.decided_at = user_id, now
    amount = min(request.amount_minor,
                 invoice.balance_minor - credit_waiting(session, invoice.id))
    if amount <= 0:
        request.status = WriteOffRequestStatus.NOTHING_LEFT
        session.add(request)
        audit.record(session, actor=user_id, action="write_off.nothing_left",
                     entity_type="write_off_request", entity_id=request.id,
                     from_state=WriteOffRequestStatus.PENDING,
                     to_state=WriteOffRequestStatus.NOTHING_LEFT, at=now,
                     reason=f"{invoice.number} was settled meanwhile (or what is open is "
                            "in credit notes waiting for approval)")
    else:
        row = write_off(session, invoice=invoice, amount_minor=amount,
                        reason=REASON_OF_KIND[WriteOffKind(request.kind)], actor=user_id,
                        now=now, effective_date=_effective(session, invoice, now))
        request.write_off_id = row.id
        request.status = WriteOffRequestStatus.WRITTEN_OFF
        session.add(request)
        session.flush()  # the unique write_off_id: executed once
    if request.deduction_id is not None:
        from workflows import deductions

        # nothing left: the customer paid (or it was credited) meanwhile, nothing written off
        deductions.settle(session, request.deduction_id, by=user_id, now=now,
                          resolution="written_off" if request.write_off_id else "settled")


def _rejected(session: Session, approval, request: WriteOffRequest, user_id: str,
              now: datetime, note: str | None) -> None:
    request.status = WriteOffRequestStatus.REJECTED
    request.decided_by, request.decided_at, request.decision_note = user_id, now, note
    session.add(request)
    if request.deduction_id is not None:
        from workflows import deductions

        deductions.reopen(session, request.deduction_id, now=now, why="write-off rejected")


def card_view(session: Session, approval, request: WriteOffRequest) -> dict:
    invoice = session.get(Invoice, request.invoice_id)
    customer = session.get(Customer, request.customer_id)
    titles = {WriteOffKind.BAD_DEBT: f"Bad-debt write-off of {invoice.number}",
              WriteOffKind.DEDUCTION: f"Deduction write-off on {invoice.number}",
              WriteOffKind.FEE_WAIVER: f"Waive late fee {invoice.number}"}
    written = session.get(WriteOff, request.write_off_id) if request.write_off_id else None
    return {"title": titles.get(request.kind, f"Write-off of {invoice.number}"),
            "customer": customer.name, "customer_id": customer.id, "invoice": invoice.number,
            "invoice_total_minor": invoice.total_minor,
            "invoice_balance_minor": invoice.balance_minor,
            "due_date": invoice.due_date.isoformat(), "amount_minor": request.amount_minor,
            "currency": request.currency, "reason": request.reason, "kind": request.kind,
            "status": request.status, "deduction_id": request.deduction_id,
            "written_off_minor": written.amount_minor if written is not None else None}


WRITE_OFF_APPROVAL = approvals.Subject(
    kind=ApprovalKind.WRITE_OFF, model=WriteOffRequest, context=card_view, approved=_approved,
    rejected=_rejected, pending=lambda r: r.status == WriteOffRequestStatus.PENDING)
FEE_WAIVER_APPROVAL = approvals.Subject(
    kind=ApprovalKind.FEE_WAIVER, model=WriteOffRequest, context=card_view, approved=_approved,
    rejected=_rejected, pending=lambda r: r.status == WriteOffRequestStatus.PENDING)


# -- small balances (the dunning job) -------------------------------------------------------------
def threshold_minor(session: Session, currency: str) -> int:
    """The small-balance threshold in the currency's minor units (0: off): the most minor
    units at or under it, so rounded down — 1.005 is 1.00 in USD (1.01 is above it), 0.50
    is no yen at all (1 yen is above it)."""
    amount = Decimal(policy.current(session).small_balance_write_off)
    if amount <= 0:
        return 0
    return int(amount.scaleb(money.exponent(currency)).to_integral_value(rounding=ROUND_FLOOR))


def write_off_small_balances(session: Session, *, as_of: date, now: datetime,
                             limit: int = 200) -> list[str]:
    """Write off leftovers at or under the threshold (module docstring); the invoice numbers.
    Once: the balance reaches zero."""
    done = []
    currencies = session.exec(select(Invoice.currency).where(Invoice.balance_minor > 0)
                              .distinct()).all()
    today = policy.business_date(session, now)
    for currency in sorted(currencies):
        small = threshold_minor(session, currency)
        if small <= 0:
            continue
        candidates = session.exec(
            select(Invoice).where(Invoice.currency == currency, Invoice.balance_minor > 0,
                                  Invoice.balance_minor <= small,
                                  Invoice.balance_minor < Invoice.total_minor,
                                  Invoice.disputed_minor == 0)
            .order_by(Invoice.id).limit(limit)).all()
        for invoice in candidates:
            from workflows.cash_application import write_off

            left = invoice.balance_minor
            if pending_minor(session, invoice.id) or credit_waiting(session, invoice.id):
                continue  # a person asked for a write-off or a credit already: theirs decides
            day = min(max(as_of, invoice.issue_date), today)
            if day < invoice.issue_date:
                continue
            try:
                with session.begin_nested():  # another process wrote it off first: skip
                    write_off(session, invoice=invoice, amount_minor=left,
                              reason=WriteOffReason.SMALL_BALANCE, actor="system", now=now,
                              effective_date=day)
            except OverallocationError:
                continue
            done.append(invoice.number)
    return done
