"""The collector's worklist on the App Home tab (a `HOME_SECTIONS` contribution)."""

from __future__ import annotations

from datetime import date, datetime

from blocks.collections import home_section
from blocks.home import promises_section
from blocks.i18n import formats
from models import Role
from workflows.collections import worklist
from workflows.home import promises_due


def collector_home(session, user, roles: list[str], today: date,
                   now: datetime) -> list[dict]:
    if Role.COLLECTOR not in roles and Role.ADMIN not in roles:
        return []
    snapshot = worklist(session, user.slack_user_id, today).snapshot()
    if Role.COLLECTOR not in roles and not snapshot["total_accounts"]:
        return []  # an admin without accounts of their own needs no empty worklist
    promises, total = promises_due(session, user.slack_user_id, today)
    fmt = formats(user.locale)
    return (promises_section(promises, total=total, fmt=fmt)
            + home_section(snapshot, tz=user.timezone, fmt=fmt))
