"""Every `/o2c` lookup, through signed requests to the real server and the Slack stand-in."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import select

from models import OutboxMessage, OutboxStatus, User
from sandbox.webapi import Fault
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)


@pytest.fixture
def company(server):
    today = TODAY
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales", timezone="America/New_York")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation", collector="UCOLL001",
                   sales_rep="USALES01")
        f.customer(s, "C-INITECH", "Initech")
        f.customer(s, "C-GLOBAL", "Global Logistics Ltd")
        f.product(s, "WID-1", price="100.00")
        order = f.order(s, lines=[("WID-1", 3)])
        f.invoice(s, "INV-OLD-1", total="500.00", due=today - timedelta(days=45))
        f.invoice(s, "INV-NEW-1", total="250.00", due=today + timedelta(days=10))
    return {"order": order.number}


def test_help_lists_every_subcommand(slack, standin) -> None:
    # when
    answer = ask(slack, standin.api, ADMIN, "help")  # an admin may run every one
    # then
    text = text_of(answer)
    for usage in ("/o2c order", "/o2c orders", "/o2c customer", "/o2c ar", "/o2c role"):
        assert usage in text


def test_unknown_subcommand_gets_help_not_an_error(slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "frobnicate now")
    assert "I don't know `frobnicate`" in text_of(answer)


def test_order_posted_via_api_is_shown_by_o2c_order(server, slack, standin, api) -> None:
    # given
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="12.50")
    created = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                        "currency": "USD",
                                        "lines": [{"sku": "WID-1", "quantity": 4}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    # when
    answer = ask(slack, standin.api, "USALES01", f"order {number.lower()}")
    # then
    text = text_of(answer)
    assert f"Order {number}" in text
    assert "Globex Corporation" in text
    assert "USD 50.00" in text
    assert "approved" in text


@pytest.mark.parametrize("fault", [Fault(body={"ok": True}), Fault(status=503)],
                         ids=["answer-without-user", "slack-unavailable"])
def test_an_order_is_answered_when_slack_cannot_say_the_callers_locale(
        company, server, slack, standin, fault) -> None:
    # given: the messages the fixture's order queued for the rep delivered (the outbox looks
    # up their reader's locale itself: when it did so during the asks below, it was a second
    # users.info), the rep's locale not known, then Slack answering the caller's users.info
    # without a user, or not at all
    server.worker.drain()
    standin.api.wait_for(lambda: _nothing_to_deliver(server), description="the outbox delivered")
    with server.db.transaction() as s:
        s.get(User, "USALES01").locale = None
    server.deps.locales.pop("USALES01", None)  # (the outbox shares the server's cache)
    asked_before = len(standin.api.calls_to("users.info"))
    standin.api.inject("users.info", fault, fault)
    # when
    first = ask(slack, standin.api, "USALES01", f"order {company['order']}")
    second = ask(slack, standin.api, "USALES01", f"order {company['order']}")
    # then: the order card both times, in the app's formats, and Slack asked once
    for answer in (first, second):
        text = text_of(answer)
        assert f"Order {company['order']}" in text and "USD 300.00" in text
        assert "went wrong" not in text
    assert len(standin.api.calls_to("users.info")) - asked_before == 1


def _nothing_to_deliver(server) -> bool:
    with server.db.read_session() as s:
        return s.exec(select(OutboxMessage).where(
            OutboxMessage.transport == "slack",  # (e-mails wait for an SMTP server here)
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
        ).first() is None


def test_an_order_is_answered_in_one_transaction_of_few_reads(company, server, slack,
                                                               standin) -> None:
    """The role check and the lookup share one read transaction (one pooled connection, one
    BEGIN), and the order, its customer and the customer's backorder choice come in one query:
    each round trip counts when a server answers a hundred commands a second (bench/)."""
    # given a caller already seen (their workspace and locale known, so nothing to record)
    with server.db.transaction() as s:
        row = s.get(User, "USALES01")
        row.team_id, row.locale = slack.team_id, "en-US"
        s.add(row)
    ask(slack, standin.api, "USALES01", f"order {company['order']}")
    statements: dict[int, list[str]] = {}

    def note(conn, cursor, statement, params, context, executemany) -> None:
        statements.setdefault(threading.get_ident(), []).append(statement)

    # when they look the order up again
    event.listen(server.db.engine, "before_cursor_execute", note)
    try:
        answer = ask(slack, standin.api, "USALES01", f"order {company['order']}")
    finally:
        event.remove(server.db.engine, "before_cursor_execute", note)
    # then the answer's thread began one transaction and read seven times (role; order with
    # customer and choice; lines; approvals; shipments; invoices; notices)
    assert f"Order {company['order']}" in text_of(answer)
    # (the thread that read the order's lines; the outbox worker polls meanwhile, in its own)
    (answering,) = [[sql.split()[0].upper() for sql in run] for run in statements.values()
                    if any("order_lines" in sql for sql in run)]
    assert answering.count("BEGIN") <= 1
    assert [kind for kind in answering if kind != "BEGIN"] == ["SELECT"] * 7


def test_a_lookup_holds_no_database_connection_while_slack_takes_its_answer(
        company, server, slack, standin, monkeypatch) -> None:
    """The answer is posted to the response_url after the read transaction ends: a slow
    Slack never keeps a pooled connection (and a transaction) from other requests."""
    from slack_sdk.webhook import WebhookClient

    held: dict[int, int] = {}  # connections checked out, by thread
    while_posting: list[int] = []
    post = WebhookClient.send_dict

    def checkout(*_) -> None:
        held[threading.get_ident()] = held.get(threading.get_ident(), 0) + 1

    def checkin(*_) -> None:
        held[threading.get_ident()] = held.get(threading.get_ident(), 0) - 1

    def posting(self, body, **kwargs):
        while_posting.append(held.get(threading.get_ident(), 0))
        return post(self, body, **kwargs)

    monkeypatch.setattr(WebhookClient, "send_dict", posting)
    event.listen(server.db.engine, "checkout", checkout)
    event.listen(server.db.engine, "checkin", checkin)
    try:
        # when a sales rep looks an order up
        answer = ask(slack, standin.api, "USALES01", f"order {company['order']}")
    finally:
        event.remove(server.db.engine, "checkout", checkout)
        event.remove(server.db.engine, "checkin", checkin)
    # then the card arrived, posted by a thread that held no connection at that moment
    assert f"Order {company['order']}" in text_of(answer)
    assert while_posting == [0]


def test_unknown_order_says_so(company, slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "order SO-999999")
    assert "No order `SO-999999`" in text_of(answer)


def test_customer_matches_fuzzily(company, slack, standin) -> None:
    # when
    answer = ask(slack, standin.api, "USALES01", "customer glbex")
    # then
    text = text_of(answer)
    assert "Globex Corporation" in text
    assert "Credit limit" in text and "USD 50,000.00" in text
    assert "31-60" in text and "USD 500.00" in text  # the 45-days-late invoice
    assert "Overdue" in text


def test_ambiguous_customer_lists_closest_matches(company, slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "customer glob")
    text = text_of(answer)
    assert "Several customers could be" in text
    assert "Globex Corporation" in text and "Global Logistics Ltd" in text


def test_unknown_customer_gets_helpful_answer(company, slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "customer zzzzqqq")
    assert "No customer matches" in text_of(answer) or "Closest" in text_of(answer)


def test_orders_of_a_customer(company, slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "orders Globex")
    text = text_of(answer)
    assert company["order"] in text
    assert "USD 300.00" in text


def test_ar_overview_and_one_customer(company, slack, standin) -> None:
    overview = text_of(ask(slack, standin.api, "UCOLL001", "ar"))
    assert "Accounts receivable" in overview
    assert "USD 750.00" in overview  # open total
    assert "Globex Corporation" in overview
    one = text_of(ask(slack, standin.api, "UCOLL001", "ar initech"))
    assert "Initech" in one


def test_role_add_by_admin_and_refusal_for_others(server, slack, standin) -> None:
    from sqlmodel import select

    from models import AuditEvent, UserRole

    # when a non-admin tries
    refused = text_of(ask(slack, standin.api, "USALES01", "role add <@UCOLL001|cole> collector"))
    # then nothing changes, and the refusal is audited
    assert "admin" in refused
    with server.db.read_session() as s:
        assert s.get(UserRole, ("UCOLL001", "collector")) is None
        refusals = s.exec(select(AuditEvent).where(AuditEvent.action == "refused.role.change")
                          ).all()
        assert [r.actor for r in refusals] == ["USALES01"]
    # when the bootstrapped admin does it
    granted = text_of(ask(slack, standin.api, ADMIN, "role add <@UCOLL001|cole> collector"))
    # then
    assert "now has `collector`" in granted
    removed = text_of(ask(slack, standin.api, ADMIN, "role remove <@UCOLL001> collector"))
    assert "no longer has `collector`" in removed
    with server.db.read_session() as s:
        actions = [e.action for e in s.exec(select(AuditEvent).where(
            AuditEvent.entity_id == "UCOLL001", AuditEvent.action.like("role.%"))
            .order_by(AuditEvent.id))]
        assert actions == ["role.granted", "role.revoked"]


def test_role_usage_errors(server, slack, standin) -> None:
    from tests.conftest import ADMIN

    assert "Usage" in text_of(ask(slack, standin.api, ADMIN, "role add"))
    assert "there is no role `pope`" in text_of(ask(slack, standin.api, ADMIN,
                                                    "role add <@UX1> pope"))
    assert "not a user mention" in text_of(ask(slack, standin.api, ADMIN, "role add bob admin"))


def test_role_add_only_for_an_active_person_of_the_workspace(server, slack, standin) -> None:
    from models import AuditEvent, UserRole

    api = standin.api
    api.add_user("UGONE0001", "gone.person", deleted=True)
    # when an admin gives a role to nobody, to a deactivated member, to the bot, or while
    # Slack cannot answer who someone is
    answers = {who: text_of(ask(slack, api, ADMIN, f"role add <@{who}> admin"))
               for who in ("UGHOST999", "UGONE0001", api.bot_user_id)}
    api.inject("users.info", Fault(status=503))
    answers["outage"] = text_of(ask(slack, api, ADMIN, "role add <@UCOLL001> collector"))
    # then each is refused, saying why, and nobody got a role
    assert "there is no user `UGHOST999` in this workspace" in answers["UGHOST999"]
    assert "<@UGONE0001> has been deactivated in Slack" in answers["UGONE0001"]
    assert f"<@{api.bot_user_id}> is a bot, not a person" in answers[api.bot_user_id]
    assert "try again" in answers["outage"]
    assert all("Nothing was changed" in text for text in answers.values())
    with server.db.read_session() as s:
        assert s.exec(select(UserRole).where(UserRole.user_id != ADMIN)).all() == []
        assert s.exec(select(AuditEvent).where(AuditEvent.action.like("role.%"),
                                               AuditEvent.entity_id != ADMIN)).all() == []
    # and a non-admin is refused for the role alone (audited), without Slack being asked
    asked = len(api.calls_to("users.info"))
    refused = text_of(ask(slack, api, "USALES01", "role add <@UGHOST999> admin"))
    assert "Only an admin" in refused
    assert len([c for c in api.calls_to("users.info")[asked:]
                if c.params.get("user") == "UGHOST999"]) == 0
    # when Slack answers again, the active person gets the role
    granted = text_of(ask(slack, api, ADMIN, "role add <@UCOLL001> collector"))
    assert "now has `collector`" in granted
    # and a deactivated member's role can still be taken away
    with server.db.transaction() as s:
        f.user(s, "UGONE0001", "collector")  # (given before they left)
    removed = text_of(ask(slack, api, ADMIN, "role remove <@UGONE0001> collector"))
    assert "no longer has `collector`" in removed


def test_a_usage_answer_shows_its_placeholders_escaped(company, slack, standin) -> None:
    """`<customer>` in a usage line is text, not a link: raw in mrkdwn Slack would show a
    link named "customer" (and drop the brackets)."""
    for command, usage in (("customer", "/o2c customer &lt;name or id&gt;"),
                           ("orders", "/o2c orders &lt;customer&gt;")):
        text = text_of(ask(slack, standin.api, "USALES01", command))
        assert f"Usage: `{usage}`" in text, command
        assert "<customer>" not in text and "<name or id>" not in text
    text = text_of(ask(slack, standin.api, "UCOLL001", "statement globex 2026-13"))
    assert "Usage: `/o2c statement &lt;customer&gt; [YYYY-MM]`" in text
