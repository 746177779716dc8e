"""Buttons on the backorder notice the sales rep gets in a DM (SPEC §3 "Fulfilment"): Ship
partial · Wait · Cancel short line (one per short line).

Every click acks first; the workflow then re-checks on the server who is clicking (the order's
sales rep or an admin) and whether the order is still short. A refusal is audited by
`handlers.common.transaction` and, like every answer, told only to the clicking user.

Once per click: the same choice clicked twice records nothing new (`fulfilment`), and a click
is claimed by its `action_ts` (`workflows.receipts`), so a replay of an old click, arriving
after another choice was made, cannot make it again; it is told the first answer.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.text import esc
from handlers.common import click_key, describe_error, tell_user, transaction
from workflows import fulfilment, receipts
from workflows.errors import DomainError, ValidationFailed
from workflows.orders import get_order

CANCEL_REASON = "short of stock; cancelled from the backorder notice in Slack"


def _value(body: dict) -> str:
    try:
        return str(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError):
        return ""


def _run(body: dict, respond: Respond, client: WebClient, context: BoltContext,
         choose: Callable[[Session, str], str]) -> None:
    """Ack, take the choice in one transaction, and answer only the clicking user."""
    user_id = body["user"]["id"]
    key = click_key(body)
    try:
        with transaction(context) as session:
            receipt = (receipts.claim(session, key=key, kind="backorder_choice", actor=user_id)
                       if key else None)
            answer = choose(session, user_id)
            if receipt is not None:
                receipts.remember(session, receipt, answer=answer)
    except receipts.AlreadyHandled as done:  # a replay: the same answer as the first time
        answer = done.result.get("answer") or "That choice was already made; nothing changed."
    except DomainError as error:
        tell_user(body, respond, client, describe_error(error))
        return
    tell_user(body, respond, client, answer)


def on_ship_partial(body: dict, respond: Respond, client: WebClient,
                    context: BoltContext) -> None:
    number = _value(body)

    def choose(session: Session, user_id: str) -> str:
        order = get_order(session, number)
        to_ship = fulfilment.ship_partial(session, order=order, actor=user_id)
        units = ", ".join(f"{s['quantity']} × {esc(s['sku'])}" for s in to_ship)
        return (f":truck: Billing was told to ship what is reserved on {esc(order.number)} "
                f"now ({units}); the short quantities stay backordered.")

    _run(body, respond, client, context, choose)


def on_wait(body: dict, respond: Respond, client: WebClient,
            context: BoltContext) -> None:
    number = _value(body)

    def choose(session: Session, user_id: str) -> str:
        order = get_order(session, number)
        fulfilment.wait_for_stock(session, order=order, actor=user_id)
        return (f":hourglass_flowing_sand: {esc(order.number)} waits for stock; it is reserved "
                "when stock arrives (oldest order first) and you will be told.")

    _run(body, respond, client, context, choose)


def on_cancel_line(body: dict, respond: Respond, client: WebClient,
                   context: BoltContext) -> None:
    number, _, line_no = _value(body).rpartition(":")

    def choose(session: Session, user_id: str) -> str:
        order = get_order(session, number)
        if not (line_no.isascii() and line_no.isdigit()):
            raise ValidationFailed.of("line_no", "this button names no order line")
        done = fulfilment.cancel_line(session, order=order, line_no=int(line_no),
                                      actor=user_id, reason=CANCEL_REASON)
        status = order.status.replace("_", " ")
        return (f":heavy_minus_sign: Cancelled {done['quantity']} × {esc(done['sku'])} on line "
                f"{done['line_no']} of {esc(order.number)}; the order is {status}. Billing "
                "was told.")

    _run(body, respond, client, context, choose)
