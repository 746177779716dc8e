"""The invoice, credit-note and statement PDFs print what the core font (Latin-1) cannot:
Latin letters outside it by their base letter, typographic signs by their plain form, the
rest as a visible "?"; never a failed render."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from bot.invoice_pdf import render_credit_note_pdf, render_invoice_pdf

NAME = "Łódź Trading — “Nowak” 東京 🚀"
PRINTED = b'(L\xf3dz Trading - "Nowak" ?? ?)'


def _invoice() -> SimpleNamespace:
    return SimpleNamespace(
        currency="EUR", number="INV-1", issue_date=date(2026, 11, 2), order_date=None,
        ship_date=None, payment_terms="NET30", due_date=date(2026, 12, 2),
        billing_address="ul. Żeromskiego 1, Łódź", shipping_address="東京都",
        total_minor=10_000, balance_minor=10_000, subtotal_minor=10_000, discount_minor=0,
        fees_minor=0, tax_minor=0, early_payment_bp=0, early_payment_days=0)


def test_an_invoice_prints_non_latin1_text_as_near_as_the_font_allows() -> None:
    # given a customer, addresses and a line description outside Latin-1
    line = SimpleNamespace(line_no=1, description="Żółw … 🐢", sku=None, quantity=2,
                           unit_price_minor=5_000, discount_bp=0, line_total_minor=10_000)
    # when the invoice is rendered
    pdf = render_invoice_pdf(_invoice(), [line], SimpleNamespace(name=NAME),
                             seller="seller.example", from_email="ar@seller.example")
    # then Polish letters keep their base letter (ó is Latin-1), the dash and quotes are
    # plain, and only what has no Latin form is a "?"
    assert PRINTED in pdf
    assert b"(ul. Zeromskiego 1, L\xf3dz)" in pdf and b"(???)" in pdf
    assert b"(Z\xf3lw ... ?)" in pdf


def test_a_credit_note_prints_its_reason_and_customer_outside_latin1() -> None:
    note = SimpleNamespace(currency="EUR", number="CN-1", value_date=date(2026, 11, 5),
                           reason="uszkodzony – zwrot ✓", amount_minor=1_000,
                           customer_credit_minor=0)
    pdf = render_credit_note_pdf(note, _invoice(), [], SimpleNamespace(name=NAME),
                                 seller="seller.example", from_email="ar@seller.example")
    assert PRINTED in pdf and b"(uszkodzony - zwrot ?)" in pdf


def test_a_statement_prints_a_customer_name_outside_latin1() -> None:
    from bot.invoice_pdf import render_statement_pdf
    from workflows.statements import Statement, StatementLine

    customer = SimpleNamespace(name=NAME, external_id="C-ŁÓDŹ", billing_address="Łódź")
    found = Statement(customer=customer, currency="EUR", start=date(2026, 11, 1),
                      end=date(2026, 11, 30), opening_minor=0, closing_minor=10_000,
                      lines=[StatementLine(date(2026, 11, 2), "invoice", "INV-1 „Łódź”",
                                           10_000, 10_000)],
                      aging={"current": 10_000}, unapplied_minor=0)
    pdf = render_statement_pdf(found, seller="seller.example", from_email="ar@seller.example")
    assert b'(L\xf3dz Trading - "Nowak" ?? ? \\(C-L\xd3DZ\\))' in pdf
    assert b'(INV-1 "L\xf3dz")' in pdf
