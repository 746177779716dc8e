"""The revenue jobs' schedule: the close of the month before is due from 06:00 business time
on the month's first working day and runs once; a job's schedule can be turned off."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot import jobs, revenue_jobs, scheduler
from bot.db import Database
from bot.deps import Deps
from bot.settings import load_settings
from models.revenue import RevenueClose
from tests.support.timetravel import run_at
from workflows import policy


def _deps(db: Database, **settings: object) -> Deps:
    from slack_sdk import WebClient

    return Deps(settings=load_settings(database_url=db.url, **settings), db=db,
                client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/"))


def test_the_close_is_due_on_the_first_working_day_in_the_business_time_zone(db) -> None:
    # given: business hours in New York; 1 August 2026 is a Saturday, so Monday 3rd is due
    with db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="America/New_York", actor="test")
    deps = _deps(db)
    # when
    saturday = run_at(datetime(2026, 8, 1, 15, tzinfo=UTC), revenue_jobs.revenue_close,
                      deps, None)
    early = run_at(datetime(2026, 8, 3, 9, 59, tzinfo=UTC), revenue_jobs.revenue_close,
                   deps, None)  # 05:59 in New York
    due = run_at(datetime(2026, 8, 3, 10, 0, tzinfo=UTC), revenue_jobs.revenue_close,
                 deps, None)
    later = run_at(datetime(2026, 8, 4, 10, 0, tzinfo=UTC), revenue_jobs.revenue_close,
                   deps, None)
    # then
    assert saturday["closed"] is False and "2026-08-03T06:00:00-04:00" in saturday["reason"]
    assert early["closed"] is False
    assert (due["period"], due["closed_now"], due["recorded"]) == ("2026-07", True, True)
    assert later == {"period": "2026-07", "closed": False,
                     "reason": "already closed (revenue recorded through 2026-07)"}
    with db.read_session() as s:
        assert [c.period for c in s.exec(select(RevenueClose))] == ["2026-07"]


def test_the_close_waits_for_the_first_working_day_after_new_years_day(db) -> None:
    # given the business closed on German public holidays and on 4 January 2027 (a Monday):
    # 1 January 2027 is a Friday and a holiday
    with db.transaction() as s:
        policy.set_value(s, key="holidays", value="DE,2027-01-04", actor="test")
    deps = _deps(db)
    # when the job runs on the holiday and the closure, then on Tuesday 5 January
    closed = [run_at(datetime(2027, 1, day, 12, tzinfo=UTC), revenue_jobs.revenue_close,
                     deps, None) for day in (1, 4)]
    due = run_at(datetime(2027, 1, 5, 6, tzinfo=UTC), revenue_jobs.revenue_close, deps, None)
    # then December is closed on the 5th, not before
    assert [c["closed"] for c in closed] == [False, False]
    assert "2027-01-05T06:00:00+00:00" in closed[0]["reason"]
    assert (due["period"], due["closed_now"]) == ("2026-12", True)


def test_a_back_fill_with_as_of_closes_the_month_before(db) -> None:
    deps = _deps(db)
    summary = run_at(datetime(2026, 9, 20, 12, tzinfo=UTC), jobs.run_job, "revenue-close",
                     deps, date(2026, 9, 1))
    assert (summary["period"], summary["closed_now"]) == ("2026-08", True)


def test_the_revenue_jobs_are_scheduled_and_can_be_turned_off(db) -> None:
    on = scheduler.build_scheduler(_deps(db))
    off = scheduler.build_scheduler(_deps(db, o2c_job_schedules={"revenue-close": {}}))
    assert {"revenue-close", "subscription-billing"} <= {j.id for j in on.get_jobs()}
    assert "revenue-close" not in {j.id for j in off.get_jobs()}
    assert "subscription-billing" in {j.id for j in off.get_jobs()}


def test_billing_a_day_ahead_is_refused(db) -> None:
    import pytest

    from workflows.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="after today"):
        run_at(datetime(2026, 9, 20, 12, tzinfo=UTC), revenue_jobs.subscription_billing,
               _deps(db), date(2026, 9, 21))


# -- subscription billing: a period whose transaction lost a race is billed again ------------------

def _monthly_subscription(db: Database) -> None:
    """2 x CLOUD at 1200.00 a year for 2026, billed monthly (12 x 200.00)."""
    from tests.support import factories as f
    from workflows import orders
    from workflows.inputs import OrderIn, OrderLineIn

    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, credit_limit="1000000.00")
        f.product(s, "CLOUD", price="1200.00", revenue_type="subscription")
        orders.create_order(s, OrderIn(
            customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
                OrderLineIn(sku="CLOUD", quantity=2, service_start="2026-01-01",
                            service_end="2026-12-31", billing="monthly")]),
            actor="USALES01", now=datetime(2025, 12, 20, tzinfo=UTC))


def _losing(monkeypatch, times: int, sqlstate_error: type) -> list[date]:
    """`bill_period` bills (writes its invoice), then its transaction is rolled back as
    PostgreSQL rolls back a deadlock's loser: the first `times` calls. The periods tried."""
    from workflows import subscriptions

    real, tried = subscriptions.bill_period, []

    def bill_period(session, **kwargs):
        tried.append(kwargs["period_start"])
        invoice = real(session, **kwargs)
        if len(tried) <= times:
            session.flush()
            raise sa.exc.OperationalError("UPDATE orders ...", {},
                                          sqlstate_error("the transaction was rolled back"))
        return invoice

    monkeypatch.setattr(subscriptions, "bill_period", bill_period)
    return tried


