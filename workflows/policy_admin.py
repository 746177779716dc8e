"""Admins change policy values at run time (`/o2c policy set <key> <value>`).

`workflows.policy.set_value` checks, stores and audits (a value that would not parse is
refused, so one typo cannot break every later credit check); this module adds the admin check.
"""

from __future__ import annotations

from dataclasses import fields

from sqlmodel import Session

from models import Role
from workflows import policy as policies
from workflows.errors import ValidationFailed
from workflows.users import require_role

EDITABLE = tuple(f.name for f in fields(policies.Policy))


def change(session: Session, *, actor: str, key: str, value: str) -> policies.Policy:
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="policy.change",
                 entity_type="policy", entity_id=key)
    key, value = key.strip().lower(), value.strip()
    if key not in EDITABLE:
        raise ValidationFailed.of("key", f"unknown policy {key!r}; one of {', '.join(EDITABLE)}")
    policies.set_value(session, key=key, value=value, actor=actor)  # checked there
    session.flush()
    return policies.current(session)
