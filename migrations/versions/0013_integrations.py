"""integrations: outbound webhooks, provider events, pay-now links, refunds, fees, CRM deals

Issue 16.

* `webhook_subscriptions`, `webhook_events`, `webhook_deliveries`: outbound webhooks (the
  outbox delivers them; the deliveries table is the log).
* `provider_events`: inbound Stripe / HubSpot events, once per (provider, event id).
* `payment_links`: the stable "Pay now" link of an invoice and its current checkout session.
* `refunds`, `payment_fees`: money given back on a payment; what a provider kept from one.
* `crm_deals`: the HubSpot deal an order came from.
* `payments.refunded_minor` (0 for existing rows).
* `allocations`: a refund's reversal is a negative allocation, so the check constraint
  `amount_minor > 0` becomes `amount_minor <> 0` (`ck_allocations_nonzero`). PostgreSQL
  swaps the constraint in place (validated against the existing rows, all positive);
  SQLite cannot alter a constraint, so `allocations` is rebuilt from its reflected
  definition as 0008 rebuilds its tables (foreign keys deferred, indexes re-created).

New tables need no backfill; existing data is kept as is.

Revision ID: 0013_integrations
Revises: 0012_revenue
Create Date: 2026-12-08
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0013_integrations"
down_revision: str | None = "0012_revenue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CHECK = ("ck_allocations_positive", "amount_minor > 0")
NEW_CHECK = ("ck_allocations_nonzero", "amount_minor <> 0")


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, models.base.UTCDateTime(timezone=True), nullable=nullable)


def _rebuild_allocations_sqlite(check: tuple[str, str], drop: str) -> None:
    """Re-create `allocations` from its reflected definition with another check constraint."""
    bind = op.get_bind()
    metadata = sa.MetaData()
    old = sa.Table("allocations", metadata, autoload_with=bind)
    metadata.remove(old)
    new = sa.Table("allocations", metadata)
    for column in old.columns:
        new.append_column(sa.Column(column.name, column.type, primary_key=column.primary_key,
                                    nullable=column.nullable))
    for constraint in list(old.constraints):
        if isinstance(constraint, sa.ForeignKeyConstraint):
            new.append_constraint(sa.ForeignKeyConstraint(
                [c.name for c in constraint.columns],
                [element.target_fullname for element in constraint.elements],
                name=constraint.name))
        elif isinstance(constraint, sa.UniqueConstraint):
            new.append_constraint(sa.UniqueConstraint(
                *(c.name for c in constraint.columns), name=constraint.name))
        elif isinstance(constraint, sa.CheckConstraint) and constraint.name != drop:
            new.append_constraint(sa.CheckConstraint(constraint.sqltext, name=constraint.name))
    new.append_constraint(sa.CheckConstraint(check[1], name=check[0]))
    indexes = [(index.name, [c.name for c in index.columns], index.unique)
               for index in old.indexes]
    columns = ", ".join(c.name for c in old.columns)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # switched off again at COMMIT
    bind.exec_driver_sql("CREATE TEMP TABLE _copy_allocations AS SELECT * FROM allocations")
    bind.exec_driver_sql("DROP TABLE allocations")
    new.create(bind)
    bind.exec_driver_sql(f"INSERT INTO allocations ({columns}) "
                         f"SELECT {columns} FROM _copy_allocations")
    bind.exec_driver_sql("DROP TABLE _copy_allocations")
    for name, names, unique in indexes:
        op.create_index(name, "allocations", names, unique=unique)


def _swap_check(new: tuple[str, str], old: tuple[str, str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_allocations_sqlite(new, drop=old[0])
    else:
        op.drop_constraint(old[0], "allocations", type_="check")
        op.create_check_constraint(new[0], "allocations", new[1])


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", _string(2000), nullable=False),
        sa.Column("events", models.base.JSONType, nullable=False),
        sa.Column("description", _string(500), nullable=True),
        sa.Column("secret", _string(100), nullable=False),
        sa.Column("status", _string(16), nullable=False),
        _ts("failing_since"), _ts("disabled_at"),
        sa.Column("disabled_reason", _string(500), nullable=True),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_subscriptions_status", "webhook_subscriptions", ["status"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", _string(40), nullable=False),
        sa.Column("type", _string(64), nullable=False),
        sa.Column("data", models.base.JSONType, nullable=False),
        sa.Column("key", _string(200), nullable=True),
        _ts("occurred_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_webhook_events_type", "webhook_events", ["type"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _ts("attempted_at", nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", _string(500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_events.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_deliveries_subscription", "webhook_deliveries",
                    ["subscription_id", "id"])
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
    op.create_table(
        "provider_events",
        sa.Column("provider", _string(16), nullable=False),
        sa.Column("event_id", _string(255), nullable=False),
        sa.Column("type", _string(100), nullable=False),
        sa.Column("object_id", _string(255), nullable=True),
        sa.Column("status", _string(16), nullable=False),
        sa.Column("detail", _string(500), nullable=True),
        sa.Column("payload", models.base.JSONType, nullable=False),
        _ts("received_at", nullable=False), _ts("processed_at"),
        sa.PrimaryKeyConstraint("provider", "event_id"),
    )
    op.create_index("ix_provider_events_waiting", "provider_events",
                    ["provider", "object_id", "status"])
    op.create_table(
        "payment_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("token", _string(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("amount_minor", models.base.BigInt, nullable=True),
        sa.Column("currency", _string(3), nullable=True),
        sa.Column("session_id", _string(255), nullable=True),
        sa.Column("session_url", _string(2000), nullable=True),
        _ts("expires_at"), _ts("created_at", nullable=False), _ts("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("invoice_id"),
        sa.UniqueConstraint("token"),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("external_id", _string(255), nullable=False),
        sa.Column("amount_minor", models.base.BigInt, nullable=False),
        sa.Column("currency", _string(3), nullable=False),
        sa.Column("from_unapplied_minor", models.base.BigInt, nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("reason", _string(500), nullable=True),
        _ts("created_at", nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_index("ix_refunds_payment_id", "refunds", ["payment_id"])
    op.create_table(
        "payment_fees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("provider", _string(16), nullable=False),
        sa.Column("external_id", _string(255), nullable=False),
        sa.Column("amount_minor", models.base.BigInt, nullable=False),
        sa.Column("currency", _string(3), nullable=False),
        sa.Column("net_minor", models.base.BigInt, nullable=True),
        sa.Column("description", _string(500), nullable=True),
        _ts("created_at", nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_index("ix_payment_fees_payment_id", "payment_fees", ["payment_id"])
    op.create_table(
        "crm_deals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", _string(16), nullable=False),
        sa.Column("deal_id", _string(64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("status", _string(16), nullable=False),
        sa.Column("detail", _string(1000), nullable=True),
        _ts("created_at", nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "deal_id"),
        sa.UniqueConstraint("order_id"),
    )
    op.add_column("payments", sa.Column("refunded_minor", models.base.BigInt, nullable=False,
                                        server_default="0"))
    _swap_check(NEW_CHECK, OLD_CHECK)


def downgrade() -> None:
    # a negative allocation (a refund's reversal) cannot go back under `amount_minor > 0`:
    # the downgrade refuses rather than drop money movements
    _swap_check(OLD_CHECK, NEW_CHECK)
    op.execute(sa.text("ALTER TABLE payments DROP COLUMN refunded_minor"))
    op.drop_table("crm_deals")
    op.drop_index("ix_payment_fees_payment_id", table_name="payment_fees")
    op.drop_table("payment_fees")
    op.drop_index("ix_refunds_payment_id", table_name="refunds")
    op.drop_table("refunds")
    op.drop_table("payment_links")
    op.drop_index("ix_provider_events_waiting", table_name="provider_events")
    op.drop_table("provider_events")
    op.drop_index("ix_webhook_deliveries_event_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_subscription", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_events_type", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_index("ix_webhook_subscriptions_status", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
