"""People's own formats on what is addressed to them alone (issue 17 point 5): a German user's
`/o2c order`, `/o2c ar`, approval DM and App Home show amounts and dates in their Slack locale
(de-DE: "1.234,56 €", "31.12.2026"); an en-US user's stay in the app's own formats; texts stay
English. Signed requests against the real server and the Slack stand-in."""

from __future__ import annotations

import re
from datetime import timedelta

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
    # the order's DM to its rep is delivered first: delivering it asks Slack for her locale,
    # and a delivery racing her first question would ask a second time (once each)
    server.deps.notify_outbox()
    standin.api.wait_for(lambda: not _undelivered(server), WAIT, "the order's DM")
    return {"order": known.number}


def _undelivered(server) -> list:
    from sqlmodel import select

    from models import OutboxMessage

    with server.db.read_session() as s:
        return s.exec(select(OutboxMessage.id).where(
            OutboxMessage.transport == "slack",
            OutboxMessage.status.in_(["pending", "sending"]))).all()


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


# -- what handlers format themselves (issue 17, the rest of point 5) ---------------------------
COLLECTOR, APPROVER, NEW_REP = "UGERMAN2", "UGERMAN3", "UGERMAN4"  # de-DE, never looked up
CHANNEL = "C0GENERAL"


def german_people(server, standin) -> None:
    for user, name, role in ((COLLECTOR, "gerd.inkasso", "collector"),
                             (APPROVER, "gabi.kredit", "credit_approver"),
                             (NEW_REP, "georg.vertrieb", "sales")):
        standin.api.add_user(user, name, locale="de-DE")
        with server.db.transaction() as s:
            f.user(s, user, role)


def latest_modal(standin, user: str, needle: str) -> str:
    """The text of `user`'s latest modal once it shows `needle` (a modal opened before the
    reader's locale was known is updated in their formats)."""
    return standin.api.wait_for(lambda: next(
        (t for t in [text_of((standin.api.views_for(user) or [{}])[-1].get("blocks") or [])]
         if needle in t), None), WAIT, f"{user}'s modal with {needle!r}")


def ephemeral_with(standin, user: str, needle: str) -> str:
    return standin.api.wait_for(lambda: next(
        (text_of(e) for e in reversed(standin.api.ephemerals(user)) if needle in text_of(e)),
        None), WAIT, f"{user}'s answer with {needle!r}")


def answer_card(standin, user: str, needle: str) -> dict:
    """The latest ephemeral `user` sees with `needle` in it (text or blocks)."""
    return standin.api.wait_for(lambda: next(
        (e for e in reversed(standin.api.ephemerals(user))
         if needle in text_of(e) or needle in str(e.get("blocks"))), None), WAIT, needle)


def asked_locale(standin, user: str) -> int:
    return len([c for c in standin.api.calls_to("users.info") if c.params["user"] == user])


def test_germans_never_looked_up_get_german_formats_in_a_dm_and_in_a_modal(
        server, slack, standin, books) -> None:
    # given: a German sales rep and a German credit approver the app never asked Slack about
    german_people(server, standin)
    # when: the rep's order is approved by someone who reads English: a DM to him, written
    # by the outbox worker before he ever used the app
    with server.db.transaction() as s:
        first = f.order(s, "C-NEUKUNDE", rep=NEW_REP, lines=[("WID-E", 1)],
                        currency="EUR").number
        second = f.order(s, "C-NEUKUNDE", rep=NEW_REP, lines=[("WID-E", 2)],
                         currency="EUR").number
    server.deps.notify_outbox()
    card = standin.api.wait_for(lambda: next(
        (m for m in standin.api.messages("CAPPROVAL") if first in m["text"]), None), WAIT)
    assert slack.click("UCREDIT1", card, "approval_approve").status_code == 200
    dm = standin.api.wait_for(lambda: [m for m in standin.api.dm_messages(NEW_REP)
                                       if first in m["text"] and "approved" in text_of(m)],
                              WAIT, "his DM")[0]
    # then: the DM is in his format (Slack asked once, at delivery)
    assert EURO in text_of(dm) and "EUR 1,234.56" not in text_of(dm)
    assert asked_locale(standin, NEW_REP) == 1
    # when: the approver's first request opens a modal (reject, with a reason)
    card = standin.api.wait_for(lambda: next(
        (m for m in standin.api.messages("CAPPROVAL") if second in m["text"]), None), WAIT)
    assert slack.click(APPROVER, card, "approval_reject").status_code == 200
    # then: the modal shows the amount in her format (opened, then updated once known)
    shown = latest_modal(standin, APPROVER, "2.469,12\xa0€")
    assert "EUR 2,469.12" not in shown
    assert asked_locale(standin, APPROVER) == 1


