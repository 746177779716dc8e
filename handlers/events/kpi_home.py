"""The KPIs on the App Home tab of admins (finance leaders), a `HOME_SECTIONS` contribution.

SPEC §1: the finance leader / admin sees DSO, aging, CEI and cycle-time KPIs on App Home. They
are computed once per opening of the tab, in the read session App Home already holds, as of
today in the admin's time zone like `/o2c kpi`, so they come from the indexed open balances.
"""

from __future__ import annotations

from datetime import date, datetime

from blocks.kpi import home_section
from models import Role
from workflows import kpis
from workflows.home import open_ar_trend

TREND_WEEKS = 8


def kpi_home(session, user, roles: list[str], today: date,
             now: datetime) -> list[dict]:
    if Role.ADMIN not in roles:
        return []
    data = kpis.to_json(kpis.compute(session, today, now=now))
    trend = open_ar_trend(session, today, data.get("currency"), weeks=TREND_WEEKS)
    return home_section(data, trend=trend, weeks=TREND_WEEKS)
