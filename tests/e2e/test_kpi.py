"""`/o2c kpi` and the weekly KPI post."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import time_machine

from bot import jobs
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)


def test_kpi_command_shows_dso_and_aging(server, slack, standin) -> None:
    # given: 900 issued in the window, 300 of it overdue, nothing collected
    today = TODAY
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-K1", total="300.00", issued=today - timedelta(days=60),
                  due=today - timedelta(days=30))
        f.invoice(s, "INV-K2", total="600.00", issued=today - timedelta(days=10),
                  due=today + timedelta(days=20))
    # when
    text = text_of(ask(slack, standin.api, ADMIN, "kpi"))
    # then: DSO = 900 / 900 x 90 = 90 days; best possible = 600 / 900 x 90 = 60
    assert "90.00 days" in text
    assert "60.00 days" in text
    assert "Aging USD" in text and "1-30: USD 300.00" in text


def test_kpi_command_answers_from_a_fresh_snapshot_and_computes_after_a_change(
        server, slack, standin) -> None:
    from bot import reports
    from models import KpiSnapshot
    from workflows import audit

    # given today's snapshot, computed by the job (marked here so the test can tell it apart)
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-K1", total="300.00", issued=TODAY - timedelta(days=60),
                  due=TODAY - timedelta(days=30))
    assert reports.kpi_snapshot(server.deps, TODAY)["refreshed"] is True
    with server.db.transaction() as s:
        row = s.get(KpiSnapshot, TODAY)
        row.data = {**row.data, "dso": "12.34"}
    # when nothing was recorded since: /o2c kpi answers from the snapshot
    assert "12.34 days" in text_of(ask(slack, standin.api, ADMIN, "kpi"))
    # when something is recorded: it computes again
    with server.db.transaction() as s:
        audit.record(s, actor="test", action="test.change", entity_type="invoice",
                     entity_id="INV-K1")
    text = text_of(ask(slack, standin.api, ADMIN, "kpi"))
    assert "12.34 days" not in text and "90.00 days" in text


def test_weekly_kpi_report_posts_once_per_week(server, standin) -> None:
    # given
    from bot import reports

    monday = date(2026, 11, 23)
    at_nine = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    # when
    with time_machine.travel(at_nine, tick=False) as traveller:
        first = reports.kpi_report(server.deps, monday)
        traveller.shift(timedelta(days=2))
        again = reports.kpi_report(server.deps, monday + timedelta(days=2))
    # then
    assert first["posted"] is True and again["posted"] is False
    standin.api.wait_for(lambda: standin.api.messages("CAR000001") or None)
    assert len(standin.api.messages("CAR000001")) == 1
    assert "Weekly O2C KPIs" in str(standin.api.messages("CAR000001")[0])


def test_kpi_needs_a_finance_role_and_refusals_are_audited(server, slack, standin) -> None:
    from sqlmodel import select

    from models import AuditEvent

    # given a sales rep (no finance role) and someone with no role at all
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
    # when
    refused = [text_of(ask(slack, standin.api, user, "kpi")) for user in ("USALES01", "UNOBODY1")]
    lookup = text_of(ask(slack, standin.api, "UNOBODY1", "ar"))
    # then
    assert all("can do this" in text and "DSO" not in text for text in refused)
    assert "can do this" in lookup and "Accounts receivable" not in lookup
    with server.db.read_session() as s:
        actions = sorted((e.actor, e.action) for e in s.exec(select(AuditEvent).where(
            AuditEvent.action.like("refused.command.%"))))
    assert actions == [("UNOBODY1", "refused.command.ar"), ("UNOBODY1", "refused.command.kpi"),
                       ("USALES01", "refused.command.kpi")]


def test_kpi_report_is_a_registered_catch_up_job() -> None:
    # when
    spec = jobs.JOBS["kpi-report"]
    # then: every 15 minutes, so a deploy over Monday 08:00 does not skip the week
    assert spec.cron == {"minute": "*/15"}


def test_admins_see_the_kpis_on_app_home_and_sales_reps_do_not(server, slack, standin
                                                               ) -> None:
    # given: 900 of sales in the window, all of it open; a sales rep
    today = TODAY
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.invoice(s, "INV-K1", total="300.00", issued=today - timedelta(days=60),
                  due=today - timedelta(days=30))
        f.invoice(s, "INV-K2", total="600.00", issued=today - timedelta(days=10),
                  due=today + timedelta(days=20))
    # when both open App Home
    slack.app_home_opened("UADMIN01")
    slack.app_home_opened("USALES01")
    admin = standin.api.wait_for(lambda: standin.api.home_view("UADMIN01"), 10, "admin home")
    rep = standin.api.wait_for(lambda: standin.api.home_view("USALES01"), 10, "rep home")
    # then: DSO = 900 / 900 x 90 days for the admin only
    assert "DSO" in text_of(admin) and "90.00 days" in text_of(admin)
    assert "Aging USD" in text_of(admin)
    assert "Your roles" in text_of(rep) and "DSO" not in text_of(rep)


def test_app_home_serves_the_kpi_snapshot_with_its_age_until_the_job_refreshes_it(
        server, slack, standin) -> None:
    from bot import reports

    # given: 900 of sales in the window, the snapshot job run once, then 300 more sold
    today = TODAY
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-K1", total="300.00", issued=today - timedelta(days=60),
                  due=today - timedelta(days=30))
        f.invoice(s, "INV-K2", total="600.00", issued=today - timedelta(days=10),
                  due=today + timedelta(days=20))
    first = reports.kpi_snapshot(server.deps, None)
    unchanged = reports.kpi_snapshot(server.deps, None)
    with server.db.transaction() as s:
        f.invoice(s, "INV-K3", total="300.00", issued=today - timedelta(days=5),
                  due=today + timedelta(days=25))
    # when the admin opens App Home
    slack.app_home_opened("UADMIN01")
    served = standin.api.wait_for(lambda: standin.api.home_view("UADMIN01"), 10, "home")
    # then: the snapshot's figures (900 open of 900 sold: DSO 90), not recomputed, and its age
    assert first["refreshed"] is True and unchanged["refreshed"] is False
    assert "90.00 days" in text_of(served) and "KPIs computed" in text_of(served)
    assert "USD 900.00" in text_of(served) and "USD 1,200.00" not in text_of(served)
    # when the job runs after the change and the admin opens App Home again
    refreshed = reports.kpi_snapshot(server.deps, None)
    slack.app_home_opened("UADMIN01")
    again = standin.api.wait_for(
        lambda: (view := standin.api.home_view("UADMIN01")) and "USD 1,200.00" in str(view)
        and view, 10, "refreshed home")
    # then: 1,200 open of 1,200 sold, still DSO 90, now with the new AR
    assert refreshed["refreshed"] is True
    assert "90.00 days" in text_of(again)


def test_kpi_snapshot_is_a_registered_job() -> None:
    # when
    spec = jobs.JOBS["kpi-snapshot"]
    # then: often enough that App Home's figures are minutes old at most
    assert spec.cron == {"minute": "*/5"}
