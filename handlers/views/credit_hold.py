"""The "Release credit hold" modal: the reason is required and audited with the release.

The ack checks the role and the reason with reads only (inline errors keep the modal open);
the release runs after the ack, once per submission (`workflows.receipts`), and the person
is told where they clicked."""

from __future__ import annotations

import logging

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.approvals import credit_hold_done
from blocks.text import esc
from handlers.common import (
    checking,
    describe_error,
    form_value,
    metadata_id,
    now_of,
    transaction,
    view_metadata,
)
from models import Customer
from workflows import receipts
from workflows.credit_hold import ROLES, set_credit_hold
from workflows.errors import DomainError
from workflows.users import require_role

log = logging.getLogger("o2c.handlers.credit_hold")
REASON_MAX = 2000


def _form(view: dict) -> tuple[int, str]:
    reason = form_value(view, ids.CREDIT_RELEASE_REASON_BLOCK,
                        ids.CREDIT_RELEASE_REASON_INPUT).get("value") or ""
    return metadata_id(view_metadata(view), "customer_id"), reason.strip()


def check_release(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    customer_id, reason = _form(view)
    problem = None
    if not reason:
        problem = "say why the hold is released (it is audited)"
    elif len(reason) > REASON_MAX:
        problem = f"at most {REASON_MAX} characters"
    try:
        with checking(context, in_ack=True) as session:
            require_role(session, user_id=body["user"]["id"], roles=ROLES,
                         action="customer.credit_release", entity_type="customer",
                         entity_id=customer_id)
    except DomainError as error:
        problem = describe_error(error, plain=True)
    if problem:
        ack(response_action="errors", errors={ids.CREDIT_RELEASE_REASON_BLOCK: problem})
        return
    ack()


def release(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    customer_id, reason = _form(view)
    user_id = body["user"]["id"]
    meta = view_metadata(view)
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="credit_release", actor=user_id)
            changed = set_credit_hold(session, customer_id=customer_id, actor=user_id,
                                      on_hold=False, reason=reason, now=now_of(context))
            name = session.get(Customer, customer_id).name
            receipts.remember(session, receipt, changed=changed)
    except receipts.AlreadyHandled:
        return  # a replay: released once
    except DomainError as error:
        _tell(client, meta.get("channel"), user_id, describe_error(error))
        return
    _tell(client, meta.get("channel"), user_id,
          credit_hold_done(name, False, changed) + f" Reason: _{esc(reason)}_")


def _tell(client: WebClient, channel: str | None, user_id: str, text: str) -> None:
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("could not confirm to %s: %s", user_id, exc.response.get("error"))
