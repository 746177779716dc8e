"""blocks.i18n: amounts, dates and texts in a Slack locale; English without one."""

from __future__ import annotations

import json

from blocks import i18n
from blocks.reach import record_card

INVOICE = {"kind": "invoice", "number": "INV-2026-000001", "status": "partially_paid",
           "customer": "Müller GmbH", "currency": "EUR", "total_minor": 123_456,
           "balance_minor": 100_000, "date": "2026-12-31"}


def test_amounts_and_dates_follow_the_locale() -> None:
    assert i18n.money_text(123_456, "EUR", "de-DE") == "1.234,56\xa0€"
    assert i18n.money_text(123_456, "USD", "en-US") == "$1,234.56"
    assert i18n.money_text(1_500, "JPY", "ja-JP") == "￥1,500"
    assert i18n.date_text("2026-12-31", "de-DE") == "31.12.2026"
    assert i18n.number_text(1234567, "fr-FR") == "1\u202f234\u202f567"


def test_no_or_an_unknown_locale_keeps_the_apps_formats() -> None:
    for locale in (None, "", "xx-YY", "../../etc", "de-DE" * 10):
        assert i18n.money_text(123_456, "EUR", locale) == "EUR 1,234.56"
        assert i18n.date_text("2026-12-31", locale) == "31 Dec 2026"


def test_texts_are_translated_when_a_translation_exists_else_english() -> None:
    assert i18n.languages() == ["de"]
    assert i18n.t("Invoice", "de-DE") == "Rechnung"
    assert i18n.t("Invoice", "de-AT") == "Rechnung"  # the language's catalog
    assert i18n.t("Invoice", "fr-FR") == "Invoice"
    assert i18n.t("Something new", "de-DE") == "Something new"


def test_the_record_card_in_german_and_in_english() -> None:
    german = json.dumps(record_card({**INVOICE, "locale": "de-DE"}), ensure_ascii=False)
    assert "Rechnung INV-2026-000001" in german and "teilweise bezahlt" in german
    assert "1.000,00\xa0€" in german and "31.12.2026" in german
    english = json.dumps(record_card(INVOICE), ensure_ascii=False)
    assert "Invoice INV-2026-000001" in english and "EUR 1,000.00" in english
    # an en-US reader: the app's formats, as `/o2c` writes them (not CLDR's "€1,000.00")
    american = json.dumps(record_card({**INVOICE, "locale": "en-US"}), ensure_ascii=False)
    assert "EUR 1,000.00" in american and "€" not in american
    assert "31 Dec 2026" in american


def test_a_readers_formats_and_english_readers_keep_the_apps_own() -> None:
    german = i18n.formats("de-DE")
    assert german.money(123_456, "EUR") == "1.234,56\xa0€"
    assert german.date("2026-12-31") == "31.12.2026" and german.number(12_345) == "12.345"
    for locale in ("en-US", "en-GB", None, "xx-YY"):
        assert i18n.formats(locale) is i18n.ENGLISH
        assert i18n.formats(locale).money(123_456, "EUR") == "EUR 1,234.56"
        assert i18n.formats(locale).date("2026-12-31") == "31 Dec 2026"


def test_templates_for_one_reader_take_their_formats_channel_posts_keep_the_apps() -> None:
    from blocks import templates

    context = {"order": {"number": "SO-1", "customer": "Müller GmbH", "total_minor": 123_456,
                         "currency": "EUR", "status": "approved"},
               "kind": "credit", "status": "approved", "decided_by": "U1", "waiting_for": []}
    assert {"approval_decided", "order_status", "approval_card"} <= templates.PERSONAL
    german = json.dumps(templates.render("approval_decided", context,
                                         fmt=i18n.formats("de-DE")), ensure_ascii=False)
    english = json.dumps(templates.render("approval_decided", context), ensure_ascii=False)
    assert "1.234,56\xa0€" in german and "EUR 1,234.56" in english
