"""Approval tiers (`O2C_APPROVAL_TIERS`, `workflows.tiers`): what a setting may say, and what
"above the amount" means."""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from workflows import policy, tiers
from workflows.errors import ValidationFailed


@pytest.mark.parametrize("text", ["credit:1e400:admin", "credit:10000000000000000:admin",
                                  "write_off:99999999999999999999999999999:admin"])
def test_a_tier_amount_too_large_to_be_money_is_refused_naming_it(text) -> None:
    # given a typo'd tier amount: no amount the bot stores can reach it (15 digits at most)
    # when the setting is read at startup, or an admin sets the policy
    # then it is refused with a message naming the item, never a traceback
    with pytest.raises(ValueError, match="at most 15 digits before the point"):
        tiers.parse_tiers(text)
    with pytest.raises(SettingsError, match="O2C_APPROVAL_TIERS"):
        load_settings(o2c_approval_tiers=text)


def test_an_admin_setting_a_tier_too_large_is_told_and_nothing_is_stored(session) -> None:
    with pytest.raises(ValidationFailed, match="at most 15 digits before the point"):
        policy.set_value(session, key="approval_tiers", value="credit:1e400:admin",
                         actor="UADMIN01")
    assert policy.current(session).approval_tiers == ""


def test_above_a_tier_is_strictly_above_and_the_largest_amount_is_accepted() -> None:
    # given a tier of 1,000.00 (and the largest tier amount there is)
    read = tiers.parse_tiers("credit:1000:admin,write_off:999999999999999.999:admin")
    assert str(read["write_off"].threshold) == "999999999999999.999"
    rules = policy.Policy(approval_tiers="credit:1000:admin", home_currency="USD")
    # then exactly the amount needs one decision, a cent more two
    assert tiers.second_role(rules, "credit", 100000, "USD") is None
    assert tiers.second_role(rules, "credit", 100001, "USD") == "admin"
    # and an amount in another currency (no exchange rates) takes the safe side
    assert tiers.second_role(rules, "credit", 1, "EUR") == "admin"


def test_a_tier_change_is_audited_in_full_from_and_to(session) -> None:
    from sqlmodel import select

    from models import AuditEvent

    # given tiers longer than the audit log's state columns (32 characters)
    first = "credit:100000:admin,credit_note:5000:admin"
    second = "credit:100000:admin,credit_note:500:admin,write_off:1000:admin"
    # when an admin sets them, then changes them
    policy.set_value(session, key="approval_tiers", value=first, actor="UADMIN01")
    policy.set_value(session, key="approval_tiers", value=second, actor="UADMIN02")
    # then the audit log says who changed what from what to what, in full
    changes = session.exec(select(AuditEvent).where(AuditEvent.action == "policy.changed")
                           .order_by(AuditEvent.id)).all()
    assert [(e.actor, e.entity_id, e.data.get("old"), e.data.get("new")) for e in changes] == [
        ("UADMIN01", "approval_tiers", "", first), ("UADMIN02", "approval_tiers", first, second)]
