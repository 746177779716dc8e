"""The demo seed (`o2c seed --demo`): every order state, every aging bucket, invariants intact,
deterministic, and never run twice on the same database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot import cli
from bot.db import Database
from bot.seed import DEMO_USERS, SeedError, seed_demo
from models import (
    AGING_BUCKETS,
    Approval,
    AuditEvent,
    Customer,
    Invoice,
    Order,
    OutboxMessage,
    Payment,
    PaymentStatus,
    User,
)
from tests.conftest import DEMO_DAY
from workflows import invariants, users
from workflows.receivables import aging_by_currency

TODAY = DEMO_DAY
EVERY_STATE = {"approved", "backordered", "partially_shipped", "invoiced", "paid",
               "pending_approval", "rejected", "cancelled", "on_hold"}


@pytest.fixture(scope="module")
def seeded(db_factory, demo_company) -> Iterator[tuple[Database, dict]]:
    """The session's demo company (`seed_demo` as of TODAY), one copy shared by the read-only
    checks below."""
    url = db_factory.clone(demo_company[0])
    database = Database(url)
    yield database, demo_company[1]
    database.dispose()
    db_factory.drop(url)


def test_seed_puts_orders_in_every_reachable_state(seeded: tuple[Database, dict]) -> None:
    # given
    db, summary = seeded
    # when
    with db.read_session() as session:
        statuses = set(session.exec(select(Order.status).distinct()).all())
    # then
    assert statuses >= EVERY_STATE
    assert set(summary["orders_by_status"]) == statuses


def test_pending_approvals_cover_each_reason(seeded: tuple[Database, dict]) -> None:
    # given
    db, _ = seeded
    # when
    with db.read_session() as session:
        pending = session.exec(select(Approval).where(Approval.status == "pending")).all()
    # then
    codes = {reason["code"] for approval in pending for reason in approval.reasons}
    assert {"new_customer", "over_limit", "credit_hold", "discount_over_max"} <= codes


def test_open_invoices_fall_in_all_five_aging_buckets(seeded: tuple[Database, dict]) -> None:
    # given
    db, _ = seeded
    # when
    with db.read_session() as session:
        usd = aging_by_currency(session, TODAY)["USD"]
        ids = session.exec(select(Invoice.customer_id).where(Invoice.balance_minor > 0)
                           .distinct()).all()
        per_customer = {c: aging_by_currency(session, TODAY, customer_id=c) for c in ids}
    # then
    assert all(usd.counts[bucket] > 0 for bucket in AGING_BUCKETS)
    customers_per_bucket = {bucket: {c for c, agings in per_customer.items()
                                     if any(a.counts[bucket] for a in agings.values())}
                            for bucket in AGING_BUCKETS}
    assert all(len(ids) >= 2 for ids in customers_per_bucket.values()), customers_per_bucket


def test_seeded_data_keeps_the_ar_invariants(seeded: tuple[Database, dict]) -> None:
    # given
    db, _ = seeded
    # when
    with db.read_session() as session:
        problems = invariants.validate_all(session)
    # then
    assert problems == []


def test_demo_people_customers_and_payments(seeded: tuple[Database, dict]) -> None:
    # given
    db, summary = seeded
    # when
    with db.read_session() as session:
        people = {u.slack_user_id: u for u in session.exec(select(User)).all()}
        roles = {u.user_id: users.roles_of(session, u.user_id) for u in DEMO_USERS}
        on_hold = session.exec(select(Customer.name).where(Customer.credit_hold)).all()
        new = session.exec(select(Customer.name).where(~Customer.credit_reviewed)).all()
        currencies = set(session.exec(select(Customer.currency)).all())
        unapplied = session.exec(select(Payment).where(
            Payment.status != PaymentStatus.APPLIED)).all()
        holds = session.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.credit_hold")).all()
    # then
    assert {u.user_id for u in DEMO_USERS} <= set(people)
    assert people["U0COLL001"].timezone == "America/New_York"
    assert people["U0COLL002"].timezone == "Europe/London"
    assert roles["U0CREDIT1"] == {"credit_approver"} and roles["U0ADMIN01"] == {"admin"}
    assert on_hold == ["Umbrella Corporation"] and len(holds) == 1
    assert new == ["Pied Piper"]
    assert currencies == {"USD", "EUR", "GBP"}
    # the cash-application demo: a truncated payer name and no reference -> a suggestion card
    assert [(p.reference, p.status) for p in unapplied] == [
        ("PAYMENT - THANK YOU", PaymentStatus.NEEDS_REVIEW)]
    assert summary["customers"] == 20 and summary["credit_notes"] == 1
    assert summary["invoices"] <= 300
    # the back-office demo (issue 14): one of each to try, each with its card kept for Slack
    assert (summary["open_disputes"], summary["pending_credit_notes"]) == (1, 1)
    assert summary["open_deductions"] >= 1
    with db.read_session() as session:
        templates = {m.payload.get("template") for m in session.exec(select(OutboxMessage))}
    assert {"dispute_card", "deduction_card", "backoffice_approval_card"} <= templates


def test_second_run_is_refused_and_changes_nothing(demo_db: Database) -> None:
    # given a database seeded with the demo company
    def counts() -> tuple[int, ...]:
        with demo_db.read_session() as session:
            return tuple(session.exec(select(sa.func.count()).select_from(model)).one()
                         for model in (Customer, Order, Invoice, Payment, AuditEvent))

    before = counts()
    # when
    with pytest.raises(SeedError, match="already has customers"):
        seed_demo(demo_db, today=TODAY)
    # then
    assert before[0] > 0 and counts() == before


def test_cli_seeds_a_deterministic_company_once_and_refuses_a_second_without_a_traceback(
        database_url: str, seeded: tuple[Database, dict], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # given
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when
    code = cli.main(["seed", "--demo", "--as-of", TODAY.isoformat()])
    # then
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == seeded[1]  # same seed, same date: the same company
    # when it is run again on that database
    code = cli.main(["seed", "--demo", "--as-of", TODAY.isoformat()])
    # then
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("o2c: ") and "already has customers" in err
    assert "Traceback" not in err


def test_the_demo_has_a_subscription_and_a_service_contract_spanning_months(
        seeded: tuple[Database, dict]) -> None:
    # given
    db, _ = seeded
    from models import OrderLine
    from models.revenue import SubscriptionBilling
    from workflows import revenue

    # when
    with db.read_session() as session:
        billed = session.exec(select(OrderLine).where(OrderLine.billing == "monthly")).all()
        periods = session.exec(select(SubscriptionBilling)).all()
        services = [line for line in session.exec(select(OrderLine).where(
            OrderLine.revenue_type == "service", OrderLine.qty_shipped > 0))
            if line.service_end.month != line.service_start.month]
        data = revenue.to_json(revenue.report(session, first=date(2025, 10, 1),
                                              last=TODAY, today=TODAY))
    # then: a subscription billed monthly since November (November to March invoiced) ...
    assert [(line.sku, line.service_start) for line in billed] == [
        ("SUB-CLOUD", date(2025, 11, 1))]
    assert sorted(p.period_start.month for p in periods) == [1, 2, 3, 11, 12]
    # ... a delivered installation over three months, and revenue deferred to months ahead
    assert any(line.sku == "SVC-INST" and line.service_start == date(2025, 12, 30)
               for line in services)
    usd = data["currencies"]["USD"]
    assert usd["deferred"] != "0.00" and len(usd["waterfall"]) >= 3
    assert all(m["recognized"]["total"] != "0.00" for m in usd["months"])
