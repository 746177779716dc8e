"""A KPI snapshot is fresh only while nothing was recorded since it was computed — also when
audit ids commit out of order.

PostgreSQL draws an audit event's id when the row is inserted: a writer that drew a lower id
and commits after another writer's higher one leaves the last id where it was. With the last
id as the only marker, the snapshot computed between those two commits looked fresh without the
slower writer's invoice, and `/o2c kpi` kept answering from it. SQLite has one writer at a time
(ids commit in order): there the second writer waits for the first, and the test checks the
same promise in that order."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from bot.db import Database
from models import KpiSnapshot
from tests.support import factories as f
from tests.support.meanwhile import committed_out_of_order
from tests.support.timetravel import frozen_at
from workflows import audit, kpis

AS_OF = date(2026, 11, 24)
NOW = datetime.combine(AS_OF, time(12), UTC)
frozen_time = frozen_at(NOW)


def _change(session) -> None:
    audit.record(session, actor="test", action="test.change", entity_type="invoice",
                 entity_id="INV-1")


def _sales(db: Database) -> str:
    with db.read_session() as s:
        return kpis.to_json(kpis.compute(s, AS_OF))["credit_sales"]


def test_a_change_committed_after_a_higher_audit_id_makes_the_snapshot_stale(db) -> None:
    # given a customer billed 1,000.00 in the window
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-1", issued=AS_OF - timedelta(days=5))
    slow = db.session()
    try:
        # a slow writer draws an audit id (its invoice's) and has not committed yet
        f.invoice(slow, "INV-2", total="500.00", issued=AS_OF - timedelta(days=2))
        slow.flush()
        slow_id = kpis.books_marker(slow).audit_id
        # a quicker writer draws a higher one and commits first; when the snapshot is
        # computed then (without INV-2), and the slow writer commits after it
        committed_out_of_order(db, slow, _change,
                               between=lambda: f.kpi_snapshot(db, AS_OF, NOW))
        # then
        with db.read_session() as s:
            row = s.get(KpiSnapshot, AS_OF)
            last = kpis.books_marker(s).audit_id
            fresh, shown = kpis.is_fresh(s, AS_OF), kpis.fresh_snapshot(s, AS_OF)
        assert slow_id < last  # (the promise is about an id below the marker)
        assert _sales(db) == "1500.00"
        if db.is_postgres:
            assert row.audit_id == last and row.data["credit_sales"] == "1000.00"
            assert (fresh, shown) == (False, None)  # ... so `/o2c kpi` computes again
            f.kpi_snapshot(db, AS_OF, NOW)
        with db.read_session() as s:
            assert kpis.is_fresh(s, AS_OF)
            assert kpis.fresh_snapshot(s, AS_OF)["credit_sales"] == "1500.00"
    finally:
        slow.close()


def test_a_writer_in_flight_that_has_not_committed_leaves_the_snapshot_fresh(db) -> None:
    # given a snapshot computed while a writer is in flight (PostgreSQL: it is recorded)
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-1", issued=AS_OF - timedelta(days=5))
    if not db.is_postgres:  # (SQLite: a read never overlaps a writer's uncommitted ids)
        f.kpi_snapshot(db, AS_OF, NOW)
        with db.read_session() as s:
            assert kpis.is_fresh(s, AS_OF) and s.get(KpiSnapshot, AS_OF).in_flight is None
        return
    writer = db.session()
    try:
        f.invoice(writer, "INV-2", total="500.00", issued=AS_OF - timedelta(days=2))
        writer.flush()
        f.kpi_snapshot(db, AS_OF, NOW)
        with db.read_session() as s:
            assert s.get(KpiSnapshot, AS_OF).in_flight  # the writer is in it
            # when it is still in flight, or rolls back: nothing changed
            assert kpis.is_fresh(s, AS_OF)
        writer.rollback()
        with db.read_session() as s:
            assert kpis.is_fresh(s, AS_OF)
            assert kpis.fresh_snapshot(s, AS_OF)["credit_sales"] == "1000.00"
    finally:
        writer.close()


def test_a_snapshot_stored_before_writers_were_recorded_is_computed_again_on_postgresql(
        db) -> None:
    # given a snapshot as the previous revision stored it: the last id, no writers
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-1", issued=AS_OF - timedelta(days=5))
    f.kpi_snapshot(db, AS_OF, NOW)
    with db.transaction() as s:
        s.get(KpiSnapshot, AS_OF).in_flight = None
    # then PostgreSQL cannot tell who was in flight: computed again; SQLite never needed it
    with db.read_session() as s:
        assert kpis.is_fresh(s, AS_OF) is (not db.is_postgres)
