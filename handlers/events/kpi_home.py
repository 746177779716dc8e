"""The KPIs on the App Home tab of admins (finance leaders), a `HOME_SECTIONS` contribution.

SPEC §1: the finance leader / admin sees DSO, aging, CEI and cycle-time KPIs on App Home. At a
million invoices computing them takes seconds, so App Home shows the latest KPI snapshot
(`workflows.kpis.snapshot`: the day's, refreshed by the `kpi-snapshot` job within minutes of
a change, or else the newest earlier one) with its day and age; they are computed here only
when there is no snapshot at all yet (a new install), in the read session App Home holds.
"""

from __future__ import annotations

from datetime import date, datetime

from blocks.i18n import formats
from blocks.kpi import home_section
from models import Role
from workflows import kpis
from workflows.home import open_ar_trend

TREND_WEEKS = 8


def age_text(computed_at: datetime, now: datetime) -> str:
    minutes = max(int((now - computed_at).total_seconds() // 60), 0)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago"


def kpi_home(session, user, roles: list[str], today: date,
             now: datetime) -> list[dict]:
    if Role.ADMIN not in roles:
        return []
    row = kpis.snapshot(session, today)
    if row is None:  # a new install: computed once here, the job keeps a snapshot from then on
        data = kpis.to_json(kpis.compute(session, today, now=now, concurrently=True))
        trend = open_ar_trend(session, today, data.get("currency"), weeks=TREND_WEEKS)
        return home_section(data, trend=trend, weeks=TREND_WEEKS, fmt=formats(user.locale))
    note = f"KPIs computed {age_text(row.computed_at, now)}"
    if row.as_of != today:
        note += f", as of {row.as_of.isoformat()}"
    return [*home_section(row.data, trend=row.data.get("open_ar_trend") or [], weeks=TREND_WEEKS,
                          fmt=formats(user.locale)),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]
