"""A dunning run's one AR-channel summary survives a crash (issue 18): the run is recorded in
the database with its first write transaction, its notices point at it, and the summary is
counted from those rows — by the run when it ends, or by the next run (any process) when it
was killed between batches. Once: the run's `finished` flag is set by a conditional UPDATE
in the transaction that writes the summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlmodel import select

from models import DunningNotice, DunningRunRecord
from tests.support.meanwhile import at_once
from tests.workflows.test_dunning_catchup import (
    NOW,
    TODAY,
    _outbox,
    frozen_time,  # noqa: F401 - the module's tests happen at NOW
    given_an_imported_book,
)
from workflows import dunning

LATER = NOW + timedelta(hours=1)  # the next hourly run


class Killed(Exception):
    """The process dies after the run's first write transaction committed."""


def _kill() -> None:
    raise Killed


def given_a_run_killed_after_its_first_batch(db) -> None:
    """Six customers: Acme's four invoices due (one at the final level: a credit hold) are
    the first write transaction; then the process dies. Five other customers one each."""
    given_an_imported_book(db, customers=6)
    with pytest.raises(Killed):
        dunning.run_all(db, TODAY, batch=2, between=_kill)
    with db.read_session() as s:
        sent = s.exec(select(DunningNotice).where(DunningNotice.skipped.is_(False))).all()
        assert len(sent) == 4 and {n.run_id for n in sent} != {None}
        assert _outbox(s, "dunning_summary") == []
        assert not s.exec(select(DunningRunRecord)).one().finished


def _summaries(db) -> list[dict]:
    with db.read_session() as s:
        return [r.payload["context"] for r in _outbox(s, "dunning_summary")]


def test_a_run_killed_between_batches_is_summarised_once_by_the_next_run(db) -> None:
    # given a run killed after its first batch
    given_a_run_killed_after_its_first_batch(db)
    # when the next hourly run comes (and another one after it)
    with time_machine.travel(LATER, tick=False):
        rest = dunning.run_all(db, TODAY, batch=2)
        again = dunning.run_all(db, TODAY, batch=2)
    # then it took the killed run over: one summary post for the day, counting the killed
    # run's notices and its own — from the database, not from this process's memory
    assert sum(rest.sent.values()) == 5 and again.sent == {} and again.id is None
    [summary] = _summaries(db)
    assert (summary["notices"], summary["customers"], summary["emails"]) == (9, 6, 6)
    assert summary["by_level"] == {"1": 2, "7": 6, "30": 1}
    assert summary["credit_holds"] == ["Acme"] and summary["credit_hold_count"] == 1
    assert summary["top"][0]["name"] == "Acme"
    with db.read_session() as s:
        skipped = s.exec(select(DunningNotice).where(DunningNotice.skipped.is_(True))).all()
        assert summary["skipped"] == len(skipped) == 18
        [record] = s.exec(select(DunningRunRecord)).all()
        assert record.finished and record.id == rest.id
        assert record.summary_outbox_id == _outbox(s, "dunning_summary")[0].id


def test_a_run_that_only_looks_busy_is_left_to_itself(db) -> None:
    # given a run killed a minute ago (it could still be writing)
    given_a_run_killed_after_its_first_batch(db)
    # when another run comes before it is stale
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        rest = dunning.run_all(db, TODAY, batch=2)
    # then it does not touch it: it sends the rest and posts its own summary only
    assert [s["notices"] for s in _summaries(db)] == [5]
    # and a later run summarises the killed one, once
    with time_machine.travel(LATER, tick=False):
        dunning.run_all(db, TODAY, batch=2)
        dunning.run_all(db, TODAY, batch=2)
    assert sorted(s["notices"] for s in _summaries(db)) == [4, 5]
    with db.read_session() as s:
        assert all(r.finished for r in s.exec(select(DunningRunRecord)).all())
    assert rest.id is not None


def test_a_killed_run_of_another_day_gets_its_own_summary(db) -> None:
    # given yesterday's run killed after its first batch
    given_a_run_killed_after_its_first_batch(db)
    # when tomorrow's run comes (nothing new is due then)
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        dunning.run_all(db, TODAY + timedelta(days=1), batch=2)
    # then the killed run is summarised for its own day with what it sent
    killed = next(s for s in _summaries(db) if s["as_of"] == TODAY.isoformat())
    assert (killed["notices"], killed["customers"], killed["emails"]) == (4, 1, 1)


def test_two_processes_taking_over_a_killed_run_summarise_each_notice_once(db) -> None:
    # given a run killed after its first batch
    given_a_run_killed_after_its_first_batch(db)
    # when two processes' next runs start at once (a failure of either fails the test)
    with time_machine.travel(LATER, tick=False):
        at_once(lambda: dunning.run_all(db, TODAY, batch=1), 2)
    # then every notice is counted in exactly one summary post, the killed run's in one
    summaries = _summaries(db)
    assert sum(s["notices"] for s in summaries) == 9
    assert sum(s["emails"] for s in summaries) == 6
    assert len([s for s in summaries if s["credit_holds"] == ["Acme"]]) == 1
    with db.read_session() as s:
        assert all(r.finished for r in s.exec(select(DunningRunRecord)).all())