def test_back_office_modals_and_answers_are_in_german_formats(server, slack, standin,
                                                              books) -> None:
    german_people(server, standin)
    # when: the German collector's first request is the dispute shortcut on a message
    message = standin.api.add_message(CHANNEL, GERMAN, "Müller: INV-2026-000900 kam kaputt an")
    assert slack.message_shortcut(COLLECTOR, message, "o2c_dispute_message").status_code == 200
    # then: the modal in her format, and the answer to it too
    latest_modal(standin, COLLECTOR, f"{EURO} open")
    view = standin.api.views_for(COLLECTOR)[-1]
    slack.submit_view(COLLECTOR, view, {"dispute_reason": {"dispute_reason_select": "damaged"},
                                        "dispute_amount": {"dispute_amount_input": "100.00"}})
    assert "for 100,00\xa0€" in ephemeral_with(standin, COLLECTOR, "Dispute #")
    # when: she asks for a credit note from the invoice card
    ask(slack, standin.api, COLLECTOR, "invoice INV-2026-000900")
    card = answer_card(standin, COLLECTOR, "Invoice INV-2026-000900")
    slack.click(COLLECTOR, card, "backoffice_credit_note_request")
    shown = latest_modal(standin, COLLECTOR, "can still be credited")
    assert EURO in shown and "EUR 1,234.56" not in shown
    slack.submit_view(COLLECTOR, standin.api.views_for(COLLECTOR)[-1], {
        "backoffice_amount": {"backoffice_amount_input": "120.00"},
        "backoffice_reason": {"backoffice_reason_input": "zwei Stück beschädigt"}})
    assert "Credit note of 120,00\xa0€" in ephemeral_with(standin, COLLECTOR,
                                                          "Credit note of")
    # and: the write-off modal
    slack.click(COLLECTOR, card, "backoffice_write_off_request")
    shown = latest_modal(standin, COLLECTOR, "Write off (bad debt)")
    assert "\xa0€ open" in shown and "EUR " not in shown


def test_collections_and_credit_hold_answers_are_in_german_formats(server, slack, standin,
                                                                   books) -> None:
    from bot.jobs import run_job

    # given: the German collector owns an overdue customer
    german_people(server, standin)
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        late = f.customer(s, "C-SPAET", "Spät KG", currency="EUR", collector=COLLECTOR)
        f.invoice(s, "INV-2026-000950", "C-SPAET", total="1234.56", currency="EUR",
                  due=today - timedelta(days=20))
    # when: the digest reaches her (a DM: in her format, never looked up before)
    run_job("digest", server.deps, today)
    digest = standin.api.wait_for(lambda: standin.api.dm_messages(COLLECTOR), WAIT)[0]
    assert EURO in text_of(digest)
    block = f"collections_account:{late.id}"
    # when: she snoozes the customer and records a promise
    slack.click(COLLECTOR, digest, "collections_snooze", block_id=block)
    snoozed = standin.api.wait_for(lambda: next(
        (text_of(m) for m in standin.api.ephemerals(COLLECTOR) + standin.api.dm_messages(
            COLLECTOR) if "snoozed until" in text_of(m)), None), WAIT)
    assert GERMAN_DATE.search(snoozed)
    slack.click(COLLECTOR, digest, "collections_promise", block_id=block)
    view = standin.api.wait_for(lambda: (standin.api.views_for(COLLECTOR) or [None])[-1], WAIT)
    slack.submit_view(COLLECTOR, view, {
        "promise_amount": {"promise_amount_input": "1000.00"},
        "promise_date": {"promise_date_input": today + timedelta(days=3)}})
    promised = standin.api.wait_for(lambda: next(
        (text_of(m) for m in standin.api.ephemerals(COLLECTOR) + standin.api.dm_messages(
            COLLECTOR) if "will pay" in text_of(m)), None), WAIT)
    assert "1.000,00\xa0€" in promised and GERMAN_DATE.search(promised)
    # when: the German credit approver puts the customer on hold, then releases it
    ask(slack, standin.api, APPROVER, "customer C-SPAET")
    card = answer_card(standin, APPROVER, "customer_credit_hold")
    slack.click(APPROVER, card, "customer_credit_hold")
    held = standin.api.wait_for(lambda: next(
        (e for e in reversed(standin.api.ephemerals(APPROVER))
         if "customer_credit_release" in str(e["blocks"])), None), WAIT)
    slack.click(APPROVER, held, "customer_credit_release")
    # then: the situation in the release modal is in her format
    shown = latest_modal(standin, APPROVER, "Overdue ")
    assert f"Overdue {EURO} of {EURO} open" in shown


