"""The collector's worklist on the App Home tab (a `HOME_SECTIONS` contribution)."""

from __future__ import annotations

from datetime import date, datetime

from blocks.collections import home_section
from models import Role
from workflows.collections import worklist


def collector_home(session, user, roles: list[str], today: date,
                   now: datetime) -> list[dict]:
    if Role.COLLECTOR not in roles and Role.ADMIN not in roles:
        return []
    snapshot = worklist(session, user.slack_user_id, today).snapshot()
    if Role.COLLECTOR not in roles and not snapshot["total_accounts"]:
        return []  # an admin without accounts of their own needs no empty worklist
    return home_section(snapshot, tz=user.timezone)
