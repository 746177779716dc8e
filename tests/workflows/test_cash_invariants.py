"""AR invariants under random sequences of invoices, payments, Apply clicks, credit notes and
write-offs (Hypothesis): a payment's allocations never exceed it; an invoice's balance is
total - allocations - credit notes - write-offs and never negative; re-sending a payment
(same external id) changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.db import Database
from models import (
    Allocation,
    AuditEvent,
    CreditNote,
    Deduction,
    Invoice,
    OutboxMessage,
    Payment,
    WriteOff,
)
from models.limits import MAX_AMOUNT_MINOR
from tests.support import factories as f
from tests.support.amounts import INT32_MAX, amount_text, minor_amounts
from workflows import invariants
from workflows.cash_application import apply_suggestion, record_payment, write_off
from workflows.errors import DomainError
from workflows.inputs import PaymentIn
from workflows.invoicing import issue_credit_note

CUSTOMERS = [("C-GLOBEX", "Globex Corporation", "NET30"),
             ("C-ACME", "Acme Industries Inc", "2/10 NET30"),
             ("C-ACME-EU", "Acme Industries Europe GmbH", "NET30")]
PAYERS = [None, "GLOBEX CORP", "ACME INDUSTRIES", "ACME INDUSTRIES EUROPE", "J SMITH"]
TODAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # when people act (no wall clock)
FORMATS = ["{n}", "inv {y}/{s}", "INV{y}{z}", "payment {n} thanks", "{n}, {m}", "garbage"]

# everyday amounts, plus amounts from 32-bit overflow up to the bound (tests/support/amounts)
cents = st.one_of(st.integers(min_value=1, max_value=300_000), st.integers(1, 300_000),
                  minor_amounts(INT32_MAX - 1, MAX_AMOUNT_MINOR))
invoice_op = st.tuples(st.just("invoice"), st.integers(0, 2), cents, st.integers(0, 20))
pay_op = st.tuples(st.just("pay"), st.one_of(cents, st.sampled_from([10_000, 25_000, 98_000])),
                   st.integers(0, 30), st.sampled_from(FORMATS), st.integers(0, 4),
                   st.sampled_from([None, None, "E1", "E2"]), st.integers(0, 15))
apply_op = st.tuples(st.just("apply"), st.integers(0, 30), st.integers(1, 3),
                     st.sampled_from(["UCOLL001", "USALES01"]))
credit_op = st.tuples(st.just("credit"), st.integers(0, 30), cents)
write_off_op = st.tuples(st.just("write_off"), st.integers(0, 30), cents)
operations = st.lists(st.one_of(invoice_op, invoice_op, pay_op, pay_op, pay_op, apply_op,
                                credit_op, write_off_op), min_size=1, max_size=14)

TABLES = (Payment, Allocation, WriteOff, Deduction, CreditNote, AuditEvent, OutboxMessage)


def snapshot(session) -> tuple:  # noqa: ANN001
    counts = tuple(session.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                   for t in TABLES)
    balances = tuple(session.execute(sa.select(Invoice.number, Invoice.balance_minor)
                                     .order_by(Invoice.id)).all())
    return counts, balances


def reference(fmt: str, numbers: list[str], pick: int) -> str:
    if not numbers:
        return fmt.replace("{n}", "INV-2026-999999")
    n = numbers[pick % len(numbers)]
    m = numbers[(pick + 1) % len(numbers)]
    _, year, serial = n.split("-")
    return fmt.format(n=n, m=m, y=year, s=int(serial), z=serial)


def run(session, ops: list[tuple]) -> None:  # noqa: ANN001
    numbers: list[str] = []
    payments: list[int] = []
    sent: dict[str, tuple] = {}
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    for external_id, name, terms in CUSTOMERS:
        f.customer(session, external_id, name, terms=terms)
    session.commit()
    for op in ops:
        kind = op[0]
        try:
            if kind == "invoice":
                _, who, total, age = op
                number = f"INV-2026-{len(numbers) + 1:06d}"
                f.invoice(session, number, CUSTOMERS[who][0], total=amount_text(total, "USD"),
                          issued=TODAY - timedelta(days=age),
                          due=TODAY - timedelta(days=age) + timedelta(days=30))
                numbers.append(number)
            elif kind == "pay":
                _, amount, pick, fmt, payer, external_id, day = op
                data = PaymentIn(amount=amount_text(amount, "USD"), currency="USD",
                                 received_at=datetime(2026, 11, 5, tzinfo=UTC)
                                 + timedelta(days=day),
                                 payer_name=PAYERS[payer],
                                 reference=reference(fmt, numbers, pick),
                                 external_id=external_id)
                if external_id in sent:  # a re-import: nothing may change
                    data = sent[external_id]
                    before = snapshot(session)
                    _, created = record_payment(session, data, actor="test")
                    session.flush()
                    assert not created and snapshot(session) == before
                else:
                    payment, _ = record_payment(session, data, actor="test")
                    payments.append(payment.id)
                    if external_id:
                        sent[external_id] = data
            elif kind == "apply" and payments:
                _, which, rank, actor = op
                apply_suggestion(session, payment_id=payments[which % len(payments)],
                                 rank=rank, actor=actor, now=NOW)
            elif kind == "credit" and numbers:
                _, which, amount = op
                issue_credit_note(session, invoice_number=numbers[which % len(numbers)],
                                  amount=amount_text(amount, "USD"), reason="test", actor="test",
                                  now=NOW)
            elif kind == "write_off" and numbers:
                _, which, amount = op
                inv = session.execute(sa.select(Invoice).where(
                    Invoice.number == numbers[which % len(numbers)])).scalar_one()
                write_off(session, invoice=inv, amount_minor=amount, reason="bad_debt",
                          actor="test", now=NOW)
            session.commit()
        except DomainError:  # refused (role, already applied, more than is open): undone
            session.rollback()
        assert invariants.validate_payment_allocations(session) == []
        assert invariants.validate_invoice_balances(session) == []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_ar_invariants_hold_after_every_operation(db_factory, ops) -> None:  # noqa: ANN001
    url = db_factory.create()
    database = Database(url)
    try:
        with database.session() as session:
            run(session, ops)
    finally:
        database.dispose()
        db_factory.drop(url)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=cents, fmt=st.sampled_from(FORMATS), payer=st.integers(0, 4),
       totals=st.lists(cents, min_size=1, max_size=5))
def test_resending_any_payment_changes_nothing(db_factory, amount, fmt, payer, totals) -> None:  # noqa: ANN001
    url = db_factory.create()
    database = Database(url)
    try:
        with database.session() as session:
            f.customer(session, "C-GLOBEX", "Globex Corporation")
            numbers = [f.invoice(session, f"INV-2026-{i + 1:06d}", total=amount_text(t, "USD"),
                                 issued=TODAY - timedelta(days=3)).number
                       for i, t in enumerate(totals)]
            data = PaymentIn(amount=amount_text(amount, "USD"), currency="USD",
                             received_at=datetime(2026, 11, 19, tzinfo=UTC),
                             payer_name=PAYERS[payer], reference=reference(fmt, numbers, 0),
                             external_id="BANK-STMT-1:42")
            first, created = record_payment(session, data, actor="test")
            session.commit()
            before = snapshot(session)
            # when
            again, created_again = record_payment(session, data, actor="test")
            session.commit()
            # then
            assert created and not created_again and again.id == first.id
            assert snapshot(session) == before
            assert invariants.validate_all(session) == []
    finally:
        database.dispose()
        db_factory.drop(url)