def test_option_lists_answered_at_ack_time_are_in_the_readers_format(server, slack, standin,
                                                                     books) -> None:
    # given: both reps have asked something (their locales are known)
    ask(slack, standin.api, GERMAN, "ar")
    ask(slack, standin.api, AMERICAN, "ar")
    for user, wanted in ((GERMAN, EURO), (AMERICAN, "EUR 1,234.56")):
        # when: each opens the order modal and searches a product
        slack.slash(user, "new")
        view = standin.api.wait_for(lambda u=user: (standin.api.views_for(u) or [None])[-1],
                                    WAIT)
        answer = slack.block_suggestion(user, view, "order_product_select", "WID",
                                        block_id="order_line_0_product")
        # then: the prices in their format
        [option] = answer.json()["options"]
        assert option["description"]["text"] == wanted


def test_an_american_users_mention_card_agrees_with_o2c(server, slack, standin, books) -> None:
    # when: an en-US rep mentions the invoice in a channel, and asks /o2c about it
    assert slack.message(AMERICAN, CHANNEL, "INV-2026-000900?").status_code == 200
    card = standin.api.wait_for(lambda: standin.api.ephemerals(AMERICAN, CHANNEL), WAIT)[0]
    answer = text_of(ask(slack, standin.api, AMERICAN, "invoice INV-2026-000900"))
    # then: one format for en-US everywhere: the app's own
    assert "EUR 1,234.56" in text_of(card) and "EUR 1,234.56" in answer
    assert "€1,234.56" not in text_of(card) and "$" not in text_of(card)
    # and: her credit-note modal too
    slack.click(AMERICAN, answer_card(standin, AMERICAN, "Invoice INV-2026-000900"),
                "backoffice_credit_note_request")
    assert "EUR 1,234.56" in latest_modal(standin, AMERICAN, "can still be credited")


def test_a_german_admins_home_kpis_and_trend_are_in_german_formats(
        server, slack, standin) -> None:
    # given: a German admin, and open receivables in the home currency
    admin = "UGERMAN5"
    standin.api.add_user(admin, "gustav.leitung", locale="de-DE")
    with server.db.transaction() as s:
        f.user(s, admin, "admin")
        f.customer(s, "C-MUELLER", "Müller GmbH")
        f.invoice(s, "INV-2026-000901", "C-MUELLER", total="1234.56")
    # when: she opens App Home
    slack.app_home_opened(admin)
    home = home_text(standin, admin)
    # then: the open-AR trend line, like the KPI figures, is in her format
    [trend] = [line for line in home.splitlines() if "Open AR, last 8 weeks" in line]
    assert "1.234,56" in trend and "USD 1,234.56" not in trend, trend
    assert "USD 1,234.56" not in home