def _billed(db: Database) -> list[tuple[date, str, int]]:
    from models import Invoice
    from models.revenue import SubscriptionBilling

    with db.read_session() as s:
        return [(b.period_start, s.get(Invoice, b.invoice_id).number, b.amount_minor)
                for b in s.exec(select(SubscriptionBilling)
                                .order_by(SubscriptionBilling.period_start))]


def test_a_period_rolled_back_as_a_deadlock_is_billed_again_once(db, monkeypatch) -> None:
    # given a monthly subscription, and a billing whose first transaction PostgreSQL rolls
    # back as a deadlock after it wrote January's invoice
    _monthly_subscription(db)
    tried = _losing(monkeypatch, 1, psycopg.errors.DeadlockDetected)
    # when the job bills January and February (2 February)
    summary = run_at(datetime(2026, 2, 2, 12, tzinfo=UTC), revenue_jobs.subscription_billing,
                     _deps(db), None)
    # then January was tried twice and billed once, February once: two invoices of 200.00
    assert tried == [date(2026, 1, 1), date(2026, 1, 1), date(2026, 2, 1)]
    assert summary["invoices"] == ["INV-2026-000001", "INV-2026-000002"]
    assert _billed(db) == [(date(2026, 1, 1), "INV-2026-000001", 20000),
                           (date(2026, 2, 1), "INV-2026-000002", 20000)]


@pytest.mark.parametrize(("error", "attempts"), [
    (psycopg.errors.SerializationFailure, revenue_jobs.RACE_ATTEMPTS),
    (psycopg.errors.AdminShutdown, 1)])  # (the database went away: not a race, not retried)
def test_a_period_that_keeps_failing_is_tried_a_bounded_number_of_times(
        db, monkeypatch, error, attempts) -> None:
    # given a monthly subscription whose January billing always fails so
    _monthly_subscription(db)
    tried = _losing(monkeypatch, 99, error)
    # when the job runs on 2 January
    with pytest.raises(sa.exc.OperationalError):
        run_at(datetime(2026, 1, 2, 12, tzinfo=UTC), revenue_jobs.subscription_billing,
               _deps(db), None)
    # then it tried January so many times, kept nothing, and the next run bills it once
    assert tried == [date(2026, 1, 1)] * attempts
    assert _billed(db) == []
    monkeypatch.undo()
    summary = run_at(datetime(2026, 1, 2, 13, tzinfo=UTC), revenue_jobs.subscription_billing,
                     _deps(db), None)
    assert summary["invoices"] == ["INV-2026-000001"]
    assert _billed(db) == [(date(2026, 1, 1), "INV-2026-000001", 20000)]


