"""The modals the buttons open stay valid Block Kit whatever the data: the longest names,
numbers and notes the columns hold (every character one that escaping lengthens), a customer
with more invoices than a select may list, amounts at the bound. Slack refuses a whole
`views.open` for one field over its limit, so the user would see nothing at all."""

from __future__ import annotations

import json
from datetime import date

import pytest

from blocks import approvals, backoffice, cashapp, collections
from blocks.help import help_message
from sandbox.blockkit import validate_message, validate_view

# the longest values the columns hold (models), each character one `esc` makes five
NAME = "&" * 200  # customers.name
NUMBER = "&" * 64  # invoices.number
PAYER = "<" * 300  # payments.payer_name
NOTE = "<!channel> & " * 150  # a 2000-character note
AMOUNT = "USD 9,999,999,999,999.99"


def invoices(count: int) -> list[dict]:
    return [{"number": f"INV-{i:06d}{'&' * 54}", "open": AMOUNT} for i in range(count)]


MODALS = {
    "dispute on one invoice": lambda: backoffice.dispute_modal(
        meta={"invoice": NUMBER, "channel": "C0GENERAL"},
        invoice={"number": NUMBER, "customer": NAME, "open": AMOUNT}, note=NOTE[:2000],
        amount="9999999999999.99"),
    "dispute on one of many invoices": lambda: backoffice.dispute_modal(
        meta={"customer_id": 2**31 - 1, "channel": "C0GENERAL"}, invoice=None,
        invoices=invoices(150)),
    "accept a dispute": lambda: backoffice.resolve_modal(
        dispute={"id": 1, "invoice": NUMBER, "customer": NAME, "amount": AMOUNT,
                 "amount_plain": "9999999999999.99", "reason": "pricing"},
        outcome="accepted", channel="C0GENERAL"),
    "reject a dispute": lambda: backoffice.resolve_modal(
        dispute={"id": 1, "invoice": NUMBER, "customer": NAME, "amount": AMOUNT,
                 "amount_plain": "1.00", "reason": NAME}, outcome="rejected", channel=None),
    "reassign a dispute": lambda: backoffice.reassign_modal(
        dispute={"id": 1, "invoice": NUMBER}, channel="C0GENERAL"),
    "write off": lambda: backoffice.amount_reason_modal(
        callback_id="write_off_modal", title="Write off bad debt", submit="Ask approval",
        meta={"invoice": NUMBER, "channel": "C0GENERAL"},
        summary=f"Write off (bad debt) on *{NUMBER.replace('&', '&amp;')}*, {AMOUNT} open.",
        amount="9999999999999.99", amount_label="Amount (USD)",
        reason_label="Why it is written off"),
    "reject an approval": lambda: approvals.reject_modal(
        approval_id=1, channel="C0GENERAL", order_number=NUMBER, customer=NAME,
        amount=AMOUNT, kind="credit"),
    "approve with a note": lambda: approvals.approve_note_modal(
        approval_id=1, channel=None, order_number=NUMBER, customer=NAME, amount=AMOUNT,
        kind="credit_note"),
    "release a credit hold": lambda: approvals.release_hold_modal(
        customer_id=1, name=NAME, channel="C0GENERAL",
        situation=f"Overdue {AMOUNT} of {AMOUNT} open; oldest 99999 days past due."),
    "refund or return": lambda: cashapp.return_modal(
        payment_id=1, amount=AMOUNT, payer=PAYER, channel="C0GENERAL"),
    "promise to pay": lambda: collections.promise_modal(
        {"id": 1, "name": NAME, "currency": "USD", "overdue_minor": 10**15 - 1},
        today=date(2026, 11, 24), channel="C0GENERAL"),
    "log a call": lambda: collections.call_modal(
        {"id": 1, "name": NAME, "currency": "USD", "overdue_minor": 10**15 - 1},
        channel="C0GENERAL"),
}


def mrkdwn_texts(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "mrkdwn" else []
        return own + [t for value in node.values() for t in mrkdwn_texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in mrkdwn_texts(value)]
    return []


@pytest.mark.parametrize("name", sorted(MODALS))
def test_a_modal_with_the_longest_data_is_valid_and_escaped(name: str) -> None:
    view = MODALS[name]()
    assert validate_view(view) == []
    # (a note's initial value is what the user edits, plain text: not read as markup)
    assert [t for t in mrkdwn_texts(view) if "<!channel>" in t or "&&" in t] == []


def test_a_select_of_a_customers_invoices_keeps_to_100_whole_numbers() -> None:
    view = MODALS["dispute on one of many invoices"]()
    [select] = [b["element"] for b in view["blocks"] if b.get("block_id") == "dispute_invoice"]
    assert len(select["options"]) == 100
    # the value is the number itself (a cut one would name another invoice, or none)
    assert [o["value"] for o in select["options"]] == [i["number"] for i in invoices(100)]


def test_help_for_an_unknown_command_of_any_length_is_a_valid_message() -> None:
    blocks = help_message([("/o2c x <y>", NOTE)] * 40, unknown=NOTE * 3, no_role=True)
    assert validate_message({"blocks": blocks, "text": "o2c commands"}) == (None, [])
    assert "<!channel>" not in json.dumps(blocks)
