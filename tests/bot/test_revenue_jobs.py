"""The revenue jobs' schedule: the close of the month before is due from 06:00 business time
on the month's first working day and runs once; a job's schedule can be turned off."""

from __future__ import annotations

from datetime import UTC, date, datetime

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
