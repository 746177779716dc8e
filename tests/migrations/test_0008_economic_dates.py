"""Migration 0008_economic_dates: existing payments, allocations, credit notes and write-offs
get their economic dates (never before their invoice), the columns are NOT NULL afterwards
(also on SQLite, where the four tables are rebuilt under their foreign keys), the as-of aging
reads them, and it downgrades."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from workflows.receivables import aging_by_currency

ROWS = [
    # a payment received late on 2 March (UTC), recorded in April, for an invoice of 3 March
    "INSERT INTO payments (id, amount_minor, currency, received_at, source, status, "
    "unapplied_minor, match_details, created_at) VALUES (1, 60000, 'USD', "
    "'2026-03-02 23:30:00+00', 'api', 'applied', 0, '{{}}', '2026-04-09 10:00:00+00')",
    # a payment of 20 March, with a bank fee written off alongside
    "INSERT INTO payments (id, amount_minor, currency, received_at, source, status, "
    "unapplied_minor, match_details, created_at) VALUES (2, 29900, 'USD', "
    "'2026-03-20 12:00:00+00', 'bank', 'applied', 0, '{{}}', '2026-03-24 08:00:00+00')",
    "INSERT INTO allocations (id, payment_id, invoice_id, amount_minor, method, created_by, "
    "created_at) VALUES (1, 1, {a}, 60000, 'reference', 'api', '2026-04-09 10:00:00+00')",
    "INSERT INTO allocations (id, payment_id, invoice_id, amount_minor, method, created_by, "
    "created_at) VALUES (2, 2, {b}, 29900, 'reference', 'import', '2026-03-24 08:00:00+00')",
    "INSERT INTO write_offs (id, invoice_id, payment_id, amount_minor, reason, created_by, "
    "created_at) VALUES (1, {b}, 2, 100, 'bank_fee', 'import', '2026-03-24 08:00:00+00')",
    # a bad-debt write-off recorded 5 April, and a credit note recorded 28 March
    "INSERT INTO write_offs (id, invoice_id, payment_id, amount_minor, reason, created_by, "
    "created_at) VALUES (2, {a}, NULL, 40000, 'bad_debt', 'UCREDIT1', "
    "'2026-04-05 16:00:00+00')",
    "INSERT INTO credit_notes (id, number, invoice_id, amount_minor, currency, reason, "
    "created_by, created_at) VALUES (1, 'CN-2026-000001', {c}, 5000, 'USD', 'damaged', "
    "'UCOLL001', '2026-03-28 09:00:00+00')",
]


def test_existing_settlements_get_their_economic_dates(database_url) -> None:
    # given: three invoices, and before 0008 the settlements recorded on them (balances as
    # those settlements left them)
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s)
            ids = {key: f.invoice(s, number, total=total, issued=issued,
                                  due=issued + timedelta(days=30)).id
                   for key, number, total, issued in (
                       ("a", "INV-2026-000001", "1000.00", date(2026, 3, 3)),
                       ("b", "INV-2026-000002", "300.00", date(2026, 3, 5)),
                       ("c", "INV-2026-000003", "200.00", date(2026, 3, 10)))}
    finally:
        db.dispose()
    downgrade(database_url, "0007_exactly_once")
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            for statement in ROWS:
                statement = statement.format(**ids)
                if sqlite:  # stored as naive UTC there (models.base.UTCDateTime)
                    statement = statement.replace("+00'", "'")
                conn.execute(sa.text(statement))
            conn.execute(sa.text("UPDATE invoices SET balance_minor = CASE id WHEN :a THEN 0 "
                                 "WHEN :b THEN 0 ELSE 15000 END"), ids)
        # when
        upgrade(database_url)
        # then
        with engine.connect() as conn:
            def dates(table: str) -> list[tuple]:
                return [tuple(row) for row in conn.execute(sa.text(
                    f"SELECT id, value_date, effective_date FROM {table} ORDER BY id"))]  # noqa: S608

            payments = [tuple(r) for r in conn.execute(sa.text(
                "SELECT id, value_date FROM payments ORDER BY id"))]
            allocations, write_offs = dates("allocations"), dates("write_offs")
            credit_notes = dates("credit_notes")
            if sqlite:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        d = date.fromisoformat

        def as_dates(rows: list[tuple]) -> list[tuple]:
            return [tuple(d(v) if isinstance(v, str) else v for v in row) for row in rows]

        assert as_dates(payments) == [(1, date(2026, 3, 2)), (2, date(2026, 3, 20))]
        # paid 2 March for an invoice of 3 March: counts from the 3rd
        assert as_dates(allocations) == [(1, date(2026, 3, 2), date(2026, 3, 3)),
                                         (2, date(2026, 3, 20), date(2026, 3, 20))]
        # the fee by its payment; the bad debt by the day it was recorded
        assert as_dates(write_offs) == [(1, date(2026, 3, 20), date(2026, 3, 20)),
                                        (2, date(2026, 4, 5), date(2026, 4, 5))]
        assert as_dates(credit_notes) == [(1, date(2026, 3, 28), date(2026, 3, 28))]
        # and the as-of aging reads them: on 31 March A's 400.00 was still open (written off
        # 5 April), B was paid, C had 150.00 open after its 50.00 credit
        db = Database(database_url)
        try:
            with db.read_session() as s:
                aging = aging_by_currency(s, date(2026, 3, 31))["USD"]
            assert (aging.total, aging.counts["current"]) == (55_000, 2)
        finally:
            db.dispose()
        # and a settlement without its dates is refused by the database itself
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO credit_notes (number, invoice_id, amount_minor, currency, reason, "
                "created_by, created_at) VALUES ('CN-X', :c, 1, 'USD', 'x', 'x', "
                "CURRENT_TIMESTAMP)"), ids)
        # and back down: no dates, no closed periods
        downgrade(database_url, "0007_exactly_once")
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            columns = {t: {c["name"] for c in inspector.get_columns(t)}
                       for t in ("payments", "allocations", "credit_notes", "write_offs")}
            tables = inspector.get_table_names()
            count = conn.execute(sa.text("SELECT count(*) FROM allocations")).scalar()
        assert not any({"value_date", "effective_date"} & names for names in columns.values())
        assert "closed_periods" not in tables and count == 2
    finally:
        engine.dispose()
        upgrade(database_url)
