"""Migration 0023_kpi_rollups on a populated database: going up backfills the per-day rollups
and each payment's auto-allocated amount from the rows already there (including rows written
while the triggers did not exist), the triggers keep them from then on, and going down and up
loses nothing.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support.migrations import previous_revision, rollup_book
from workflows import invariants, kpis
from workflows.cash_application import record_payment, write_off
from workflows.inputs import PaymentIn
from workflows.invoicing import get_invoice, issue_credit_note

REVISION = "0023_kpi_rollups"
AS_OF = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _rollups(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT currency, day, SUM(sales_minor), SUM(invoices_issued), SUM(settled_minor), "
        "SUM(bad_debt_minor), SUM(payments), SUM(payments_auto), SUM(received_minor), "
        "SUM(auto_matched_minor) FROM kpi_daily GROUP BY currency, day "
        "ORDER BY currency, day"))]


def _payments(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, auto_allocated_minor, manual_allocations FROM payments ORDER BY id"))]


def _healthy_and_kpis(database_url: str) -> dict:
    db = Database(database_url)
    try:
        with db.read_session() as s:
            assert invariants.validate_all(s) == []
            fast = kpis.to_json(kpis.compute(s, AS_OF))
            assert fast == kpis.to_json(kpis.compute(s, AS_OF, rollups=False))
            return fast
    finally:
        db.dispose()


def test_rollups_are_backfilled_kept_and_dropped(database_url) -> None:
    # given a book: invoices in two currencies, a payment applied, a credit note, bad debt
    db = Database(database_url)
    try:
        with time_machine.travel(NOW, tick=False), db.transaction() as s:
            rollup_book(s)
            issue_credit_note(s, invoice_number="INV-2026-000002", amount="30.00",
                              reason="test", actor="test", now=NOW,
                              issue_date=date(2026, 11, 10))
            write_off(s, invoice=get_invoice(s, "INV-2026-000003"), amount_minor=2_500,
                      reason="bad_debt", actor="test", now=NOW,
                      effective_date=date(2026, 11, 12))
    finally:
        db.dispose()
    kept = _healthy_and_kpis(database_url)
    before = previous_revision(database_url, REVISION)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rollups, payments = _rollups(conn), _payments(conn)
            assert len(rollups) >= 5 and payments[0][1:] != (0, 0)
        # when going down, the rollups and the columns go
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert "kpi_daily" not in sa.inspect(conn).get_table_names()
            assert "auto_allocated_minor" not in {
                c["name"] for c in sa.inspect(conn).get_columns("payments")}
        # and a credit note is written while no trigger exists
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO credit_notes (number, invoice_id, amount_minor, currency, reason, "
                "value_date, effective_date, created_by, created_at, customer_credit_minor, "
                "source) SELECT 'CN-X-1', id, 1000, currency, 'old code', :d, :d, 'test', "
                ":now, 0, 'o2c' FROM invoices WHERE number = 'INV-2026-000002'"),
                {"d": date(2026, 11, 15), "now": NOW})
            conn.execute(sa.text("UPDATE invoices SET balance_minor = balance_minor - 1000 "
                                 "WHERE number = 'INV-2026-000002'"))
        # when going up again
        upgrade(database_url, REVISION)
        # then the backfill counts what was there, the credit note written meanwhile too
        with engine.connect() as conn:
            assert _payments(conn) == payments
            now_rollups = _rollups(conn)
            assert now_rollups != rollups and len(now_rollups) == len(rollups) + 1
        upgrade(database_url)  # (the code below reads the tables as the head makes them)
        after = _healthy_and_kpis(database_url)
        assert after["ar"] == "640.00" and kept["ar"] == "650.00"
        # and the triggers keep them as new rows are written
        db = Database(database_url)
        try:
            with time_machine.travel(NOW, tick=False), db.transaction() as s:
                record_payment(s, PaymentIn(amount="50.00", currency="USD",
                                            received_at=datetime(2026, 11, 21, 9, tzinfo=UTC)),
                               actor="test", apply_to=["INV-2026-000002"])
        finally:
            db.dispose()
        assert _healthy_and_kpis(database_url)["ar"] == "590.00"
        # and down and up again keeps every row of the base tables
        with engine.connect() as conn:
            rollups = _rollups(conn)
        downgrade(database_url, before)
        upgrade(database_url)
        with engine.connect() as conn:
            assert _rollups(conn) == rollups
        _healthy_and_kpis(database_url)
    finally:
        engine.dispose()
