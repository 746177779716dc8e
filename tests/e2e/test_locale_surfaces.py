"""People's own formats on what is addressed to them alone (issue 17 point 5): a German user's
`/o2c order`, `/o2c ar`, approval DM and App Home show amounts and dates in their Slack locale
(de-DE: "1.234,56 €", "31.12.2026"); an en-US user's stay in the app's own formats; texts stay
English. Signed requests against the real server and the Slack stand-in."""

from __future__ import annotations

import re

import pytest

from tests.support import factories as f
from tests.support.slack import ask

GERMAN, AMERICAN = "UGERMAN1", "UAMERIC1"
EURO = "1.234,56\xa0€"  # CLDR's de-DE: a no-break space before the sign
GERMAN_DATE = re.compile(r"\b\d{2}\.\d{2}\.\d{4}\b")
ENGLISH_DATE = re.compile(r"\b\d{2} [A-Z][a-z]{2} \d{4}\b")
WAIT = 10.0


@pytest.fixture
def books(server, standin) -> dict:
    standin.api.add_user(GERMAN, "greta.vertrieb", locale="de-DE")
    standin.api.add_user(AMERICAN, "amy.sales", locale="en-US")
    with server.db.transaction() as s:
        for user in (GERMAN, AMERICAN):
            f.user(s, user, "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-MUELLER", "Müller GmbH", currency="EUR")
        f.customer(s, "C-NEUKUNDE", "Neukunde AG", currency="EUR", reviewed=False)
        f.product(s, "WID-E", price="1234.56", currency="EUR")
        known = f.order(s, "C-MUELLER", rep=GERMAN, lines=[("WID-E", 1)], currency="EUR")
        f.invoice(s, "INV-2026-000900", "C-MUELLER", total="1234.56", currency="EUR")
    return {"order": known.number}


def text_of(payload: object) -> str:
    """Every text a message or view shows, one per line."""
    if isinstance(payload, dict):
        return "\n".join(filter(None, [payload["text"] if isinstance(payload.get("text"), str)
                                        else ""] + [text_of(v) for k, v in payload.items()
                                                    if k != "text" or isinstance(v, dict)]))
    if isinstance(payload, list):
        return "\n".join(text_of(v) for v in payload)
    return ""


def home_text(standin, user: str) -> str:
    view = standin.api.wait_for(lambda: standin.api.home_view(user), WAIT, f"{user}'s home")
    return text_of(view["blocks"])


def test_a_german_users_answers_dm_and_home_are_in_german_formats(
        server, slack, standin, books) -> None:
    # when: she looks up her order and the receivables
    order = text_of(ask(slack, standin.api, GERMAN, f"order {books['order']}"))
    ar = text_of(ask(slack, standin.api, GERMAN, "ar"))
    # then: amounts and dates in her format, texts in English
    assert EURO in order and "Balance due" in order and GERMAN_DATE.search(order)
    assert "EUR 1,234.56" not in order
    assert EURO in ar and "overdue" in ar and GERMAN_DATE.search(ar)
    # when: she opens App Home
    slack.app_home_opened(GERMAN)
    # then: her open orders in her format
    assert EURO in home_text(standin, GERMAN)
    # when: her order for a new customer is approved by a credit approver (who reads English)
    with server.db.transaction() as s:
        number = f.order(s, "C-NEUKUNDE", rep=GERMAN, lines=[("WID-E", 1)],
                         currency="EUR").number
    server.deps.notify_outbox()
    card = standin.api.wait_for(lambda: next(
        (m for m in standin.api.messages("CAPPROVAL") if number in m["text"]), None), WAIT)
    assert "EUR 1,234.56" in text_of(card)  # the channel keeps the workspace's formats
    assert slack.click("UCREDIT1", card, "approval_approve").status_code == 200
    # then: the DM telling her is in her format
    dm = standin.api.wait_for(lambda: [m for m in standin.api.dm_messages(GERMAN)
                                       if number in m["text"] and "approved" in text_of(m)],
                              WAIT, "her DM")[0]
    assert EURO in text_of(dm)
    # and: her locale was asked for once
    assert len([c for c in standin.api.calls_to("users.info")
                if c.params["user"] == GERMAN]) == 1


def test_an_american_users_answers_and_home_stay_as_today(server, slack, standin,
                                                         books) -> None:
    # given: an order of hers
    with server.db.transaction() as s:
        number = f.order(s, "C-MUELLER", rep=AMERICAN, lines=[("WID-E", 1)],
                         currency="EUR").number
    # when
    order = text_of(ask(slack, standin.api, AMERICAN, f"order {number}"))
    ar = text_of(ask(slack, standin.api, AMERICAN, "ar"))
    slack.app_home_opened(AMERICAN)
    # then: the app's own formats
    assert "EUR 1,234.56" in order and ENGLISH_DATE.search(order) and EURO not in order
    assert "EUR 1,234.56" in ar and ENGLISH_DATE.search(ar)
    assert "EUR 1,234.56" in home_text(standin, AMERICAN)
