"""Revenue jobs: subscription billing and the monthly revenue close (issue 15).

* `subscription-billing` — hourly: every subscription period billed in advance that has
  started by today (business date) and is not invoiced yet is invoiced, dated today (on a
  period's first day when the job runs daily; a catch-up after downtime or a credit hold is
  dated the day it runs). One transaction per period; `workflows.subscriptions.bill_period`
  locks the order (as a cancellation does) and the (order line, period start) primary key
  makes it once across processes. A period whose transaction PostgreSQL rolled back as a
  deadlock or a serialization failure is billed again at once, up to `RACE_ATTEMPTS` times
  (then the error stands and the next run bills it): nothing of the lost attempt was kept,
  and `bill_period` looks again under its locks, so a period is never billed twice. A
  period that fails otherwise (its own data, a bug) is logged and the run goes on with the
  others, then fails naming it: one bad subscription never stops everyone's billing.
  `o2c run subscription-billing --as-of DATE` back-fills up to DATE (never a day
  after today: invoices are immutable).
* `revenue-close` — hourly as a catch-up: on the first working day of each month, from 06:00
  business time, it closes the month before (`workflows.revenue.close_month`: the period is
  closed for AR and revenue, each line's recognition recorded once, the summary posted to the
  AR channel); later runs find it closed and do nothing. `o2c run revenue-close --period
  YYYY-MM` closes that month now (and every month before it); `--as-of DATE` closes the month
  before DATE's if it is due. To close by hand only, turn the schedule off
  (`O2C_JOB_SCHEDULES='{"revenue-close": {}}'`).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time

from sqlalchemy.exc import IntegrityError, OperationalError

from bot.db import lost_a_race
from models.revenue import SubscriptionBilling
from workflows import periods, revenue, subscriptions
from workflows import policy as policies
from workflows.errors import ValidationFailed
from workflows.revenue_schedule import first_of_month
from workflows.workcalendar import Holidays, first_working_day, zone

log = logging.getLogger("o2c.revenue_jobs")
CLOSE_TIME = time(6)  # on the month's first working day, business time
ACTOR = "revenue-close"
RACE_ATTEMPTS = 3  # per period, when PostgreSQL rolls it back as a deadlock (module doc)


def subscription_billing(deps, as_of: date | None) -> dict:
    today = deps.business_today()
    as_of = as_of or today
    if as_of > today:
        raise ValidationFailed.of("as_of", f"{as_of.isoformat()} is after today "
                                  f"({today.isoformat()}): invoices are issued on their day")
    with deps.db.read_session() as session:
        due = subscriptions.due_periods(session, as_of)
    invoices: list[str] = []
    skipped = 0
    failed: list[Exception] = []
    for period in due:
        try:
            number = _bill(deps, period, as_of)
        except OperationalError:  # the database itself (gone, or a race lost every time)
            raise
        except Exception as error:  # this period's own: the others are billed all the same
            log.exception("subscription-billing: line %s, period from %s not billed",
                          period.order_line_id, period.period_start.isoformat())
            failed.append(error)
            continue
        if number:
            invoices.append(number)
        else:
            skipped += 1
    if invoices:
        deps.notify_outbox()
    if failed:  # the run fails (logged, counted), the next one tries those periods again
        raise failed[0]
    return {"as_of": as_of.isoformat(), "invoiced": len(invoices), "invoices": invoices,
            "already_invoiced_or_not_billable": skipped}


def _bill(deps, period: subscriptions.DuePeriod, as_of: date) -> str | None:
    """Bill one period in a transaction of its own (see the module doc): the invoice's
    number, or None when it is invoiced already or not billable."""
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            with deps.db.transaction() as session:
                invoice = subscriptions.bill_period(
                    session, order_line_id=period.order_line_id,
                    period_start=period.period_start, as_of=as_of, now=deps.clock.now())
                return invoice.number if invoice is not None else None
        except IntegrityError:  # another process invoiced it a moment ago, or not
            with deps.db.read_session() as session:
                if session.get(SubscriptionBilling,
                               (period.order_line_id, period.period_start)) is not None:
                    return None
            raise  # another key refused the write: this period is not billed
        except OperationalError as error:
            if not lost_a_race(error) or attempt == RACE_ATTEMPTS:
                raise
    return None


def due_at(day: date, tz: str, holidays: str = "") -> datetime:
    """When the close of the month before `day`'s is due: its first working day (not a
    holiday of the policy's `holidays`), 06:00."""
    return datetime.combine(first_working_day(day, Holidays.of(holidays)), CLOSE_TIME,
                            tzinfo=zone(tz))


def revenue_close(deps, as_of: date | None, period: str | None = None) -> dict:
    now = deps.clock.now()
    if period is None:
        today = as_of or deps.business_today()
        target = periods.period_of(revenue.previous_month(first_of_month(today)))
        with deps.db.read_session() as session:
            rules = policies.current(session)
            done = revenue.recorded_through(session)
        tz = rules.business_timezone
        due = due_at(today, tz, rules.holidays)
        moment = now if as_of is None else datetime.combine(as_of, time.max, tzinfo=zone(tz))
        if moment < due:
            return {"period": target, "closed": False,
                    "reason": f"not due before {due.isoformat()}"}
        if done is not None and periods.period_of(done) >= target:
            return {"period": target, "closed": False,
                    "reason": f"already closed (revenue recorded through "
                              f"{periods.period_of(done)})"}
    else:
        target = periods.period_of(periods.parse_period(period))
    with deps.db.transaction() as session:
        result = revenue.close_month(session, period=target, actor=ACTOR, now=now)
        summary = {"period": result.period, "closed_through": result.closed_through,
                   "closed_now": result.created, "recorded": result.recorded is not None}
        if result.recorded is not None:
            summary["months_recorded"] = result.recorded.summary.get("months", [])
            summary["currencies"] = result.recorded.summary.get("currencies", {})
        else:
            summary["reason"] = "already closed; a closed month never changes"
    deps.notify_outbox()
    return summary
