"""The reject and approve-with-note modals: the decision is taken on submit.

A rejection needs a reason (shown inline if missing). When the decision is refused or
someone else was first, the modal closes and the user gets an ephemeral explanation in the
channel of the card (or a DM). A replay of the same submission (same view id,
`workflows.receipts`) closes the modal again and says nothing more: the decision was taken once.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.approvals import already_decided, read_metadata, refusal
from blocks.text import esc
from handlers.common import Malformed, form_value, now_of, transaction
from workflows import approvals, receipts
from workflows.errors import AlreadyDecided, DomainError, ValidationFailed

log = logging.getLogger("o2c.handlers.approvals")


def _value(view: dict, block_id: str, action_id: str) -> str:
    return (form_value(view, block_id, action_id).get("value") or "").strip()


def _tell(client: WebClient, user_id: str, channel: str | None, error: DomainError) -> None:
    if isinstance(error, AlreadyDecided):
        blocks = already_decided(status=error.decision, decided_by=error.decided_by)
    else:
        blocks = refusal(error.detail)
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user_id, blocks=blocks,
                                      text=esc(error.detail))
        else:
            client.chat_postMessage(channel=user_id, blocks=blocks, text=esc(error.detail))
    except SlackApiError as exc:
        log.warning("could not explain a refused decision: %s", exc.response.get("error"))


def _submit(ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, *,
            approve: bool, block_id: str, action_id: str) -> None:
    user_id = body["user"]["id"]
    approval_id, channel = read_metadata(view)
    note = _value(view, block_id, action_id)
    if approval_id is None:
        ack(response_action="errors", errors={block_id: Malformed().detail})
        return
    if not approve and not note:
        ack(response_action="errors",
            errors={block_id: "Say why you reject it; the requester will see it."})
        return
    try:
        with transaction(context) as session:
            receipts.claim(session, key=receipts.submission_key(view["id"]),
                           kind="approval.approve" if approve else "approval.reject",
                           actor=user_id)
            approvals.decide(session=session, approval_id=approval_id, user_id=user_id,
                             approve=approve, note=note or None, now=now_of(context))
    except receipts.AlreadyHandled:
        ack()  # a replay: the modal closes as it did the first time
        return
    except ValidationFailed as error:
        ack(response_action="errors", errors={block_id: error.errors[0].detail
                                              if error.errors else error.detail})
        return
    except DomainError as error:
        ack()
        _tell(client, user_id, channel, error)
        return
    ack()


def on_reject_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                     context: BoltContext) -> None:
    _submit(ack, body, view, client, context, approve=False, block_id=ids.REJECT_REASON_BLOCK,
            action_id=ids.REJECT_REASON_INPUT)


def on_approve_note_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                           context: BoltContext) -> None:
    _submit(ack, body, view, client, context, approve=True, block_id=ids.APPROVE_NOTE_BLOCK,
            action_id=ids.APPROVE_NOTE_INPUT)


def register(app: App) -> None:
    app.view(ids.REJECT_MODAL)(on_reject_submit)
    app.view(ids.APPROVE_NOTE_MODAL)(on_approve_note_submit)
