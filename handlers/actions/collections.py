"""The buttons on collections accounts (digest DM, `/o2c worklist`, App Home, broken-promise
alerts): Log call · Promise to pay · Send reminder · Snooze. Each re-checks the collector role
on the server (a refusal is audited) before doing or opening anything.

Clicks that create something do it once per natural key, whatever the double clicks and
replays: one reminder e-mail per customer and day (its outbox dedupe key), one snooze per
customer and end date (`workflows.receipts`); a repeat is told what was done the first time."""

from __future__ import annotations

from datetime import date

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks.collections import call_modal, promise_modal
from blocks.text import esc
from handlers.common import (
    action_id_value,
    caller,
    checking,
    click_key,
    deps_of,
    formats_of,
    now_of,
    open_modal,
    open_modal_for,
    tell_user,
    today_for,
    transaction,
)
from workflows import collections, dunning, receipts
from workflows.errors import DomainError


def _customer_id(body: dict) -> int:
    return action_id_value(body)


def _channel(body: dict) -> str | None:
    return (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id")


def _open_modal(body: dict, client: WebClient, context: BoltContext, kind: str) -> None:
    user_id, customer_id = body["user"]["id"], _customer_id(body)
    user = caller(context, user_id, client=client)
    today = today_for(context, user)
    with checking(context) as session:  # only reads: the trigger_id must not wait for a lock
        collections.require_collector(session, user_id=user_id, action=f"collections.{kind}",
                                      customer_id=customer_id)
        account = collections.account(session, customer_id, today)
        customer = collections.get_customer(session, customer_id)
        info = {"id": customer.id, "name": customer.name, "currency": customer.currency,
                "overdue_minor": account.overdue_minor if account else 0}
    if kind == "promise":
        open_modal_for(context, client, body.get("trigger_id"), user_id,
                       lambda fmt: promise_modal(info, today=today, channel=_channel(body),
                                                 fmt=fmt))
    else:
        open_modal(client, body.get("trigger_id"), call_modal(info, channel=_channel(body)))


def on_promise(body: dict, client: WebClient, context: BoltContext) -> None:
    _open_modal(body, client, context, "promise")


def on_log_call(body: dict, client: WebClient, context: BoltContext) -> None:
    _open_modal(body, client, context, "log_call")


def on_reminder(body: dict, respond: Respond, client: WebClient,
                context: BoltContext) -> None:
    user_id, customer_id = body["user"]["id"], _customer_id(body)
    user = caller(context, user_id, client=client)
    with transaction(context) as session:
        message = collections.send_reminder(session, customer_id=customer_id,
                                            actor=user_id, as_of=today_for(context, user),
                                            now=now_of(context))
        to = message.payload["to"]
    smtp = deps_of(context).email_enabled
    tell_user(body, respond, client, f":email: Reminder {'sent' if smtp else 'queued'} to "
          f"{esc(to)}." + ("" if smtp else " (No SMTP server is configured: it waits in "
                           "the outbox and a copy is in the AR channel.)"))


def on_snooze(body: dict, respond: Respond, client: WebClient,
              context: BoltContext) -> None:
    user_id, customer_id = body["user"]["id"], _customer_id(body)
    user = caller(context, user_id, client=client)
    fmt = formats_of(context, user_id, client)  # before any transaction
    try:
        with transaction(context) as session:
            until = collections.snooze(session, customer_id=customer_id, actor=user_id,
                                       as_of=today_for(context, user), now=now_of(context))
    except receipts.AlreadyHandled as done:  # a double click, a replay: say it again
        until = date.fromisoformat(done.result["until"])
    with deps_of(context).db.read_session() as session:
        name = collections.get_customer(session, customer_id).name
    tell_user(body, respond, client, f":zzz: {esc(name)} is snoozed until {fmt.date(until)}; "
          "dunning continues meanwhile.")


def on_dunning_confirm(body: dict, respond: Respond, client: WebClient,
                       context: BoltContext) -> None:
    """"Confirm and send" on a large dunning run's card in the AR channel: the admin role is
    re-checked in the transaction that confirms (a refusal is audited), the click claimed by
    its `action_ts`, and the confirmation audited (`workflows.dunning.confirm`)."""
    user_id, request_id = body["user"]["id"], action_id_value(body)
    key = click_key(body)
    try:
        with transaction(context) as session:
            receipt = (receipts.claim(session, key=key, kind="dunning_confirm", actor=user_id)
                       if key else None)
            request = dunning.confirm(session, user_id=user_id, now=now_of(context),
                                      request_id=request_id)
            day = request.as_of.isoformat()
            if receipt is not None:
                receipts.remember(session, receipt, day=day)
    except receipts.AlreadyHandled as done:  # a double click, a replay: say it again
        day = str(done.result.get("day"))
    except DomainError as error:
        tell_user(body, respond, client, f":no_entry: {esc(error.detail)}")
        return
    try:  # the day as the clicker writes dates
        when = formats_of(context, user_id, client).date(date.fromisoformat(day))
    except ValueError:
        when = day
    tell_user(body, respond, client, f":white_check_mark: Dunning of {esc(when)} confirmed: "
              "its e-mails go out with the next dunning run.")
