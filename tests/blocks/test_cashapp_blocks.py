"""The answers to the Apply button and the modal's invoice options: what came from the ERP is
escaped; a mention only for a real Slack user id."""

from __future__ import annotations

from blocks import cashapp
from models import Invoice

FORGED = "<!channel> <https://x.example|Bank>"
ESCAPED = "&lt;!channel&gt; &lt;https://x.example|Bank&gt;"


def test_the_confirmation_names_the_invoices_escaped() -> None:
    text = cashapp.applied_answer(payment_id=7, rank=2, status="partially_applied",
                                  invoices=[{"invoice": FORGED, "amount": "250.00"}],
                                  currency="USD")
    assert text.startswith(":white_check_mark: Payment #7: suggestion 2 applied")
    assert "partially applied" not in text and "it is now" not in text
    assert "the rest is credit on the account" in text
    assert f"• {ESCAPED} — USD 250.00" in text and "<!channel>" not in text


def test_already_applied_mentions_only_a_slack_user_id() -> None:
    assert "by <@UCOLL001>;" in cashapp.already_applied_answer("UCOLL001")
    forged = cashapp.already_applied_answer("<!here>")
    assert "&lt;!here&gt;" in forged and "<!here>" not in forged
    assert "by someone else;" in cashapp.already_applied_answer(None)


def test_refusals_end_their_sentence_before_saying_nothing_was_applied() -> None:
    assert cashapp.failed_answer("Sorry, something went wrong on our side (ref `x`)") == (
        "Sorry, something went wrong on our side (ref `x`). Nothing was applied.")
    refused = ":no_entry_sign: Invoice X has less than USD 1.00 open. Nothing was changed."
    assert cashapp.failed_answer(refused) == refused
    assert cashapp.refused_answer(":no_entry_sign: Only a collector can do this; nothing was "
                                  "changed.") == (
        ":no_entry_sign: Only a collector can do this; nothing was changed. Applying payments "
        "is for collectors and admins.")


def test_an_invoice_option_is_plain_text_escaped_and_keeps_the_number_as_value() -> None:
    invoice = Invoice(number=FORGED, customer_id=1, currency="USD", total_minor=25_000,
                      balance_minor=12_550)
    option = cashapp.invoice_option(invoice)
    assert option["text"]["type"] == "plain_text"
    assert option["text"]["text"].startswith(ESCAPED)
    assert "USD 125.50 open" in option["text"]["text"]
    assert option["value"] == FORGED


def test_a_suggestion_of_many_invoices_says_how_many_are_not_listed_and_their_sum() -> None:
    # given a suggestion applying 25 invoices of 10.00 (a remittance listing them all)
    invoices = [{"invoice": f"INV-2026-{n:06d}", "amount": "10.00"} for n in range(1, 26)]
    card = cashapp.review_card({
        "payment": {"id": 7, "amount_minor": 25_000, "currency": "USD", "payer_name": "X",
                    "reference": None, "received_at": "2026-11-20T10:00:00+00:00"},
        "status": "needs_review", "round": 1,
        "suggestions": [{"rank": 1, "customer_name": "Globex", "confidence": "0.6",
                         "invoices": invoices, "write_off": "0.00",
                         "unapplied_amount": "0.00"}]})
    text = next(b["text"]["text"] for b in card["blocks"]
                if b.get("block_id") == "cashapp:7:1")
    # then the ten first are listed, and the card says what "Apply 1" applies besides them
    assert "INV-2026-000010" in text and "INV-2026-000011" not in text
    assert "…and 15 more invoices — USD 150.00" in text
