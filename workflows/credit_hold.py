"""Putting a customer on credit hold and releasing it (admins and credit approvers).

While a customer is on hold every new order needs a credit approval (`workflows.credit`).
The flag changes with a conditional UPDATE, so two people clicking "hold" at once record one
change and one audit entry; the second click is told nothing changed.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from models import Customer, Role
from workflows import audit, webhooks
from workflows.errors import NotFound
from workflows.users import has_role, require_role

ROLES = (Role.CREDIT_APPROVER,)  # admins hold every role


def may_change_hold(session: Session, user_id: str) -> bool:
    return has_role(session, user_id, *ROLES)


def set_credit_hold(session: Session, *, customer_id: int, actor: str, on_hold: bool,
                    reason: str | None = None, now: datetime | None = None) -> bool:
    """Hold or release; True when this call changed the flag (audited), False when it was
    already so. The role is checked here, on the server, whatever the button showed."""
    action = "customer.credit_hold" if on_hold else "customer.credit_release"
    require_role(session, user_id=actor, roles=ROLES, action=action, entity_type="customer",
                 entity_id=customer_id)
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"no customer #{customer_id}")
    return change_hold(session, customer_id=customer_id, actor=actor, on_hold=on_hold,
                       reason=reason, now=now)


def change_hold(session: Session, *, customer_id: int, actor: str, on_hold: bool,
                reason: str | None = None, now: datetime | None = None) -> bool:
    """The flag change itself, for callers that already decided it may happen (a person after
    the role check above; dunning, actor "system", at the final notice). One conditional
    UPDATE: of two concurrent callers exactly one changes the flag and audits it; the other
    gets False. A loaded `Customer` in the session is refreshed."""
    table = Customer.__table__
    changed = session.execute(
        sa.update(table).where(table.c.id == customer_id, table.c.credit_hold != on_hold)
        .values(credit_hold=on_hold)).rowcount == 1
    customer = session.identity_map.get(session.identity_key(Customer, customer_id))
    if customer is not None:
        session.refresh(customer)
    if changed:
        audit.credit_hold(session, actor=actor, customer_id=customer_id, on_hold=on_hold,
                          reason=reason)
        webhooks.emit(session, "customer.credit_hold", lambda: {
            "customer": webhooks.customer_data(session.get(Customer, customer_id)),
            "on_hold": on_hold, "reason": reason, "by": actor}, at=now)
    return changed
