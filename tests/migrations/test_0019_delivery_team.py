"""Migration 0019_delivery_team on a populated database: existing outbox rows and users keep
everything and are for no workspace in particular (NULL: the default installation), and it
downgrades with workspaces recorded and up again.

The revision before this one is read from Alembic, never written here: the branches'
migrations are chained in the order they are merged."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import outbox

REVISION = "0019_delivery_team"


def _columns(conn: sa.Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_existing_deliveries_and_users_go_through_the_default_installation(
        database_url) -> None:
    # given: a user and a DM queued for them
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            outbox.post_to_user(s, user_id="USALES01", template="text",
                                context={"text": "hello"}, dedupe_key="dm-1")
    finally:
        db.dispose()
    downgrade(database_url, previous_revision(database_url, REVISION))
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            assert "team_id" not in _columns(conn, "outbox") | _columns(conn, "users")
        # when
        upgrade(database_url, REVISION)
        # then: nothing lost; no workspace recorded yet
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(sa.text(
                "SELECT dedupe_key, status, team_id, enterprise_id FROM outbox"))] == [
                ("dm-1", "pending", None, None)]
            assert [tuple(r) for r in conn.execute(sa.text(
                "SELECT slack_user_id, team_id, enterprise_id FROM users"))] == [
                ("USALES01", None, None)]
            if sqlite:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        # and with workspaces recorded it goes down and up again, keeping the rows
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE outbox SET team_id = 'T0002', enterprise_id = 'E1'"))
            conn.execute(sa.text("UPDATE users SET team_id = 'T0002', enterprise_id = 'E1'"))
        downgrade(database_url, previous_revision(database_url, REVISION))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == 1
            assert "team_id" not in _columns(conn, "outbox") | _columns(conn, "users")
        upgrade(database_url, "head")
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT count(*) FROM outbox WHERE team_id IS NULL")).scalar() == 1
    finally:
        engine.dispose()
