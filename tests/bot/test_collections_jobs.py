"""The digest jobs: worklists built outside the write transaction, each digest once, and
working hours read with `workcalendar.parse_hours` (a day may end at 24:00)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

from sqlmodel import select

from bot import collections_jobs
from bot.db import Database
from bot.deps import Deps
from bot.settings import load_settings
from models import CollectionActivity, DigestRun, OutboxMessage
from tests.support import factories as f
from tests.support.meanwhile import at_once
from tests.support.timetravel import run_at
from workflows import collections, policy

TODAY = date(2026, 11, 23)  # a Monday


def _deps(db: Database) -> Deps:
    from slack_sdk import WebClient

    return Deps(settings=load_settings(database_url=db.url), db=db,
                client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/"))


def _book(db: Database) -> None:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector", timezone="Europe/Berlin")
        f.user(s, "UCOLL002", "collector", timezone="America/New_York")
        f.customer(s, "C-A", "Acme", collector="UCOLL001")
        f.customer(s, "C-B", "Bolt", collector="UCOLL002")
        f.invoice(s, "INV-A", "C-A", due=TODAY - timedelta(days=10))
        f.invoice(s, "INV-B", "C-B", due=TODAY - timedelta(days=40))


def test_a_click_that_writes_is_not_blocked_while_the_digests_are_built(db, monkeypatch
                                                                        ) -> None:
    # given a book, and a collector who logs a call while the digest job builds worklists
    _book(db)
    build = collections.build_worklists
    wrote = threading.Event()
    during_build: list[bool] = []
    clickers: list[threading.Thread] = []

    def log_call() -> None:
        with db.transaction() as s:
            collections.log_call(s, customer_id=1, actor="UCOLL001", note="will pay Friday")
        wrote.set()

    def slow_build(*args, **kwargs):
        clickers.append(threading.Thread(target=log_call))
        clickers[-1].start()
        during_build.append(wrote.wait(5))
        return build(*args, **kwargs)

    monkeypatch.setattr(collections, "build_worklists", slow_build)
    # when the digest job runs
    result = collections_jobs.digest(_deps(db), TODAY)
    for clicker in clickers:
        clicker.join(30)
    # then the click's transaction committed while the worklists were being built
    assert during_build == [True]
    assert result["collectors"] == ["UCOLL001", "UCOLL002"]
    with db.read_session() as s:
        assert len(s.exec(select(CollectionActivity)).all()) == 1
        assert sorted(s.exec(select(DigestRun.collector_id)).all()) == ["UCOLL001", "UCOLL002"]


def test_two_digest_runs_at_once_send_each_digest_once(db, monkeypatch) -> None:
    # given two processes that both built the worklists before either recorded anything
    _book(db)
    prepare = collections.prepare_digests
    both_built = threading.Barrier(2)

    def prepare_then_wait(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        both_built.wait(10)
        return prepared

    monkeypatch.setattr(collections, "prepare_digests", prepare_then_wait)

    # when both record their digests
    results = at_once(lambda: collections_jobs.digest(_deps(db), TODAY), 2)
    # then each collector got one digest, recorded by one of them
    assert sorted(c for r in results for c in r["collectors"]) == ["UCOLL001", "UCOLL002"]
    with db.read_session() as s:
        assert sorted(s.exec(select(DigestRun.collector_id)).all()) == ["UCOLL001", "UCOLL002"]
        keys = s.exec(select(OutboxMessage.dedupe_key)).all()
    assert sorted(keys) == ["digest:UCOLL001:2026-11-23", "digest:UCOLL002:2026-11-23"]


def test_working_hours_until_midnight_are_honoured(db) -> None:
    # given working hours that last the whole day
    _book(db)
    with db.transaction() as s:
        policy.set_value(s, key="working_hours", value="00:00-24:00", actor="UADMIN01")
    late_evening = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # Berlin 23:30, New York 17:30
    # when the schedule fires late in the evening
    with db.read_session() as s:
        due = collections_jobs.due_collectors(s, late_evening)
    result = run_at(late_evening, collections_jobs.digest_schedule, _deps(db), None)
    # then both collectors are within their working day (not a silent 09:00-17:00)
    assert due == {TODAY: ["UCOLL001", "UCOLL002"]}
    assert result["collectors"] == ["UCOLL001", "UCOLL002"]
