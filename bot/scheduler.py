"""APScheduler 3 in the server process: runs the registered jobs on their cron triggers.

APScheduler 3 runs a job in *every* process that schedules it, so a job that must happen once
per day across several servers guards itself (JobRun rows / advisory lock, in the job).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import jobs

log = logging.getLogger("o2c.scheduler")


def build_scheduler(deps) -> BackgroundScheduler:  # noqa: ANN001
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True,
                                                                "max_instances": 1,
                                                                "misfire_grace_time": 3600})
    for spec in jobs.load_all().values():
        if spec.cron is None:
            continue

        def run(spec: jobs.Job = spec) -> None:
            as_of = datetime.now(UTC).date()
            try:
                summary = spec.func(deps, as_of)
                log.info("job %s as of %s: %s", spec.name, as_of, summary)
            except Exception:  # noqa: BLE001 - logged; the next run tries again
                log.exception("job %s failed", spec.name)

        scheduler.add_job(run, CronTrigger(timezone=UTC, **spec.cron), id=spec.name,
                          name=spec.summary, replace_existing=True)
    return scheduler
