"""What the migration tests share."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from bot.migrate import alembic_config


def previous_revision(database_url: str, revision: str) -> str:
    """The revision `revision` upgrades from, as Alembic reads it from the scripts (never
    hard-coded: branches add migrations and are chained when merged)."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    down = script.get_revision(revision).down_revision
    assert isinstance(down, str)
    return down
