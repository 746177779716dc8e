"""The collector's one-click reminder ("send reminder" on the digest) is true when it goes out,
like a dunning e-mail (`workflows.dunning.due_now`): queued while the mail server was down, it
leaves out what the customer paid meanwhile, asks for today's amounts, and is withdrawn
(never sent, audited) when nothing is overdue any more."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.outbox import OutboxWorker
from models import AuditEvent, OutboxMessage, OutboxStatus
from tests.conftest import test_settings
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import collections
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

TODAY = date(2026, 11, 23)  # a Monday
NOON = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOON)


@pytest.fixture
def book(db):
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-A", "Acme", collector="UCOLL001")
    return db


@pytest.fixture
def mail_server(db, standin, database_url):
    """The worker, and a mail server that is down until `up` is set."""
    state = {"up": False, "mails": [], "refused": 0}

    def mailer(payload: dict) -> dict:
        if not state["up"]:
            state["refused"] += 1
            raise ConnectionRefusedError("smtp server down")
        state["mails"].append(payload)
        return {"ok": True}

    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token="xoxb-test-token", base_url=standin.api_url, retry_handlers=[])
    return state, OutboxWorker(db, client, settings, mailer=mailer)


def _remind(db) -> None:
    with db.transaction() as s:
        collections.send_reminder(s, customer_id=1, actor="UCOLL001", as_of=TODAY, now=NOON)


def _pay(db, amount: str, reference: str) -> None:
    with db.transaction() as s:
        record_payment(s, PaymentIn(amount=amount, currency="USD", reference=reference,
                                    customer="C-A",
                                    received_at=datetime.combine(TODAY, time(11), UTC)),
                       actor="test")


def _email(db) -> OutboxMessage:
    with db.read_session() as s:
        [row] = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).all()
        return row


def _queued_while_down(db, state, worker) -> None:
    """The reminder is queued and the worker's first try fails: it waits to be retried."""
    _remind(db)
    worker.run_once()
    assert state["refused"] == 1 and state["mails"] == []
    assert _email(db).status == OutboxStatus.PENDING


def _server_back(state, worker) -> None:
    state["up"] = True
    worker.run_once(now=NOON + timedelta(hours=1))  # after the backoff


def test_a_reminder_queued_while_the_mail_server_was_down_leaves_out_what_was_paid(
        book, mail_server) -> None:
    # given a reminder for INV-1 (1000.00, 10 days late) and INV-2 (300.00, 20 days late)
    # queued while the mail server was down
    state, worker = mail_server
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=10))
        f.invoice(s, "INV-2", "C-A", total="300.00", due=TODAY - timedelta(days=20))
    _queued_while_down(book, state, worker)
    assert _email(book).payload["context"]["total_due_minor"] == 130_000
    # and INV-1 paid in full, INV-2 in part (100.00), before the server came back
    _pay(book, "1000.00", "INV-1")
    _pay(book, "100.00", "INV-2")
    # when the mail server is back and the reminder goes out
    _server_back(state, worker)
    # then it asks for what is still owed: INV-2's 200.00, nothing about INV-1
    [mail] = state["mails"]
    assert mail["template"] == "collections_reminder"
    context = mail["context"]
    assert [(i["number"], i["amount_due_minor"], i["amount_due"])
            for i in context["invoices"]] == [("INV-2", 20_000, "USD 200.00")]
    assert (context["total_due_minor"], context["total_due"]) == (20_000, "USD 200.00")
    assert (context["more"], context["more_due_minor"]) == (0, 0)
    assert "INV-1" not in str(mail)
    row = _email(book)
    assert row.status == OutboxStatus.SENT and row.payload["context"] == context


def test_a_reminder_with_nothing_left_overdue_when_it_goes_out_is_withdrawn(
        book, mail_server) -> None:
    # given a reminder for INV-1 queued while the mail server was down, and INV-1 paid
    state, worker = mail_server
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=10))
    _queued_while_down(book, state, worker)
    _pay(book, "1000.00", "INV-1")
    # when the mail server is back
    _server_back(state, worker)
    # then nothing goes to the customer; the row is withdrawn, and that is audited
    assert state["mails"] == []
    row = _email(book)
    assert row.status == OutboxStatus.WITHDRAWN and row.sent_at is None
    with book.read_session() as s:
        [event] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "dunning.email_withdrawn")).all()
    assert event.entity_id == str(row.id) and event.data["invoices"] == ["INV-1"]
    assert event.data["template"] == "collections_reminder"


def test_the_reminders_and_more_line_is_counted_again_when_it_goes_out(book, mail_server
                                                                       ) -> None:
    # given 21 overdue invoices of 10.00: the reminder lists 20 and says "and 1 more"
    state, worker = mail_server
    with book.transaction() as s:
        for n in range(21):
            f.invoice(s, f"INV-{n:02d}", "C-A", total="10.00",
                      due=TODAY - timedelta(days=40 - n))
    _queued_while_down(book, state, worker)
    queued = _email(book).payload["context"]
    assert (len(queued["invoices"]), queued["more"], queued["more_due_minor"]) == (20, 1, 1_000)
    # and the one not listed (INV-20) is paid, and a listed one (INV-00) put in dispute
    _pay(book, "10.00", "INV-20")
    with book.transaction() as s:
        f.dispute(s, "INV-00", reason="damaged")
    # when it goes out
    _server_back(state, worker)
    # then 19 invoices are listed, nothing more, and the total is 190.00
    [mail] = state["mails"]
    context = mail["context"]
    assert [i["number"] for i in context["invoices"]] == [f"INV-{n:02d}" for n in range(1, 20)]
    assert (context["more"], context["more_due_minor"]) == (0, 0)
    assert (context["total_due_minor"], context["total_due"]) == (19_000, "USD 190.00")


def test_a_reminder_still_wholly_owed_goes_out_as_queued(book, mail_server) -> None:
    state, worker = mail_server
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=10))
    _queued_while_down(book, state, worker)
    queued = _email(book).payload
    _server_back(state, worker)
    assert [(m["template"], m["context"]) for m in state["mails"]] == [
        (queued["template"], queued["context"])]
