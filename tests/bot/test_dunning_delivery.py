"""A dunning e-mail is true when it goes out: an invoice paid, credited or put in dispute
after the run queued its e-mail (the mail server was down, the e-mail waited) is left out of
it, its amounts are those of the moment it is sent, and an e-mail with nothing left to ask
for is withdrawn (never sent, audited)."""

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
from workflows import dunning
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

TODAY = date(2026, 11, 23)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC))


@pytest.fixture
def book(db):
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-A", "Acme", collector="UCOLL001")
    return db


@pytest.fixture
def sent(db, standin, database_url):
    """The e-mails the worker hands to the mail server, and a function delivering the queue."""
    mails: list[dict] = []

    def mailer(payload: dict) -> dict:
        mails.append(payload)
        return {"ok": True}

    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token="xoxb-test-token", base_url=standin.api_url, retry_handlers=[])
    worker = OutboxWorker(db, client, settings, mailer=mailer)
    return mails, worker.drain


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


def test_a_reminder_for_an_invoice_paid_before_it_went_out_is_withdrawn(book, sent) -> None:
    # given the +1 reminder for INV-1 (1000.00) queued by the run, and the invoice paid in
    # full before the mail server took it
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    _pay(book, "1000.00", "INV-1")
    # when the outbox delivers
    deliver()
    # then no e-mail went to the customer; the row says why, and it is audited
    assert mails == []
    row = _email(book)
    assert row.status == OutboxStatus.WITHDRAWN and row.sent_at is None
    assert "nothing is due" in row.last_error
    with book.read_session() as s:
        [event] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "dunning.email_withdrawn")).all()
    assert event.entity_id == str(row.id) and event.data["invoices"] == ["INV-1"]


def test_a_reminder_for_an_invoice_wholly_disputed_before_it_went_out_is_withdrawn(
        book, sent) -> None:
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    with book.transaction() as s:
        f.dispute(s, "INV-1", reason="damaged")
    deliver()
    assert mails == [] and _email(book).status == OutboxStatus.WITHDRAWN


def test_a_reminder_asks_for_what_is_due_when_it_goes_out(book, sent) -> None:
    # given the reminder for 1000.00 queued, then 400.00 paid and 100.00 disputed
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    _pay(book, "400.00", "INV-1")
    with book.transaction() as s:
        f.dispute(s, "INV-1", amount="100.00", reason="pricing")
    # when delivered
    deliver()
    # then it asks for 500.00 and says 100.00 is in dispute
    [mail] = mails
    assert mail["template"] == "dunning_reminder"
    invoice = mail["context"]["invoice"]
    assert (invoice["amount_due_minor"], invoice["in_dispute_minor"]) == (50_000, 10_000)
    assert invoice["amount_due"] == "USD 500.00"
    row = _email(book)
    assert row.status == OutboxStatus.SENT and row.payload["context"]["invoice"] == invoice


def test_a_statement_leaves_out_the_invoice_paid_before_it_went_out(book, sent) -> None:
    # given one e-mail for INV-1 (+1) and INV-2 (+7), then INV-1 paid
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
        f.invoice(s, "INV-2", "C-A", total="300.00", due=TODAY - timedelta(days=7))
    dunning.run_all(book, TODAY)
    assert _email(book).payload["template"] == "dunning_statement"
    _pay(book, "1000.00", "INV-1")
    # when delivered
    deliver()
    # then the customer gets INV-2's own firm reminder for 300.00, nothing about INV-1
    [mail] = mails
    assert mail["template"] == "dunning_firm"
    context = mail["context"]
    assert (context["kind"], context["level"], context["days_past_due"]) == ("firm", 7, 7)
    assert context["invoice"]["number"] == "INV-2"
    assert context["invoice"]["amount_due_minor"] == 30_000
    assert context["customer_name"] == "Acme"
    assert "INV-1" not in str(mail)


