"""fulfilment: stock can never go negative or be over-promised; cancelled order value

* `products`: CHECK reserved >= 0 and CHECK reserved <= on_hand (so on_hand >= 0 too). Rows
  that break them (left behind by concurrent shipments before orders were locked) are repaired
  first: `reserved` is recomputed from what the order lines hold, and a negative `on_hand` is
  raised to what is reserved. Each repair is logged.
* `orders.cancelled_minor`: the value of cancelled quantities (totals keep describing what was
  ordered).

SQLite cannot add a CHECK to a table, so it rebuilds `products`. `order_lines` references it
and foreign keys are on, so the copy is taken aside first, the old table dropped (a deferred
violation for each referencing line) and the new one filled from the copy (each inserted row
resolves its lines' violations) before the transaction commits.

Revision ID: 0005_fulfil (kept as it was: deployed databases store it)
Revises: 0003_i5
Create Date: 2026-11-25
"""
import logging
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0005_fulfil"
down_revision: str | None = "0003_i5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CHECKS = (("ck_products_reserved_not_negative", "reserved >= 0"),
          ("ck_products_reserved_le_on_hand", "reserved <= on_hand"))


def _products(with_checks: bool) -> sa.Table:
    """`products` as 0001 created it (frozen here), with or without the checks."""
    checks = [sa.CheckConstraint(text, name=name) for name, text in CHECKS] if with_checks else []
    return sa.Table(
        "products", sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("unit_price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("cost_minor", sa.Integer(), nullable=True),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("max_discount_bp", sa.Integer(), nullable=True),
        sa.Column("revenue_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("service_months", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_products_sku", "sku", unique=True),
        *checks,
    )


def _rebuild_sqlite_products(with_checks: bool) -> None:
    bind = op.get_bind()
    table = _products(with_checks)
    columns = ", ".join(c.name for c in table.columns)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # switched off again at COMMIT
    bind.exec_driver_sql("CREATE TEMP TABLE _products_copy AS SELECT * FROM products")
    bind.exec_driver_sql("DROP TABLE products")
    table.create(bind)
    bind.exec_driver_sql(f"INSERT INTO products ({columns}) "
                         f"SELECT {columns} FROM _products_copy")
    bind.exec_driver_sql("DROP TABLE _products_copy")


def _repair_stock() -> None:
    """Make every product satisfy the checks before they are added."""
    bind = op.get_bind()
    held = {pid: int(qty) for pid, qty in bind.execute(sa.text(
        "SELECT product_id, SUM(qty_reserved) FROM order_lines WHERE qty_reserved > 0 "
        "GROUP BY product_id")).all()}
    rows = bind.execute(sa.text("SELECT id, sku, on_hand, reserved FROM products")).all()
    for pid, sku, on_hand, reserved in rows:
        fixed_reserved = held.get(pid, 0)
        fixed_on_hand = max(on_hand, fixed_reserved)  # never below what is promised, nor 0
        if (fixed_on_hand, fixed_reserved) == (on_hand, reserved):
            continue
        log.warning("products %s: on_hand %s reserved %s -> on_hand %s reserved %s (reserved "
                    "is what open order lines hold)", sku, on_hand, reserved, fixed_on_hand,
                    fixed_reserved)
        bind.execute(sa.text("UPDATE products SET on_hand = :on_hand, reserved = :reserved "
                             "WHERE id = :id"),
                     {"on_hand": fixed_on_hand, "reserved": fixed_reserved, "id": pid})


def upgrade() -> None:
    op.add_column("orders", sa.Column("cancelled_minor", sa.Integer(), nullable=False,
                                      server_default="0"))
    _repair_stock()
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_products(with_checks=True)
    else:
        for name, text in CHECKS:
            op.create_check_constraint(name, "products", text)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_products(with_checks=False)
    else:
        for name, _ in reversed(CHECKS):
            op.drop_constraint(name, "products", type_="check")
    op.drop_column("orders", "cancelled_minor")
