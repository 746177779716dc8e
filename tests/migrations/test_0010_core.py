"""Migration 0010_core: `invoices.sent_at` (never written) is dropped from a populated
database without touching its rows, and comes back on a downgrade."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f


def _invoice_columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns("invoices")}


def test_sent_at_is_dropped_and_the_invoices_stay(database_url) -> None:
    # given invoices at the schema before 0010_core
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s)
            f.invoice(s, "INV-2026-000001", total="100.00")
            f.invoice(s, "INV-2026-000002", total="250.00")
    finally:
        db.dispose()
    downgrade(database_url, "0008_economic_dates")
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        assert "sent_at" in _invoice_columns(engine)
        # when
        upgrade(database_url)
        # then the column is gone and every invoice is as it was
        assert "sent_at" not in _invoice_columns(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT number, total_minor, balance_minor FROM "
                                        "invoices ORDER BY number")).all()
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        assert [tuple(r) for r in rows] == [("INV-2026-000001", 10000, 10000),
                                            ("INV-2026-000002", 25000, 25000)]
        # and back down: the column returns, empty
        downgrade(database_url, "0008_economic_dates")
        assert "sent_at" in _invoice_columns(engine)
        upgrade(database_url)
    finally:
        engine.dispose()
