"""the customer in the loop: notice preferences, shipment tracking and delivery, customer links

* `customers`: `notice_email` (where order notices go; NULL: the billing e-mail), `notices`
  ("all" or "essential"), `goods_recognized_at` ("shipment" or "delivery"),
  `monthly_statement`. Existing customers get every notice, revenue at shipment and no
  monthly statement (what they had).
* `shipments`: `status` (existing shipments: "shipped"), `delivered_at`, proof of delivery
  (`pod_signed_by`, `pod_document_url`), `recognize_at_delivery` (existing: false, so no
  recognised revenue moves).
* `shipment_events`: what carriers report, append-only.
* `customer_links`: signed links sent to customers (self-serve page, backorder choice).

Downgrading drops the new tables and columns (events, links and choices are in the audit log).

Revision ID: 0018_customer
Revises: 0017_scale
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime)

revision: str = "0018_customer"
down_revision: str | None = "0017_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.base.UTCDateTime(timezone=True)


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    # plain ADD COLUMN (no batch "move and copy": other tables' foreign keys point at these)
    for column in (
            sa.Column("notice_email", _text(320), nullable=True),
            sa.Column("notices", _text(16), nullable=False, server_default="all"),
            sa.Column("goods_recognized_at", _text(16), nullable=False,
                      server_default="shipment"),
            sa.Column("monthly_statement", sa.Boolean(), nullable=False,
                      server_default=sa.false())):
        op.add_column("customers", column)
    for column in (
            sa.Column("status", _text(24), nullable=False, server_default="shipped"),
            sa.Column("delivered_at", TS, nullable=True),
            sa.Column("pod_signed_by", _text(200), nullable=True),
            sa.Column("pod_document_url", _text(2000), nullable=True),
            sa.Column("recognize_at_delivery", sa.Boolean(), nullable=False,
                      server_default=sa.false())):
        op.add_column("shipments", column)
    op.create_table(
        "shipment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(24), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("location", _text(200), nullable=True),
        sa.Column("note", _text(2000), nullable=True),
        sa.Column("pod_signed_by", _text(200), nullable=True),
        sa.Column("pod_document_url", _text(2000), nullable=True),
        sa.Column("actor", _text(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shipment_events_shipment_id", "shipment_events", ["shipment_id"])
    op.create_table(
        "customer_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("scope", _text(16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("created_by", _text(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", _text(64), nullable=True),
        sa.Column("choice", _text(16), nullable=True),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "scope", name="uq_customer_links_order"),
    )
    op.create_index("ix_customer_links_customer_id", "customer_links", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_links_customer_id", table_name="customer_links")
    op.drop_table("customer_links")
    op.drop_index("ix_shipment_events_shipment_id", table_name="shipment_events")
    op.drop_table("shipment_events")
    # plain DROP COLUMN (SQLite >= 3.35 and PostgreSQL): a batch "move and copy" of customers
    # or shipments would drop a table other tables' foreign keys point at
    for column in ("recognize_at_delivery", "pod_document_url", "pod_signed_by",
                   "delivered_at", "status"):
        op.execute(sa.text(f"ALTER TABLE shipments DROP COLUMN {column}"))
    for column in ("monthly_statement", "goods_recognized_at", "notices", "notice_email"):
        op.execute(sa.text(f"ALTER TABLE customers DROP COLUMN {column}"))
