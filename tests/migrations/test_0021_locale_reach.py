"""Migration 0021_locale_reach on a populated database: the channels' recorded workspaces
(`channel_workspaces`) come and go, and nothing else is touched (the channel settings and
the outbox rows stay as they were, down and up again).

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import mentions, outbox

REVISION = "0021_locale_reach"


def _kept(conn: sa.Connection) -> list[tuple]:
    settings = conn.execute(sa.text(
        "SELECT channel_id, number_answers FROM channel_settings ORDER BY channel_id")).all()
    rows = conn.execute(sa.text(
        "SELECT id, method, team_id, enterprise_id FROM outbox ORDER BY id")).all()
    return [tuple(r) for r in settings] + [tuple(r) for r in rows]


def test_channel_workspaces_come_and_go_and_nothing_else_changes(database_url) -> None:
    # given: a channel configured in a second workspace, and a post queued for it there
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "UADMIN01", "admin")
            mentions.set_number_answers(s, channel="C0SECOND", mode="thread", actor="UADMIN01")
            outbox.record_channel_workspace(s, channel="C0SECOND", team_id="T0002",
                                            enterprise_id="E1")
            outbox.post_to_channel(s, channel="C0SECOND", template="text",
                                   context={"text": "hello"})
    finally:
        db.dispose()
    before = previous_revision(database_url, REVISION)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            kept = _kept(conn)
            assert ("C0SECOND", "thread") in kept
            assert (1, "chat.postMessage", "T0002", "E1") in kept  # its channel's workspace
        # when: down
        downgrade(database_url, before)
        # then: the table is gone, the rest as it was
        with engine.connect() as conn:
            assert "channel_workspaces" not in sa.inspect(conn).get_table_names()
            assert _kept(conn) == kept
        # when: up again
        upgrade(database_url, REVISION)
        with engine.connect() as conn:
            assert "channel_workspaces" in sa.inspect(conn).get_table_names()
            assert conn.execute(sa.text("SELECT count(*) FROM channel_workspaces")
                                ).scalar() == 0  # recorded again when configured again
            assert _kept(conn) == kept
        downgrade(database_url, before)
        upgrade(database_url)
        with engine.connect() as conn:
            assert _kept(conn) == kept
    finally:
        engine.dispose()
