"""Slack event receipts (`slack_event_receipts`: the ids of the events handled, so Slack's
retries of one are dropped) are purged once Slack can no longer retry them (it retries an
event three times within minutes), by the hourly `kpi-rollup-merge` housekeeping job; a
receipt within the window stays, whatever day the business clock says."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import select

from bot.cli import main as cli
from models import SlackEventReceipt
from models.base import utcnow
from workflows import receipts


def test_the_hourly_job_purges_receipts_older_than_slacks_retry_window(
        db, database_url, capsys, monkeypatch) -> None:
    # given: receipts of events handled four days ago, two days ago and a minute ago
    now = utcnow()
    with db.transaction() as s:
        for event_id, age in (("Ev0OLD", timedelta(days=4)), ("Ev0TWO", timedelta(days=2)),
                              ("Ev0NEW", timedelta(minutes=1))):
            s.add(SlackEventReceipt(event_id=event_id, received_at=now - age))
    # when the job runs, even as of a business day far ahead (the sandbox's Time travel)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli(["run", "kpi-rollup-merge", "--as-of", "2030-01-01"]) == 0
    # then: only the one Slack can no longer retry is gone, and the job says so
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):out.rindex("}") + 1])["event_receipts_purged"] == 1
    with db.read_session() as s:
        assert sorted(r.event_id for r in s.exec(select(SlackEventReceipt))) == [
            "Ev0NEW", "Ev0TWO"]


def test_purging_goes_in_short_batches_and_keeps_the_window(
        db, database_url, capsys, monkeypatch) -> None:
    # given: more old receipts than one batch (of two, here), and a fresh one
    monkeypatch.setattr(receipts, "PURGE_BATCH", 2)
    now = utcnow()
    with db.transaction() as s:
        for n in range(5):
            s.add(SlackEventReceipt(event_id=f"Ev{n:06d}",
                                    received_at=now - receipts.EVENT_RECEIPTS_KEPT
                                    - timedelta(minutes=1)))
        s.add(SlackEventReceipt(event_id="EvKEEP", received_at=now - timedelta(hours=1)))
    # when
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli(["run", "kpi-rollup-merge"]) == 0
    # then
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):out.rindex("}") + 1])["event_receipts_purged"] == 5
    with db.read_session() as s:
        assert [r.event_id for r in s.exec(select(SlackEventReceipt))] == ["EvKEEP"]
