"""APScheduler 3 in the server process: runs the registered jobs on their cron triggers, once
across processes.

APScheduler 3 runs a job in *every* process that schedules it, so each firing goes through
`run_scheduled`, which makes it happen once wherever it fires:

* on PostgreSQL the process must win `pg_try_advisory_lock(<job>)` (held on a connection of
  its own for the length of the run); a process that loses skips the firing, so two
  servers never run the same job at the same time;
* on both databases the firing claims a `JobRun` row (UNIQUE job, run_key = the minute it was
  planned for) before it runs; a process that fires a moment later finds the row and skips.

A run that crashes leaves its `JobRun` without `finished_at`; the next firing runs normally.
The jobs themselves stay idempotent (DigestRun, DunningNotice and outbox dedupe keys), so a
back-fill with `o2c run` — which waits for the lock instead of skipping — sends nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import IntegrityError

from bot import jobs, observability
from bot.db import Database
from models import JobRun
from models.base import utcnow
from workflows.errors import database_unavailable

log = logging.getLogger("o2c.scheduler")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key per job name."""
    digest = hashlib.sha256(f"o2c-job:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def leadership(db: Database, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Yield True when this process may run job `name` now (always on SQLite, where the
    unique constraints alone keep the jobs exactly-once)."""
    if not db.is_postgres:
        yield True
        return
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        key = lock_key(name)
        if wait:
            conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            got = True
        else:
            got = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar())
        try:
            yield got
        finally:
            if got:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))


def _claim(db: Database, name: str, run_key: str) -> int | None:
    try:
        with db.transaction() as session:
            run = JobRun(job=name, run_key=run_key)
            session.add(run)
            session.flush()
            return run.id
    except IntegrityError:
        return None


def _finish(db: Database, run_id: int, summary: dict) -> None:
    table = JobRun.__table__
    with db.transaction() as session:
        session.execute(sa.update(table).where(table.c.id == run_id).values(
            finished_at=utcnow(), summary=_jsonable(summary)))


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def purge_runs(db: Database, *, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` firings (`run_scheduled`'s rows: key = a minute) started before
    `before`; how many. Safe once older than a firing can be late: a firing's key is the
    minute it runs in (`deps.clock`, never a past one; APScheduler fires a missed run at most
    `misfire_grace_time`, an hour, late, under the minute it then runs in), and `o2c run`
    claims no row. Rows keyed otherwise are kept: the weekly KPI post's ("2026-W48",
    `bot.reports`) is what stops a back-fill of any past week from posting it twice."""
    table = JobRun.__table__
    firing = table.c.run_key.like("____-__-__T__:__")
    ids = sa.select(table.c.id).where(table.c.started_at < before, firing) \
        .order_by(table.c.id).limit(limit).scalar_subquery()
    with db.transaction() as session:
        return session.execute(sa.delete(table).where(table.c.id.in_(ids))).rowcount


def run_scheduled(deps, spec: jobs.Job, planned: datetime) -> dict | None:
    """One firing of a scheduled job, once across processes. None when skipped."""
    run_key = planned.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    with leadership(deps.db, spec.name) as leading:
        if not leading:
            log.info("job %s %s: another process is running it", spec.name, run_key)
            return None
        run_id = _claim(deps.db, spec.name, run_key)
        if run_id is None:
            log.info("job %s %s: already run", spec.name, run_key)
            return None
        summary = spec.func(deps, None)  # "today", by the app's clock
        _finish(deps.db, run_id, summary)
        return summary


def run_exclusive(deps, name: str, as_of: date | None, **options: object) -> dict:
    """`o2c run <job>`: run now for `as_of` (None: today), waiting for a scheduled run in
    progress. `options`: the job's own (`revenue-close --period`)."""
    spec = jobs.JOBS.get(name)
    if spec is None:
        raise jobs.UnknownJob(name)
    with leadership(deps.db, name, wait=True):
        return spec.func(deps, as_of, **options)


def build_scheduler(deps) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True,
                                                                "max_instances": 1,
                                                                "misfire_grace_time": 3600})
    overrides = deps.settings.o2c_job_schedules or {}
    for spec in jobs.JOBS.values():
        cron = overrides.get(spec.name, spec.cron)
        if not cron:
            continue

        def run(spec: jobs.Job = spec) -> None:
            now = deps.clock.now().replace(second=0, microsecond=0)
            started = time.monotonic()
            outcome = "failed"
            try:
                summary = run_scheduled(deps, spec, now)
                outcome = "skipped" if summary is None else "ran"
                if summary is not None:
                    log.info("job %s: %s", spec.name, summary)
                    deps.notify_outbox()
            except Exception as error:
                if database_unavailable(error):  # an outage: one line, not a traceback
                    log.warning("job %s skipped: the database is unreachable (%s)",
                                spec.name, type(error).__name__)
                else:
                    log.exception("job %s failed", spec.name)
            finally:
                observability.JOB_RUNS.labels(spec.name, outcome).inc()
                observability.JOB_SECONDS.labels(spec.name).observe(time.monotonic() - started)

        scheduler.add_job(run, CronTrigger(**{"timezone": UTC, **cron}), id=spec.name,
                          name=spec.summary, replace_existing=True)
    return scheduler
