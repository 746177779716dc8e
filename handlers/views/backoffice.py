"""Back-office modal submissions (issue 14): open a dispute, accept / reject / reassign one,
request a credit note or a write-off, waive a late fee.

Each submission is taken once whatever the replays: its view id is claimed in the same
transaction as what it creates (`workflows.receipts`); a replay closes the modal again and
does nothing. Bad input is shown on its field (`response_action: errors`); a refusal (role,
segregation of duties) or a decision someone else took first closes the modal and is
explained to the user (refusals are audited by `handlers.common.transaction`).
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.backoffice import read_meta
from blocks.text import esc, fmt_money
from handlers.common import Malformed, form_value, metadata_id, now_of, transaction
from models import WriteOff
from workflows import credit_notes, deductions, disputes, receipts, write_offs
from workflows.errors import DomainError, ValidationFailed

log = logging.getLogger("o2c.handlers.backoffice")


def _text(view: dict, block_id: str, action_id: str) -> str | None:
    return (form_value(view, block_id, action_id).get("value") or "").strip() or None


def _selected(view: dict, block_id: str, action_id: str) -> str | None:
    option = form_value(view, block_id, action_id).get("selected_option") or {}
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) and value else None


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


def _submit(ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, *,
            kind: str, fields: dict[str, str], default_block: str, work) -> None:  # noqa: ANN001
    """Claim the view, run `work(session, user_id, meta) -> text`, then answer: field errors
    inline, other refusals and conflicts after closing the modal."""
    user_id = body["user"]["id"]
    meta = read_meta(view)
    try:
        with transaction(context) as session:
            receipts.claim(session, key=receipts.submission_key(view["id"]), kind=kind,
                           actor=user_id)
            text = work(session, user_id, meta)
    except receipts.AlreadyHandled:
        ack()  # a replay: the modal closes as it did the first time
        return
    except ValidationFailed as error:
        found = {fields[e.field]: e.detail for e in error.errors if e.field in fields}
        ack(response_action="errors", errors=found or {default_block: error.detail})
        return
    except DomainError as error:
        ack()
        _tell(client, meta, user_id, f":no_entry_sign: {esc(error.detail)}")
        return
    ack()
    _tell(client, meta, user_id, text)


def on_dispute_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                      context: BoltContext) -> None:
    reason = _selected(view, ids.DISPUTE_REASON_BLOCK, ids.DISPUTE_REASON) or ""
    amount = _text(view, ids.DISPUTE_AMOUNT_BLOCK, ids.DISPUTE_AMOUNT)
    note = _text(view, ids.DISPUTE_NOTE_BLOCK, ids.DISPUTE_NOTE)
    meta = read_meta(view)
    number = meta.get("invoice") or _selected(view, ids.DISPUTE_INVOICE_BLOCK,
                                              ids.DISPUTE_INVOICE)
    default = (ids.DISPUTE_AMOUNT_BLOCK if meta.get("invoice")
               else ids.DISPUTE_INVOICE_BLOCK)
    if not isinstance(number, str) or not number:
        ack(response_action="errors", errors={default: "Pick the invoice in dispute."})
        return

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        now = now_of(context)
        if meta.get("deduction_id") is not None:
            dispute = deductions.open_dispute(session, deduction_id=metadata_id(
                meta, "deduction_id"), reason=reason, note=note, actor=user_id, now=now,
                amount=amount)
        else:
            dispute = disputes.open_dispute(session, disputes.DisputeIn(
                invoice=number, reason=reason, amount=amount, note=note), actor=user_id,
                now=now)
        return (f":scales: Dispute #{dispute.id} opened on {esc(number)} for "
                f"{fmt_money(dispute.amount_minor, dispute.currency)}; it is left out of "
                "dunning until it is resolved.")

    _submit(ack, body, view, client, context, kind="dispute", work=work,
            default_block=default,
            fields={"amount": ids.DISPUTE_AMOUNT_BLOCK, "note": ids.DISPUTE_NOTE_BLOCK,
                    "reason": ids.DISPUTE_REASON_BLOCK, "invoice": ids.DISPUTE_INVOICE_BLOCK})


def on_resolve_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                      context: BoltContext) -> None:
    meta = read_meta(view)
    outcome = meta.get("outcome")
    note = _text(view, ids.RESOLVE_NOTE_BLOCK, ids.RESOLVE_NOTE)
    credit = _text(view, ids.RESOLVE_CREDIT_BLOCK, ids.RESOLVE_CREDIT)
    if outcome not in ("accepted", "rejected"):
        ack(response_action="errors", errors={ids.RESOLVE_NOTE_BLOCK: Malformed().detail})
        return
    if outcome == "rejected" and not note:
        ack(response_action="errors",
            errors={ids.RESOLVE_NOTE_BLOCK: "Say why it is rejected; dunning resumes."})
        return

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        dispute = disputes.resolve(session, dispute_id=metadata_id(meta, "dispute_id"),
                                   outcome=outcome, by=user_id, note=note,
                                   credit_amount=credit if outcome == "accepted" else None,
                                   now=now_of(context))
        if outcome == "rejected":
            return f":no_entry: Dispute #{dispute.id} rejected; dunning resumes."
        return (f":white_check_mark: Dispute #{dispute.id} accepted: a credit note of "
                f"{fmt_money(dispute.credit_amount_minor, dispute.currency)} waits for a "
                "credit approver.")

    credit_block = ids.RESOLVE_CREDIT_BLOCK if outcome == "accepted" else ids.RESOLVE_NOTE_BLOCK
    _submit(ack, body, view, client, context, kind=f"dispute.{outcome}", work=work,
            default_block=credit_block,
            fields={"credit_amount": credit_block, "amount": credit_block,
                    "note": ids.RESOLVE_NOTE_BLOCK, "reason": ids.RESOLVE_NOTE_BLOCK})


def on_reassign_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                       context: BoltContext) -> None:
    to_user = form_value(view, ids.REASSIGN_USER_BLOCK, ids.REASSIGN_USER).get("selected_user")

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        dispute = disputes.reassign(session, dispute_id=metadata_id(meta, "dispute_id"),
                                    to_user=to_user or "", by=user_id, now=now_of(context))
        return f":arrow_right: Dispute #{dispute.id} is now <@{dispute.owner_id}>'s."

    _submit(ack, body, view, client, context, kind="dispute.reassign", work=work,
            default_block=ids.REASSIGN_USER_BLOCK, fields={"owner": ids.REASSIGN_USER_BLOCK})


def _reason_fields(with_amount: bool) -> dict[str, str]:
    found = {"reason": ids.BO_REASON_BLOCK}
    if with_amount:
        found["amount"] = ids.BO_AMOUNT_BLOCK
    return found


def on_credit_note_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                          context: BoltContext) -> None:
    amount = _text(view, ids.BO_AMOUNT_BLOCK, ids.BO_AMOUNT) or ""
    reason = _text(view, ids.BO_REASON_BLOCK, ids.BO_REASON) or ""

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        request, _ = credit_notes.request_credit_note(session, credit_notes.CreditNoteIn(
            invoice=str(meta.get("invoice") or ""), reason=reason, amount=amount,
            source="slack"), actor=user_id, now=now_of(context))
        return (f":receipt: Credit note of {fmt_money(request.amount_minor, request.currency)}"
                " requested; a credit approver decides on the card in the approvals channel.")

    _submit(ack, body, view, client, context, kind="credit_note", work=work,
            default_block=ids.BO_AMOUNT_BLOCK, fields=_reason_fields(True))


def on_write_off_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                        context: BoltContext) -> None:
    amount = _text(view, ids.BO_AMOUNT_BLOCK, ids.BO_AMOUNT)
    reason = _text(view, ids.BO_REASON_BLOCK, ids.BO_REASON) or ""
    with_amount = read_meta(view).get("deduction_id") is None

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        now = now_of(context)
        if meta.get("deduction_id") is not None:
            request = deductions.write_off(session, deduction_id=metadata_id(
                meta, "deduction_id"), reason=reason, actor=user_id, now=now)
        else:
            request = write_offs.request_write_off(
                session, invoice_number=str(meta.get("invoice") or ""), reason=reason,
                actor=user_id, now=now, amount=amount or "")
        return (f":wastebasket: Write-off of {fmt_money(request.amount_minor, request.currency)}"
                " requested; a credit approver decides on the card in the approvals channel.")

    _submit(ack, body, view, client, context, kind="write_off", work=work,
            default_block=ids.BO_AMOUNT_BLOCK if with_amount else ids.BO_REASON_BLOCK,
            fields=_reason_fields(with_amount))


def on_fee_waive_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                        context: BoltContext) -> None:
    reason = _text(view, ids.BO_REASON_BLOCK, ids.BO_REASON) or ""

    def work(session, user_id: str, meta: dict) -> str:  # noqa: ANN001
        done = write_offs.waive_fee(session, invoice_number=str(meta.get("invoice") or ""),
                                    reason=reason, actor=user_id, now=now_of(context))
        if isinstance(done, WriteOff):
            return f":white_check_mark: Late fee {esc(meta.get('invoice'))} waived."
        return (":hourglass_flowing_sand: Above the waiver threshold: a credit approver "
                "decides on the card in the approvals channel.")

    _submit(ack, body, view, client, context, kind="fee_waiver", work=work,
            default_block=ids.BO_REASON_BLOCK, fields=_reason_fields(False))
