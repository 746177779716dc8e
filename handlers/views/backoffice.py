"""Back-office modal submissions (issue 14): open a dispute, accept / reject / reassign one,
request a credit note or a write-off, waive a late fee.

Each submission acks first (`handlers.views.register`): its ack function (`check_*`) checks
the form with reads only — the fields, the role, segregation of duties, what the record still
allows (`workflows.*.check_*`) — and answers every refusal inline under its field (the form
stays open; a role refusal is audited by `handlers.common.checking`), or closes the modal.
The workflow then runs after the ack, once whatever the replays: the view id is claimed in the
same transaction as what it creates (`workflows.receipts`; a replay does nothing). Its
outcome, or a refusal the checks could not see (someone else decided meanwhile), is told to
the user where the button was (ephemeral) or in a DM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from blocks import ids
from blocks.i18n import Formats
from blocks.text import esc
from handlers.common import (
    Malformed,
    checking,
    describe_error,
    form_value,
    formats_of,
    metadata_id,
    now_of,
    transaction,
    view_metadata,
)
from models import WriteOff
from workflows import credit_notes, deductions, disputes, receipts, write_offs
from workflows.errors import DomainError, ValidationFailed
from workflows.inputs import CreditNoteIn, DisputeOpenIn, build

log = logging.getLogger("o2c.handlers.backoffice")


@dataclass(frozen=True)
class Form:
    """One back-office modal: the receipt kind of its submission, where each named field's
    error goes (`fields`; anything else under `default_block`), the read-only check run in
    the ack and the work run after it (returns what to tell the user, amounts in the user's
    formats)."""

    kind: str
    fields: dict[str, str]
    default_block: str
    check: Callable[[Session, str, dict, dict], None]
    work: Callable[[Session, str, dict, dict, datetime, Formats], str]


def _text(view: dict, block_id: str, action_id: str) -> str | None:
    return (form_value(view, block_id, action_id).get("value") or "").strip() or None


def _selected(view: dict, block_id: str, action_id: str) -> str | None:
    option = form_value(view, block_id, action_id).get("selected_option") or {}
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) and value else None


def _errors(error: DomainError, form: Form) -> dict[str, str]:
    """A refusal as inline errors, each under the field it names (else the default block)."""
    found: dict[str, str] = {}
    for e in error.errors:
        found.setdefault(form.fields.get(e.field, form.default_block), e.detail[:150])
    return found or {form.default_block: error.detail[:150]}


def _check(ack: Ack, body: dict, view: dict, context: BoltContext, form: Form,
           values: dict) -> None:
    """The ack of a submission: the form's check with reads only; a refusal stays in the
    form under its field, anything else closes the modal (the work runs after the ack)."""
    try:
        meta = view_metadata(view)
        with checking(context, in_ack=True) as session:  # a refusal (role) is audited
            form.check(session, body["user"]["id"], meta, values)
    except DomainError as error:
        ack(response_action="errors", errors=_errors(error, form))
        return
    ack()


def _tell(client: WebClient, meta: dict, user_id: str, text: str) -> None:
    """After the modal closed: an ephemeral where the button was, else a DM. Logged, never
    raised (the change, if any, is committed)."""
    channel = meta.get("channel")
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", user_id, exc.response.get("error"))


def _run(body: dict, view: dict, client: WebClient, context: BoltContext, form: Form,
         values: dict) -> None:
    """After the ack: the work, once per submission (the view id is claimed in the same
    transaction); its outcome, or a refusal, told to the user."""
    user_id = body["user"]["id"]
    meta = view_metadata(view)
    fmt = formats_of(context, user_id, client)  # before any transaction
    try:
        with transaction(context) as session:
            receipts.claim(session, key=receipts.submission_key(view["id"]), kind=form.kind,
                           actor=user_id)
            text = form.work(session, user_id, meta, values, now_of(context), fmt)
    except receipts.AlreadyHandled:
        return  # a replay: done once, and the user was told
    except DomainError as error:
        _tell(client, meta, user_id, describe_error(error))
        return
    _tell(client, meta, user_id, text)


# -- open a dispute (an invoice card, a digest or worklist row, a deduction card) ----------------
def _dispute_values(view: dict) -> dict:
    meta = view_metadata(view)
    return {"reason": _selected(view, ids.DISPUTE_REASON_BLOCK, ids.DISPUTE_REASON) or "",
            "amount": _text(view, ids.DISPUTE_AMOUNT_BLOCK, ids.DISPUTE_AMOUNT),
            "note": _text(view, ids.DISPUTE_NOTE_BLOCK, ids.DISPUTE_NOTE),
            "invoice": meta.get("invoice") or _selected(view, ids.DISPUTE_INVOICE_BLOCK,
                                                        ids.DISPUTE_INVOICE)}


def _dispute_form(view: dict) -> Form:
    meta = view_metadata(view)
    return Form(kind="dispute", check=_check_dispute, work=_open_dispute,
                default_block=(ids.DISPUTE_AMOUNT_BLOCK if meta.get("invoice")
                               else ids.DISPUTE_INVOICE_BLOCK),
                fields={"amount": ids.DISPUTE_AMOUNT_BLOCK, "note": ids.DISPUTE_NOTE_BLOCK,
                        "reason": ids.DISPUTE_REASON_BLOCK,
                        "invoice": ids.DISPUTE_INVOICE_BLOCK})


def _dispute_in(values: dict) -> tuple[str, DisputeOpenIn]:
    number = values["invoice"]
    if not isinstance(number, str) or not number:
        raise Malformed("Pick the invoice in dispute.")
    return number, build(DisputeOpenIn, reason=values["reason"] or "",
                         amount=values["amount"] or None, note=values["note"] or None)


def _check_dispute(session: Session, user_id: str, meta: dict, values: dict) -> None:
    number, data = _dispute_in(values)
    if meta.get("deduction_id") is not None:
        deductions.check_open_dispute(session, deduction_id=metadata_id(meta, "deduction_id"),
                                      reason=data.reason, note=data.note, actor=user_id,
                                      amount=data.amount)
    else:
        disputes.check_open(session, number, data, actor=user_id)


def _open_dispute(session: Session, user_id: str, meta: dict, values: dict,
                  now: datetime, fmt: Formats) -> str:
    number, data = _dispute_in(values)
    if meta.get("deduction_id") is not None:
        dispute = deductions.open_dispute(
            session, deduction_id=metadata_id(meta, "deduction_id"), reason=data.reason,
            note=data.note, actor=user_id, now=now, amount=data.amount)
    else:
        dispute = disputes.open_dispute(session, number, data, actor=user_id, now=now)
    return (f":scales: Dispute #{dispute.id} opened on {esc(number)} for "
            f"{fmt.money(dispute.amount_minor, dispute.currency)}; it is left out of "
            "dunning until it is resolved.")


def check_dispute(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    _check(ack, body, view, context, _dispute_form(view), _dispute_values(view))


def open_dispute(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    _run(body, view, client, context, _dispute_form(view), _dispute_values(view))


# -- accept or reject a dispute --------------------------------------------------------------------
def _resolve_values(view: dict) -> dict:
    outcome = view_metadata(view).get("outcome")
    if outcome not in ("accepted", "rejected"):
        raise Malformed()
    return {"outcome": outcome, "note": _text(view, ids.RESOLVE_NOTE_BLOCK, ids.RESOLVE_NOTE),
            "credit": (_text(view, ids.RESOLVE_CREDIT_BLOCK, ids.RESOLVE_CREDIT)
                       if outcome == "accepted" else None)}


def _resolve_form(view: dict) -> Form:
    accepted = view_metadata(view).get("outcome") == "accepted"
    credit_block = ids.RESOLVE_CREDIT_BLOCK if accepted else ids.RESOLVE_NOTE_BLOCK
    return Form(kind=f"dispute.{'accepted' if accepted else 'rejected'}",
                check=_check_resolve, work=_resolve, default_block=credit_block,
                fields={"credit_amount": credit_block, "amount": credit_block,
                        "note": ids.RESOLVE_NOTE_BLOCK, "reason": ids.RESOLVE_NOTE_BLOCK})


def _check_resolve(session: Session, user_id: str, meta: dict, values: dict) -> None:
    disputes.check_resolve(session, dispute_id=metadata_id(meta, "dispute_id"),
                           outcome=values["outcome"], by=user_id, note=values["note"],
                           credit_amount=values["credit"])


def _resolve(session: Session, user_id: str, meta: dict, values: dict, now: datetime,
             fmt: Formats) -> str:
    dispute = disputes.resolve(session, dispute_id=metadata_id(meta, "dispute_id"),
                               outcome=values["outcome"], by=user_id, note=values["note"],
                               credit_amount=values["credit"], now=now)
    if values["outcome"] == "rejected":
        return f":no_entry: Dispute #{dispute.id} rejected; dunning resumes."
    return (f":white_check_mark: Dispute #{dispute.id} accepted: a credit note of "
            f"{fmt.money(dispute.credit_amount_minor, dispute.currency)} waits for a "
            "credit approver.")


def check_resolve(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    form = _resolve_form(view)
    try:
        values = _resolve_values(view)
    except Malformed as error:
        ack(response_action="errors", errors={ids.RESOLVE_NOTE_BLOCK: error.detail[:150]})
        return
    if values["outcome"] == "rejected" and not values["note"]:
        ack(response_action="errors",
            errors={ids.RESOLVE_NOTE_BLOCK: "Say why it is rejected; dunning resumes."})
        return
    _check(ack, body, view, context, form, values)


def resolve_dispute(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    _run(body, view, client, context, _resolve_form(view), _resolve_values(view))


# -- reassign a dispute ----------------------------------------------------------------------------
def _reassign_values(view: dict) -> dict:
    user = form_value(view, ids.REASSIGN_USER_BLOCK, ids.REASSIGN_USER).get("selected_user")
    return {"to_user": user if isinstance(user, str) else ""}


def _check_reassign(session: Session, user_id: str, meta: dict, values: dict) -> None:
    disputes.check_reassign(session, dispute_id=metadata_id(meta, "dispute_id"),
                            to_user=values["to_user"], by=user_id)


def _reassign(session: Session, user_id: str, meta: dict, values: dict, now: datetime,
              fmt: Formats) -> str:
    dispute = disputes.reassign(session, dispute_id=metadata_id(meta, "dispute_id"),
                                to_user=values["to_user"], by=user_id, now=now)
    return f":arrow_right: Dispute #{dispute.id} is now <@{dispute.owner_id}>'s."


REASSIGN = Form(kind="dispute.reassign", check=_check_reassign, work=_reassign,
                default_block=ids.REASSIGN_USER_BLOCK,
                fields={"owner": ids.REASSIGN_USER_BLOCK})


def check_reassign(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    _check(ack, body, view, context, REASSIGN, _reassign_values(view))


def reassign_dispute(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    _run(body, view, client, context, REASSIGN, _reassign_values(view))


# -- credit notes, write-offs, fee waivers ---------------------------------------------------------
def _amount_reason(view: dict) -> dict:
    return {"amount": _text(view, ids.BO_AMOUNT_BLOCK, ids.BO_AMOUNT),
            "reason": _text(view, ids.BO_REASON_BLOCK, ids.BO_REASON) or ""}


def _credit_note_in(meta: dict, values: dict) -> CreditNoteIn:
    if not values["amount"]:
        raise ValidationFailed.of("amount", "Type the amount to credit, tax included.")
    return build(CreditNoteIn, invoice=str(meta.get("invoice") or "-"),
                 reason=values["reason"] or "", amount=values["amount"])


def _check_credit_note(session: Session, user_id: str, meta: dict, values: dict) -> None:
    credit_notes.check_request(session, _credit_note_in(meta, values), actor=user_id,
                               via="slack")


def _request_credit_note(session: Session, user_id: str, meta: dict, values: dict,
                         now: datetime, fmt: Formats) -> str:
    request, _ = credit_notes.request_credit_note(session, _credit_note_in(meta, values),
                                                  actor=user_id, now=now, via="slack")
    return (f":receipt: Credit note of {fmt.money(request.amount_minor, request.currency)}"
            " requested; a credit approver decides on the card in the approvals channel.")


CREDIT_NOTE = Form(kind="credit_note", check=_check_credit_note, work=_request_credit_note,
                   default_block=ids.BO_AMOUNT_BLOCK,
                   fields={"reason": ids.BO_REASON_BLOCK, "amount": ids.BO_AMOUNT_BLOCK})


def check_credit_note(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    _check(ack, body, view, context, CREDIT_NOTE, _amount_reason(view))


def request_credit_note(body: dict, view: dict, client: WebClient, context: BoltContext
                        ) -> None:
    _run(body, view, client, context, CREDIT_NOTE, _amount_reason(view))


def _check_write_off(session: Session, user_id: str, meta: dict, values: dict) -> None:
    if meta.get("deduction_id") is not None:
        deductions.check_write_off(session, deduction_id=metadata_id(meta, "deduction_id"),
                                   reason=values["reason"], actor=user_id)
    else:
        write_offs.check_request(session, invoice_number=str(meta.get("invoice") or ""),
                                 reason=values["reason"], actor=user_id,
                                 amount=values["amount"] or "")


def _request_write_off(session: Session, user_id: str, meta: dict, values: dict,
                       now: datetime, fmt: Formats) -> str:
    if meta.get("deduction_id") is not None:
        request = deductions.write_off(session, deduction_id=metadata_id(meta, "deduction_id"),
                                       reason=values["reason"], actor=user_id, now=now)
    else:
        request = write_offs.request_write_off(
            session, invoice_number=str(meta.get("invoice") or ""), reason=values["reason"],
            actor=user_id, now=now, amount=values["amount"] or "")
    return (f":wastebasket: Write-off of {fmt.money(request.amount_minor, request.currency)}"
            " requested; a credit approver decides on the card in the approvals channel.")


def _write_off_form(view: dict) -> Form:
    by_amount = view_metadata(view).get("deduction_id") is None  # a deduction's is fixed
    fields = {"reason": ids.BO_REASON_BLOCK}
    if by_amount:
        fields["amount"] = ids.BO_AMOUNT_BLOCK
    return Form(kind="write_off", check=_check_write_off, work=_request_write_off,
                default_block=ids.BO_AMOUNT_BLOCK if by_amount else ids.BO_REASON_BLOCK,
                fields=fields)


def check_write_off(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    _check(ack, body, view, context, _write_off_form(view), _amount_reason(view))


def request_write_off(body: dict, view: dict, client: WebClient, context: BoltContext
                      ) -> None:
    _run(body, view, client, context, _write_off_form(view), _amount_reason(view))


def _check_fee_waiver(session: Session, user_id: str, meta: dict, values: dict) -> None:
    write_offs.check_waive(session, invoice_number=str(meta.get("invoice") or ""),
                           reason=values["reason"], actor=user_id)


def _waive_fee(session: Session, user_id: str, meta: dict, values: dict,
               now: datetime, fmt: Formats) -> str:
    done = write_offs.waive_fee(session, invoice_number=str(meta.get("invoice") or ""),
                                reason=values["reason"], actor=user_id, now=now)
    if isinstance(done, WriteOff):
        return f":white_check_mark: Late fee {esc(meta.get('invoice'))} waived."
    return (":hourglass_flowing_sand: Above the waiver threshold: a credit approver "
            "decides on the card in the approvals channel.")


FEE_WAIVER = Form(kind="fee_waiver", check=_check_fee_waiver, work=_waive_fee,
                  default_block=ids.BO_REASON_BLOCK, fields={"reason": ids.BO_REASON_BLOCK})


def check_fee_waiver(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    _check(ack, body, view, context, FEE_WAIVER, _amount_reason(view))


def waive_fee(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    _run(body, view, client, context, FEE_WAIVER, _amount_reason(view))
