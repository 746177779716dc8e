"""The App Home sections of sales reps and approvers (`HOME_SECTIONS` contributions, issue 13
point 7): a rep's open orders, orders waiting for approval and customers' overdue; an
approver's queue with the same Approve / Approve with note / Reject buttons as the cards
(the clicks go to the same listeners, which re-check the role on the server)."""

from __future__ import annotations

from datetime import date, datetime

from blocks.approvals import decision_buttons
from blocks.home import approver_section, rep_section
from blocks.i18n import formats
from models import Role
from workflows import home
from workflows.approvals import pending_overview

APPROVER_ROLES = (Role.CREDIT_APPROVER, Role.DISCOUNT_APPROVER, Role.ADMIN)


def rep_home(session, user, roles: list[str], today: date, now: datetime) -> list[dict]:
    if Role.SALES not in roles:
        return []
    return rep_section(home.rep_home(session, user.slack_user_id, today), fmt=formats(user.locale))


def approver_home(session, user, roles: list[str], today: date,
                  now: datetime) -> list[dict]:
    if not any(role in roles for role in APPROVER_ROLES):
        return []
    overview = pending_overview(session, user.slack_user_id, now=now, limit=8)
    if Role.ADMIN in roles and not set(roles) & {Role.CREDIT_APPROVER, Role.DISCOUNT_APPROVER} \
            and not overview.to_decide:
        return []  # an admin with nothing to decide needs no empty queue
    return approver_section(overview, buttons=decision_buttons, fmt=formats(user.locale))
