"""Job `approval-reminders`: re-nudge approval requests that waited too long.

Runs every 15 minutes in each server process (APScheduler) and on demand with
`o2c run approval-reminders [--as-of DATE]`. What "now" is:

* from the scheduler (as_of None or today): the current time, by the app's clock;
* `--as-of 2026-03-02` (any other day): that day's close of business in the business time
  zone (policy `working_hours`, `business_timezone`), so a run for a past or future day is
  deterministic;
* called with a datetime (tests, scripts): that moment.

A request is reminded when it has been pending for `approval_reminder_hours` working hours
since it was asked or last reminded; each reminder is claimed with a conditional UPDATE, so
several processes running the job at once still nudge once.
"""

from __future__ import annotations

from datetime import date

from workflows import approvals
from workflows import policy as policies
from workflows.workcalendar import evaluation_moment


def approval_reminders(deps, as_of: date | None) -> dict:
    with deps.db.transaction() as session:
        policy = policies.current(session)
        now = deps.clock.now()
        if as_of is not None:
            now = evaluation_moment(as_of, now=now, hours=policy.working_hours,
                                    tz=policy.business_timezone)
        sent = approvals.send_reminders(session, now=now)
    if sent:
        deps.notify_outbox()
    return {"evaluated_at": now.isoformat(), "reminded": len(sent), "reminders": sent}
