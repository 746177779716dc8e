"""Buttons on approval cards: Approve (decides at once), Approve with note… and Reject… (open
a modal; the decision happens on submit, see `handlers.views.approvals`).

Every click acks first, then re-checks on the server who is clicking (role, segregation of
duties) and whether the request is still open. A refused or late click gets an ephemeral
explanation (response_url, `replace_original: false`) and changes nothing; refusals are
audited by `handlers.common.transaction` (`checking` before a modal opens: reads only).
"""

from __future__ import annotations

import logging

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks.approvals import already_decided, approve_note_modal, refusal, reject_modal
from blocks.text import esc
from handlers.common import (
    Malformed,
    action_id_value,
    checking,
    now_of,
    open_modal_for,
    transaction,
)
from workflows import approvals
from workflows.errors import AlreadyDecided, DomainError

log = logging.getLogger("o2c.handlers.approvals")


def approval_id_of(body: dict) -> int | None:
    try:
        return action_id_value(body)
    except Malformed:
        return None


def explain(respond: Respond, error: DomainError, body: dict | None = None,
            client: WebClient | None = None) -> None:
    """Tell only the clicking user why nothing happened (in their DM with the bot when the
    click came from the App Home tab, which has no response_url)."""
    if isinstance(error, AlreadyDecided):
        blocks = already_decided(status=error.decision, decided_by=error.decided_by)
    else:
        blocks = refusal(error.detail)
    if body is not None and client is not None and not body.get("response_url"):
        client.chat_postMessage(channel=body["user"]["id"], blocks=blocks,
                                text=esc(error.detail))
        return
    respond(blocks=blocks, text=esc(error.detail), response_type="ephemeral",
            replace_original=False)


def _from_home(body: dict) -> bool:
    return (body.get("view") or {}).get("type") == "home"


def on_approve(body: dict, respond: Respond, client: WebClient,
               context: BoltContext) -> None:
    approval_id = approval_id_of(body)
    if approval_id is None:
        explain(respond, Malformed(), body, client)
        return
    try:
        with transaction(context) as session:
            approvals.decide(session=session, approval_id=approval_id,
                             user_id=body["user"]["id"], approve=True,
                             now=now_of(context))
    except DomainError as error:
        explain(respond, error, body, client)
    if _from_home(body):  # the queue on the Home tab shows what is left
        from handlers.events.app_home import publish_home

        publish_home(client, context, body["user"]["id"])


def _open_decision_modal(body: dict, respond: Respond, client: WebClient,
                         context: BoltContext, *, reject: bool) -> None:
    approval_id = approval_id_of(body)
    if approval_id is None:
        explain(respond, Malformed(), body, client)
        return
    try:
        with checking(context) as session:  # only reads: the trigger_id must not wait for a lock
            approval = approvals.ensure_decidable(session, approval_id=approval_id,
                                                  user_id=body["user"]["id"])
            ctx = approvals.context_of(session, approval)
    except DomainError as error:
        explain(respond, error, body, client)
        return
    summary = ctx["summary"]  # an order or a back-office request
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")
    build = reject_modal if reject else approve_note_modal
    open_modal_for(context, client, body.get("trigger_id"), body["user"]["id"],
                   lambda fmt: build(approval_id=approval_id, channel=channel,
                                     order_number=summary["title"],
                                     customer=summary["customer"],
                                     amount=fmt.money(summary["amount_minor"],
                                                      summary["currency"]),
                                     kind=ctx["kind"]))


def on_reject(body: dict, respond: Respond, client: WebClient,
              context: BoltContext) -> None:
    _open_decision_modal(body, respond, client, context, reject=True)


def on_approve_with_note(body: dict, respond: Respond, client: WebClient,
                         context: BoltContext) -> None:
    _open_decision_modal(body, respond, client, context, reject=False)
