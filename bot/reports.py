"""The weekly KPI post (`o2c run kpi-report`, Mondays 08:00 UTC), once per ISO week."""

from __future__ import annotations

from datetime import date

from sqlalchemy.exc import IntegrityError

from bot.jobs import job
from models import JobRun
from workflows import kpis, outbox


@job("kpi-report", cron={"day_of_week": "mon", "hour": 8, "minute": 0},
     summary="weekly KPI post to the AR channel")
def kpi_report(deps, as_of: date) -> dict:  # noqa: ANN001
    year, week, _ = as_of.isocalendar()
    key = f"{year}-W{week:02d}"
    try:
        with deps.db.transaction() as session:
            session.add(JobRun(job="kpi-report", run_key=key))
            session.flush()
            data = kpis.to_json(kpis.compute(session, as_of))
            outbox.post_to_channel(session, channel="ar", template="kpi_report",
                                   context={"kpis": data}, dedupe_key=f"kpi-report:{key}")
    except IntegrityError:
        return {"week": key, "posted": False, "reason": "already posted this week"}
    deps.notify_outbox()
    return {"week": key, "posted": True, "dso": data["dso"]}
