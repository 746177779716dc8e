"""Migration 0015_chargebacks: disputes get `external_id` (the provider's dispute behind a
chargeback); the disputes already there keep everything and have none, and it goes down and up
again without loss. The revision before it is read from Alembic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from bot.db import Database, normalize_url
from bot.migrate import alembic_config, downgrade, upgrade
from tests.support import factories as f

REVISION = "0015_chargebacks"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _before(database_url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_revision(
        REVISION).down_revision


def _disputes(url: str) -> list[tuple]:
    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("disputes")}
            rows = conn.execute(sa.text("SELECT id, amount_minor, status FROM disputes")).all()
            extra = (conn.execute(sa.text("SELECT external_id FROM disputes")).scalars().all()
                     if "external_id" in columns else None)
    finally:
        engine.dispose()
    return [tuple(r) for r in rows] + [("external_id", extra)]


def test_existing_disputes_keep_everything_and_have_no_external_id(database_url) -> None:
    # given a dispute opened before the migration
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "UCOLL001", "collector")
            f.customer(s, collector="UCOLL001")
            f.invoice(s, "INV-2026-000001", total="300.00", issued=date(2026, 11, 1),
                      due=date(2026, 11, 1) + timedelta(days=30))
            f.dispute(s, "INV-2026-000001", amount="120.00", now=NOW)
    finally:
        db.dispose()
    downgrade(database_url, _before(database_url))
    [before, (_, none)] = _disputes(database_url)
    assert none is None  # the column is not there
    # when it upgrades, then down and up again
    upgrade(database_url)
    [after, (_, ids)] = _disputes(database_url)
    downgrade(database_url, _before(database_url))
    upgrade(database_url)
    # then the dispute is the same, with no provider dispute behind it
    assert after == before == _disputes(database_url)[0]
    assert ids == [None] and before[1:] == (12_000, "open")
