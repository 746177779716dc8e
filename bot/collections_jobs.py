"""Collections jobs: the daily digest and dunning (with promise checks and overdue notices).

* Customers with no collector are not lost: when one has something overdue, the AR channel
  gets their digest too ("Unassigned accounts", `collections.UNASSIGNED`), ranked the same
  way, at 09:00 in the business time zone on working days, once a day.
* `digest` — every collector's digest for `as_of` (the CLI and back-fills: `o2c run digest
  --as-of 2026-11-23`); without `--as-of`, for each collector's own today (their Slack time
  zone, SPEC §3), so it agrees with their `/o2c worklist`. Not scheduled as such. Collectors
  who already had that day's digest are named in the summary (`already_sent`), never sent a
  second one.
* `digest-schedule` — every 15 minutes: each collector whose local time (their Slack time zone)
  is within working hours (policy `working_hours`, 09:00–17:00) on a working day (Mon–Fri)
  and who has not had today's digest gets it. In practice that is 09:00 local; a server that
  was down at 09:00 catches up later that morning. `DigestRun` makes it once per collector per
  local day. It uses the app's clock (`deps.clock`; the sandbox's Time travel moves it), not
  `--as-of`. "00:00-24:00"
  means the whole day (`workcalendar.parse_hours`); a bad value fails the run loudly.
* Both build the worklists in a read session (seconds on a million invoices; on SQLite a write
  transaction would hold the write lock all along and every Slack click that writes would
  wait), then record `DigestRun` + outbox rows in one short write transaction.
* `dunning` — hourly: promise checks (kept / broken), small leftovers written off
  (`O2C_SMALL_BALANCE_WRITE_OFF`), then dunning levels, which include the overdue notice on the
  first day past due and the late fees (`O2C_LATE_FEES`). Idempotent, so hourly runs send each
  (invoice, level) once; `o2c run dunning --as-of DATE` evaluates any day.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from models import User
from workflows import collections, dunning, policy
from workflows.workcalendar import Holidays, is_working_day, parse_hours, within_hours


def _zones(session: Session, collector_ids: list[str]) -> dict[str, str | None]:
    """Each collector's Slack time zone; the AR channel's digest of unassigned accounts
    (`collections.UNASSIGNED`) keeps the business time zone."""
    zones = dict(session.exec(select(User.slack_user_id, User.timezone)
                              .where(User.slack_user_id.in_(collector_ids))).all()
                 ) if collector_ids else {}
    if collections.UNASSIGNED in collector_ids:
        zones[collections.UNASSIGNED] = policy.current(session).business_timezone
    return zones


def due_collectors(session: Session, now: datetime) -> dict[date, list[str]]:
    """Collectors whose digest is due at `now`, grouped by their local date."""
    rules = policy.current(session)
    hours = parse_hours(rules.working_hours)
    closed = Holidays.of(rules.holidays)
    wanted = collections.collectors(session)
    zones = _zones(session, wanted)
    due: dict[date, list[str]] = {}
    for collector in wanted:
        try:
            zone = ZoneInfo(zones.get(collector) or "UTC")
        except Exception:
            zone = ZoneInfo("UTC")
        local = now.astimezone(zone)
        if is_working_day(local.date(), closed) and within_hours(local.time(), hours):
            due.setdefault(local.date(), []).append(collector)
    return due


def _queue(deps, prepared: dict[date, dict[str, dict]]) -> list[str]:
    """Record prepared digests in one short write transaction (the worklists were built in a
    read session, so no Slack click waits for SQLite's write lock meanwhile)."""
    queued: list[str] = []
    if any(prepared.values()):
        with deps.db.transaction() as session:
            for day, digests in sorted(prepared.items()):
                queued += collections.record_digests(session, day, digests)
        deps.notify_outbox()
    return queued


def local_dates(session: Session, clock, collector_ids: list[str]
                ) -> dict[date, list[str]]:
    """Collectors grouped by today's date in their own Slack time zone."""
    zones = _zones(session, collector_ids)
    days: dict[date, list[str]] = {}
    for collector in collector_ids:
        days.setdefault(clock.today(zones.get(collector)), []).append(collector)
    return days


def _summary(prepared: dict[date, dict[str, dict]], wanted: dict[date, list[str]],
             queued: list[str]) -> dict:
    """What a digest run did, and who was skipped because they already had that day's."""
    already = sorted(c for day, ids in wanted.items() for c in ids
                     if c not in prepared.get(day, {}))
    summary = {"digests": len(queued), "collectors": queued}
    if already:
        summary["already_sent"] = already
        if not queued:
            summary["note"] = "every collector already had that day's digest; nothing was sent"
    return summary


def digest(deps, as_of: date | None) -> dict:
    with deps.db.read_session() as session:
        collectors = collections.collectors(session)
        wanted = ({as_of: collectors} if as_of is not None
                  else local_dates(session, deps.clock, collectors))
        # one day for everyone: one unfiltered pass over the book (the cheapest)
        prepared = {day: collections.prepare_digests(
            session, day, collector_ids=None if len(wanted) == 1 else ids)
            for day, ids in wanted.items()}
    queued = _queue(deps, prepared)
    days = sorted(wanted) or [as_of or deps.clock.business_today()]
    return {"as_of": days[0].isoformat() if len(days) == 1
            else [d.isoformat() for d in days], **_summary(prepared, wanted, queued)}


def digest_schedule(deps, as_of: date | None) -> dict:
    now = deps.clock.now()
    with deps.db.read_session() as session:
        wanted = due_collectors(session, now)
        prepared = {day: collections.prepare_digests(session, day, collector_ids=ids)
                    for day, ids in wanted.items()}
    queued = _queue(deps, prepared)
    summary = {"at": now.isoformat(), **_summary(prepared, wanted, queued)}
    if not wanted:
        summary["note"] = ("no collector is within working hours on a working day at this "
                           "moment in their own time zone")
    return summary


DUNNING_PAUSE = 0.1  # seconds after each dunning write transaction (SQLite)
DUNNING_BATCH_SQLITE = 50  # invoices per write transaction on SQLite (a customer's together)
DUNNING_BATCH = 200  # on PostgreSQL


def run_dunning(deps, as_of: date | None) -> dict:
    as_of = as_of or deps.business_today()
    with deps.db.transaction() as session:
        promises = collections.check_promises(session, as_of)
    # SQLite has one write lock: short write transactions, and a pause after each as long as
    # the busy handler's longest poll (100 ms), so a click waiting for the lock gets it
    # (bench/dunning_lock.py); PostgreSQL writers never wait on the job
    sqlite = not deps.db.is_postgres
    run = dunning.run_all(deps.db, as_of, now=deps.clock.now(),
                          batch=DUNNING_BATCH_SQLITE if sqlite else DUNNING_BATCH,
                          between=(lambda: time.sleep(DUNNING_PAUSE)) if sqlite
                          else (lambda: None),
                          confirm_above=deps.settings.o2c_dunning_confirm_above)
    deps.notify_outbox()
    return {**run.summary(), "promises_kept": len(promises.kept),
            "promises_broken": len(promises.broken)}
