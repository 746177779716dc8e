"""Scheduled jobs by name, for the scheduler and for `o2c run <job> [--as-of DATE]`.

A job is `func(deps, as_of: date | None) -> dict` (a summary to print/log). `as_of` None means
"today" by the app's one clock (`deps.clock`): the business date for most jobs, each
collector's own date for the digest, as SPEC §3 says; a date (`o2c run <job> --as-of DATE`,
the sandbox's Time travel) evaluates that day. Features register theirs with
`@job(name, cron=...)`; `cron` is an APScheduler CronTrigger spec (dict) or None for jobs the
scheduler plans itself (e.g. per-timezone digests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

JobFunc = Callable[..., dict]


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    cron: dict | None
    summary: str


JOBS: dict[str, Job] = {}


def job(name: str, *, cron: dict | None, summary: str) -> Callable[[JobFunc], JobFunc]:
    def register(func: JobFunc) -> JobFunc:
        JOBS[name] = Job(name, func, cron, summary)
        return func
    return register


class UnknownJob(KeyError):
    pass


def business_today(deps) -> date:  # noqa: ANN001
    """Today in the business time zone (the policy value admins may change, else the setting)."""
    from workflows import policy

    with deps.db.read_session() as session:
        tz = policy.current(session).business_timezone
    return deps.clock.business_today(tz)


def run_job(name: str, deps, as_of: date | None) -> dict:  # noqa: ANN001
    load_all()
    try:
        spec = JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None
    return spec.func(deps, as_of)


def load_all() -> dict[str, Job]:
    """Import the modules that define jobs (kept here so the registry is complete)."""
    import importlib

    for module in JOB_MODULES:
        importlib.import_module(module)
    return JOBS


# Modules defining jobs; each feature adds its own.
JOB_MODULES: tuple[str, ...] = ("bot.approval_jobs", "bot.backoffice_jobs",
                                 "bot.collections_jobs", "bot.reports")
