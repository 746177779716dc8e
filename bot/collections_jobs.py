"""Collections jobs: the daily digest and dunning (with promise checks and overdue notices).

* `digest` — every collector's digest for `as_of` (the CLI and back-fills: `o2c run digest
  --as-of 2026-11-23`). Not scheduled as such.
* `digest-schedule` — every 15 minutes: each collector whose local time (their Slack time zone)
  is within working hours (policy `working_hours`, 09:00–17:00) on a working day (Mon–Fri)
  and who has not had today's digest gets it. In practice that is 09:00 local; a server that
  was down at 09:00 catches up later that morning. `DigestRun` makes it once per collector per
  local day. It always uses the current time (`--as-of` does not apply). "00:00-24:00"
  means the whole day (`workcalendar.parse_hours`); a bad value fails the run loudly.
* Both build the worklists in a read session (seconds on a million invoices; on SQLite a write
  transaction would hold the write lock all along and every Slack click that writes would
  wait), then record `DigestRun` + outbox rows in one short write transaction.
* `dunning` — hourly: promise checks (kept / broken), then dunning levels, which include the
  overdue notice on the first day past due. Idempotent, so hourly runs send each
  (invoice, level) once; `o2c run dunning --as-of DATE` evaluates any day.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from bot.jobs import job
from models import User
from models.base import utcnow
from workflows import collections, dunning, policy
from workflows.workcalendar import parse_hours, within_hours


def due_collectors(session: Session, now: datetime) -> dict[date, list[str]]:
    """Collectors whose digest is due at `now`, grouped by their local date."""
    hours = parse_hours(policy.current(session).working_hours)
    wanted = collections.collectors(session)
    zones = dict(session.exec(select(User.slack_user_id, User.timezone)
                              .where(User.slack_user_id.in_(wanted))).all()) if wanted else {}
    due: dict[date, list[str]] = {}
    for collector in wanted:
        try:
            zone = ZoneInfo(zones.get(collector) or "UTC")
        except Exception:  # noqa: BLE001 - a bad tz from Slack falls back to UTC
            zone = ZoneInfo("UTC")
        local = now.astimezone(zone)
        if local.weekday() < 5 and within_hours(local.time(), hours):
            due.setdefault(local.date(), []).append(collector)
    return due


def _queue(deps, prepared: dict[date, dict[str, dict]]) -> list[str]:  # noqa: ANN001
    """Record prepared digests in one short write transaction (the worklists were built in a
    read session, so no Slack click waits for SQLite's write lock meanwhile)."""
    queued: list[str] = []
    if any(prepared.values()):
        with deps.db.transaction() as session:
            for day, digests in sorted(prepared.items()):
                queued += collections.record_digests(session, day, digests)
        deps.notify_outbox()
    return queued


@job("digest", cron=None, summary="queue the collections digest DM of every collector")
def digest(deps, as_of: date) -> dict:  # noqa: ANN001
    with deps.db.read_session() as session:
        prepared = {as_of: collections.prepare_digests(session, as_of)}
    queued = _queue(deps, prepared)
    return {"as_of": as_of.isoformat(), "digests": len(queued), "collectors": queued}


@job("digest-schedule", cron={"minute": "*/15"},
     summary="digest DMs at 09:00 in each collector's time zone on working days")
def digest_schedule(deps, as_of: date, *, now: datetime | None = None) -> dict:  # noqa: ANN001
    now = now or utcnow()
    with deps.db.read_session() as session:
        prepared = {day: collections.prepare_digests(session, day, collector_ids=ids)
                    for day, ids in due_collectors(session, now).items()}
    queued = _queue(deps, prepared)
    return {"at": now.isoformat(), "digests": len(queued), "collectors": queued}


@job("dunning", cron={"minute": "5"},
     summary="promise checks, overdue notices and dunning reminders (each once)")
def run_dunning(deps, as_of: date) -> dict:  # noqa: ANN001
    with deps.db.transaction() as session:
        promises = collections.check_promises(session, as_of)
    run = dunning.run_all(deps.db, as_of)
    deps.notify_outbox()
    return {**run.summary(), "promises_kept": len(promises.kept),
            "promises_broken": len(promises.broken)}