def test_a_statement_of_three_keeps_the_two_still_due_with_their_total(book, sent) -> None:
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
        f.invoice(s, "INV-2", "C-A", total="300.00", due=TODAY - timedelta(days=7))
        f.invoice(s, "INV-3", "C-A", total="50.00", due=TODAY - timedelta(days=30))
    dunning.run_all(book, TODAY)
    _pay(book, "50.00", "INV-3")  # the final notice's invoice
    _pay(book, "200.00", "INV-1")
    deliver()
    [mail] = mails
    context = mail["context"]
    assert mail["template"] == "dunning_statement"
    assert [(i["number"], i["amount_due_minor"]) for i in context["invoices"]] == [
        ("INV-1", 80_000), ("INV-2", 30_000)]
    assert context["totals"] == [{"currency": "USD", "amount_minor": 110_000}]
    assert context["final"] is False


def test_a_reminder_still_wholly_due_goes_out_as_queued(book, sent) -> None:
    mails, deliver = sent
    with book.transaction() as s:
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    queued = _email(book).payload
    deliver()
    assert [(m["template"], m["context"]) for m in mails] == [
        (queued["template"], queued["context"])]
    assert _email(book).status == OutboxStatus.SENT


def test_a_late_fee_no_e_mail_named_is_withdrawn_with_the_e_mail(book, sent) -> None:
    # given a 25.00 fee at +1, charged by the run with the reminder naming it, and the invoice
    # paid before the mail server took the e-mail (a payment with an earlier value date,
    # imported late)
    from models import Invoice, WriteOff
    from workflows import policy

    mails, deliver = sent
    with book.transaction() as s:
        policy.set_value(s, key="late_fees", value="1:fee=25.00", actor="test")
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    with book.read_session() as s:
        [fee] = s.exec(select(Invoice).where(Invoice.fee_for_invoice_id.is_not(None))).all()
    assert fee.balance_minor == 2_500
    _pay(book, "1000.00", "INV-1")
    # when the outbox delivers
    deliver()
    # then the e-mail is withdrawn, and with it the fee nobody was told of: waived, audited
    assert mails == [] and _email(book).status == OutboxStatus.WITHDRAWN
    with book.read_session() as s:
        assert s.get(Invoice, fee.id).balance_minor == 0
        [waived] = s.exec(select(WriteOff).where(WriteOff.invoice_id == fee.id)).all()
        [event] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "late_fee.withdrawn")).all()
    assert (waived.amount_minor, waived.reason) == (2_500, "fee_waived")
    assert event.actor == "system" and "INV-1" in event.reason
    # and delivering again changes nothing more
    deliver()
    with book.read_session() as s:
        assert len(s.exec(select(WriteOff).where(WriteOff.invoice_id == fee.id)).all()) == 1


def test_a_statement_that_leaves_an_invoice_out_leaves_its_fee_out_too(book, sent) -> None:
    # given a 25.00 fee at +1 on each of two invoices, one statement e-mail naming both, and
    # INV-1 paid before it went
    from models import Invoice
    from workflows import policy

    mails, deliver = sent
    with book.transaction() as s:
        policy.set_value(s, key="late_fees", value="1:fee=25.00", actor="test")
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=TODAY - timedelta(days=1))
        f.invoice(s, "INV-2", "C-A", total="400.00", due=TODAY - timedelta(days=1))
    dunning.run_all(book, TODAY)
    _pay(book, "1000.00", "INV-1")
    # when the outbox delivers
    deliver()
    # then the e-mail goes for INV-2 with its fee; INV-1's fee, named nowhere, is waived
    [mail] = mails
    with book.read_session() as s:
        fees = {s.get(Invoice, fee.fee_for_invoice_id).number: fee for fee in s.exec(
            select(Invoice).where(Invoice.fee_for_invoice_id.is_not(None)))}
    assert mail["context"]["late_fee"]["number"] == fees["INV-2"].number
    assert (fees["INV-1"].balance_minor, fees["INV-2"].balance_minor) == (0, 2_500)
