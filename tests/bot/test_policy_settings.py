"""The policy's three layers (workflows/policy.py): `Policy`'s defaults, the settings (carried
by the database sessions, no module state), admins' overrides in the database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import select

from bot.db import Database
from bot.deps import build_deps
from models import Order
from models import Policy as PolicyRow
from tests.conftest import ADMIN, test_settings
from tests.support import factories as f
from tests.support.slack import ask, text_of
from workflows import cash_runs, policy


def test_settings_set_the_policy_and_admins_override_it(database_url: str) -> None:
    # given settings that change two policy values
    settings = test_settings(database_url, "http://127.0.0.1:9/api/",
                             o2c_max_discount_pct="20", o2c_business_timezone="Europe/Berlin")
    deps = build_deps(settings)
    plain = Database(database_url)  # a session without the settings (a script, a test)
    try:
        # then every session of the app sees them; one without them sees the defaults
        with deps.db.read_session() as s:
            seen = policy.current(s)
        assert (seen.max_discount_pct, seen.business_timezone) == (Decimal("20"),
                                                                   "Europe/Berlin")
        assert seen.overdue_hold_days == policy.Policy().overdue_hold_days
        with plain.read_session() as s:
            assert policy.current(s) == policy.Policy()
        # when an admin overrides one of them
        with deps.db.transaction() as s:
            policy.set_value(s, key="max_discount_pct", value="12", actor=ADMIN)
        # then the override wins, and the other setting stays
        with deps.db.read_session() as s:
            seen = policy.current(s)
        assert (seen.max_discount_pct, seen.business_timezone) == (Decimal("12"),
                                                                   "Europe/Berlin")
    finally:
        deps.db.dispose()
        plain.dispose()


@pytest.fixture
def server_settings(database_url: str, standin):
    return test_settings(database_url, standin.api_url, o2c_max_discount_pct="20")


def test_the_servers_workflows_decide_by_the_settings(server, api, slack, standin) -> None:
    # given O2C_MAX_DISCOUNT_PCT=20 (the default is 15)
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.product(s, "WID-1", price="100.00")
    # when an order with an 18 % discount comes in
    created = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                        "currency": "USD", "lines": [
                                            {"sku": "WID-1", "quantity": 1,
                                             "discount_pct": "18"}]})
    # then it needs no discount approval, and `/o2c policy` shows the value in force
    assert created.status_code == 201, created.text
    with server.db.read_session() as s:
        assert s.exec(select(Order.status)).one() == "approved"
    assert "20" in text_of(ask(slack, standin.api, "USALES01", "policy"))


def test_the_back_office_settings_reach_the_policy(database_url: str) -> None:
    # given the back office's settings (SPEC §4), each changed from its default
    settings = test_settings(
        database_url, "http://127.0.0.1:9/api/", o2c_disputes_channel="CDISPUTES",
        o2c_approval_tiers="credit_note:5000:admin", o2c_late_fees="7:fee=25.00",
        o2c_small_balance_write_off="2.50", o2c_home_currency="EUR",
        o2c_dispute_reminder_days=3, o2c_dispute_escalation_days=8,
        o2c_fee_waiver_approval="75.00")
    deps = build_deps(settings)
    try:
        # then every session of the app decides by them
        with deps.db.read_session() as s:
            seen = policy.current(s)
    finally:
        deps.db.dispose()
    assert (seen.disputes_channel, seen.approval_tiers, seen.late_fees) == (
        "CDISPUTES", "credit_note:5000:admin", "7:fee=25.00")
    assert (seen.small_balance_write_off, seen.home_currency, seen.fee_waiver_approval) == (
        Decimal("2.50"), "EUR", Decimal("75.00"))
    assert (seen.dispute_reminder_days, seen.dispute_escalation_days) == (3, 8)


def test_a_value_stored_before_values_were_checked_leaves_its_default_in_force(
        server, api, slack, standin) -> None:
    # given admins' overrides stored by a version that did not check values on set: three
    # that do not parse, one that does
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.product(s, "WID-1", price="100.00")
        for key, value in [("max_discount_pct", "abc"), ("overdue_hold_days", "7.5"),
                           ("dunning_levels", "1,x"), ("bank_fee_pct", "0,5"),
                           ("approval_reminder_hours", "8")]:
            s.add(PolicyRow(key=key, value=value, updated_by=ADMIN))
    # when an order with an 18 % discount comes in (its decision reads the policy)
    created = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                        "currency": "USD", "lines": [
                                            {"sku": "WID-1", "quantity": 1,
                                             "discount_pct": "18"}]})
    # then it is decided by what is in force without the bad values (the settings' 20 %),
    # not refused with a 500 as every decision was
    assert created.status_code == 201, created.text
    with server.db.read_session() as s:
        assert s.exec(select(Order.status)).one() == "approved"
        seen = policy.current(s)
        assert cash_runs.rules_for(s).fee_bp == 50  # the default 0.5 %
        assert policy.invalid_overrides(s) == [
            ("bank_fee_pct", "0,5", "bank_fee_pct must be a number"),
            ("dunning_levels", "1,x", "dunning_levels: use day offsets such as -3,1,7,14,30"),
            ("max_discount_pct", "abc", "max_discount_pct must be a number"),
            ("overdue_hold_days", "7.5", "overdue_hold_days must be a whole number")]
    defaults = policy.Policy()
    assert (seen.max_discount_pct, seen.overdue_hold_days, seen.dunning_levels,
            seen.approval_reminder_hours) == (Decimal("20"), defaults.overdue_hold_days,
                                              defaults.dunning_levels, 8)
    # and a payment's matching rules likewise (the default bank fee tolerance, 0.5 %)
    paid = api.post("/payments", json={"amount": "99.50", "currency": "USD",
                                       "received_at": "2026-03-02T10:00:00+00:00",
                                       "customer": "C-GLOBEX", "external_id": "BANK-1"})
    assert paid.status_code == 201, paid.text
    # and `/o2c policy` shows admins which stored values are not in force, and why
    shown = text_of(ask(slack, standin.api, "USALES01", "policy"))
    assert "`max_discount_pct` = `20`" in shown
    assert ("stored `abc` for `max_discount_pct` is not valid (max_discount_pct must be a "
            "number): the value above is in force") in shown
    assert "stored `7.5` for `overdue_hold_days`" in shown
