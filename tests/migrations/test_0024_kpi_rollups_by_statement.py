"""Migration 0024_kpi_rollups_by_statement: on PostgreSQL an INSERT's rows (and a settlement
DELETE's) reach the KPI rollups through one trigger per statement, with the same figures as
0023's row triggers, before and after going down and up again. On SQLite it changes nothing
(and the same writes keep the rollups right there too).

The revision before this one is read from Alembic, never written here."""

# ruff: noqa: S608 - the SQL below is built from this file's constants, no input
from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine
from sqlmodel import Session

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from models import Allocation, CreditNote, Invoice, Payment, WriteOff
from tests.support.migrations import previous_revision, rollup_book
from workflows import invariants

REVISION = "0024_kpi_rollups_by_statement"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _ids(conn: sa.Connection, table: str, where: str = "true") -> list[int]:
    return list(conn.execute(sa.text(f"SELECT id FROM {table} WHERE {where} ORDER BY id"))
                .scalars())


def _statement_triggers(conn: sa.Connection) -> set[str]:
    if conn.dialect.name != "postgresql":
        return set()
    # (tgtype's bit 0 is FOR EACH ROW)
    return set(conn.execute(sa.text(
        "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'kpi_rollup_%' "
        "AND NOT tgisinternal AND tgtype & 1 = 0")).scalars())


def _write_many(conn: sa.Connection, tag: str, check: bool = True) -> None:
    """Rows of every watched table in multi-row statements — two currencies, several days,
    two allocations of one payment, a manual one, bad debt and not — then a multi-row DELETE
    of settlements; with `check`, the rollups are checked after each (the code reads the
    tables as the head makes them: below it, check once back at the head)."""
    usd, eur = _ids(conn, "invoices", "currency = 'USD'"), _ids(conn, "invoices",
                                                                  "currency = 'EUR'")
    customer = conn.execute(sa.text("SELECT MIN(id) FROM customers")).scalar_one()
    conn.execute(sa.insert(Invoice.__table__).values([
        {"number": f"INV-{tag}-{n}", "customer_id": customer, "currency": currency,
         "issue_date": date(2026, 11, 1 + n), "due_date": date(2026, 12, 1),
         "total_minor": 10_000 + n, "balance_minor": 10_000 + n}
        for n, currency in enumerate(("USD", "USD", "EUR"))]))
    conn.execute(sa.insert(Payment.__table__).values([
        {"amount_minor": 5_000 + n, "currency": currency, "status": "applied",
         "received_at": datetime(2026, 11, 20, 23 - n, 30, tzinfo=UTC),
         "value_date": date(2026, 11, 20)}
        for n, currency in enumerate(("USD", "USD", "EUR"))]))
    pay = _ids(conn, "payments")[-3:]
    conn.execute(sa.insert(Allocation.__table__).values([
        {"payment_id": pay[0], "invoice_id": usd[0], "amount_minor": 700, "method": "reference",
         "value_date": date(2026, 11, 20), "effective_date": date(2026, 11, 20)},
        {"payment_id": pay[0], "invoice_id": usd[1], "amount_minor": 300, "method": "amount",
         "value_date": date(2026, 11, 20), "effective_date": date(2026, 9, 1)},
        {"payment_id": pay[1], "invoice_id": usd[0], "amount_minor": 200, "method": "manual",
         "value_date": date(2026, 11, 21), "effective_date": date(2026, 11, 21)},
        {"payment_id": pay[2], "invoice_id": eur[0], "amount_minor": 400, "method": "amount",
         "value_date": date(2026, 11, 21), "effective_date": date(2026, 11, 21)}]))
    conn.execute(sa.insert(WriteOff.__table__).values([
        {"invoice_id": usd[0], "amount_minor": 50, "reason": "bad_debt", "created_by": "t",
         "value_date": date(2026, 11, 22), "effective_date": date(2026, 11, 22)},
        {"invoice_id": eur[0], "amount_minor": 60, "reason": "bad_debt", "created_by": "t",
         "value_date": date(2026, 11, 22), "effective_date": date(2026, 11, 22)},
        {"invoice_id": usd[1], "amount_minor": 7, "reason": "bank_fee", "created_by": "t",
         "value_date": date(2026, 11, 22), "effective_date": date(2026, 11, 22)}]))
    conn.execute(sa.insert(CreditNote.__table__).values([
        {"number": f"CN-{tag}-{n}", "invoice_id": invoice, "amount_minor": 90 + n,
         "currency": currency, "reason": "t", "created_by": "t",
         "value_date": date(2026, 11, 22), "effective_date": date(2026, 11, 22)}
        for n, (invoice, currency) in enumerate(((usd[1], "USD"), (eur[0], "EUR")))]))
    assert not check or invariants.validate_kpi_rollups(_session(conn)) == []
    # and a DELETE of several of each settlement at once
    for table in ("allocations", "write_offs", "credit_notes"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE id IN "
                             f"(SELECT id FROM {table} ORDER BY id DESC LIMIT 2)"))
    assert not check or invariants.validate_kpi_rollups(_session(conn)) == []


def _session(conn: sa.Connection) -> Session:
    return Session(bind=conn)


def test_a_statements_rows_reach_the_rollups_at_once_and_going_down_keeps_them(
        database_url) -> None:
    # given a book written by the workflows
    db = Database(database_url)
    try:
        with time_machine.travel(NOW, tick=False), db.transaction() as s:
            rollup_book(s)
    finally:
        db.dispose()
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    pg = engine.dialect.name == "postgresql"
    try:
        with engine.connect() as conn:
            # then at this revision PostgreSQL adds inserts (and settlement deletes) by statement
            assert _statement_triggers(conn) == ({
                f"kpi_rollup_{t}_insert" for t in
                ("invoices", "payments", "allocations", "credit_notes", "write_offs")} | {
                f"kpi_rollup_{t}_delete" for t in ("allocations", "credit_notes", "write_offs")}
                if pg else set())
        # and rows written many to a statement keep the rollups right
        with engine.begin() as conn:
            _write_many(conn, "A")
        # when going down
        downgrade(database_url, previous_revision(database_url, REVISION))
        with engine.begin() as conn:
            # then 0023's row triggers are back, and keep them right (checked at the head,
            # whose tables the code reads: later revisions add to kpi_daily)
            assert _statement_triggers(conn) == set()
            _write_many(conn, "B", check=False)
        # and going up again keeps them right too
        upgrade(database_url, REVISION)
        with engine.begin() as conn:
            _write_many(conn, "C", check=False)
        upgrade(database_url)
        with engine.begin() as conn:
            assert invariants.validate_kpi_rollups(_session(conn)) == []
    finally:
        engine.dispose()
