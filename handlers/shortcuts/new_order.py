"""Global shortcut "New order": the order-entry modal, as `/o2c new` opens it (sales reps
and admins; the same check first). No channel: the confirmation comes as a DM."""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks.order_entry import order_modal
from handlers.common import checking, describe_error, open_modal_for, tell_user
from workflows.errors import PermissionDenied
from workflows.order_entry import check_may_enter


def on_shortcut(body: dict, respond: Respond, client: WebClient, context: BoltContext) -> None:
    try:
        with checking(context) as session:
            check_may_enter(session, body["user"]["id"])
    except PermissionDenied as refused:
        tell_user(body, respond, client, describe_error(refused))
        return
    open_modal_for(context, client, body.get("trigger_id"), body["user"]["id"],
                   lambda fmt: order_modal(channel=None, fmt=fmt))
