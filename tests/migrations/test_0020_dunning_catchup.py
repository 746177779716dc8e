"""Migration 0020_dunning_catchup on a populated database: the notices already sent stay sent
(`skipped` false), the confirmations table appears, and going down and up loses no notice.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import dunning

REVISION = "0020_dunning_catchup"
AS_OF = date(2026, 11, 23)


def _notices(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, invoice_id, level, as_of FROM dunning_notices ORDER BY id"))]


def test_sent_notices_stay_sent_and_the_confirmations_table_comes_and_goes(
        database_url) -> None:
    # given notices sent before the migration
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s)
            f.invoice(s, "INV-2026-000001", due=date(2026, 11, 1))
            dunning.run_dunning(s, AS_OF)
    finally:
        db.dispose()
    before = previous_revision(database_url, REVISION)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            sent = _notices(conn)
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert "dunning_confirmations" not in sa.inspect(conn).get_table_names()
            assert "skipped" not in {c["name"] for c in
                                     sa.inspect(conn).get_columns("dunning_notices")}
            kept = _notices(conn)
            assert {n[2] for n in kept} == {-3, 1, 7, 14}  # the sent +14 and the skipped
            assert any(n[2] == 14 for n in sent)
        # when
        upgrade(database_url, REVISION)
        # then: what was there is kept, and none of it counts as skipped
        with engine.connect() as conn:
            assert "dunning_confirmations" in sa.inspect(conn).get_table_names()
            assert _notices(conn) == kept
            assert conn.execute(sa.text(
                "SELECT count(*) FROM dunning_notices WHERE skipped")).scalar() == 0
        # and down and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert _notices(conn) == kept
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        upgrade(database_url)
        with engine.connect() as conn:
            assert _notices(conn) == kept
    finally:
        engine.dispose()
