"""Scheduled jobs by name, for the scheduler and for `o2c run <job> [--as-of DATE]`.

A job is `func(deps, as_of: date | None) -> dict` (a summary to print/log). `as_of` None means
"today" by the app's one clock (`deps.clock`): the business date for most jobs, each
collector's own date for the digest, as SPEC §3 says; a date (`o2c run <job> --as-of DATE`,
the sandbox's Time travel) evaluates that day. Every job is one row of `JOBS`; `cron` is an
APScheduler CronTrigger spec (dict; `O2C_JOB_SCHEDULES` overrides it) or None for jobs the
scheduler does not run by itself (the digest goes out through `digest-schedule`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from api import idempotency
from bot import approval_jobs, backoffice_jobs, collections_jobs, reports, revenue_jobs
from models.base import utcnow

JobFunc = Callable[..., dict]


def forget_idempotency_keys(deps, as_of: date | None = None) -> dict:
    """The `idempotency-keys` job: forget the REST API's keys recorded more than
    `O2C_IDEMPOTENCY_RETENTION_HOURS` ago (`as_of` is not used: a key's age is real time
    since its request, by the recording clock that stamped it, so the sandbox's Time travel
    forgets nothing)."""
    hours = deps.settings.o2c_idempotency_retention_hours
    with deps.db.transaction() as session:
        forgotten = idempotency.forget(session, before=utcnow() - timedelta(hours=hours))
    return {"forgotten": forgotten, "retention_hours": hours}


JOB_RUNS_KEPT = timedelta(days=30)  # a scheduled firing's row (bot.scheduler.purge_runs)


def purge_logs(deps, as_of: date | None = None) -> dict:
    """The `log-retention` job: delete the outbound webhooks' delivery log older than
    `O2C_WEBHOOK_LOG_RETENTION_DAYS` (never an attempt of a delivery still retried) and the
    scheduler's firings older than `JOB_RUNS_KEPT`, in short transactions. `as_of` is not
    used: the rows are stamped by the recording clock, so the sandbox's Time travel purges
    nothing."""
    from bot.scheduler import purge_runs
    from workflows import webhooks

    days = deps.settings.o2c_webhook_log_retention_days
    cutoff = utcnow() - timedelta(days=days)
    deliveries = 0
    while True:
        with deps.db.transaction() as session:
            done = webhooks.purge_deliveries(session, before=cutoff)
        deliveries += done
        if done < 1000:
            break
    runs = 0
    while (done := purge_runs(deps.db, before=utcnow() - JOB_RUNS_KEPT)) == 1000:
        runs += done
    return {"webhook_deliveries": deliveries, "job_runs": runs + done,
            "webhook_log_retention_days": days}


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    cron: dict | None
    summary: str


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("approval-reminders", approval_jobs.approval_reminders, {"minute": "*/15"},
        "re-post approval requests pending longer than the reminder interval"),
    Job("digest", collections_jobs.digest, None,
        "queue the collections digest DM of every collector"),
    Job("digest-schedule", collections_jobs.digest_schedule, {"minute": "*/15"},
        "digest DMs at 09:00 in each collector's time zone on working days"),
    Job("dispute-reminders", backoffice_jobs.dispute_reminders, {"minute": "20"},
        "remind the owners of open disputes; escalate old ones to the alerts channel"),
    Job("statements", backoffice_jobs.monthly_statements, {"minute": "40"},
        "last month's statement of account to customers who want one (once per month)"),
    Job("dunning", collections_jobs.run_dunning, {"minute": "5"},
        "promise checks, small-balance write-offs, overdue notices, dunning reminders "
        "and late fees (each once)"),
    Job(reports.NAME, reports.kpi_report, {"minute": "*/15"},
        "weekly KPI post to the AR channel (due Monday 08:00 business time)"),
    Job(reports.SNAPSHOT, reports.kpi_snapshot, {"minute": "*/5"},
        "refresh the KPI snapshot of admins' App Home when the books changed"),
    Job(reports.MERGE, reports.kpi_rollup_merge, {"minute": "35"},
        "fold the KPI rollups' per-connection rows of past days into one per day; purge "
        "Slack event receipts older than Slack's retries"),
    Job("subscription-billing", revenue_jobs.subscription_billing, {"minute": "10"},
        "invoice each subscription period billed in advance (once per period)"),
    Job("revenue-close", revenue_jobs.revenue_close, {"minute": "20"},
        "close the month before on the first working day of the month (revenue recorded "
        "once, summary to the AR channel)"),
    Job("idempotency-keys", forget_idempotency_keys, {"minute": "50"},
        "forget the REST API's Idempotency-Keys older than O2C_IDEMPOTENCY_RETENTION_HOURS"),
    Job("log-retention", purge_logs, {"minute": "55"},
        "delete the webhook delivery log older than O2C_WEBHOOK_LOG_RETENTION_DAYS (not a "
        "delivery still retried) and the scheduler's job runs older than 30 days"),
)}


class UnknownJob(KeyError):
    pass


def run_job(name: str, deps, as_of: date | None, **options: object) -> dict:
    """Run job `name` for `as_of`; `options` are the job's own (`revenue-close`'s `period`)."""
    try:
        spec = JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None
    return spec.func(deps, as_of, **options)
