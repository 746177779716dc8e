"""Migration 0018_customer on a populated database: existing customers get every notice,
goods recognised at shipment and no monthly statement; existing shipments are "shipped",
undelivered, recognised at shipment (so no revenue moves); the new tables start empty; and it
downgrades with rows in them (links and carrier events are in the audit log) and up again.

The revision before this one is read from Alembic, never written here: the branches'
migrations are chained in the order they are merged."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import previous_revision
from workflows import shipping

REVISION = "0018_customer"
TABLES = {"shipment_events", "customer_links"}
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def test_existing_customers_and_shipments_keep_their_meaning(database_url) -> None:
    # given a customer with a shipped order
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s, sales_rep="USALES01")
            f.product(s, "WID-1", on_hand=10)
            order = f.order(s, lines=[("WID-1", 2)], now=NOW)
            shipping.ship_order(s, order_number=order.number, carrier="UPS",
                                tracking_number="1Z1", shipped_at=NOW, actor="api", now=NOW)
    finally:
        db.dispose()
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            assert not TABLES & _tables(conn)
            columns = {c["name"] for c in sa.inspect(conn).get_columns("customers")}
            assert "notices" not in columns
        # when
        upgrade(database_url, REVISION)
        # then what was there keeps its meaning
        with engine.connect() as conn:
            assert _tables(conn) >= TABLES
            assert [tuple(r) for r in conn.execute(sa.text(
                "SELECT notice_email, notices, goods_recognized_at, monthly_statement "
                "FROM customers"))] == [(None, "all", "shipment", False)]
            assert [tuple(r) for r in conn.execute(sa.text(
                "SELECT carrier, status, delivered_at, pod_signed_by, recognize_at_delivery "
                "FROM shipments"))] == [("UPS", "shipped", None, None, False)]
            if sqlite:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        # and with rows in the new tables it goes down and up again
        with engine.begin() as conn:
            stamp = {"at": "2026-11-21 10:00:00" if sqlite else "2026-11-21 10:00:00+00"}
            conn.execute(sa.text(
                "INSERT INTO shipment_events (shipment_id, kind, occurred_at, actor, "
                "created_at) SELECT id, 'delivered', :at, 'api', :at FROM shipments"), stamp)
            conn.execute(sa.text(
                "INSERT INTO customer_links (customer_id, scope, created_by, created_at, "
                "expires_at) SELECT id, 'portal', 'UCOLL01', :at, :at FROM customers"), stamp)
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert not TABLES & _tables(conn)
            assert conn.execute(sa.text("SELECT count(*) FROM shipments")).scalar() == 1
        upgrade(database_url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM customer_links")).scalar() == 0
    finally:
        engine.dispose()
