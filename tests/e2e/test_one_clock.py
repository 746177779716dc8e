"""One clock (SPEC §5.10): the digest, `/o2c worklist`, `/o2c customer` and the App Home agree
on days past due for the same person at the same moment, in that person's own time zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from bot.jobs import run_job
from tests.support import factories as f
from tests.support.slack import ask, text_of

# 03:00 UTC on Tuesday 24 November 2026 is still Monday 23 November, 19:00, in Los Angeles
MOMENT = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
LA_TODAY = date(2026, 11, 23)
DUE = LA_TODAY - timedelta(days=140)  # 140 days late in Los Angeles, 141 by the UTC date


@pytest.fixture
def late_evening_in_la():
    with time_machine.travel(MOMENT, tick=True):  # time flows: the outbox works as usual
        yield


@pytest.fixture
def book(late_evening_in_la, server):
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector", timezone="America/Los_Angeles")
        f.customer(s, "C-LATE", "Latecomer Ltd", collector="UCOLL001")
        f.invoice(s, "INV-LATE", "C-LATE", total="500.00", due=DUE)
    return server


def _days(pattern: str, text: str) -> list[int]:
    return [int(n) for n in re.findall(pattern, text)]


def test_every_screen_of_a_collector_says_the_same_days_past_due(book, slack, standin
                                                                 ) -> None:
    # when the collector looks at everything at 19:00 their time
    run_job("digest", book.deps, None)  # `o2c run digest`: each collector's own today
    book.deps.notify_outbox()
    digest = text_of(standin.api.wait_for(lambda: standin.api.dm_messages("UCOLL001"), 15,
                                          "the digest DM")[0])
    worklist = text_of(ask(slack, standin.api, "UCOLL001", "worklist"))
    card = text_of(ask(slack, standin.api, "UCOLL001", "customer latecomer"))
    slack.app_home_opened("UCOLL001")
    home = text_of(standin.api.wait_for(lambda: standin.api.home_view("UCOLL001"), 10, "home"))
    # then each says 140 days, never the 141 of the UTC date
    assert _days(r"(\d+) days late", digest) == [140]
    assert _days(r"(\d+) days late", worklist) == [140]
    assert _days(r"(\d+) days late", home) == [140]
    assert "Oldest past due" in card and _days(r"Oldest past due\D*(\d+) days", card) == [140]
    # and the digest is the one of their Monday, the 23rd
    assert "digest:UCOLL001:2026-11-23" in {
        m.dedupe_key for m in _outbox(book)}


def _outbox(server):
    from sqlmodel import select

    from models import OutboxMessage

    with server.db.read_session() as s:
        return s.exec(select(OutboxMessage)).all()
