"""Migration 0013_integrations on a populated database: the integration tables appear, the
payments and allocations already there are kept as they were (on SQLite `allocations` is
rebuilt under its foreign keys and indexes), a refund's negative allocation is then allowed,
and the downgrade refuses rather than drop one.

The revision before this one is read from Alembic, never written here: the branches'
migrations are chained in the order they are merged."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision

REVISION = "0013_integrations"
TABLES = {"webhook_subscriptions", "webhook_events", "webhook_deliveries", "provider_events",
          "payment_links", "refunds", "payment_fees", "crm_deals"}
ROWS = [
    "INSERT INTO payments (id, amount_minor, currency, received_at, value_date, source, "
    "status, unapplied_minor, match_details, created_at) VALUES (1, 60000, 'USD', "
    "'2026-03-02 10:00:00+00', '2026-03-02', 'api', 'applied', 0, '{{}}', "
    "'2026-03-02 10:00:00+00')",
    "INSERT INTO payments (id, amount_minor, currency, received_at, value_date, source, "
    "status, unapplied_minor, match_details, created_at) VALUES (2, 50000, 'USD', "
    "'2026-03-20 12:00:00+00', '2026-03-20', 'bank', 'partially_applied', 20000, '{{}}', "
    "'2026-03-20 12:00:00+00')",
    "INSERT INTO allocations (id, payment_id, invoice_id, amount_minor, method, value_date, "
    "effective_date, created_by, created_at) VALUES (1, 1, {a}, 60000, 'reference', "
    "'2026-03-02', '2026-03-03', 'api', '2026-03-02 10:00:00+00')",
    "INSERT INTO allocations (id, payment_id, invoice_id, amount_minor, method, value_date, "
    "effective_date, created_by, created_at) VALUES (2, 2, {b}, 30000, 'amount', "
    "'2026-03-20', '2026-03-20', 'import', '2026-03-20 12:00:00+00')",
]
A_REFUND = ("INSERT INTO allocations (id, payment_id, invoice_id, amount_minor, method, "
            "value_date, effective_date, created_by, created_at) VALUES (3, 2, {b}, -10000, "
            "'refund', '2026-04-01', '2026-04-01', 'stripe', '2026-04-01 09:00:00+00')")


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _allocations(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, payment_id, invoice_id, amount_minor, method, created_by FROM allocations "
        "ORDER BY id"))]


def _shape(conn: sa.Connection) -> tuple:
    """What the rebuild must keep: foreign keys and indexes of `allocations`."""
    inspector = sa.inspect(conn)
    keys = sorted((tuple(k["constrained_columns"]), k["referred_table"])
                  for k in inspector.get_foreign_keys("allocations"))
    indexes = sorted((i["name"], tuple(i["column_names"]))
                     for i in inspector.get_indexes("allocations"))
    return keys, indexes


def _sql(statement: str, sqlite: bool, **ids: int) -> sa.TextClause:
    statement = statement.format(**ids)
    return sa.text(statement.replace("+00'", "'") if sqlite else statement)  # naive UTC there


def test_payments_and_allocations_survive_and_refunds_become_possible(database_url) -> None:
    # given two invoices, and before 0013 the payments applied to them
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s)
            ids = {key: f.invoice(s, number, total=total, issued=date(2026, 3, 1),
                                  due=date(2026, 3, 1) + timedelta(days=30)).id
                   for key, number, total in (("a", "INV-2026-000001", "600.00"),
                                              ("b", "INV-2026-000002", "500.00"))}
    finally:
        db.dispose()
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            assert not TABLES & _tables(conn)
            for statement in ROWS:
                conn.execute(_sql(statement, sqlite, **ids))
            conn.execute(sa.text("UPDATE invoices SET balance_minor = CASE id WHEN :a THEN 0 "
                                 "ELSE 20000 END"), ids)
            kept = _allocations(conn)
            shape = _shape(conn)
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(_sql(A_REFUND, sqlite, **ids))  # not yet: amount_minor > 0
        # when
        upgrade(database_url, REVISION)  # (not further: the refusal below leaves it here)
        # then the new tables exist, and what was there is as it was
        with engine.connect() as conn:
            assert _tables(conn) >= TABLES
            assert _allocations(conn) == kept
            assert _shape(conn) == shape
            assert [tuple(r) for r in conn.execute(sa.text(
                "SELECT id, amount_minor, unapplied_minor, refunded_minor FROM payments "
                "ORDER BY id"))] == [(1, 60000, 0, 0), (2, 50000, 20000, 0)]
            if sqlite:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        # and a refund's reversal (negative) is allowed now, a zero one still is not
        with engine.begin() as conn:
            conn.execute(_sql(A_REFUND, sqlite, **ids))
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(_sql(A_REFUND.replace("(3,", "(4,").replace("-10000", "0"),
                                  sqlite, **ids))
        # and going back down refuses to drop that money movement, changing nothing
        with pytest.raises(sa.exc.IntegrityError):
            downgrade(database_url, before)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")
                                ).scalar() == REVISION
            assert _tables(conn) >= TABLES
            assert [r[3] for r in _allocations(conn)] == [60000, 30000, -10000]
        # without it, the downgrade goes through and keeps the rest
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM allocations WHERE id = 3"))
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert not TABLES & _tables(conn)
            assert _allocations(conn) == kept
            assert _shape(conn) == shape
        upgrade(database_url)
    finally:
        engine.dispose()
