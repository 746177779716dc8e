"""Collections workflows: priority, worklists, digests, promises, reminders, snooze."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from bot.clock import Clock
from bot.mailer import render_email
from models import (
    ActivityKind,
    CollectionActivity,
    DigestRun,
    OutboxMessage,
    PromiseStatus,
    PromiseToPay,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import collections
from workflows.cash_application import record_payment
from workflows.errors import Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import PaymentIn

TODAY = date(2026, 11, 23)
NOON = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOON)


@pytest.fixture
def book(session):
    """Two collectors, a rep, and customers with invoices across every bucket."""
    f.user(session, "UCOLL001", "collector", timezone="America/Los_Angeles")
    f.user(session, "UCOLL002", "collector")
    f.user(session, "USALES01", "sales")
    f.customer(session, "C-A", "Acme", collector="UCOLL001", sales_rep="USALES01")
    f.customer(session, "C-B", "Beta", collector="UCOLL001", sales_rep="USALES01")
    f.customer(session, "C-C", "Gamma", collector="UCOLL002")
    f.customer(session, "C-D", "Delta", collector="UCOLL001")  # only current invoices
    # Acme: 1000 at 95 days late -> weighted 3000
    f.invoice(session, "A-1", "C-A", total="1000.00", due=TODAY - timedelta(days=95))
    f.invoice(session, "A-2", "C-A", total="200.00", due=TODAY + timedelta(days=5))
    # Beta: 1500 at 10 days (1500) + 500 at 45 days (750) + 300 at 70 days (600) -> 2850
    f.invoice(session, "B-1", "C-B", total="1500.00", due=TODAY - timedelta(days=10))
    f.invoice(session, "B-2", "C-B", total="500.00", due=TODAY - timedelta(days=45))
    f.invoice(session, "B-3", "C-B", total="300.00", due=TODAY - timedelta(days=70))
    f.invoice(session, "C-1", "C-C", total="50.00", due=TODAY - timedelta(days=1))
    f.invoice(session, "D-1", "C-D", total="999.00", due=TODAY)
    session.commit()
    return session


def test_weight_rises_with_days_past_due() -> None:
    assert collections.weight(0) == 0
    assert collections.weight(1) == collections.weight(30) == Decimal("1.0")
    assert collections.weight(31) == Decimal("1.5")
    assert collections.weight(61) == Decimal("2.0")
    assert collections.weight(91) == collections.weight(400) == Decimal("3.0")


def test_risk_counts_late_payments_broken_promises_and_disputes_with_caps() -> None:
    assert collections.risk_factor(late_paid=0, broken_promises=0, disputes=0) == 1
    assert collections.risk_factor(late_paid=2, broken_promises=1, disputes=1) == Decimal("1.95")
    assert collections.risk_factor(late_paid=50, broken_promises=9, disputes=9) == 5


def test_priority_is_weighted_overdue_times_risk_in_decimal() -> None:
    score = collections.priority(weighted_tenths_minor=100_000 * 15, currency="USD",
                                 risk=Decimal("1.5"))
    assert score == Decimal("1500.00") * Decimal("1.5")
    assert isinstance(score, Decimal)


def test_worklist_ranks_by_priority_and_totals_buckets(book) -> None:
    # when
    work = collections.worklist(book, "UCOLL001", TODAY)
    # then Acme (3000) outranks Beta (2850) although Beta owes more; Delta is not overdue
    assert [a.name for a in work.accounts] == ["Acme", "Beta"]
    acme, beta = work.accounts
    assert acme.score == Decimal("3000.00") and beta.score == Decimal("2850.00")
    assert acme.days_late == 95 and beta.days_late == 70
    assert beta.overdue_minor == 230000
    assert work.totals == {"USD": {"current": 20000 + 99900, "1-30": 150000, "31-60": 50000,
                                   "61-90": 30000, "90+": 100000}}
    assert work.total_accounts == 2 and work.more == 0


def test_broken_promise_and_late_history_raise_risk_and_rank(book) -> None:
    # given Beta paid an earlier invoice late and broke a promise
    f.invoice(book, "INV-2025-004711", "C-B", total="10.00", due=TODAY - timedelta(days=200))
    record_payment(book, PaymentIn(amount="10.00", currency="USD",
                                   received_at=datetime.combine(TODAY, time(9), UTC),
                                   reference="INV-2025-004711"),
                   actor="test")
    book.add(PromiseToPay(customer_id=_id(book, "C-B"), amount_minor=100, currency="USD",
                          promised_date=TODAY - timedelta(days=3), created_by="UCOLL001",
                          status=PromiseStatus.BROKEN,
                          broken_at=datetime.combine(TODAY - timedelta(days=2), time(0), UTC)))
    book.commit()
    # when
    work = collections.worklist(book, "UCOLL001", TODAY)
    # then risk = 1 + 0.10 + 0.50 and Beta moves up
    top = work.accounts[0]
    assert top.name == "Beta"
    assert top.late_paid == 1 and top.broken_promises == 1
    assert top.risk == Decimal("1.60")
    assert top.score == (Decimal("2850.00") * Decimal("1.60")).quantize(Decimal("0.01"))


def _id(session, external_id: str) -> int:
    from models import Customer

    return session.exec(select(Customer.id).where(Customer.external_id == external_id)).one()


def test_top_n_and_and_n_more(session) -> None:
    # given 15 overdue customers for one collector
    f.user(session, "UCOLL001", "collector")
    for i in range(15):
        f.customer(session, f"C-{i:02d}", f"Customer {i:02d}", collector="UCOLL001")
        f.invoice(session, f"I-{i:02d}", f"C-{i:02d}", total=f"{100 + i}.00",
                  due=TODAY - timedelta(days=5))
    session.commit()
    # when
    work = collections.worklist(session, "UCOLL001", TODAY, top=10)
    # then the 10 largest, in order, and 5 more
    assert [a.name for a in work.accounts] == [f"Customer {i:02d}" for i in range(14, 4, -1)]
    assert work.total_accounts == 15 and work.more == 5


def test_build_worklists_for_all_collectors_in_one_pass(book) -> None:
    lists = collections.build_worklists(book, TODAY)
    assert set(lists) == {"UCOLL001", "UCOLL002"}
    assert [a.name for a in lists["UCOLL002"].accounts] == ["Gamma"]


def test_snooze_hides_an_account_until_the_date(book) -> None:
    # when
    until = collections.snooze(book, customer_id=_id(book, "C-A"), actor="UCOLL001",
                               as_of=TODAY, now=NOON)
    book.commit()
    # then
    assert until == TODAY + timedelta(days=7)
    hidden = collections.worklist(book, "UCOLL001", TODAY)
    assert [a.name for a in hidden.accounts] == ["Beta"] and hidden.snoozed == 1
    back = collections.worklist(book, "UCOLL001", until)
    assert [a.name for a in back.accounts][0] == "Acme"


def queue_digests(session, collector_ids: list[str] | None = None) -> list[str]:
    """As the digest job does it: prepare, then record."""
    return collections.record_digests(session, TODAY, collections.prepare_digests(
        session, TODAY, collector_ids=collector_ids))


def test_digest_is_queued_once_per_collector_per_day(book) -> None:
    # when run twice
    first = queue_digests(book)
    book.commit()
    second = queue_digests(book)
    book.commit()
    # then
    assert first == ["UCOLL001", "UCOLL002"] and second == []
    runs = book.exec(select(DigestRun)).all()
    assert len(runs) == 2
    rows = book.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("digest:%"))).all()
    assert {r.payload["channel"] for r in rows} == {"UCOLL001", "UCOLL002"}
    context = next(r for r in rows if r.payload["channel"] == "UCOLL001").payload["context"]
    assert [a["name"] for a in context["accounts"]] == ["Acme", "Beta"]
    assert context["tz"] == "America/Los_Angeles"


def test_an_action_refreshes_the_digests_of_the_collector_s_last_seven_days(book) -> None:
    # given: the Los Angeles collector's digest of 16 Nov, seven days before 23 Nov
    week_ago = TODAY - timedelta(days=collections.DIGEST_REFRESH_DAYS)
    collections.record_digests(book, week_ago, collections.prepare_digests(
        book, week_ago, collector_ids=["UCOLL001"]))
    # when a call is logged at 18:00 there on 23 Nov (02:00 UTC on the 24th: 8 days after
    # 16 Nov by the UTC date), read back from the database (in UTC)
    call = CollectionActivity(customer_id=_id(book, "C-A"), kind=ActivityKind.CALL,
                              user_id="UCOLL001", note="AP says Friday",
                              at=datetime(2026, 11, 24, 2, tzinfo=UTC))
    book.add(call)
    book.flush()
    # then that digest's row is brought up to date (before: left as it was)
    assert collections.refresh_digest_rows(book, customer_id=call.customer_id, done=call,
                                           contact=True) == 1
    # and a day later there (24 Nov) that digest, eight days old, is left as it was
    call.at = datetime(2026, 11, 25, 2, tzinfo=UTC)
    assert collections.refresh_digest_rows(book, customer_id=call.customer_id, done=call,
                                           contact=True) == 0


def test_collector_actions_are_dated_by_the_app_clock_not_the_real_one(book) -> None:
    # given the app clock travelled to 10 Mar 2031, 09:00 in Los Angeles (the sandbox's Time
    # travel), while the real clock says 23 Nov 2026; the collector's digests of 20 Nov 2026
    # (real time's week) and of 3 Mar 2031 (the app's week)
    clock = Clock("UTC")
    clock.travel_to(datetime(2031, 3, 10, 16, tzinfo=UTC))
    now, today = clock.now(), clock.today("America/Los_Angeles")
    acme = _id(book, "C-A")
    for day in (TODAY - timedelta(days=3), today - timedelta(days=7)):
        collections.record_digests(book, day, collections.prepare_digests(
            book, day, collector_ids=["UCOLL001"]))
    # when the collector logs a call and snoozes the account
    call = collections.log_call(book, customer_id=acme, actor="UCOLL001",
                                note="AP says Friday", now=now)
    until = collections.snooze(book, customer_id=acme, actor="UCOLL001", as_of=today, now=now)
    book.commit()
    # then both are dated by the app clock (before: by the real one, 23 Nov 2026)
    activities = book.exec(select(CollectionActivity).where(
        CollectionActivity.customer_id == acme).order_by(CollectionActivity.id)).all()
    assert [a.at for a in activities] == [now, now] and call.at == now
    # the worklist's last contact is the call, and the snooze runs out 7 app days later
    assert collections.account(book, acme, today).last_contact == now
    assert until == date(2031, 3, 17)
    hidden = collections.worklist(book, "UCOLL001", today)
    assert [a.name for a in hidden.accounts] == ["Beta", "Delta"] and hidden.snoozed == 1
    back = {a.name: a for a in collections.worklist(book, "UCOLL001", until).accounts}
    assert "Acme" in back and back["Acme"].last_contact == now
    # and only the app week's digest was refreshed: the 2026 one is years old by the app clock
    runs = {r.run_date: r.outbox_id for r in book.exec(select(DigestRun)).all()}
    refreshed = {m.target_outbox_id for m in book.exec(select(OutboxMessage).where(
        OutboxMessage.target_outbox_id.is_not(None))).all()}
    assert refreshed == {runs[date(2031, 3, 3)]}
    update = book.exec(select(OutboxMessage).where(
        OutboxMessage.target_outbox_id == runs[date(2031, 3, 3)])
        .order_by(OutboxMessage.id.desc())).first()
    [row] = [a for a in update.payload["context"]["accounts"] if a["name"] == "Acme"]
    assert row["last_contact"] == now.isoformat()
    assert [d["at"] for d in row["done"]] == [now.isoformat(), now.isoformat()]


def test_log_call_needs_the_collector_role_and_a_note(book) -> None:
    customer_id = _id(book, "C-A")
    with pytest.raises(PermissionDenied):
        collections.log_call(book, customer_id=customer_id, actor="USALES01", note="hi", now=NOON)
    with pytest.raises(ValidationFailed) as err:
        collections.log_call(book, customer_id=customer_id, actor="UCOLL001", note="  ", now=NOON)
    assert err.value.errors[0].field == "note"
    collections.log_call(book, customer_id=customer_id, actor="UCOLL001", note="AP says Friday",
                         now=NOON)
    book.commit()
    account = collections.account(book, customer_id, TODAY)
    assert account.last_contact is not None


def test_reminder_emails_overdue_invoices_once_a_day(book) -> None:
    customer_id = _id(book, "C-B")
    message = collections.send_reminder(book, customer_id=customer_id, actor="UCOLL001",
                                        as_of=TODAY, now=NOON)
    book.commit()
    assert message.transport == "email" and message.payload["to"] == "ap@globex.example"
    context = message.payload["context"]
    assert [i["number"] for i in context["invoices"]] == ["B-3", "B-2", "B-1"]
    assert context["total_due"] == "USD 2,300.00"
    with pytest.raises(Conflict):
        collections.send_reminder(book, customer_id=customer_id, actor="UCOLL001", as_of=TODAY,
                                  now=NOON)
    kinds = book.exec(select(CollectionActivity.kind).where(
        CollectionActivity.customer_id == customer_id)).all()
    assert kinds == [ActivityKind.REMINDER]


def test_promise_validation_names_the_field(book) -> None:
    customer_id = _id(book, "C-B")
    cases = [("", TODAY, "amount"), ("-5", TODAY, "amount"), ("12.345", TODAY, "amount"),
             ("999999.00", TODAY, "amount"), ("100.00", TODAY - timedelta(days=1), "date"),
             ("100.00", None, "date"), ("100.00", TODAY + timedelta(days=400), "date"),
             # beyond the bounds of models.limits, as the promise modal may send them
             ("10000000000000.00", TODAY, "amount"), ("１２３.45", TODAY, "amount"),
             ("1e3", TODAY, "amount"), ("100.00", "9999-12-31", "date"),
             # a decimal comma is refused, not read as a thousands separator (12,5 -> 125.00)
             ("12,5", TODAY, "amount"), ("1250,50", TODAY, "amount"), ("1,00", TODAY, "amount")]
    for amount, day, field in cases:
        with pytest.raises(ValidationFailed) as err:
            collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                       amount=amount, promised_date=day, note=None,
                                       as_of=TODAY, now=NOON)
        assert err.value.errors[0].field == field, (amount, day)
    # and thousands separators where they belong are read as such
    promise = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                         amount="1,250.50", promised_date=TODAY, note=None,
                                         as_of=TODAY, now=NOON)
    assert promise.amount_minor == 125_050


def test_promise_kept_when_paid(book) -> None:
    # given
    customer_id = _id(book, "C-B")
    promise = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                         amount="500.00", promised_date=TODAY + timedelta(3),
                                         note="wire on Thursday", as_of=TODAY, now=NOON)
    book.commit()
    assert collections.check_promises(book, TODAY).kept == []
    # when the money arrives
    record_payment(book, PaymentIn(amount="500.00", currency="USD",
                                   received_at=datetime.combine(TODAY, time(12), UTC),
                                   reference="B-2", customer="C-B"),
                   actor="test")
    result = collections.check_promises(book, TODAY)
    book.commit()
    # then
    assert result.kept == [promise.id]
    book.refresh(promise)
    assert promise.status == PromiseStatus.KEPT


def test_promise_broken_the_day_after_alerts_collector_and_rep_once(book) -> None:
    # given a promise for today
    customer_id = _id(book, "C-B")
    promise = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                         amount="500.00", promised_date=TODAY, note=None,
                                         as_of=TODAY, now=NOON)
    book.commit()
    # when checked on the promised day, then the day after, then again
    assert collections.check_promises(book, TODAY).broken == []
    broken = collections.check_promises(book, TODAY + timedelta(days=1)).broken
    again = collections.check_promises(book, TODAY + timedelta(days=2)).broken
    book.commit()
    # then
    assert broken == [promise.id] and again == []
    alerts = book.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("promise-broken:%"))).all()
    assert sorted(a.payload["channel"] for a in alerts) == ["UCOLL001", "USALES01"]
    account = collections.account(book, customer_id, TODAY + timedelta(days=2))
    assert account.broken_promises == 1 and account.risk == Decimal("1.50")


def test_a_new_promise_replaces_the_open_one(book) -> None:
    customer_id = _id(book, "C-A")
    first = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                       amount="100.00", promised_date=TODAY, note=None,
                                       as_of=TODAY, now=NOON)
    second = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                        amount="200.00", promised_date=TODAY + timedelta(2),
                                        note=None, as_of=TODAY, now=NOON)
    book.commit()
    book.refresh(first)
    assert first.status == PromiseStatus.CANCELLED and second.status == PromiseStatus.OPEN
    account = collections.account(book, customer_id, TODAY)
    assert account.promise.amount_minor == 20000 and account.promise.status == "open"


def test_promise_kept_by_money_that_arrived_on_the_promised_day_in_the_senders_zone(book
                                                                                    ) -> None:
    # given a promise to pay 500.00 by today, and the customer's wire received on the
    # promised day at 20:00 in New York (value date today; 01:00 UTC tomorrow)
    customer_id = _id(book, "C-B")
    promise = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                         amount="500.00", promised_date=TODAY, note=None,
                                         as_of=TODAY, now=NOON)
    book.commit()
    evening = datetime(2026, 11, 23, 20, tzinfo=ZoneInfo("America/New_York"))
    record_payment(book, PaymentIn(amount="500.00", currency="USD", received_at=evening,
                                   reference="B-2", customer="C-B"), actor="test")
    book.commit()
    # when the promises are checked the next day
    result = collections.check_promises(book, TODAY + timedelta(days=1))
    book.commit()
    # then the promise was kept, not broken, and nobody is alerted
    assert result.kept == [promise.id] and result.broken == []
    book.refresh(promise)
    assert promise.status == PromiseStatus.KEPT and promise.broken_at is None
    assert book.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("promise-broken:%"))).all() == []


def test_promise_broken_by_money_that_arrived_the_day_after_in_the_senders_zone(book
                                                                                ) -> None:
    # given a promise by today, and the money received tomorrow at 00:30 in Berlin
    # (23:30 UTC today: before midnight UTC, but after the promised day where it was sent)
    customer_id = _id(book, "C-B")
    promise = collections.create_promise(book, customer_id=customer_id, actor="UCOLL001",
                                         amount="500.00", promised_date=TODAY, note=None,
                                         as_of=TODAY, now=NOON)
    book.commit()
    late = datetime(2026, 11, 24, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    record_payment(book, PaymentIn(amount="500.00", currency="USD", received_at=late,
                                   reference="B-2", customer="C-B"), actor="test")
    book.commit()
    # when checked the day after the promised date
    result = collections.check_promises(book, TODAY + timedelta(days=1))
    book.commit()
    # then it was broken: the money came a day late
    assert result.broken == [promise.id] and result.kept == []


def test_reminder_total_is_every_overdue_invoice_not_only_those_listed(book) -> None:
    # given Delta with 25 overdue invoices of 100.00 (more than the e-mail lists)
    for n in range(25):
        f.invoice(book, f"D-OLD-{n:02d}", "C-D", total="100.00",
                  due=TODAY - timedelta(days=40 - n))
    book.commit()
    # when a collector sends the reminder
    message = collections.send_reminder(book, customer_id=_id(book, "C-D"), actor="UCOLL001",
                                        as_of=TODAY, now=NOON)
    book.commit()
    # then the e-mail lists the 20 oldest, says 5 more are overdue, and asks for all 2,500.00
    context = message.payload["context"]
    assert [i["number"] for i in context["invoices"]] == [f"D-OLD-{n:02d}" for n in range(20)]
    assert context["more"] == 5 and context["more_due_minor"] == 50000
    assert context["total_due_minor"] == 250000 and context["total_due"] == "USD 2,500.00"
    subject, body = render_email("collections_reminder", context, from_email="ar@x.example")
    assert subject == "Statement of overdue invoices: USD 2,500.00 due"
    assert "and 5 more overdue invoices: USD 500.00" in body
    assert "Total overdue: USD 2,500.00" in body
