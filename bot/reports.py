"""The weekly KPI post to the AR channel (`kpi-report`), once per ISO week.

When: an ISO week's post is due on its Monday at 08:00 in the business time zone (policy
`business_timezone`). The scheduler runs the job every 15 minutes as a catch-up: the first run
at or after that moment posts it — a server that was down or being deployed at 08:00 posts at
its next run — and later runs find the week's `JobRun` ("2026-W48") and post nothing.
`o2c run kpi-report --as-of DATE` posts DATE's week as of DATE, if that week's post is due and
has not gone out yet (so a back-fill of a missed week works, and a second run is a no-op).

How: the KPIs are computed in a read session — over a big database that takes a while, and on
SQLite a write transaction would hold the write lock all that time — and then one short
transaction claims the week (`JobRun`, unique per job and key) and queues the post in the
outbox. Two processes that race both compute; the one that claims the week first posts.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models import JobRun
from models.base import utcnow
from workflows import kpis, outbox
from workflows import policy as policies
from workflows.workcalendar import zone

NAME = "kpi-report"
SNAPSHOT = "kpi-snapshot"
MERGE = "kpi-rollup-merge"
DUE_TIME = time(8)  # on the ISO week's Monday, in the business time zone


def week_key(as_of: date) -> str:
    year, week, _ = as_of.isocalendar()
    return f"{year}-W{week:02d}"


def due_at(as_of: date, tz: str) -> datetime:
    """When the post of `as_of`'s ISO week is due: its Monday, 08:00 business time."""
    monday = as_of - timedelta(days=as_of.weekday())
    return datetime.combine(monday, DUE_TIME, tzinfo=zone(tz))


def kpi_report(deps, as_of: date | None) -> dict:
    now = deps.clock.now()
    as_of = as_of or deps.business_today()
    key = week_key(as_of)
    with deps.db.read_session() as session:
        due = due_at(as_of, policies.current(session).business_timezone)
        if now < due:
            return {"week": key, "posted": False, "reason": f"not due before {due.isoformat()}"}
        if session.exec(select(JobRun.id).where(JobRun.job == NAME,
                                                JobRun.run_key == key)).first() is not None:
            return {"week": key, "posted": False, "reason": "already posted this week"}
        data = kpis.to_json(kpis.compute(session, as_of, now=now, concurrently=True))
    try:
        with deps.db.transaction() as session:
            session.add(JobRun(job=NAME, run_key=key, finished_at=utcnow(),
                               summary={"as_of": data["as_of"], "dso": data["dso"]}))
            session.flush()
            outbox.post_to_channel(session, channel="ar", template="kpi_report",
                                   context={"kpis": data}, dedupe_key=f"{NAME}:{key}")
    except IntegrityError:
        return {"week": key, "posted": False, "reason": "already posted this week"}
    deps.notify_outbox()
    return {"week": key, "posted": True, "as_of": data["as_of"], "dso": data["dso"]}


def kpi_snapshot(deps, as_of: date | None) -> dict:
    """Refresh the KPI snapshot admins' App Home shows (`workflows.kpis.snapshot`) for the
    business day, when the books changed since it was computed (or there is none for the
    day); otherwise one index probe. The KPIs are computed in a read session and stored in a
    short transaction, like the weekly post."""
    as_of = as_of or deps.business_today()
    with deps.db.read_session() as session:
        if kpis.is_fresh(session, as_of):
            return {"as_of": as_of.isoformat(), "refreshed": False}
        data, marker = kpis.compute_snapshot(session, as_of, concurrently=True)
    try:
        with deps.db.transaction() as session:
            kpis.store_snapshot(session, as_of, data, marker, deps.clock.now())
    except IntegrityError:  # another process stored the day's first snapshot at the same time
        return {"as_of": as_of.isoformat(), "refreshed": False}
    return {"as_of": as_of.isoformat(), "refreshed": True, "dso": data["dso"]}


def kpi_rollup_merge(deps, as_of: date | None) -> dict:
    """Fold the KPI rollups' per-connection stripes of the days before `as_of` (None: the
    business day) into one row per currency and day (`workflows.kpi_rollups`), a short
    transaction per `BATCH` rows, so the KPIs' reads stay a few hundred rows over the years.
    Changes no figure. Then, housekeeping: the Slack event receipts Slack can no longer
    retry are purged (`workflows.receipts`), whatever `as_of` says (they are stamped by the
    recording clock)."""
    from workflows import kpi_rollups, receipts

    before = as_of or deps.business_today()
    merged = days = 0
    while True:
        with deps.db.transaction() as session:
            done = kpi_rollups.merge(session, before)
        merged, days = merged + done["merged"], days + done["days"]
        if done["merged"] < kpi_rollups.BATCH:
            break
    purged = 0
    cutoff = utcnow() - receipts.EVENT_RECEIPTS_KEPT
    while True:
        with deps.db.transaction() as session:
            done = receipts.purge_event_receipts(session, before=cutoff,
                                                 limit=receipts.PURGE_BATCH)
        purged += done
        if done < receipts.PURGE_BATCH:
            break
    return {"before": before.isoformat(), "merged": merged, "days": days,
            "event_receipts_purged": purged}
