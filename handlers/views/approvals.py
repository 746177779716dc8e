"""The reject and approve-with-note modals: the decision is taken on submit, after the ack.

A rejection needs a reason (shown inline if missing, checked before the ack). The modal then
closes and the decision is taken; when it is refused or someone else was first, the user gets
an ephemeral explanation in the channel of the card (or a DM). A modal opened from the App
Home tab (no channel) refreshes that Home after the decision, as a click there does. A replay
of the same submission (same view id, `workflows.receipts`) closes the modal again and
decides nothing more.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.approvals import already_decided, read_metadata, refusal
from blocks.text import esc
from handlers.common import Malformed, form_value, now_of, transaction
from workflows import approvals, receipts
from workflows.errors import AlreadyDecided, DomainError

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


def _check(ack: Ack, view: dict, *, reason_required: bool, block_id: str,
           action_id: str) -> None:
    """The ack of a submission (no database): a rejection needs a reason, a note has a
    maximum length; the decision is taken after the ack (`_decide`)."""
    approval_id, _ = read_metadata(view)
    note = _value(view, block_id, action_id)
    if approval_id is None:
        ack(response_action="errors", errors={block_id: Malformed().detail})
    elif reason_required and not note:
        ack(response_action="errors",
            errors={block_id: "Say why you reject it; the requester will see it."})
    elif len(note) > approvals.NOTE_MAX:
        ack(response_action="errors",
            errors={block_id: f"At most {approvals.NOTE_MAX} characters."})
    else:
        ack()


def _decide(body: dict, view: dict, client: WebClient, context: BoltContext, *,
            approve: bool, block_id: str, action_id: str) -> None:
    """After the ack: the decision, once per submission (the view id is claimed in the same
    transaction). A refusal, or someone deciding first, is explained to the user."""
    user_id = body["user"]["id"]
    approval_id, channel = read_metadata(view)
    try:
        with transaction(context) as session:
            receipts.claim(session, key=receipts.submission_key(view["id"]),
                           kind="approval.approve" if approve else "approval.reject",
                           actor=user_id)
            approvals.decide(session=session, approval_id=approval_id, user_id=user_id,
                             approve=approve, note=_value(view, block_id, action_id) or None,
                             now=now_of(context))
    except receipts.AlreadyHandled:
        return  # a replay: the decision was taken once
    except DomainError as error:
        _tell(client, user_id, channel, error)
    if channel is None:  # opened from the App Home tab (a card has its channel): show what is left
        from handlers.events.app_home import publish_home

        publish_home(client, context, user_id)


def check_reject(ack: Ack, view: dict) -> None:
    _check(ack, view, reason_required=True, block_id=ids.REJECT_REASON_BLOCK,
           action_id=ids.REJECT_REASON_INPUT)


def reject(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    _decide(body, view, client, context, approve=False, block_id=ids.REJECT_REASON_BLOCK,
            action_id=ids.REJECT_REASON_INPUT)


def check_approve_with_note(ack: Ack, view: dict) -> None:
    _check(ack, view, reason_required=False, block_id=ids.APPROVE_NOTE_BLOCK,
           action_id=ids.APPROVE_NOTE_INPUT)


def approve_with_note(body: dict, view: dict, client: WebClient, context: BoltContext
                      ) -> None:
    _decide(body, view, client, context, approve=True, block_id=ids.APPROVE_NOTE_BLOCK,
            action_id=ids.APPROVE_NOTE_INPUT)
