"""`/o2c customer` shows the unapplied cash held for the customer — payments not applied and
customer credit, per currency — in the reader's Slack locale, through signed requests to the
real server and the Slack stand-in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at
from workflows import credit_notes
from workflows.cash_application import record_payment
from workflows.inputs import CreditNoteIn, PaymentIn

TODAY = date(2026, 11, 24)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)
GERMAN, AMERICAN = "UGERMAN1", "UAMERIC1"


@pytest.fixture
def books(server, standin):
    """Müller (EUR): INV-M1 (2,000.00) open; INV-M2 (500.00) paid then credited 100.00 by an
    ERP's note (customer credit); 1,234.56 received on account, applied to nothing."""
    standin.api.add_user(GERMAN, "greta.inkasso", locale="de-DE")
    standin.api.add_user(AMERICAN, "amy.collector", locale="en-US")
    with server.db.transaction() as s:
        for user in (GERMAN, AMERICAN):
            f.user(s, user, "collector")
        f.customer(s, "C-MUELLER", "Müller GmbH", currency="EUR")
        f.customer(s, "C-NEUKUNDE", "Neukunde AG", currency="EUR")
        for number, total in (("INV-M1", "2000.00"), ("INV-M2", "500.00")):
            f.invoice(s, number, "C-MUELLER", total=total, currency="EUR",
                      issued=TODAY - timedelta(days=20), due=TODAY + timedelta(days=10))
        for amount, reference in (("500.00", "INV-M2"), ("1234.56", "Vorauszahlung")):
            record_payment(s, PaymentIn(
                amount=amount, currency="EUR", customer="C-MUELLER", reference=reference,
                received_at=datetime.combine(TODAY - timedelta(days=1), time(9), UTC)),
                actor="api")
        credit_notes.request_credit_note(s, CreditNoteIn(
            invoice="INV-M2", reason="Rabatt", amount="100.00", source="erp"), actor="api",
            now=datetime.combine(TODAY, time(9), UTC))


def test_a_german_reader_sees_the_unapplied_cash_in_her_formats(books, slack, standin) -> None:
    # when she looks the customer up
    card = text_of(ask(slack, standin.api, GERMAN, "customer Müller GmbH"))
    # then the money held for Müller is on the card, in her formats
    assert "Unapplied payments" in card and "1.234,56\xa0€" in card
    assert "Customer credit" in card and "100,00\xa0€" in card
    assert "EUR 1,234.56" not in card


def test_an_american_reader_sees_it_in_the_apps_formats(books, slack, standin) -> None:
    card = text_of(ask(slack, standin.api, AMERICAN, "customer Müller GmbH"))
    assert "Unapplied payments" in card and "EUR 1,234.56" in card
    assert "Customer credit" in card and "EUR 100.00" in card
    # a customer with nothing held says nothing of it
    other = text_of(ask(slack, standin.api, AMERICAN, "customer Neukunde AG"))
    assert "Neukunde AG" in other
    assert "Unapplied payments" not in other and "Customer credit" not in other
