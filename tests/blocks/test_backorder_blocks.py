"""The backorder notice in each of its forms is valid Block Kit, escapes what came from users
and the ERP, keeps every short line's Cancel button (unique per block) and stays within
Slack's 50 blocks however many lines are short."""

from __future__ import annotations

import json

from blocks import templates
from sandbox.blockkit import validate_message

EVIL = "Evil <!channel> <https://phish.example|Bank> & Co"
ORDER = {"number": "SO-1001", "status": "backordered", "currency": "USD",
         "total_minor": 123456, "customer": EVIL, "sales_rep": "USALES01"}


def short(count: int) -> list[dict]:
    return [{"line_no": i, "sku": f"{EVIL}-{i}", "ordered": 10, "reserved": 6,
             "backordered": 4} for i in range(1, count + 1)]


def rendered(**ctx: object) -> tuple[dict, str]:
    message = templates.render("backorder_notice", {"order": ORDER, "lines": short(1), **ctx})
    assert validate_message(message) == (None, [])
    text = json.dumps(message, ensure_ascii=False)
    assert "<!channel>" not in text and "<https://phish" not in text
    return message, text


def buttons(message: dict) -> list[tuple[str | None, str, str]]:
    found = []
    for block in message["blocks"]:
        elements = block.get("elements", []) if block["type"] == "actions" else [
            block.get("accessory") or {}]
        found += [(block.get("block_id"), e["action_id"], e["value"]) for e in elements
                  if e.get("type") == "button"]
    return found


def test_the_reps_notice_has_a_cancel_button_per_short_line_and_the_two_choices() -> None:
    message, text = rendered(lines=short(2))
    assert message["text"] == "Order SO-1001 is short of stock"
    assert buttons(message) == [
        ("backorder_line:1", "backorder_cancel_line", "SO-1001:1"),
        ("backorder_line:2", "backorder_cancel_line", "SO-1001:2"),
        ("backorder_choices", "backorder_ship_partial", "SO-1001"),
        ("backorder_choices", "backorder_wait", "SO-1001")]
    assert "4 of 10 backordered, 6 reserved" in text


def test_many_short_lines_stay_within_the_block_limit_and_keep_the_choices() -> None:
    message, text = rendered(lines=short(200))
    assert len(message["blocks"]) <= 50
    assert "160 more short line(s)" in text
    assert ("backorder_choices", "backorder_wait", "SO-1001") in buttons(message)


def test_billing_gets_the_notice_without_buttons() -> None:
    message, text = rendered(audience="billing", lines=short(3))
    assert message["text"].startswith("Billing: Order SO-1001")
    assert buttons(message) == []
    assert "or the sales rep chooses" in text


def test_billing_is_told_the_customers_own_choice_without_a_mention() -> None:
    _, waited = rendered(audience="billing", choice="wait", by="customer")
    assert "the customer chose to *wait*" in waited and "<@" not in waited


def test_billing_is_told_each_choice() -> None:
    _, partial = rendered(audience="billing", choice="ship_partial", by="USALES01",
                          ship=[{"line_no": 1, "sku": EVIL, "quantity": 6}])
    assert "<@USALES01> chose *ship partial*" in partial and "× 6" in partial
    _, cancelled = rendered(audience="billing", choice="cancel_line", by="UADMIN01",
                            cancelled={"line_no": 1, "sku": EVIL, "quantity": 4,
                                       "status": "approved", "status_before": "backordered"},
                            lines=[])
    assert "<@UADMIN01> cancelled the short quantity of line 1" in cancelled
    assert "The order is now *approved*." in cancelled
    _, waiting = rendered(audience="billing", choice="wait", by="USALES01")
    assert "chose to *wait*" in waiting


def test_the_rep_is_shown_the_override_command_with_its_placeholder_escaped() -> None:
    # given the customer chose through their link: the rep's notice says how to override
    _, text = rendered(audience="rep", choice="wait", by="customer")
    # then `<reason>` is text, not a link Slack would make of it
    assert "ship|wait|cancel &lt;reason&gt;`" in text and "<reason>" not in text
