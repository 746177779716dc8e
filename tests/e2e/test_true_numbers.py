"""Numbers that agree (issue 13, points 2 and 3), through signed requests to the real server
and the Slack stand-in: order views count ordered, shipped, cancelled and open quantities and
show the current total; "most overdue" lists only what is overdue; an invoice says why its
amount due is less than its total; every amount is grouped; no internals on screen."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from bot.clock import Clock
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at
from workflows import fulfilment
from workflows.orders import get_order

TODAY = date(2026, 11, 24)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)


def test_an_order_with_a_cancelled_short_line_shows_every_quantity_and_the_current_total(
        server, slack, standin) -> None:
    # given an order of 10 widgets with 6 in stock, whose short 4 were cancelled
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=6)
        number = f.order(s, lines=[("WID-1", 10)]).number
    with server.db.transaction() as s:
        fulfilment.cancel_line(s, order=get_order(s, number), line_no=1, actor="USALES01",
                               reason="customer takes what is in stock", now=Clock().now())
    # when the rep looks it up
    text = text_of(ask(slack, standin.api, "USALES01", f"order {number}"))
    # then the line says what was ordered, shipped, cancelled and is still open
    assert "ordered 10 · shipped 0 · cancelled 4 · open 6" in text
    # and the total is what the customer still owes for, with what was ordered beside it
    assert "USD 600.00 (ordered USD 1,000.00)" in text
    assert "Cancelled −USD 400.00" in text
    orders = text_of(ask(slack, standin.api, "USALES01", "orders globex"))
    assert "USD 600.00 (ordered USD 1,000.00)" in orders


def test_ar_lists_only_overdue_customers_and_a_paid_invoice_says_why_nothing_is_due(
        server, slack, standin, api) -> None:
    # given one customer with an overdue invoice, one with nothing overdue, and a paid one
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-LATE", "Late Payer Inc")
        f.customer(s, "C-FINE", "Prompt Payer Inc")
        f.invoice(s, "INV-LATE", "C-LATE", total="12345.67", due=TODAY - timedelta(days=40))
        f.invoice(s, "INV-FINE", "C-FINE", total="500.00", due=TODAY + timedelta(days=10))
        f.invoice(s, "INV-PAID", "C-FINE", total="2550.00", due=TODAY + timedelta(days=20))
    paid = api.post("/payments", json={"amount": "2550.00", "currency": "USD",
                                       "received_at": f"{TODAY.isoformat()}T10:00:00Z",
                                       "customer": "C-FINE", "reference": "INV-PAID"})
    assert paid.status_code == 201, paid.text
    # when the rep asks for AR
    ar = text_of(ask(slack, standin.api, "USALES01", "ar"))
    # then "most overdue" names only the customer with something overdue
    most = ar[ar.index("Most overdue"):]
    assert "Late Payer Inc" in most and "Prompt Payer" not in most
    assert "overdue USD 0.00" not in ar
    # and the paid invoice says why nothing is due
    invoice = text_of(ask(slack, standin.api, "USALES01", "invoice INV-PAID"))
    assert "USD 0.00 — USD 2,550.00 paid or credited" in invoice


def test_kpis_group_amounts_and_show_no_internals(server, slack, standin) -> None:
    # given an open invoice over a thousand
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-BIG", total="346114.47", due=TODAY - timedelta(days=3))
    # when an admin asks for the KPIs
    text = text_of(ask(slack, standin.api, ADMIN, "kpi"))
    # then amounts are grouped like everywhere else, and no source file is named
    assert "USD 346,114.47" in text and "USD 346114.47" not in text
    assert "workflows/" not in text and "Formulas" not in text


def test_a_plain_message_to_the_bot_gets_a_pointer_to_help(server, slack, standin, caplog
                                                          ) -> None:
    api = standin.api
    # when a person writes to the bot in its DM
    response = slack.message("USALES01", "DUSALES01", "hello, where are my orders?")
    assert response.status_code == 200
    # then the bot answers there with a pointer to /o2c help, once
    answer = api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                                   if m.get("user") == "U0BOT"] or None, 10, "the pointer")
    assert len(answer) == 1 and "/o2c help" in answer[0]["text"]
    # and the bot's own message in the DM (Slack sends it as an event too) gets no answer
    slack.event({"type": "message", "channel": "DUSALES01", "channel_type": "im",
                 "user": "U0BOT", "bot_id": "B0BOT", "text": answer[0]["text"],
                 "ts": answer[0]["ts"]})
    server.worker.drain()
    assert len([m for m in api.dm_messages("USALES01") if m.get("user") == "U0BOT"]) == 1
    assert "Unhandled request" not in caplog.text


def test_lookups_forgive_like_a_person(server, slack, standin) -> None:
    # given customers with accents and an order
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-KRUGER", "Kruger Maschinenbau GmbH")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.customer(s, "C-INITECH", "Initech")
        f.product(s, "WID-1", price="100.00")
        number = f.order(s, "C-GLOBEX", lines=[("WID-1", 1)]).number
    digits = number.removeprefix("SO-")
    # then an order is found by its digits alone, or typed loosely
    for typed in (digits, f"so{digits}", f"#{digits}", f"SO {digits}"):
        assert f"Order {number}" in text_of(ask(slack, standin.api, "USALES01",
                                                f"order {typed}")), typed
    # and an accent typed or not finds the customer
    assert "Credit limit" in text_of(ask(slack, standin.api, "USALES01", "customer Krüger"))
    # and nonsense matches nothing, instead of five unrelated "ambiguous" names
    nothing = text_of(ask(slack, standin.api, "USALES01", "customer zzzzzz"))
    assert "No customer matches" in nothing and "ambiguous" not in nothing
    assert "Initech" not in nothing and "Globex" not in nothing
    # and an invoice number typed as an order points to /o2c invoice
    assert "/o2c invoice INV-2026-000001" in text_of(
        ask(slack, standin.api, "USALES01", "order INV-2026-000001"))


def test_help_lists_only_what_the_caller_may_run(server, slack, standin) -> None:
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UNOBODY1")
    rep = text_of(ask(slack, standin.api, "USALES01", "help"))
    assert "/o2c new" in rep and "/o2c order" in rep
    for hidden in ("/o2c kpi", "/o2c worklist", "/o2c pay", "/o2c revenue", "/o2c role",
                   "/o2c admin"):
        assert hidden not in rep, hidden
    admin = text_of(ask(slack, standin.api, ADMIN, "help"))
    assert all(c in admin for c in ("/o2c kpi", "/o2c worklist", "/o2c role", "/o2c admin"))
    nobody = text_of(ask(slack, standin.api, "UNOBODY1", "help"))
    assert "no o2c role yet" in nobody and "/o2c order" not in nobody
