"""`/o2c kpi` and the weekly KPI post."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from bot import jobs
from tests.support import factories as f
from tests.support.slack import ask, text_of


def test_kpi_command_shows_dso_and_aging(server, slack, standin) -> None:  # noqa: ANN001
    # given: 900 issued in the window, 300 of it overdue, nothing collected
    today = datetime.now(UTC).date()
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-K1", total="300.00", issued=today - timedelta(days=60),
                  due=today - timedelta(days=30))
        f.invoice(s, "INV-K2", total="600.00", issued=today - timedelta(days=10),
                  due=today + timedelta(days=20))
    # when
    text = text_of(ask(slack, standin.api, "USALES01", "kpi"))
    # then: DSO = 900 / 900 x 90 = 90 days; best possible = 600 / 900 x 90 = 60
    assert "90.00 days" in text
    assert "60.00 days" in text
    assert "Aging USD" in text and "1-30: USD 300.00" in text


def test_weekly_kpi_report_posts_once_per_week(server, standin) -> None:  # noqa: ANN001
    # given
    monday = date(2026, 11, 23)
    # when
    first = jobs.run_job("kpi-report", server.deps, monday)
    again = jobs.run_job("kpi-report", server.deps, monday + timedelta(days=2))
    # then
    assert first["posted"] is True and again["posted"] is False
    standin.api.wait_for(lambda: standin.api.messages("CAR000001") or None)
    assert len(standin.api.messages("CAR000001")) == 1
    assert "Weekly O2C KPIs" in str(standin.api.messages("CAR000001")[0])