def test_a_period_that_cannot_be_billed_does_not_stop_the_others(db, monkeypatch) -> None:
    """One subscription's billing fails on every run (a bug, bad data): the other
    customers' periods are billed all the same, and the run still fails, naming the error.
    Before, the first failing period (the oldest, so tried first every hour) stopped the run:
    no later period of anyone was ever billed."""
    from tests.support import factories as f
    from workflows import orders, subscriptions
    from workflows.inputs import OrderIn, OrderLineIn

    # given two subscriptions, the first one's billing always failing
    _monthly_subscription(db)
    with db.transaction() as s:
        f.customer(s, "C-OTHER", "Otherco", credit_limit="1000000.00")
        orders.create_order(s, OrderIn(
            customer="C-OTHER", sales_rep="USALES01", currency="USD", lines=[
                OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-01-01",
                            service_end="2026-12-31", billing="monthly")]),
            actor="USALES01", now=datetime(2025, 12, 20, tzinfo=UTC))
    real = subscriptions.bill_period

    def bill_period(session, **kwargs):
        if kwargs["order_line_id"] == 1:
            raise RuntimeError("cannot render the invoice")
        return real(session, **kwargs)

    monkeypatch.setattr(subscriptions, "bill_period", bill_period)
    # when the job runs on 2 February
    with pytest.raises(RuntimeError, match="cannot render"):
        run_at(datetime(2026, 2, 2, 12, tzinfo=UTC), revenue_jobs.subscription_billing,
               _deps(db), None)
    # then the other customer's January and February are invoiced (100.00 each)
    assert _billed(db) == [(date(2026, 1, 1), "INV-2026-000001", 10000),
                           (date(2026, 2, 1), "INV-2026-000002", 10000)]


def test_a_refusal_by_the_database_that_is_not_a_billed_period_is_not_taken_for_one(
        db, monkeypatch) -> None:
    """The job reads a unique-key refusal as "another process invoiced this period a moment
    ago". When no invoice of that period exists (another key refused the write), the period
    was not billed: the run fails, naming the error — before, January counted as "already
    invoiced" every hour, and was never invoiced, without a word."""
    from workflows import subscriptions

    # given a monthly subscription whose January billing the database refuses
    _monthly_subscription(db)

    def bill_period(session, **kwargs):
        raise sa.exc.IntegrityError("INSERT INTO outbox ...", {}, Exception("duplicate key"))

    monkeypatch.setattr(subscriptions, "bill_period", bill_period)
    # when / then
    with pytest.raises(sa.exc.IntegrityError):
        run_at(datetime(2026, 1, 2, 12, tzinfo=UTC), revenue_jobs.subscription_billing,
               _deps(db), None)
    assert _billed(db) == []


# -- the close: several at once record each month once ---------------------------------------

def test_closes_run_at_once_record_each_month_once(db) -> None:
    """Four closes started together — three of June, one of July — from four connections (as
    four server processes or a scheduler and an operator would): one close of June and one
    of July, each line's month recorded once, one summary post per month."""
    import threading

    from models import AuditEvent, OutboxMessage
    from models.revenue import RevenueEntry
    from workflows import revenue

    # given: 2 x 1200.00 of subscription over 2026, billed monthly
    _monthly_subscription(db)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def close(period: str) -> None:
        try:
            start.wait(10)
            with db.transaction() as s:
                revenue.close_month(s, period=period, actor="revenue-close",
                                    now=datetime(2026, 8, 3, 10, tzinfo=UTC))
        except BaseException as error:  # reported below
            errors.append(error)

    # when
    threads = [threading.Thread(target=close, args=(p,))
               for p in ("2026-06", "2026-06", "2026-07", "2026-06")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then
    with db.read_session() as s:
        closes = sorted(c.period for c in s.exec(select(RevenueClose)))
        entries = s.exec(select(RevenueEntry.period, RevenueEntry.recognized_minor)
                         .order_by(RevenueEntry.period)).all()
        posts = s.exec(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key.like("revenue-close:%"))).all()
        events = s.exec(select(AuditEvent.entity_id).where(
            AuditEvent.action == "revenue.period_closed")).all()
    assert errors == []
    assert closes in (["2026-06", "2026-07"], ["2026-07"])  # July alone if it went first
    months = [period for period, _ in entries]
    assert months == [f"2026-{m:02d}" for m in range(1, 8)]  # each month once
    # 2400.00 over 365 days, half-up per month: 31 days 203.84, 30 days 197.26, February
    # 184.11; January to July: 4 x 203.84 + 184.11 + 2 x 197.26
    assert sum(amount for _, amount in entries) == 4 * 20384 + 18411 + 2 * 19726
    assert sorted(posts) == sorted(f"revenue-close:{p}" for p in closes)
    assert sorted(events) == closes
