"""The digest jobs: worklists built outside the write transaction, each digest once, and
working hours read with `workcalendar.parse_hours` (a day may end at 24:00)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from sqlmodel import select

from bot import collections_jobs
from bot.db import Database
from bot.deps import Deps
from bot.settings import load_settings
from models import CollectionActivity, Customer, DigestRun, OutboxMessage
from tests.support import factories as f
from tests.support.meanwhile import at_once
from tests.support.timetravel import run_at
from workflows import collections, policy

TODAY = date(2026, 11, 23)  # a Monday
NOON = datetime.combine(TODAY, time(12), UTC)


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
            collections.log_call(s, customer_id=1, actor="UCOLL001", note="will pay Friday",
                                 now=NOON)
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


# -- customers with no collector: the AR channel's digest of unassigned accounts -------------
@pytest.fixture
def monday_noon():
    """These tests happen on TODAY, at noon UTC (the digests' day and the clicks' agree)."""
    with time_machine.travel(datetime(2026, 11, 23, 12, tzinfo=UTC), tick=False):
        yield


def _book_with_unassigned(db: Database) -> None:
    _book(db)
    with db.transaction() as s:
        f.customer(s, "C-U", "Umbrella")  # no collector
        f.customer(s, "C-V", "Vortex")  # no collector
        f.customer(s, "C-W", "Wayne")  # no collector, nothing overdue
        f.invoice(s, "INV-U", "C-U", total="500.00", due=TODAY - timedelta(days=40))
        f.invoice(s, "INV-V", "C-V", total="900.00", due=TODAY - timedelta(days=5))
        f.invoice(s, "INV-W", "C-W", total="100.00", due=TODAY + timedelta(days=5))


def _posts(db: Database, channel: str) -> list[OutboxMessage]:
    with db.read_session() as s:
        return [r for r in s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
                if (r.payload or {}).get("channel") == channel]


def test_overdue_accounts_without_a_collector_get_a_digest_in_the_ar_channel(
        db, monday_noon) -> None:
    # given two customers with no collector and something overdue, and one with nothing
    # overdue
    _book_with_unassigned(db)
    # when the digest job runs
    result = collections_jobs.digest(_deps(db), TODAY)
    # then the AR channel gets the unassigned accounts, ranked like a collector's
    assert result["collectors"] == ["UCOLL001", "UCOLL002", collections.UNASSIGNED]
    [post] = _posts(db, "ar")
    context = post.payload["context"]
    assert post.payload["template"] == "collections_digest"
    assert context["unassigned"] is True
    # (Vortex: 900.00 at 5 days × 1.0 = 900.00; Umbrella: 500.00 at 40 days × 1.5 = 750.00)
    assert [(a["name"], a["overdue_minor"], a["score"]) for a in context["accounts"]] == [
        ("Vortex", 90_000, "900.00"), ("Umbrella", 50_000, "750.00")]
    assert context["total_accounts"] == 2
    assert context["totals"]["USD"]["current"] == 10_000  # Wayne's, not yet due
    # and no collector's digest lists them
    for collector in ("UCOLL001", "UCOLL002"):
        [dm] = _posts(db, collector)
        assert {a["name"] for a in dm.payload["context"]["accounts"]} <= {"Acme", "Bolt"}
    # and it is rendered as the unassigned accounts, with the account buttons
    from blocks.templates import render as render_template

    rendered = render_template("collections_digest", context)
    assert "Unassigned accounts" in rendered["text"]
    assert "Unassigned accounts" in rendered["blocks"][0]["text"]["text"]
    buttons = [e["action_id"] for b in rendered["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert buttons.count("collections_reminder") == 2
    # when the job runs again that day: nothing more
    again = collections_jobs.digest(_deps(db), TODAY)
    assert again["digests"] == 0 and len(_posts(db, "ar")) == 1


def test_no_unassigned_digest_when_no_account_without_a_collector_is_overdue(
        db, monday_noon) -> None:
    _book(db)
    with db.transaction() as s:
        f.customer(s, "C-W", "Wayne")
        f.invoice(s, "INV-W", "C-W", total="100.00", due=TODAY + timedelta(days=5))
    result = collections_jobs.digest(_deps(db), TODAY)
    assert result["collectors"] == ["UCOLL001", "UCOLL002"]
    assert _posts(db, "ar") == []


def test_the_unassigned_digest_goes_at_the_start_of_the_business_working_day(db) -> None:
    # given the business time zone New York (working hours 09:00-17:00)
    _book_with_unassigned(db)
    with db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="America/New_York",
                         actor="UADMIN01")
    # when the schedule fires at 08:45 New York (13:45 UTC), then at 09:00 (14:00 UTC)
    early = run_at(datetime(2026, 11, 23, 13, 45, tzinfo=UTC),
                   collections_jobs.digest_schedule, _deps(db), None)
    on_time = run_at(datetime(2026, 11, 23, 14, 0, tzinfo=UTC),
                     collections_jobs.digest_schedule, _deps(db), None)
    # then the AR channel's digest goes at 09:00 New York, for that day
    assert collections.UNASSIGNED not in early["collectors"]
    assert collections.UNASSIGNED in on_time["collectors"]
    [post] = _posts(db, "ar")
    assert post.payload["context"]["as_of"] == TODAY.isoformat()
    assert post.payload["context"]["tz"] == "America/New_York"


def test_no_digest_goes_on_a_public_holiday_of_the_business(db) -> None:
    # given the business in New York closed on US public holidays: Thursday 26 November 2026
    # is Thanksgiving
    _book_with_unassigned(db)
    with db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="America/New_York",
                         actor="UADMIN01")
        policy.set_value(s, key="holidays", value="us", actor="UADMIN01")
    # when the schedule fires at 09:00 New York on Thanksgiving, then on the Friday after
    thanksgiving = run_at(datetime(2026, 11, 26, 14, 0, tzinfo=UTC),
                          collections_jobs.digest_schedule, _deps(db), None)
    friday = run_at(datetime(2026, 11, 27, 14, 0, tzinfo=UTC),
                    collections_jobs.digest_schedule, _deps(db), None)
    # then nothing goes on the holiday; the digest goes the next working day
    assert thanksgiving["collectors"] == []
    assert collections.UNASSIGNED in friday["collectors"]
    [post] = _posts(db, "ar")
    assert post.payload["context"]["as_of"] == "2026-11-27"


def test_a_call_logged_on_an_unassigned_account_updates_the_ar_channels_digest(
        db, monday_noon) -> None:
    _book_with_unassigned(db)
    collections_jobs.digest(_deps(db), TODAY)
    [post] = _posts(db, "ar")
    with db.read_session() as s:
        umbrella = s.exec(select(Customer.id).where(Customer.external_id == "C-U")).one()
    with db.transaction() as s:
        updated = collections.log_call(s, customer_id=umbrella, actor="UCOLL002",
                                       note="AP clerk on leave", now=NOON)
    with db.read_session() as s:
        [update] = s.exec(select(OutboxMessage).where(
            OutboxMessage.target_outbox_id == post.id)).all()
    assert updated.note == "AP clerk on leave"
    [row] = [a for a in update.payload["context"]["accounts"] if a["name"] == "Umbrella"]
    assert row["done"][-1]["by"] == "UCOLL002" and row["done"][-1]["kind"] == "call"
