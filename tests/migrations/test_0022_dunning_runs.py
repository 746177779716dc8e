"""Migration 0022_dunning_runs on a populated database: the notices already sent stay (with
no run), the runs table appears, and going down and up loses no notice.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import dunning

REVISION = "0022_dunning_runs"
AS_OF = date(2026, 11, 23)


def _notices(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, invoice_id, level, as_of, skipped FROM dunning_notices ORDER BY id"))]


def test_sent_notices_stay_and_the_runs_table_comes_and_goes(database_url) -> None:
    # given notices sent (by a recorded run) before going down
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
            assert len(sent) == 4 and conn.execute(sa.text(
                "SELECT count(*) FROM dunning_runs WHERE finished")).scalar() == 1
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert "dunning_runs" not in sa.inspect(conn).get_table_names()
            assert "run_id" not in {c["name"] for c in
                                    sa.inspect(conn).get_columns("dunning_notices")}
            assert _notices(conn) == sent
        # when
        upgrade(database_url, REVISION)
        # then what was there is kept, belonging to no run, and a run can be recorded again
        with engine.connect() as conn:
            assert _notices(conn) == sent
            assert conn.execute(sa.text(
                "SELECT count(*) FROM dunning_notices WHERE run_id IS NOT NULL")).scalar() == 0
            assert "dunning_runs" in sa.inspect(conn).get_table_names()
        db = Database(database_url)
        try:
            with db.transaction() as s:
                f.invoice(s, "INV-2026-000002", due=date(2026, 11, 16))
                assert dunning.run_dunning(s, AS_OF).id is not None
        finally:
            db.dispose()
        # and down and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert _notices(conn)[:4] == sent and len(_notices(conn)) == 7
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        upgrade(database_url)
        with engine.connect() as conn:
            assert len(_notices(conn)) == 7
    finally:
        engine.dispose()
