"""The weekly KPI post: due Monday 08:00 business time, caught up later, once per ISO week."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlmodel import select

from bot import reports
from bot.cli import main
from bot.db import Database
from bot.deps import Deps
from bot.settings import load_settings
from models import JobRun, OutboxMessage
from tests.support import factories as f
from tests.support.timetravel import run_at
from workflows import kpis
from workflows import policy as policies

MONDAY = date(2026, 11, 23)  # ISO week 2026-W48


def _deps(db: Database) -> Deps:
    from slack_sdk import WebClient

    return Deps(settings=load_settings(database_url=db.url), db=db,
                client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/"))


def _posts(db: Database) -> list[dict]:
    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.method == "chat.postMessage")
                      ).all()
    return [row.payload for row in rows if row.payload.get("template") == "kpi_report"]


def _in_new_york(db: Database) -> None:
    with db.transaction() as s:
        policies.set_value(s, key="business_timezone", value="America/New_York", actor="test")


def test_the_post_is_due_at_eight_on_monday_in_the_business_time_zone(db) -> None:
    # given: the business runs on New York time (08:00 there is 13:00 UTC in November)
    _in_new_york(db)
    deps = _deps(db)
    # when the catch-up runs every 15 minutes around that time, and on Wednesday
    early = run_at(datetime(2026, 11, 23, 12, 45, tzinfo=UTC), reports.kpi_report, deps, MONDAY)
    on_time = run_at(datetime(2026, 11, 23, 13, 0, tzinfo=UTC), reports.kpi_report, deps, MONDAY)
    later = run_at(datetime(2026, 11, 23, 13, 15, tzinfo=UTC), reports.kpi_report, deps, MONDAY)
    wednesday = run_at(datetime(2026, 11, 25, 9, 0, tzinfo=UTC), reports.kpi_report, deps,
                       MONDAY + timedelta(days=2))
    # then: one post, at the first run from 08:00 New York time
    assert early["posted"] is False and "not due before 2026-11-23T08:00:00-05:00" in (
        early["reason"])
    assert on_time == {"week": "2026-W48", "posted": True, "as_of": "2026-11-23",
                       "dso": None}
    assert later["posted"] is False and wednesday["posted"] is False
    assert len(_posts(db)) == 1
    with db.read_session() as s:
        assert s.exec(select(JobRun.run_key).where(JobRun.job == "kpi-report")).all() == [
            "2026-W48"]


def test_a_server_down_at_eight_posts_at_its_next_run(db) -> None:
    # given: nothing ran on Monday (a deploy); the server is back on Tuesday morning
    deps = _deps(db)
    tuesday = MONDAY + timedelta(days=1)
    # when
    result = run_at(datetime(2026, 11, 24, 9, 30, tzinfo=UTC), reports.kpi_report, deps, tuesday)
    # then: the week's post goes out, as of that day
    assert result["posted"] is True and result["week"] == "2026-W48"
    assert [p["context"]["kpis"]["as_of"] for p in _posts(db)] == ["2026-11-24"]


def test_the_kpis_are_computed_outside_the_write_transaction(db, monkeypatch) -> None:
    # given: a compute that checks, while it runs, that the week is not claimed in its own
    # session yet and that another transaction can write (SQLite: the write lock is free)
    deps = _deps(db)
    seen: list[object] = []
    real = kpis.compute

    def watching(session, as_of, **kw):
        seen.append(session.exec(select(JobRun).where(JobRun.run_key == "2026-W48")).first())
        with db.transaction() as other:
            other.add(JobRun(job="probe", run_key="during-compute"))
        return real(session, as_of, **kw)

    monkeypatch.setattr(kpis, "compute", watching)
    # when
    result = run_at(datetime(2026, 11, 23, 9, 0, tzinfo=UTC), reports.kpi_report, deps, MONDAY)
    # then
    assert result["posted"] is True and seen == [None]
    with db.read_session() as s:
        assert len(s.exec(select(JobRun).where(JobRun.job == "probe")).all()) == 1


def test_o2c_run_back_fills_a_past_week_as_of_that_day(db, database_url, monkeypatch,
                                                      capsys) -> None:
    # given: an invoice issued 10-05, paid in full 11-20; on 11-02 it was 1000.00 open
    from workflows.cash_application import record_payment
    from workflows.inputs import PaymentIn

    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000901", total="1000.00", issued=date(2026, 10, 5),
                  due=date(2026, 11, 4))
        record_payment(s, PaymentIn(amount="1000.00", currency="USD",
                                    received_at=datetime(2026, 11, 20, 10, tzinfo=UTC)),
                       actor="test", apply_to=["INV-2026-000901"])
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when
    first = main(["run", "kpi-report", "--as-of", "2026-11-02"])
    summary = json.loads(capsys.readouterr().out)
    again = main(["run", "kpi-report", "--as-of", "2026-11-06"])
    repeat = json.loads(capsys.readouterr().out)
    # then: W45 posted once, with that day's AR: 1000 / 1000 sales x 90 days
    assert first == 0 and again == 0
    assert summary == {"week": "2026-W45", "posted": True, "as_of": "2026-11-02",
                       "dso": "90.00"}
    assert repeat["posted"] is False and repeat["reason"] == "already posted this week"
    [post] = _posts(db)
    assert post["context"]["kpis"]["ar"] == "1000.00"
