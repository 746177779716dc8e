"""Migration 0017_scale on a populated database: the two invoice indexes and the KPI snapshot
table appear, the invoices are kept, and going down and up again loses nothing.

The revision before this one is read from Alembic, never written here: the branches'
migrations are chained in the order they are merged."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import outbox

REVISION = "0017_scale"
INDEXES = {"ix_invoices_open_currency", "ix_invoices_issued"}


def _indexes(conn: sa.Connection) -> set[str]:
    return {i["name"] for i in sa.inspect(conn).get_indexes("invoices")}


def _outbox(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, dedupe_key, target_outbox_id FROM outbox ORDER BY id"))]


def _invoices(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, number, currency, issue_date, due_date, total_minor, balance_minor "
        "FROM invoices ORDER BY id"))]


def test_indexes_and_snapshot_table_come_and_go_without_loss(database_url) -> None:
    # given: invoices, at the schema before 0017
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s)
            for n in range(3):
                issued = date(2026, 3, 1) + timedelta(days=10 * n)
                f.invoice(s, f"INV-2026-{n + 1:06d}", issued=issued,
                          due=issued + timedelta(days=30))
            # an outbox row another one points at (a chat.update of a posted card)
            posted = outbox.post_to_channel(s, channel="ar", template="plain",
                                            context={"text": "card"}, dedupe_key="m:1")
            outbox.update_message(s, target_outbox_id=posted.id, template="plain",
                                  context={"text": "card, decided"}, dedupe_key="m:2")
    finally:
        db.dispose()
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert not INDEXES & _indexes(conn)
            assert "kpi_snapshots" not in sa.inspect(conn).get_table_names()
            kept, queued = _invoices(conn), _outbox(conn)
        # when
        upgrade(database_url, REVISION)
        # then
        with engine.connect() as conn:
            assert _indexes(conn) >= INDEXES
            assert "kpi_snapshots" in sa.inspect(conn).get_table_names()
            assert _invoices(conn) == kept and len(kept) == 3
            assert _outbox(conn) == queued and queued[1][2] == queued[0][0]
        # and down and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert not INDEXES & _indexes(conn)
            assert _invoices(conn) == kept and _outbox(conn) == queued
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        upgrade(database_url)
        with engine.connect() as conn:
            assert _indexes(conn) >= INDEXES and _invoices(conn) == kept
    finally:
        engine.dispose()
