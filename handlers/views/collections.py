"""Promise-to-pay and log-call modal submissions: checked on the server before the ack (reads
only; field errors shown inline, `response_action: errors`; the collector role re-checked),
then recorded after it.

Each submission is recorded once, whatever the replays (the view id is claimed in the same
transaction, `workflows.receipts`): a replay closes the modal again and records nothing."""

from __future__ import annotations

import logging

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.text import esc
from handlers.common import (
    caller,
    checking,
    describe_error,
    form_value,
    formats_of,
    metadata_id,
    now_of,
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
    """Tell the collector, where the modal was opened from (else in a DM), after the modal
    closed. The change is already committed: a Slack hiccup here is logged, not retried."""
    channel = meta.get("channel")
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("could not confirm to %s: %s", user_id, exc.response.get("error"))


def _promise_form(view: dict) -> tuple[int, str, str | None, str | None]:
    amount = form_value(view, ids.PROMISE_AMOUNT_BLOCK, ids.PROMISE_AMOUNT_INPUT).get(
        "value") or ""
    day = form_value(view, ids.PROMISE_DATE_BLOCK, ids.PROMISE_DATE_INPUT).get("selected_date")
    note = form_value(view, ids.PROMISE_NOTE_BLOCK, ids.PROMISE_NOTE_INPUT).get("value")
    return metadata_id(view_metadata(view), "customer_id"), amount, day, note


def check_promise(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    """The ack of a promise: role, amount, date and note checked with reads only (each error
    under its field); the promise is recorded after the ack (`record_promise`)."""
    customer_id, amount, day, note = _promise_form(view)
    user_id = body["user"]["id"]
    user = caller(context, user_id)
    try:
        with checking(context, in_ack=True) as session:  # a refusal is audited
            collections.check_promise(session, customer_id=customer_id, actor=user_id,
                                      amount=amount, promised_date=day, note=note,
                                      as_of=today_for(context, user))
    except DomainError as exc:
        ack(response_action="errors",
            errors=_errors(exc, PROMISE_FIELDS, ids.PROMISE_AMOUNT_BLOCK))
        return
    ack()


def record_promise(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    """After the ack: the promise, once per submission; the collector is told (or, if it was
    refused meanwhile, told why)."""
    customer_id, amount, day, note = _promise_form(view)
    user_id = body["user"]["id"]
    user = caller(context, user_id)
    fmt = formats_of(context, user_id, client)  # before any transaction
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="promise", actor=user_id)
            promise = collections.create_promise(
                session, customer_id=customer_id, actor=user_id, amount=amount,
                promised_date=day, note=note, as_of=today_for(context, user),
                now=now_of(context))
            name = collections.get_customer(session, promise.customer_id).name
            receipts.remember(session, receipt, promise_id=promise.id)
    except receipts.AlreadyHandled:
        return  # a replay: recorded once
    except DomainError as exc:
        _confirm(client, view_metadata(view), user_id,
                 describe_error(exc, what="record the promise"))
        return
    _confirm(client, view_metadata(view), user_id, f":handshake: Promise recorded: "
             f"{esc(name)} will pay {fmt.money(promise.amount_minor, promise.currency)} by "
             f"{fmt.date(promise.promised_date)}.")


def _call_form(view: dict) -> tuple[int, str]:
    note = form_value(view, ids.CALL_NOTE_BLOCK, ids.CALL_NOTE_INPUT).get("value") or ""
    return metadata_id(view_metadata(view), "customer_id"), note


def check_call(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    """The ack of a call note: role and note checked with reads only; recorded after it."""
    customer_id, note = _call_form(view)
    try:
        with checking(context, in_ack=True) as session:  # a refusal is audited
            collections.check_call(session, customer_id=customer_id,
                                   actor=body["user"]["id"], note=note)
    except DomainError as exc:
        ack(response_action="errors",
            errors=_errors(exc, {"note": ids.CALL_NOTE_BLOCK}, ids.CALL_NOTE_BLOCK))
        return
    ack()


def record_call(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    """After the ack: the call note, once per submission; the collector is told."""
    customer_id, note = _call_form(view)
    user_id = body["user"]["id"]
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="call", actor=user_id)
            call = collections.log_call(session, customer_id=customer_id, actor=user_id,
                                        note=note, now=now_of(context))
            name = collections.get_customer(session, customer_id).name
            receipts.remember(session, receipt, activity_id=call.id)
    except receipts.AlreadyHandled:
        return  # a replay: logged once
    except DomainError as exc:
        _confirm(client, view_metadata(view), user_id,
                 describe_error(exc, what="log the call"))
        return
    _confirm(client, view_metadata(view), user_id,
             f":telephone_receiver: Call with {esc(name)} logged.")
