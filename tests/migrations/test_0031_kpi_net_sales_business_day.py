"""Migration 0031_kpi_net_sales_business_day: the credit notes against sales invoices get a
column of their own in the KPI rollups (`kpi_daily.credited_minor`, by the credit note's
date), backfilled from the credit notes already there and kept by triggers (a credit note
written, changed, deleted; an invoice becoming a late fee or changing currency moves its
credit notes), on SQLite and PostgreSQL; payments get an index on `received_at`. Going down
drops them, and up again backfills the column again.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from bot.migrate import downgrade, upgrade
from models import CreditNote
from tests.support.migrations import plain_engine, rollup_book_below
from workflows import invariants, kpis

REVISION = "0031_kpi_net_sales_business_day"


def _note(conn: sa.Connection, number: str, amount: int, day: date) -> None:
    invoice, currency = conn.execute(sa.text(
        "SELECT id, currency FROM invoices WHERE number = :n"), {"n": number}).one()
    conn.execute(sa.insert(CreditNote.__table__).values(
        number=f"CN-{number}-{amount}", invoice_id=invoice, currency=currency,
        amount_minor=amount, reason="test", created_by="test", value_date=day,
        effective_date=day, created_at=datetime(2026, 11, 25, tzinfo=UTC)))


def _credited(conn: sa.Connection) -> dict[str, int]:
    return {f"{currency} {day}": int(total) for currency, day, total in conn.execute(sa.text(
        "SELECT currency, day, SUM(credited_minor) FROM kpi_daily GROUP BY currency, day "
        "HAVING SUM(credited_minor) <> 0 ORDER BY currency, day"))}


def _has_column(conn: sa.Connection) -> bool:
    return "credited_minor" in {c["name"] for c in sa.inspect(conn).get_columns("kpi_daily")}


def _has_index(conn: sa.Connection) -> bool:
    return "ix_payments_received" in {i["name"] for i in sa.inspect(conn).get_indexes(
        "payments")}


def _healthy(engine: sa.Engine) -> list[str]:
    with Session(engine) as session:
        return invariants.validate_kpi_rollups(session)


def test_credit_notes_are_backfilled_kept_and_dropped(database_url) -> None:
    before = rollup_book_below(database_url, REVISION)
    with plain_engine(database_url) as engine:
        # given a credit note written before the revision
        with engine.begin() as conn:
            assert not _has_column(conn) and not _has_index(conn)
            _note(conn, "INV-2026-000002", 5_000, date(2026, 11, 10))
        # when
        upgrade(database_url, REVISION)
        # then it is backfilled, and the rollups agree with the base rows
        with engine.begin() as conn:
            assert _has_index(conn)
            assert _credited(conn) == {"USD 2026-11-10": 5_000}
        assert _healthy(engine) == []
        # and the KPIs' credit sales are net of it: USD 500.00 + 300.00 sold in the window
        # (09-02..11-30) less 50.00
        with Session(engine) as session:
            assert kpis.compute(session, date(2026, 11, 30)).credit_sales_minor == 75_000
        # and later credit notes are kept by the triggers: written, changed, deleted; one of
        # another currency; an invoice that becomes a late fee takes its credit notes away
        with engine.begin() as conn:
            _note(conn, "INV-2026-000002", 700, date(2026, 11, 12))
            _note(conn, "INV-2026-000002", 100, date(2026, 11, 12))
            _note(conn, "INV-2026-000003", 2_000, date(2026, 11, 12))
            conn.execute(sa.text("UPDATE credit_notes SET amount_minor = 900, effective_date "
                                 "= '2026-11-13' WHERE amount_minor = 700"))
            conn.execute(sa.text("DELETE FROM credit_notes WHERE amount_minor = 100"))
            assert _credited(conn) == {"EUR 2026-11-12": 2_000, "USD 2026-11-10": 5_000,
                                       "USD 2026-11-13": 900}
            _note(conn, "INV-2026-000001", 300, date(2026, 11, 14))
            first = conn.execute(sa.text("SELECT id FROM invoices WHERE number = "
                                         "'INV-2026-000002'")).scalar_one()
            conn.execute(sa.text("UPDATE invoices SET fee_for_invoice_id = :f "
                                 "WHERE number = 'INV-2026-000001'"), {"f": first})
            assert _credited(conn) == {"EUR 2026-11-12": 2_000, "USD 2026-11-10": 5_000,
                                       "USD 2026-11-13": 900}
        assert _healthy(engine) == []
        with engine.begin() as conn:  # (and back: a sale again)
            conn.execute(sa.text("UPDATE invoices SET fee_for_invoice_id = NULL "
                                 "WHERE number = 'INV-2026-000001'"))
            assert _credited(conn)["USD 2026-11-14"] == 300
        assert _healthy(engine) == []
        # and going down drops the column, its triggers and the index; up again backfills
        downgrade(database_url, before)
        with engine.begin() as conn:
            assert not _has_column(conn) and not _has_index(conn)
            _note(conn, "INV-2026-000002", 50, date(2026, 11, 15))
        upgrade(database_url)
        with engine.begin() as conn:
            assert _credited(conn) == {"EUR 2026-11-12": 2_000, "USD 2026-11-10": 5_000,
                                       "USD 2026-11-13": 900, "USD 2026-11-14": 300,
                                       "USD 2026-11-15": 50}
        assert _healthy(engine) == []
