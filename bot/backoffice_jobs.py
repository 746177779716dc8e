"""Back-office job `dispute-reminders` (SPEC §4): nudge the owners of open disputes after
`dispute_reminder_days` working days (again after as many more) and escalate to the alerts
channel after `dispute_escalation_days`, each once across processes (`workflows.disputes`).

Hourly from the scheduler and on demand with `o2c run dispute-reminders [--as-of DATE]`: with a
date other than today, as of that day's close of business in the business time zone (as
`approval-reminders`).
"""

from __future__ import annotations

from datetime import date

from workflows import disputes
from workflows import policy as policies
from workflows.workcalendar import evaluation_moment


def dispute_reminders(deps, as_of: date | None) -> dict:
    with deps.db.transaction() as session:
        policy = policies.current(session)
        now = deps.clock.now()
        if as_of is not None:
            now = evaluation_moment(as_of, now=now, hours=policy.working_hours,
                                    tz=policy.business_timezone)
        summary = disputes.send_reminders(session, now=now)
    if summary["reminded"] or summary["escalated"]:
        deps.notify_outbox()
    return {"evaluated_at": now.isoformat(), **summary}


def monthly_statements(deps, as_of: date | None) -> dict:
    """Issue 19: last month's statement of account to every customer who asked for one
    (`Customer.monthly_statement`), once per customer and month, from the first day of the
    month on (`o2c run statements [--as-of DATE]`)."""
    from workflows import statements

    today = as_of or deps.business_today()
    with deps.db.transaction() as session:
        summary = statements.send_monthly(session, today=today, now=deps.clock.now())
    if summary["sent"]:
        deps.notify_outbox()
    return summary
