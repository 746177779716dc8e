"""Scheduled jobs run once across processes; digests go out at 09:00 local on working days."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

from sqlmodel import select

from bot import collections_jobs, jobs, scheduler
from bot.db import Database
from bot.deps import Deps
from bot.settings import load_settings
from models import DigestRun, JobRun
from tests.support import factories as f
from tests.support.timetravel import run_at


def _deps(db: Database) -> Deps:
    from slack_sdk import WebClient

    return Deps(settings=load_settings(database_url=db.url), db=db,
                client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/"))


def _collectors(session) -> None:
    f.user(session, "ULA00001", "collector", timezone="America/Los_Angeles")
    f.user(session, "UBERLIN1", "collector", timezone="Europe/Berlin")
    f.user(session, "UTOKYO01", "collector", timezone="Asia/Tokyo")


def test_digest_is_due_at_nine_local_on_working_days(session) -> None:
    _collectors(session)
    session.commit()
    monday_17_utc = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # LA 09:00, Berlin 18:00
    assert collections_jobs.due_collectors(session, monday_17_utc) == {
        date(2026, 11, 23): ["ULA00001"]}
    monday_8_utc = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Berlin 09:00, Tokyo 17:00
    assert collections_jobs.due_collectors(session, monday_8_utc) == {
        date(2026, 11, 23): ["UBERLIN1"]}
    sunday_utc = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # Sunday everywhere but Tokyo
    assert collections_jobs.due_collectors(session, sunday_utc) == {}
    monday_tokyo = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # Tokyo Monday 09:30
    assert collections_jobs.due_collectors(session, monday_tokyo) == {
        date(2026, 11, 23): ["UTOKYO01"]}


def test_digest_schedule_sends_each_collector_once_per_local_day(db) -> None:
    with db.transaction() as s:
        _collectors(s)
    deps = _deps(db)
    at_nine = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    later = datetime(2026, 11, 23, 17, 45, tzinfo=UTC)
    first = run_at(at_nine, collections_jobs.digest_schedule, deps, None)
    second = run_at(later, collections_jobs.digest_schedule, deps, None)
    assert first["collectors"] == ["ULA00001"] and second["collectors"] == []
    with db.read_session() as s:
        runs = s.exec(select(DigestRun.collector_id, DigestRun.run_date)).all()
    assert runs == [("ULA00001", date(2026, 11, 23))]


def test_a_firing_runs_once_even_when_two_processes_fire_together(database_url) -> None:
    # given two "processes" (separate engines) and a job that counts its runs
    calls: list[object] = []
    spec = jobs.Job("count-me", lambda deps, as_of: calls.append(as_of) or {},
                    {"minute": "*"}, "test")
    dbs = [Database(database_url), Database(database_url)]
    planned = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    results: list = []
    barrier = threading.Barrier(2)

    def fire(db: Database) -> None:
        barrier.wait()
        results.append(scheduler.run_scheduled(_deps(db), spec, planned))

    threads = [threading.Thread(target=fire, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # then
    assert calls == [None]  # once, for "today" by the app's clock
    assert sorted(r is None for r in results) == [False, True]
    with dbs[0].read_session() as s:
        [run] = s.exec(select(JobRun)).all()
    assert (run.job, run.run_key) == ("count-me", "2026-11-23T09:00")
    assert run.finished_at is not None
    for db in dbs:
        db.dispose()


def test_advisory_lock_leader_on_postgresql_only(database_url) -> None:
    one, two = Database(database_url), Database(database_url)
    with scheduler.leadership(one, "dunning") as first:
        with scheduler.leadership(two, "dunning") as second:
            assert first is True
            # PostgreSQL: the second process is not the leader; SQLite relies on constraints
            assert second is (not two.is_postgres)
        with scheduler.leadership(two, "digest") as other_job:
            assert other_job is True
    with scheduler.leadership(two, "dunning") as after:
        assert after is True
    one.dispose()
    two.dispose()


def test_job_schedules_can_be_overridden() -> None:
    settings = load_settings(o2c_job_schedules='{"digest": {"hour": "7"}}')
    assert settings.o2c_job_schedules == {"digest": {"hour": "7"}}

    class FakeDeps:
        pass

    deps = FakeDeps()
    deps.settings = settings
    sched = scheduler.build_scheduler(deps)
    planned = {j.id for j in sched.get_jobs()}
    assert {"digest", "digest-schedule", "dunning"} <= planned
