"""The `/o2c new` order-entry modal: customer search, up to five product lines (product,
quantity, discount %), a pricing hint per chosen product, the service period (and, for a
subscription, how it is billed) under each chosen service or subscription, and inline
errors."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    DatePickerElement,
    ExternalDataSelectElement,
    InputBlock,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)

from blocks import ids
from blocks.common import context, render, section
from blocks.i18n import ENGLISH, Formats
from blocks.text import VIEW_BLOCKS_MAX, esc, plain

if TYPE_CHECKING:  # view models only; blocks never call workflows
    from models import Product
    from workflows.lookup import Candidate
    from workflows.pricing import PricingHint

OPTION_TEXT_MAX = 75
LINE_ERROR = re.compile(r"^lines\[(\d+)\]\.(\w+)$")
PART_FOR_FIELD = {"sku": "product", "quantity": "quantity", "discount_pct": "discount",
                  "service_start": "start", "service_end": "end", "billing": "billing"}
BILLING_CHOICES = (("monthly", "Monthly, in advance"), ("quarterly", "Quarterly, in advance"),
                   ("annual", "Yearly, in advance"))


def _text(text: str, limit: int = 24) -> dict:
    return {"type": "plain_text", "text": plain(text, limit)}


def metadata(channel: str | None) -> str:
    return json.dumps({"channel": channel})


def read_channel(view: dict) -> str | None:
    try:
        return json.loads(view.get("private_metadata") or "{}").get("channel")
    except (ValueError, AttributeError):
        return None


def hint_text(hint: PricingHint, *, fmt: Formats = ENGLISH) -> str:
    price = fmt.money(hint.unit_price_minor, hint.currency)
    median = (f"median approved discount (last {hint.days} days): "
              f"*{format(hint.median_discount_pct.normalize(), 'f')}%* over "
              f"{hint.sample_size} line(s)" if hint.median_discount_pct is not None
              else f"no approved sales in the last {hint.days} days")
    return (f":bulb: `{esc(hint.sku)}` list {price} · {median} · above "
            f"{format(hint.max_discount_pct.normalize(), 'f')}% needs a discount approval")


def order_modal(*, channel: str | None, hints: dict[int, PricingHint] | None = None,
                services: dict[int, str] | None = None, fmt: Formats = ENGLISH) -> dict:
    """The modal; `hints` (row -> hint) adds the pricing hint under each chosen product,
    `services` (row -> revenue type) the service period of a chosen service or subscription
    (and its billing for a subscription). Block and action ids never change between versions,
    so views.update keeps what was typed."""
    hints = hints or {}
    services = services or {}
    blocks: list = [
        context("You are the sales rep of this order. Credit and discount checks run when you "
                "submit; lines above the maximum discount need an approval."),
        InputBlock(block_id=ids.ORDER_CUSTOMER_BLOCK, label="Customer",
                   element=ExternalDataSelectElement(action_id=ids.ORDER_CUSTOMER_SELECT,
                                                     placeholder="Search customers",
                                                     min_query_length=1)),
    ]
    for row in range(ids.ORDER_MAX_LINES):
        optional = row > 0
        blocks += [
            InputBlock(block_id=ids.order_line_block(row, "product"), label=f"Product {row + 1}",
                       optional=optional, dispatch_action=True,
                       element=ExternalDataSelectElement(action_id=ids.ORDER_PRODUCT_SELECT,
                                                         placeholder="Search SKU or name",
                                                         min_query_length=1)),
            InputBlock(block_id=ids.order_line_block(row, "quantity"), label="Quantity",
                       optional=optional,
                       element=NumberInputElement(action_id=ids.ORDER_QUANTITY_INPUT,
                                                  is_decimal_allowed=False)),
            InputBlock(block_id=ids.order_line_block(row, "discount"), label="Discount %",
                       optional=True,
                       element=NumberInputElement(action_id=ids.ORDER_DISCOUNT_INPUT,
                                                  is_decimal_allowed=True)),
        ]
        if row in hints:
            blocks.append(_hint_block(row, hints[row], fmt=fmt))
        if row in services:
            blocks += _service_blocks(row, services[row])
    blocks.append(InputBlock(block_id=ids.ORDER_NOTES_BLOCK, label="Notes", optional=True,
                             element=PlainTextInputElement(action_id=ids.ORDER_NOTES_INPUT,
                                                           multiline=True, max_length=2000)))
    return {"type": "modal", "callback_id": ids.ORDER_MODAL, "title": _text("New order"),
            "submit": _text("Create order"), "close": _text("Cancel"),
            "private_metadata": metadata(channel),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


def _service_blocks(row: int, revenue_type: str) -> list:
    """A service or subscription is recognised over the days it covers (both included)."""
    blocks = [
        InputBlock(block_id=ids.order_line_block(row, "start"), label="Service starts",
                   element=DatePickerElement(action_id=ids.ORDER_SERVICE_START_INPUT)),
        InputBlock(block_id=ids.order_line_block(row, "end"), label="Service ends (included)",
                   element=DatePickerElement(action_id=ids.ORDER_SERVICE_END_INPUT)),
    ]
    if revenue_type == "subscription":
        blocks.append(InputBlock(
            block_id=ids.order_line_block(row, "billing"), label="Billing", optional=True,
            hint="Leave empty to invoice the whole term when it is delivered",
            element=StaticSelectElement(
                action_id=ids.ORDER_BILLING_SELECT, placeholder="Invoiced in full",
                options=[Option(value=value, label=label) for value, label in BILLING_CHOICES])))
    return blocks


def _hint_block(row: int, hint: PricingHint, *, fmt: Formats = ENGLISH) -> dict:
    return {**context(hint_text(hint, fmt=fmt)), "block_id": ids.order_line_block(row, "hint")}


def customer_options(candidates: list[Candidate]) -> list[dict]:
    return [{"text": _text(c.name, OPTION_TEXT_MAX), "value": c.external_id}
            for c in candidates]


def product_options(products: list[Product], *, fmt: Formats = ENGLISH) -> list[dict]:
    return [{"text": _text(f"{p.sku} — {p.name}", OPTION_TEXT_MAX), "value": p.sku,
             "description": _text(fmt.money(p.unit_price_minor, p.currency), OPTION_TEXT_MAX)}
            for p in products]


def error_block(field: str, present: set[str] | None = None) -> str:
    """The input block an entry error belongs to (anything unplaceable goes to Customer; a
    service period the modal does not show yet goes to its product)."""
    match = LINE_ERROR.match(field)
    if match and int(match[1]) < ids.ORDER_MAX_LINES:
        block = ids.order_line_block(int(match[1]), PART_FOR_FIELD.get(match[2], "product"))
        if present is not None and block not in present:
            return ids.order_line_block(int(match[1]), "product")
        return block
    return ids.ORDER_CUSTOMER_BLOCK


def field_errors(errors: list[tuple[str, str]], present: set[str] | None = None
                 ) -> dict[str, str]:
    """`response_action: errors` payload: block_id -> message (first error per block);
    `present`: the view's block ids, when known."""
    out: dict[str, str] = {}
    for field, detail in errors:
        out.setdefault(error_block(field, present),
                       plain(detail[:1].upper() + detail[1:], 150))
    return out


def created_message(number: str, status: str, customer: str) -> list[dict]:
    return render([section(f":memo: Order *{esc(number)}* for *{esc(customer)}* was created: "
                           f"*{esc(status.replace('_', ' '))}*.")])
