"""Approval cards, alerts, DMs and modals are valid Block Kit, escape user text, and stay
within Slack's limits whatever the data."""

from __future__ import annotations

import json

from blocks import templates
from blocks.approvals import approve_note_modal, reject_modal
from blocks.order_entry import field_errors, order_modal
from sandbox.blockkit import validate_message, validate_view

EVIL = "Evil <!channel> <https://phish.example|Bank> & Co"


def context(**overrides: object) -> dict:
    lines = [{"line_no": i, "sku": f"SKU-{i}", "name": EVIL, "quantity": 3,
              "unit_price_minor": 10000, "discount_bp": 3000, "max_bp": 1500,
              "gross_minor": 30000, "net_minor": 21000, "lost_minor": 9000,
              "margin_before_minor": 12000, "margin_after_minor": 3000,
              "margin_before_pct": "40.0", "margin_after_pct": "14.3"} for i in range(200)]
    ctx = {"approval_id": 7, "kind": "discount", "status": "pending",
           "order": {"number": "SO-1001", "total_minor": 123456, "currency": "USD",
                     "customer": EVIL, "status": "pending_approval"},
           "requested_by": "USALES01", "requested_by_label": None, "sales_rep": "USALES01",
           "requested_at": "2026-03-02T09:00:00+00:00",
           "reasons": [{"code": "discount_over_max", "text": f"{EVIL} " * 30}] * 40,
           "snapshot": {"currency": "USD", "credit_limit_minor": 500000,
                        "exposure_minor": 600000, "aging": {"current": 100, "1-30": 0,
                                                            "31-60": 5000, "61-90": 0,
                                                            "90+": 0},
                        "oldest_days_past_due": 45,
                        "history": {"paid": 4, "paid_late": 1, "avg_days_late": "6.0",
                                    "days": 365},
                        "lines": lines, "lost_minor": 9000 * 200},
           "decided_by": None, "decided_at": None, "note": None, "reminder": None}
    ctx.update(overrides)
    return ctx


def assert_valid_and_escaped(message: dict) -> str:
    assert validate_message(message) == (None, [])
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "<!channel>" not in text and "<https://phish" not in text
    return text


def test_pending_card_is_valid_escaped_and_complete() -> None:
    text = assert_valid_and_escaped(templates.render("approval_card", context()))
    for expected in ("Exposure / limit", "120% of limit", ":warning:", "31-60: USD 50.00",
                     "oldest 45 days past due", "4 invoice(s) paid in 365 days, 1 late",
                     "approval_approve", "approval_approve_note", "approval_reject",
                     "margin 40.0% → 14.3%", "<!date^"):
        assert expected in text, expected


def test_decided_reminded_and_cancelled_cards_are_valid() -> None:
    decided = context(status="rejected", decided_by="UCREDIT1",
                      decided_at="2026-03-02T10:00:00+00:00", note=EVIL * 50)
    text = assert_valid_and_escaped(templates.render("approval_card", decided))
    assert "*Rejected* by <@UCREDIT1>" in text and "approval_approve" not in text
    reminder = context(reminder={"number": 2, "working_hours": "8.0",
                                 "approvers": ["UCREDIT1", "UADMIN01"]})
    text = assert_valid_and_escaped(templates.render("approval_card", reminder))
    assert "Reminder 2" in text and "<@UCREDIT1> <@UADMIN01>" in text
    cancelled = context(status="cancelled", decided_by="UCREDIT1",
                        decided_at="2026-03-02T10:00:00+00:00")
    assert "*Cancelled*" in assert_valid_and_escaped(templates.render("approval_card",
                                                                      cancelled))


def test_alert_and_dm_are_valid_and_escaped() -> None:
    alert = assert_valid_and_escaped(templates.render("discount_alert", context()))
    assert "Revenue given away: *USD 18,000.00*" in alert
    api_request = context(requested_by="api", requested_by_label="REST API")
    assert "REST API for <@USALES01>" in assert_valid_and_escaped(
        templates.render("discount_alert", api_request))
    dm = context(status="rejected", decided_by="UCREDIT1", note=EVIL,
                 decided_at="2026-03-02T10:00:00+00:00", waiting_for=[])
    assert "*Reason:*" in assert_valid_and_escaped(templates.render("approval_decided", dm))


def test_modals_are_valid() -> None:
    for build in (reject_modal, approve_note_modal):
        view = build(approval_id=7, channel="CAPPROVAL", order_number="SO-1",
                     customer=EVIL, amount="USD 1.00", kind="credit")
        assert validate_view(view) == []
        assert "<!channel>" not in json.dumps(view)
    assert validate_view(order_modal(channel="C0GENERAL")) == []


def test_entry_errors_go_to_input_blocks_of_the_modal() -> None:
    inputs = {b["block_id"] for b in order_modal(channel=None)["blocks"]
              if b["type"] == "input"}
    errors = field_errors([("customer", "choose a customer"), ("lines[3].quantity", "bad"),
                           ("lines[3].discount_pct", "bad"), ("lines[0].unit_price", "x"),
                           ("lines[99].sku", "far"), ("sales_rep", "unknown")])
    assert set(errors) <= inputs
    assert errors["order_customer"] == "Choose a customer"
    assert set(errors) == {"order_customer", "order_line_3_quantity", "order_line_3_discount",
                           "order_line_0_product"}
