"""Migration 0028_kpi_fee_sales: the late-fee invoices' totals get a column of their own in
the KPI rollups (`kpi_daily.fees_minor`), backfilled from the fee invoices already there and
kept by triggers that fire for fee invoices only (insert, update, delete), on SQLite and
PostgreSQL; going down drops it, and up again backfills it again.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from bot.migrate import downgrade, upgrade
from models import Invoice
from tests.support.migrations import plain_engine, rollup_book_below
from workflows import invariants

REVISION = "0028_kpi_fee_sales"


def _fee(conn: sa.Connection, number: str, total: int, day: date) -> None:
    original, customer = conn.execute(sa.text(
        "SELECT id, customer_id FROM invoices WHERE number = 'INV-2026-000001'")).one()
    level = conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE fee_for_invoice_id "
                                 "IS NOT NULL")).scalar_one() + 1
    conn.execute(sa.insert(Invoice.__table__).values(
        number=number, customer_id=customer, currency="USD", issue_date=day, due_date=day,
        subtotal_minor=total, total_minor=total, balance_minor=total, source="fee",
        fee_for_invoice_id=original, fee_level=level))


def _fees(conn: sa.Connection) -> dict[str, int]:
    return {str(day): int(total) for day, total in conn.execute(sa.text(
        "SELECT day, SUM(fees_minor) FROM kpi_daily GROUP BY day HAVING SUM(fees_minor) <> 0"
        " ORDER BY day"))}


def _has_column(conn: sa.Connection) -> bool:
    return "fees_minor" in {c["name"] for c in sa.inspect(conn).get_columns("kpi_daily")}


def _healthy(engine: sa.Engine, database_url: str) -> list[str]:
    """The rollups checked at the head (the code reads the tables as the head makes them),
    then back at this revision."""
    upgrade(database_url)
    try:
        with Session(engine) as session:
            return invariants.validate_kpi_rollups(session)
    finally:
        downgrade(database_url, REVISION)


def test_fee_totals_are_backfilled_kept_and_dropped(database_url) -> None:
    before = rollup_book_below(database_url, REVISION)
    with plain_engine(database_url) as engine:
        # given a fee invoice written before the revision
        with engine.begin() as conn:
            assert not _has_column(conn)
            _fee(conn, "FEE-1", 2_500, date(2026, 11, 10))
        # when
        upgrade(database_url, REVISION)
        # then it is backfilled, and the rollups agree with the base rows
        with engine.begin() as conn:
            assert _fees(conn) == {"2026-11-10": 2_500}
        assert _healthy(engine, database_url) == []
        # and later fee invoices are kept by the triggers: written, changed, deleted; an
        # invoice that is no fee adds nothing
        with engine.begin() as conn:
            _fee(conn, "FEE-2", 480, date(2026, 11, 12))
            _fee(conn, "FEE-3", 100, date(2026, 11, 12))
            conn.execute(sa.text("UPDATE invoices SET total_minor = 700, subtotal_minor = 700,"
                                 " issue_date = '2026-11-13' WHERE number = 'FEE-2'"))
            conn.execute(sa.text("DELETE FROM invoices WHERE number = 'FEE-3'"))
            conn.execute(sa.text("UPDATE invoices SET total_minor = total_minor + 1, "
                                 "subtotal_minor = subtotal_minor + 1 "
                                 "WHERE number = 'INV-2026-000002'"))
            assert _fees(conn) == {"2026-11-10": 2_500, "2026-11-13": 700}
        assert _healthy(engine, database_url) == []
        # and going down drops the column and its triggers, up again backfills it
        downgrade(database_url, before)
        with engine.begin() as conn:
            assert not _has_column(conn)
            _fee(conn, "FEE-4", 50, date(2026, 11, 14))
        upgrade(database_url)
        with engine.begin() as conn:
            assert _fees(conn) == {"2026-11-10": 2_500, "2026-11-13": 700, "2026-11-14": 50}
        assert _healthy(engine, database_url) == []
