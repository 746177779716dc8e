""""Put on credit hold" / "Release credit hold" under the customer card (`/o2c customer`).

The role (credit approver or admin) is re-checked on the server at the click, whatever the
card showed; a refusal is audited and explained ephemerally. On success the card is replaced
with its fresh version. A click is claimed by its `action_ts` (`workflows.receipts`): a replay
of an old "hold" cannot put back a hold someone released since.
"""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks import lookup as render
from blocks.approvals import (
    credit_hold_actions,
    credit_hold_done,
    refusal,
    release_hold_modal,
)
from blocks.common import section
from blocks.i18n import Formats
from blocks.text import esc
from handlers.common import (
    Malformed,
    action_id_value,
    caller,
    checking,
    click_key,
    deps_of,
    formats_of,
    now_of,
    open_modal_for,
    today_for,
    transaction,
)
from models import Customer
from workflows import queries, receipts
from workflows.credit_hold import ROLES, set_credit_hold
from workflows.errors import DomainError, NotFound
from workflows.users import require_role


def _change(body: dict, respond: Respond, context: BoltContext, client: WebClient, *,
            on_hold: bool) -> None:
    try:
        customer_id = action_id_value(body)
    except Malformed as broken:
        respond(blocks=refusal(broken.detail), text=esc(broken.detail),
                response_type="ephemeral", replace_original=False)
        return
    user_id = body["user"]["id"]
    key = click_key(body)
    try:
        with transaction(context) as session:
            receipt = (receipts.claim(session, key=key, kind="credit_hold", actor=user_id)
                       if key else None)
            changed = set_credit_hold(session, customer_id=customer_id, actor=user_id,
                                      on_hold=on_hold, reason="from the customer card",
                                      now=now_of(context))
            if receipt is not None:
                receipts.remember(session, receipt, changed=changed)
    except receipts.AlreadyHandled as done:  # a replay: answered as the first click was
        changed = bool(done.result.get("changed"))
    except DomainError as error:
        respond(blocks=refusal(error.detail), text=esc(error.detail), response_type="ephemeral",
                replace_original=False)
        return
    today = today_for(context, caller(context, user_id))
    fmt = formats_of(context, user_id, client)
    with deps_of(context).db.read_session() as session:
        customer = session.get(Customer, customer_id)
        view = queries.customer_view(session, customer, today, now=now_of(context))
        card = render.customer_card(view, as_of=today, actions=credit_hold_actions(
            customer.id, customer.name, customer.credit_hold), fmt=fmt)
    notice = section(credit_hold_done(customer.name, on_hold, changed))
    respond(blocks=[notice, *card][:50], text=f"Customer {esc(customer.name)}",
            response_type="ephemeral", replace_original=True)


def on_hold(body: dict, respond: Respond, client: WebClient, context: BoltContext) -> None:
    _change(body, respond, context, client, on_hold=True)


def on_release(body: dict, respond: Respond, client: WebClient,
               context: BoltContext) -> None:
    """Release asks for a reason first (a modal); the release happens on submit
    (`handlers.views.credit_hold`)."""
    try:
        customer_id = action_id_value(body)
    except Malformed as broken:
        respond(blocks=refusal(broken.detail), text=esc(broken.detail),
                response_type="ephemeral", replace_original=False)
        return
    user_id = body["user"]["id"]
    today = today_for(context, caller(context, user_id))
    try:
        with checking(context) as session:  # role first; a refusal is audited
            require_role(session, user_id=user_id, roles=ROLES,
                         action="customer.credit_release", entity_type="customer",
                         entity_id=customer_id)
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise NotFound(f"no customer #{customer_id}")
            view = queries.customer_view(session, customer, today, now=now_of(context))
    except DomainError as error:
        respond(blocks=refusal(error.detail), text=esc(error.detail), response_type="ephemeral",
                replace_original=False)
        return
    pos = view.position

    def situation(fmt: Formats) -> str:
        return (f"Overdue {fmt.money(pos.aging.overdue, customer.currency)} of "
                f"{fmt.money(pos.aging.total, customer.currency)} open; oldest "
                f"{pos.oldest_days_past_due} days past due.")
    channel = (body.get("container") or {}).get("channel_id") or (
        body.get("channel") or {}).get("id")
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: release_hold_modal(customer_id=customer_id, name=customer.name,
                                                  channel=channel, situation=situation(fmt)))
