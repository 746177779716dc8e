"""The `/o2c new` modal: customer and product search (`block_suggestion`), the pricing hint
when a product is chosen (`dispatch_action` -> `views.update`), and the submission.

The submission acks first. Before the ack only reads happen (the role, every field:
`workflows.order_entry.validate_entry`); bad input (missing customer, unknown SKU, quantity
<= 0, discount > 100 ...) is answered with `response_action: "errors"` keyed by the input's
block_id: the modal stays open with each message under its field. Good input closes the modal,
and after the ack the order is created through `workflows.order_entry` (which calls
`workflows.orders.create_order`, source "slack": credit and discount checks, approvals,
reservations); the rep gets the order number and status as a DM from the same transaction
(the outbox), plus an ephemeral note in the channel where they typed `/o2c new`. The
submission is claimed by its view id in the same transaction (`workflows.receipts`): a replayed
or doubled submission closes the modal again and creates, reserves and tells nothing more.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import ids
from blocks.order_entry import (
    created_message,
    customer_options,
    field_errors,
    order_modal,
    product_options,
    read_channel,
)
from handlers.common import (
    caller,
    checking,
    deps_of,
    describe_error,
    formats_of,
    known_formats,
    now_of,
    options_for,
    today_for,
    transaction,
)
from models import Customer
from workflows import receipts
from workflows.errors import DomainError, PermissionDenied, ValidationFailed
from workflows.lookup import find_customer
from workflows.order_entry import (
    Entry,
    EntryLine,
    check_may_enter,
    create_from_entry,
    validate_entry,
)
from workflows.pricing import pricing_hint, revenue_type_of, search_products

log = logging.getLogger("o2c.handlers.order_entry")
SUGGESTIONS = 10


def _state(view: dict) -> dict:
    return (view.get("state") or {}).get("values") or {}


def _picked(values: dict, block_id: str, action_id: str) -> str | None:
    entry = values.get(block_id, {}).get(action_id) or {}
    option = entry.get("selected_option")
    if option:
        return option.get("value")
    value = entry.get("value") or entry.get("selected_date")
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_entry(view: dict) -> Entry:
    values = _state(view)
    lines = [EntryLine(
        row=row,
        sku=_picked(values, ids.order_line_block(row, "product"), ids.ORDER_PRODUCT_SELECT),
        quantity=_picked(values, ids.order_line_block(row, "quantity"), ids.ORDER_QUANTITY_INPUT),
        discount_pct=_picked(values, ids.order_line_block(row, "discount"),
                             ids.ORDER_DISCOUNT_INPUT),
        service_start=_picked(values, ids.order_line_block(row, "start"),
                              ids.ORDER_SERVICE_START_INPUT),
        service_end=_picked(values, ids.order_line_block(row, "end"),
                            ids.ORDER_SERVICE_END_INPUT),
        billing=_picked(values, ids.order_line_block(row, "billing"), ids.ORDER_BILLING_SELECT))
        for row in range(ids.ORDER_MAX_LINES)]
    return Entry(customer=_picked(values, ids.ORDER_CUSTOMER_BLOCK, ids.ORDER_CUSTOMER_SELECT),
                 lines=lines,
                 notes=_picked(values, ids.ORDER_NOTES_BLOCK, ids.ORDER_NOTES_INPUT))


def check_submission(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    """The ack of a submission: the role and every field, reads only. Bad input keeps the form
    open with each error under its input; good input closes it, and the order is created after
    the ack (`create_order`)."""
    user_id = body["user"]["id"]
    try:
        with checking(context, in_ack=True) as session:  # a refusal is audited
            check_may_enter(session, user_id)
            validate_entry(session, parse_entry(view), rep=user_id)
    except ValidationFailed as error:
        problems = [(e.field, e.detail) for e in error.errors] or [("customer", error.detail)]
        present = {b.get("block_id") for b in view.get("blocks") or []}
        ack(response_action="errors", errors=field_errors(problems, present))
        return
    except PermissionDenied as refused:
        ack(response_action="errors", errors={ids.ORDER_CUSTOMER_BLOCK: refused.detail[:150]})
        return
    ack()


def create_order(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    """After the ack: create the order, once per submission (its view id is claimed in the
    same transaction). The rep hears of it in the DM written with the order (the outbox) and
    here, where they typed `/o2c new`; what the checks before the ack could not see (the role
    or a product changed meanwhile) is told to them in a DM."""
    user_id = body["user"]["id"]
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="order", actor=user_id)
            order = create_from_entry(session, parse_entry(view), rep=user_id,
                                      now=now_of(context))
            customer = session.get(Customer, order.customer_id)
            number, status, name = order.number, order.status, customer.name
            receipts.remember(session, receipt, order=number)
    except receipts.AlreadyHandled:
        return  # a replay: the order exists once, and the rep was told
    except DomainError as error:
        client.chat_postMessage(channel=user_id, text=describe_error(
            error, what="create the order"))
        return
    channel = read_channel(view)
    if channel:
        try:
            client.chat_postEphemeral(channel=channel, user=user_id, text=f"Order {number}: "
                                      f"{status}", blocks=created_message(number, status, name))
        except SlackApiError as exc:  # the DM from the outbox tells them anyway
            log.info("no ephemeral confirmation: %s", exc.response.get("error"))


def on_customer_options(ack: Ack, body: dict, context: BoltContext) -> None:
    """The customer search, for whoever may enter an order (`check_may_enter`: the role the
    submission needs); anyone else gets no options, and the refusal is audited."""
    user_id = (body.get("user") or {}).get("id") or ""
    options_for(ack, context, lambda s: check_may_enter(s, user_id),
                lambda s: find_customer(s, body.get("value") or "", limit=SUGGESTIONS),
                lambda match: customer_options(match.candidates))


def on_product_options(ack: Ack, body: dict, context: BoltContext) -> None:
    """The product search (names and prices), for whoever may enter an order, as above."""
    user_id = (body.get("user") or {}).get("id") or ""
    options_for(ack, context, lambda s: check_may_enter(s, user_id),
                lambda s: search_products(s, body.get("value") or "", limit=SUGGESTIONS),
                lambda products: product_options(
                    products, fmt=known_formats(context, user_id)[0]))


def on_product_chosen(body: dict, client: WebClient, context: BoltContext) -> None:
    """After the ack: the pricing hint under every chosen product, and the service period under
    each service or subscription (the view keeps what was typed)."""
    view = body.get("view") or {}
    values = _state(view)
    today = today_for(context, caller(context, body["user"]["id"]))
    fmt = formats_of(context, body["user"]["id"], client)
    hints, services = {}, {}
    try:
        with checking(context) as session:  # (the hint's prices and discounts are the rep's)
            check_may_enter(session, body["user"]["id"])
    except PermissionDenied:
        return  # the form stays as it is; the submission is refused too
    with deps_of(context).db.read_session() as session:
        for row in range(ids.ORDER_MAX_LINES):
            sku = _picked(values, ids.order_line_block(row, "product"), ids.ORDER_PRODUCT_SELECT)
            hint = pricing_hint(session, sku=sku, as_of=today) if sku else None
            if hint is not None:
                hints[row] = hint
            kind = revenue_type_of(session, sku) if sku else None
            if kind in ("service", "subscription"):
                services[row] = kind
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"),
                            view=order_modal(channel=read_channel(view), hints=hints,
                                             services=services, fmt=fmt))
    except SlackApiError as exc:  # hash_conflict: the user changed it meanwhile; next pick wins
        log.info("pricing hint not shown: %s", exc.response.get("error"))
