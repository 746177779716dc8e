"""Dunning over an imported book (issue 18): one statement e-mail per customer, one summary
post per run in the AR channel, and an admin's confirmation before a run that large."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from blocks.templates import render as render_template
from bot.mailer import render_email
from models import AuditEvent, DunningConfirmation, DunningNotice, Invoice, OutboxMessage
from tests.support import factories as f
from tests.support.meanwhile import at_once
from tests.support.timetravel import frozen_at
from workflows import dunning
from workflows.errors import DomainError, PermissionDenied

TODAY = date(2026, 11, 23)
NOW = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOW)


def _outbox(s, template: str | None = None) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if template:
        query = query.where(OutboxMessage.payload["template"].as_string() == template)
    return list(s.exec(query).all())


def _templates(s) -> list[tuple[str, str, str]]:
    return sorted((r.transport, r.payload["template"],
                   r.payload.get("to") or r.payload["channel"]) for r in _outbox(s))


def given_an_imported_book(db, customers: int = 3) -> None:
    """Customer C-0 has four invoices due at once at three levels (and one not due yet);
    every other customer one invoice at +7."""
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UADMIN01", "admin")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-0", "Acme", collector="UCOLL001")
        for number, days in (("INV-A", 2), ("INV-B", 3), ("INV-C", 8), ("INV-D", 40),
                             ("INV-E", -10)):
            f.invoice(s, number, "C-0", total="100.00", due=TODAY - timedelta(days=days))
        for i in range(1, customers):
            f.customer(s, f"C-{i}", f"Customer {i}")
            f.invoice(s, f"INV-{i}", f"C-{i}", total="10.00", due=TODAY - timedelta(days=8))


def test_a_customers_notices_of_one_run_make_one_statement_and_one_summary_post(db) -> None:
    # given an imported book
    given_an_imported_book(db)
    # when the first run goes over it
    run = dunning.run_all(db, TODAY, batch=2)
    # then: one e-mail per customer — a statement for the customer with several notices
    with db.read_session() as s:
        emails = [r for r in _outbox(s) if r.transport == "email"]
        assert sorted(r.payload["template"] for r in emails) == [
            "dunning_firm", "dunning_firm", "dunning_statement"]
        statement = next(r for r in emails if r.payload["template"] == "dunning_statement")
        listed = [(i["number"], i["kind"]) for i in statement.payload["context"]["invoices"]]
        assert sorted(listed) == [("INV-A", "reminder"), ("INV-B", "reminder"),
                                  ("INV-C", "firm"), ("INV-D", "final")]
        subject, body = render_email("dunning_statement", statement.payload["context"],
                                     from_email="ar@example.com")
        assert subject.startswith("FINAL NOTICE: 4 invoices") and "INV-C" in body
        assert "credit hold" in body and "INV-E" not in body
        # the collector hears once for the run, not once per invoice or kind: the customer's
        # first invoice of each kind and how many more
        [told] = [r.payload for r in _outbox(s) if r.payload.get("channel") == "UCOLL001"]
        assert told["template"] == "dunning_people"
        assert [(k["kind"], k["invoices"], [(c["name"], c["first"]["number"], c["invoices"])
                                            for c in k["top"]])
                for k in told["context"]["kinds"]] == [
            ("reminder", 2, [("Acme", "INV-A", 2)]), ("final", 1, [("Acme", "INV-D", 1)])]
        assert "+1 more" in json.dumps(render_template("dunning_people", told["context"]))
        # and the AR channel gets one summary post for the run
        ar = [r for r in _outbox(s) if r.payload.get("channel") == "ar"]
        assert [r.payload["template"] for r in ar] == ["dunning_summary"]
        summary = ar[0].payload["context"]
        assert (summary["notices"], summary["customers"], summary["emails"]) == (6, 3, 3)
        assert summary["top"][0]["name"] == "Acme" and summary["credit_holds"] == ["Acme"]
        assert "6 reminders sent to 3 customers" in render_template(
            "dunning_summary", summary)["text"]
    assert run.sent == {1: 2, 7: 3, 30: 1} and run.emails == 3
    # when it runs again: nothing more, not even a summary
    again = dunning.run_all(db, TODAY, batch=2)
    assert again.sent == {} and again.id is None  # no run row opened: nothing written
    with db.read_session() as s:
        assert len(_outbox(s, "dunning_summary")) == 1


def test_a_run_over_the_threshold_waits_for_an_admin_and_then_sends_once(db) -> None:
    # given a book whose run would send 3 e-mails, above a threshold of 2
    given_an_imported_book(db)
    # when the job runs twice that day
    first = dunning.run_all(db, TODAY, now=NOW, confirm_above=2)
    second = dunning.run_all(db, TODAY, now=NOW, confirm_above=2)
    # then nothing is sent; one request, one post to the AR channel, audited once
    assert first.waiting is not None and second.waiting == first.waiting
    assert first.sent == {} == second.sent
    with db.read_session() as s:
        assert s.exec(select(DunningNotice)).all() == []
        assert _templates(s) == [("slack", "dunning_confirm", "ar")]
        request = s.exec(select(DunningConfirmation)).one()
        assert (request.emails, request.customers, request.notices) == (3, 3, 6)
        asked = s.exec(select(AuditEvent).where(
            AuditEvent.action == "dunning.confirmation_requested")).all()
        assert len(asked) == 1
        assert "waits for an admin" in render_template(
            "dunning_confirm", _outbox(s)[0].payload["context"])["text"]
    # when a collector tries to confirm: refused
    with pytest.raises(PermissionDenied), db.transaction() as s:
        dunning.confirm(s, user_id="UCOLL001", now=NOW)
    # when an admin confirms (a second time: nothing is waiting any more)
    with db.transaction() as s:
        assert dunning.confirm(s, user_id="UADMIN01", now=NOW).confirmed_by == "UADMIN01"
    with pytest.raises(DomainError, match="No dunning run is waiting"), db.transaction() as s:
        dunning.confirm(s, user_id="UADMIN01", now=NOW)
    # then the next runs send every notice once
    sent = dunning.run_all(db, TODAY, now=NOW, confirm_above=2)
    dunning.run_all(db, TODAY, now=NOW, confirm_above=2)
    assert sum(sent.sent.values()) == 6 and sent.emails == 3
    with db.read_session() as s:
        assert len([r for r in _outbox(s) if r.transport == "email"]) == 3
        confirmed = s.exec(select(AuditEvent).where(
            AuditEvent.action == "dunning.confirmed")).all()
        assert [e.actor for e in confirmed] == ["UADMIN01"]


def test_without_a_confirmation_the_next_day_asks_again(db) -> None:
    # given a run waiting for an admin
    given_an_imported_book(db)
    dunning.run_all(db, TODAY, now=NOW, confirm_above=2)
    # when nobody confirms and the next day's run comes
    tomorrow = dunning.run_all(db, TODAY + timedelta(days=1), now=NOW + timedelta(days=1),
                               confirm_above=2)
    # then it asks again (a new request, a new post) and still sends nothing
    assert tomorrow.waiting is not None and tomorrow.sent == {}
    with db.read_session() as s:
        assert len(s.exec(select(DunningConfirmation)).all()) == 2
        assert _templates(s) == [("slack", "dunning_confirm", "ar")] * 2
        assert s.exec(select(DunningNotice)).all() == []


def test_a_run_under_the_threshold_needs_no_confirmation(db) -> None:
    given_an_imported_book(db)
    run = dunning.run_all(db, TODAY, now=NOW, confirm_above=3)
    assert run.waiting is None and run.emails == 3


def test_two_processes_dunning_at_once_send_each_notice_once(db) -> None:
    # given a book of several customers
    given_an_imported_book(db, customers=8)
    # when two processes run the same dunning at the same time (a failure of either fails)
    runs = at_once(lambda: dunning.run_all(db, TODAY, batch=2), 2)
    # then every notice went out once, and every invoice is in exactly one e-mail
    assert sum(sum(r.sent.values()) for r in runs) == 4 + 7
    with db.read_session() as s:
        emailed = []
        for row in _outbox(s):
            if row.transport == "email":
                context = row.payload["context"]
                emailed += ([i["number"] for i in context["invoices"]] if "invoices" in context
                            else [context["invoice"]["number"]])
        assert sorted(emailed) == sorted(["INV-A", "INV-B", "INV-C", "INV-D",
                                          *[f"INV-{i}" for i in range(1, 8)]])
        numbers = s.exec(select(Invoice.number, DunningNotice.level)
                         .join(Invoice, Invoice.id == DunningNotice.invoice_id)
                         .where(DunningNotice.skipped.is_(False))).all()
        assert len(numbers) == len(set(numbers)) == 11


def test_an_admin_confirms_on_the_card_and_a_collector_is_refused(server, slack, standin
                                                                   ) -> None:
    from blocks import ids
    from tests.conftest import ADMIN
    from tests.support.slack import text_of

    api = standin.api
    # given a dunning run waiting for an admin: its card is in the AR channel
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-1", "Acme")
        f.invoice(s, "INV-1", "C-1", due=TODAY - timedelta(days=8))
    assert dunning.run_all(server.db, TODAY, now=NOW, confirm_above=0).waiting is not None
    card = api.wait_for(lambda: next((m for m in api.messages("CAR000001")
                                      if "waits for an admin" in m["text"]), None), 30,
                        "the card")

    def answer_to(user: str, seen: int) -> str:
        return api.wait_for(lambda: next((text_of(r["payload"]) for r in api.responses[seen:]
                                          if r["user"] == user), None), 30, "the answer")

    # when a collector types /o2c dunning confirm: refused, and nothing is confirmed
    seen = len(api.responses)
    assert slack.slash("UCOLL001", "dunning confirm").status_code == 200
    assert "admin" in answer_to("UCOLL001", seen).lower()
    # nor can they click the card's button (the role is checked again on the server)
    seen = len(api.responses)
    assert slack.click("UCOLL001", card, ids.DUNNING_CONFIRM).status_code == 200
    assert "admin" in answer_to("UCOLL001", seen).lower()
    with server.db.read_session() as s:
        assert s.exec(select(DunningConfirmation)).one().confirmed_at is None
    # when an admin clicks it
    seen = len(api.responses)
    assert slack.click(ADMIN, card, ids.DUNNING_CONFIRM).status_code == 200
    # then it is confirmed, audited with the admin as the actor, and the next run sends
    assert f"Dunning of {TODAY:%d %b %Y} confirmed" in answer_to(ADMIN, seen)  # their format
    with server.db.read_session() as s:
        assert s.exec(select(DunningConfirmation)).one().confirmed_by == ADMIN
        assert [e.actor for e in s.exec(select(AuditEvent).where(
            AuditEvent.action == "dunning.confirmed")).all()] == [ADMIN]
    # and the command then says nothing is waiting
    seen = len(api.responses)
    assert slack.slash(ADMIN, "dunning confirm").status_code == 200
    assert "No dunning run is waiting" in answer_to(ADMIN, seen)
    assert dunning.run_all(server.db, TODAY, now=NOW, confirm_above=0).emails == 1
