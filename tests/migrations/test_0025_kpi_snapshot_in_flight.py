"""Migration 0025_kpi_snapshot_in_flight on a populated database: the day's KPI snapshot stays
through going down and up, and one kept from before the revision (no writers recorded) is
computed again once on PostgreSQL (`workflows.kpis.is_fresh`), as SQLite never needs.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from bot.migrate import downgrade, upgrade
from models import KpiSnapshot
from tests.support import factories as f
from tests.support.migrations import opened, plain_engine, previous_revision
from tests.support.timetravel import frozen_at
from workflows import kpis

REVISION = "0025_kpi_snapshot_in_flight"
AS_OF = date(2026, 11, 24)
NOW = datetime.combine(AS_OF, time(12), UTC)
frozen_time = frozen_at(NOW)


def _snapshots(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT as_of, audit_id, data FROM kpi_snapshots ORDER BY as_of"))]


def test_snapshots_stay_and_an_old_one_is_computed_again_on_postgresql(database_url) -> None:
    # given the day's snapshot before going down
    with opened(database_url) as db:
        with db.transaction() as s:
            f.customer(s)
            f.invoice(s, "INV-1", issued=AS_OF - timedelta(days=5))
        f.kpi_snapshot(db, AS_OF, NOW)
    before = previous_revision(database_url, REVISION)
    with plain_engine(database_url) as engine:
        with engine.connect() as conn:
            kept = _snapshots(conn)
            assert len(kept) == 1
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert "in_flight" not in {c["name"] for c in
                                       sa.inspect(conn).get_columns("kpi_snapshots")}
            assert _snapshots(conn) == kept
        # when
        upgrade(database_url, REVISION)
        # then the snapshot is kept, with no writers recorded
        with engine.connect() as conn:
            assert _snapshots(conn) == kept
            assert conn.execute(sa.text(
                "SELECT count(*) FROM kpi_snapshots WHERE in_flight IS NULL")).scalar() == 1
        upgrade(database_url)  # (the KPIs read the tables as the head makes them)
        with opened(database_url) as db:
            with db.read_session() as s:
                assert kpis.is_fresh(s, AS_OF) is (not db.is_postgres)
            f.kpi_snapshot(db, AS_OF, NOW)
            with db.read_session() as s:
                assert kpis.is_fresh(s, AS_OF)
                assert (s.get(KpiSnapshot, AS_OF).in_flight is not None) is db.is_postgres
        # and down and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert len(_snapshots(conn)) == 1
        upgrade(database_url)
        with engine.connect() as conn:
            assert len(_snapshots(conn)) == 1
