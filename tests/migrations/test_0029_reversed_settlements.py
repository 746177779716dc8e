"""Migration 0029_reversed_settlements on a populated database: a payment applied before the
revision stays as it was; after it a correction keeps what it reversed, in a table the
database keeps append-only; going down drops only that table.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import opened, plain_engine, previous_revision
from tests.support.timetravel import frozen_at
from workflows.cash_application import PaymentIn, correct_application, record_payment

REVISION = "0029_reversed_settlements"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
frozen_time = frozen_at(NOW)
_ALLOCATIONS = sa.text("SELECT invoice_id, amount_minor, method FROM allocations ORDER BY id")
_REVERSED = sa.text("SELECT kind, amount_minor, method, CAST(effective_date AS TEXT) "
                    "FROM reversed_settlements ORDER BY id")


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def test_a_correction_after_the_upgrade_keeps_what_it_reversed(database_url) -> None:
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)  # (the database is made at the head)
    with plain_engine(database_url) as engine, engine.connect() as conn:
        assert "reversed_settlements" not in _tables(conn)
    upgrade(database_url)  # (the workflows write the tables as the head makes them)
    with opened(database_url) as db:
        # given a payment applied to one invoice
        with db.transaction() as s:
            f.user(s, "UCOLL001", "collector")
            f.customer(s)
            for number in ("INV-2026-000801", "INV-2026-000802"):
                f.invoice(s, number, total="500.00", issued=date(2026, 11, 1),
                          due=date(2026, 11, 1) + timedelta(days=30))
            payment, _ = record_payment(s, PaymentIn(
                amount="500.00", currency="USD", received_at=NOW - timedelta(days=2)),
                actor="test", apply_to=["INV-2026-000801"])
            payment_id = payment.id
        # when a collector moves it to the other invoice
        with db.transaction() as s:
            correct_application(s, payment_id=payment_id, invoices=["INV-2026-000802"],
                                actor="UCOLL001", now=NOW)
    with plain_engine(database_url) as engine:
        # then the reversed allocation is kept as it was
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(_REVERSED)] == [
                ("allocation", 50_000, "manual", "2026-11-22")]
            kept = [tuple(r) for r in conn.execute(_ALLOCATIONS)]
            assert [(amount, method) for _, amount, method in kept] == [(50_000, "manual")]
        # and the database refuses to change or delete it
        for statement in ("UPDATE reversed_settlements SET amount_minor = 1",
                          "DELETE FROM reversed_settlements"):
            with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
                conn.execute(sa.text(statement))
        # and going down drops only that table (the allocations stay), and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert "reversed_settlements" not in _tables(conn)
            assert [tuple(r) for r in conn.execute(_ALLOCATIONS)] == kept
        upgrade(database_url)
        with engine.connect() as conn:
            assert "reversed_settlements" in _tables(conn)
            assert [tuple(r) for r in conn.execute(_ALLOCATIONS)] == kept
