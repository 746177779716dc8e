"""Migration 0005_fulfil: stock rows broken by the old shipment race are repaired, the checks
hold afterwards (also on SQLite, where `products` is rebuilt under its order lines), and it
downgrades."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.support import factories as f


def test_broken_stock_is_repaired_then_checked_and_the_migration_reverses(database_url) -> None:
    # given an order holding 4 of 10 widgets, and a gadget nobody holds
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s)
            f.product(s, "WID-1", on_hand=10)
            f.product(s, "GADGET", on_hand=1)
            number = f.order(s, lines=[("WID-1", 4)]).number
    finally:
        db.dispose()
    # and, before 0005_fulfil, the rows a double shipment left behind
    downgrade(database_url, "0003_i5")
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET on_hand = -10, reserved = -10 "
                                 "WHERE sku = 'WID-1'"))
            conn.execute(sa.text("UPDATE products SET reserved = 3 WHERE sku = 'GADGET'"))
        # when
        upgrade(database_url)
        # then reserved is what the order lines hold, and on hand covers it
        with engine.connect() as conn:
            rows = dict((sku, (on_hand, reserved)) for sku, on_hand, reserved in conn.execute(
                sa.text("SELECT sku, on_hand, reserved FROM products")).all())
            line = conn.execute(sa.text(
                "SELECT p.sku FROM order_lines l JOIN orders o ON o.id = l.order_id "
                "JOIN products p ON p.id = l.product_id WHERE o.number = :n"),
                {"n": number}).scalar()
            cancelled = conn.execute(sa.text("SELECT cancelled_minor FROM orders")).scalar()
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        assert rows == {"WID-1": (4, 4), "GADGET": (1, 0)}
        assert line == "WID-1"  # the lines still point at their product
        assert cancelled == 0
        # and the database refuses stock below zero or promised twice
        for statement in ("UPDATE products SET reserved = -1",
                          "UPDATE products SET reserved = on_hand + 1"):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(sa.text(statement))
        # and back down: no checks, no cancelled value
        downgrade(database_url, "0003_i5")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET reserved = -1 WHERE sku = 'GADGET'"))
            columns = {c["name"] for c in sa.inspect(conn).get_columns("orders")}
        assert "cancelled_minor" not in columns
    finally:
        engine.dispose()
        upgrade(database_url)
