"""Promise-to-pay and log-call modal submissions: validated on the server, field errors shown
inline (`response_action: errors`), the collector role re-checked, the activity recorded.

Each submission is recorded once, whatever the replays (the view id is claimed in the same
transaction, `workflows.receipts`): a replay closes the modal again and records nothing."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.text import esc, fmt_date, fmt_money
from handlers.common import (
    caller,
    form_value,
    metadata_id,
    today_for,
    transaction,
    view_metadata,
)
from workflows import collections, receipts
from workflows.errors import DomainError

log = logging.getLogger("o2c.collections")

PROMISE_FIELDS = {"amount": ids.PROMISE_AMOUNT_BLOCK, "date": ids.PROMISE_DATE_BLOCK,
                  "note": ids.PROMISE_NOTE_BLOCK}


def _errors(exc: DomainError, fields: dict[str, str], default: str) -> dict[str, str]:
    found = {fields[e.field]: e.detail for e in exc.errors if e.field in fields}
    return found or {default: exc.detail}


def _confirm(client: WebClient, meta: dict, user_id: str, text: str) -> None:
    """A courtesy note after the modal closed; the change is already committed, so a Slack
    hiccup here is logged, never raised (raising after ack trips Bolt's ack race)."""
    channel = meta.get("channel")
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("could not confirm to %s: %s", user_id, exc.response.get("error"))


def on_promise_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                      context: BoltContext) -> None:
    meta = view_metadata(view)
    customer_id = metadata_id(meta, "customer_id")
    amount = form_value(view, ids.PROMISE_AMOUNT_BLOCK, ids.PROMISE_AMOUNT_INPUT).get(
        "value") or ""
    day = form_value(view, ids.PROMISE_DATE_BLOCK, ids.PROMISE_DATE_INPUT).get("selected_date")
    note = form_value(view, ids.PROMISE_NOTE_BLOCK, ids.PROMISE_NOTE_INPUT).get("value")
    user_id = body["user"]["id"]
    user = caller(context, user_id, client=client)
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="promise", actor=user_id)
            promise = collections.create_promise(
                session, customer_id=customer_id, actor=user_id, amount=amount,
                promised_date=day, note=note, as_of=today_for(context, user))
            name = collections.get_customer(session, promise.customer_id).name
            receipts.remember(session, receipt, promise_id=promise.id)
    except receipts.AlreadyHandled:
        ack()  # a replay: the modal closes as it did the first time
        return
    except DomainError as exc:
        ack(response_action="errors",
            errors=_errors(exc, PROMISE_FIELDS, ids.PROMISE_AMOUNT_BLOCK))
        return
    ack()
    _confirm(client, meta, user_id, f":handshake: Promise recorded: {esc(name)} will pay "
             f"{fmt_money(promise.amount_minor, promise.currency)} by "
             f"{fmt_date(promise.promised_date)}.")


def on_call_submit(ack: Ack, body: dict, view: dict, client: WebClient,
                   context: BoltContext) -> None:
    meta = view_metadata(view)
    customer_id = metadata_id(meta, "customer_id")
    note = form_value(view, ids.CALL_NOTE_BLOCK, ids.CALL_NOTE_INPUT).get("value") or ""
    user_id = body["user"]["id"]
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="call", actor=user_id)
            call = collections.log_call(session, customer_id=customer_id, actor=user_id,
                                        note=note)
            name = collections.get_customer(session, customer_id).name
            receipts.remember(session, receipt, activity_id=call.id)
    except receipts.AlreadyHandled:
        ack()  # a replay: the modal closes as it did the first time
        return
    except DomainError as exc:
        ack(response_action="errors",
            errors=_errors(exc, {"note": ids.CALL_NOTE_BLOCK}, ids.CALL_NOTE_BLOCK))
        return
    ack()
    _confirm(client, meta, user_id, f":telephone_receiver: Call with {esc(name)} logged.")


def register(app: App) -> None:
    app.view(ids.PROMISE_MODAL)(on_promise_submit)
    app.view(ids.CALL_MODAL)(on_call_submit)
