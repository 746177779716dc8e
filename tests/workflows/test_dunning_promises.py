"""An open promise to pay pauses the customer's dunning e-mails and the credit hold on what
was promised until the promised date; a broken promise resumes dunning at the level the
invoice has reached by then (the catch-up rule: the highest level due, the ones passed over
recorded as skipped, each (invoice, level) at most once). The escalation to the sales rep,
internal, still happens during the pause; the digest still shows the account and its promise."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from models import CollectionActivity, Customer, DunningNotice, OutboxMessage
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import collections, dunning
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

TODAY = date(2026, 11, 23)  # a Monday
NOON = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOON)
DUE = TODAY - timedelta(days=2)  # INV-1's due date: today is +2


@pytest.fixture
def book(db):
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-A", "Acme", collector="UCOLL001", sales_rep="USALES01")
        f.invoice(s, "INV-1", "C-A", total="1000.00", due=DUE)
    return db


def _day(offset: int) -> date:
    """The day INV-1 is `offset` days past due."""
    return DUE + timedelta(days=offset)


def _promise(db, until: int, amount: str = "1000.00") -> None:
    with db.transaction() as s:
        collections.create_promise(s, customer_id=1, actor="UCOLL001", amount=amount,
                                   promised_date=_day(until), note="CFO said so", as_of=TODAY,
                                   now=NOON)


def _job(db, offset: int) -> None:
    """The hourly dunning job on day +offset: promise checks, then dunning."""
    with db.transaction() as s:
        collections.check_promises(s, _day(offset))
    dunning.run_all(db, _day(offset))


def _emails(db) -> list[tuple[str, list[str]]]:
    """The dunning e-mails queued: (template, its invoices' levels)."""
    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")
                      .order_by(OutboxMessage.id)).all()
    return [(r.payload["template"], r.payload["context"].get("level")) for r in rows]


def _notices(db) -> list[tuple[int, bool]]:
    with db.read_session() as s:
        return [(n.level, n.skipped) for n in s.exec(
            select(DunningNotice).order_by(DunningNotice.level)).all()]


def test_an_open_promise_pauses_dunning_and_a_broken_one_resumes_it(book) -> None:
    # given INV-1 got its +1 reminder, then the customer promised to pay it all by +12
    _job(book, 2)
    assert _emails(book) == [("dunning_reminder", 1)]
    _promise(book, until=12)
    # when the job runs at +7 (the firm reminder's day) and on the promised day itself
    _job(book, 7)
    _job(book, 12)
    # then the customer gets nothing more meanwhile
    assert _emails(book) == [("dunning_reminder", 1)]
    assert _notices(book) == [(-3, True), (1, False)]
    # and the digest still shows the account, with its promise
    with book.read_session() as s:
        [account] = collections.worklist(s, "UCOLL001", _day(12)).accounts
    assert account.name == "Acme" and account.overdue_minor == 100_000
    assert (account.promise.status, account.promise.amount_minor,
            account.promise.promised_date) == ("open", 100_000, _day(12))
    # when the promised day passed without the money (broken at +13)
    _job(book, 13)
    # then dunning resumes: the firm reminder held back during the pause goes out, once
    assert _emails(book) == [("dunning_reminder", 1), ("dunning_firm", 7)]
    _job(book, 13)
    assert _emails(book) == [("dunning_reminder", 1), ("dunning_firm", 7)]
    assert _notices(book) == [(-3, True), (1, False), (7, False)]


def test_a_broken_promise_gets_only_the_highest_level_reached_meanwhile(book) -> None:
    # given a promise taken at +2 for +29, and runs through the pause (the escalation to the
    # sales rep at +14 is internal: it still happens)
    _job(book, 2)
    _promise(book, until=29)
    for offset in (7, 14, 20, 29):
        _job(book, offset)
    assert _emails(book) == [("dunning_reminder", 1)]
    with book.read_session() as s:
        [escalated] = s.exec(select(CollectionActivity).where(
            CollectionActivity.kind == "escalation")).all()
    assert escalated.note.startswith("dunning +14")
    # the firm level passed over by the escalation is recorded as skipped, never sent later
    assert _notices(book) == [(-3, True), (1, False), (7, True), (14, False)]
    # when broken (+30, also the final notice's day)
    _job(book, 30)
    # then the final notice goes out and the customer is put on credit hold
    assert _emails(book) == [("dunning_reminder", 1), ("dunning_final", 30)]
    with book.read_session() as s:
        assert s.get(Customer, 1).credit_hold is True


def test_no_final_notice_nor_credit_hold_while_a_promise_is_open(book) -> None:
    # given a promise taken at +2 that runs until +40
    _job(book, 2)
    _promise(book, until=40)
    # when the job runs at +30 and +35
    _job(book, 30)
    _job(book, 35)
    # then no final notice, no credit hold
    assert _emails(book) == [("dunning_reminder", 1)]
    with book.read_session() as s:
        assert s.get(Customer, 1).credit_hold is False
    # when the promise is broken (+41): the final notice and the credit hold, once
    _job(book, 41)
    _job(book, 42)
    assert _emails(book) == [("dunning_reminder", 1), ("dunning_final", 30)]
    with book.read_session() as s:
        assert s.get(Customer, 1).credit_hold is True


def test_a_kept_promise_with_something_left_resumes_dunning_on_the_rest(book) -> None:
    # given a promise of 400.00 by +10, paid on +5 (so kept), 600.00 still owed
    _job(book, 2)
    _promise(book, until=10, amount="400.00")
    with book.transaction() as s:
        record_payment(s, PaymentIn(amount="400.00", currency="USD", reference="INV-1",
                                    customer="C-A",
                                    received_at=datetime.combine(_day(5), time(10), UTC)),
                       actor="test")
    # when the job runs at +7: the promise is kept, nothing is paused any more
    _job(book, 7)
    # then the firm reminder asks for the 600.00 left
    with book.read_session() as s:
        [firm] = [r for r in s.exec(select(OutboxMessage)).all()
                  if r.payload.get("template") == "dunning_firm"]
    assert firm.payload["context"]["invoice"]["amount_due_minor"] == 60_000


def test_an_invoice_falling_due_after_the_promise_was_taken_is_dunned_as_usual(book) -> None:
    # given a promise on the account taken today, and INV-2 due in 5 days (not overdue yet)
    with book.transaction() as s:
        f.invoice(s, "INV-2", "C-A", total="50.00", due=TODAY + timedelta(days=5))
    _job(book, 2)
    _promise(book, until=40)
    # when INV-2 is a day overdue (INV-1 at +8)
    dunning.run_all(book, TODAY + timedelta(days=6))
    # then INV-2 gets its reminder; INV-1, promised, nothing
    with book.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")
                      .order_by(OutboxMessage.id)).all()
    assert [(r.payload["template"], r.payload["context"]["invoice"]["number"])
            for r in rows] == [("dunning_reminder", "INV-1"), ("dunning_reminder", "INV-2")]


def test_a_large_run_counts_no_e_mail_for_a_promised_account(book) -> None:
    # given the promise: what a run would send (the admin's confirmation threshold) agrees
    _job(book, 2)
    _promise(book, until=12)
    with book.read_session() as s:
        assert dunning.would_send(s, _day(7)) == {"notices": 0, "customers": 0, "emails": 0}
