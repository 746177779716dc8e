"""Admins change policy values at run time (`/o2c policy set <key> <value>`).

`workflows.policy.set_value` stores and audits; this module adds the admin check and refuses
values that would not parse, so one typo cannot break every later credit check.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal, InvalidOperation

from sqlmodel import Session

from models import Role
from workflows import policy as policies
from workflows.errors import ValidationFailed
from workflows.users import require_role
from workflows.workcalendar import parse_hours, zone

EDITABLE = tuple(f.name for f in fields(policies.Policy))


def change(session: Session, *, actor: str, key: str, value: str) -> policies.Policy:
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="policy.change",
                 entity_type="policy", entity_id=key)
    key, value = key.strip().lower(), value.strip()
    if key not in EDITABLE:
        raise ValidationFailed.of("key", f"unknown policy {key!r}; one of {', '.join(EDITABLE)}")
    policies.set_value(session, key=key, value=_checked(key, value), actor=actor)
    session.flush()
    return policies.current(session)


def _checked(key: str, value: str) -> str:
    kind = str({f.name: f.type for f in fields(policies.Policy)}[key])
    if "Decimal" in kind:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValidationFailed.of("value", f"{key} must be a number") from None
        if not number.is_finite() or number < 0:
            raise ValidationFailed.of("value", f"{key} must be a number of at least 0")
        if key == "max_discount_pct" and number > 100:
            raise ValidationFailed.of("value", "max_discount_pct must be at most 100")
        if key.endswith("_pct") and number != number.quantize(Decimal("0.01")):
            # percentages are used as basis points: 12.345 % would break every later check
            raise ValidationFailed.of("value", f"{key} takes at most 2 decimals")
        if key == "cashapp_confidence" and number > 1:
            raise ValidationFailed.of("value", "cashapp_confidence is between 0 and 1")
        return str(number)
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise ValidationFailed.of("value", f"{key} must be a whole number") from None
        if number < (1 if key == "approval_reminder_hours" else 0):
            raise ValidationFailed.of("value", f"{key} is too small")
        return str(number)
    if key == "working_hours":
        parse_hours(value)
    elif key == "business_timezone":
        zone(value)
    elif key == "dunning_levels":
        try:
            [int(v) for v in value.split(",")]
        except ValueError:
            raise ValidationFailed.of("value", "use day offsets such as -3,1,7,14,30") from None
    elif key in ("approval_tiers", "late_fees"):
        from workflows.late_fees import parse_late_fees
        from workflows.tiers import parse_tiers

        try:
            (parse_tiers if key == "approval_tiers" else parse_late_fees)(value)
        except ValueError as exc:
            raise ValidationFailed.of("value", str(exc)) from None
    elif key == "home_currency":
        from models import money

        try:
            value = money.check_currency(value)
        except money.MoneyError as exc:
            raise ValidationFailed.of("value", str(exc)) from None
    elif key == "disputes_channel" and value.lower() in ("none", "off", "-"):
        value = ""  # back to the customer's sales rep
    return value
