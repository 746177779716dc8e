"""revenue recognition and subscription billing (issue 15)

* `products.ssp_minor`: standalone selling price per unit (NULL: the list price).
* `order_lines`: `revenue_type` and `ssp_minor` fixed when the order is entered — for
  existing lines the product's revenue type, and its list price as SSP (the line's own price
  when the product is priced in another currency); `service_start`, `service_end`,
  `billing`, `cancelled_from` (NULL for existing lines: a service without a period is
  recognised when it is delivered, like goods), `renewal_of_line_id` (unique; an id of
  order_lines, without a foreign key so that SQLite can drop it again on a downgrade).
* `invoice_lines.order_line_id`: the obligation a line bills. Existing lines of our own
  shipment invoices get it back from the shipment: `invoice_shipment` wrote one invoice line
  per shipment line, in order-line order, so the n-th invoice line is the shipment's n-th
  line by line number. An ERP's own invoice lines stay NULL.
* `revenue_closes`, `revenue_entries` (append-only, like the audit log: triggers refuse
  UPDATE and DELETE) and `subscription_billings`: new tables.

The two NOT NULL columns are added with a server default (which SQLite allows without a
rebuild), then filled.

Revision ID: 0012_revenue
Revises: 0011_back_office
Create Date: 2026-12-08
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0012_revenue"
down_revision: str | None = "0011_back_office"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("revenue_entries", "revenue_closes")
ORDER_LINE_COLUMNS = ("revenue_type", "ssp_minor", "service_start", "service_end", "billing",
                      "cancelled_from", "renewal_of_line_id")

FILL = [
    "UPDATE order_lines SET revenue_type = COALESCE((SELECT p.revenue_type FROM products p "
    "WHERE p.id = order_lines.product_id), 'goods')",
    "UPDATE order_lines SET ssp_minor = COALESCE((SELECT p.unit_price_minor FROM products p "
    "JOIN orders o ON o.id = order_lines.order_id WHERE p.id = order_lines.product_id "
    "AND p.currency = o.currency), order_lines.unit_price_minor)",
    # the n-th line of a shipment invoice bills the shipment's n-th line by line number
    "UPDATE invoice_lines SET order_line_id = (SELECT ol.id FROM invoices i "
    "JOIN shipment_lines sl ON sl.shipment_id = i.shipment_id "
    "JOIN order_lines ol ON ol.id = sl.order_line_id "
    "WHERE i.id = invoice_lines.invoice_id AND (SELECT count(*) FROM shipment_lines sl2 "
    "JOIN order_lines ol2 ON ol2.id = sl2.order_line_id WHERE sl2.shipment_id = sl.shipment_id "
    "AND ol2.line_no <= ol.line_no) = invoice_lines.line_no) "
    "WHERE invoice_id IN (SELECT id FROM invoices WHERE shipment_id IS NOT NULL)",
]


def _add_order_line_reference() -> None:
    """`invoice_lines.order_line_id` referencing order_lines.id. SQLite cannot add a
    constraint to a table, but takes a REFERENCES clause on a new column with no default."""
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("invoice_lines", sa.Column("order_line_id", sa.Integer(), nullable=True))
        op.create_foreign_key("invoice_lines_order_line_id_fkey", "invoice_lines",
                              "order_lines", ["order_line_id"], ["id"])
    else:
        op.execute(sa.text("ALTER TABLE invoice_lines ADD COLUMN order_line_id INTEGER "
                           "REFERENCES order_lines (id)"))


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only: a closed month never changes';
            END;
            $$ LANGUAGE plpgsql;
        """)
        op.execute(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only();")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
                BEGIN
                    SELECT RAISE(ABORT, '{table} is append-only: a closed month never changes');
                END;
            """)


def upgrade() -> None:
    op.add_column("products", sa.Column("ssp_minor", models.base.BigInt, nullable=True))
    op.add_column("order_lines", sa.Column(
        "revenue_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
        server_default="goods"))
    op.add_column("order_lines", sa.Column("ssp_minor", models.base.BigInt, nullable=False,
                                           server_default="0"))
    op.add_column("order_lines", sa.Column("service_start", sa.Date(), nullable=True))
    op.add_column("order_lines", sa.Column("service_end", sa.Date(), nullable=True))
    op.add_column("order_lines", sa.Column(
        "billing", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.add_column("order_lines", sa.Column("cancelled_from", sa.Date(), nullable=True))
    op.add_column("order_lines", sa.Column("renewal_of_line_id", sa.Integer(), nullable=True))
    _add_order_line_reference()
    op.create_index("ix_order_lines_renewal_of_line_id", "order_lines",
                    ["renewal_of_line_id"], unique=True)
    op.create_index("ix_invoice_lines_order_line_id", "invoice_lines", ["order_line_id"])
    for statement in FILL:
        op.execute(sa.text(statement))

    op.create_table(
        "revenue_closes",
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("recorded_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("summary", models.base.JSONType, nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    op.create_index("ix_revenue_closes_last_day", "revenue_closes", ["last_day"])
    op.create_table(
        "revenue_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("order_line_id", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("revenue_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("recognized_minor", models.base.BigInt, nullable=False),
        sa.Column("invoiced_minor", models.base.BigInt, nullable=False),
        sa.Column("credited_minor", models.base.BigInt, nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_line_id"], ["order_lines.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("period", "order_line_id"),
    )
    op.create_index("ix_revenue_entries_period", "revenue_entries", ["period"])
    op.create_index("ix_revenue_entries_order_line_id", "revenue_entries", ["order_line_id"])
    op.create_table(
        "subscription_billings",
        sa.Column("order_line_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", models.base.BigInt, nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.ForeignKeyConstraint(["order_line_id"], ["order_lines.id"]),
        sa.PrimaryKeyConstraint("order_line_id", "period_start"),
        sa.UniqueConstraint("invoice_id"),
    )
    for table in APPEND_ONLY:
        _append_only(table)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_table("subscription_billings")
    op.drop_index("ix_revenue_entries_order_line_id", table_name="revenue_entries")
    op.drop_index("ix_revenue_entries_period", table_name="revenue_entries")
    op.drop_table("revenue_entries")
    op.drop_index("ix_revenue_closes_last_day", table_name="revenue_closes")
    op.drop_table("revenue_closes")
    op.drop_index("ix_invoice_lines_order_line_id", table_name="invoice_lines")
    op.drop_index("ix_order_lines_renewal_of_line_id", table_name="order_lines")
    if dialect == "postgresql":
        op.drop_constraint("invoice_lines_order_line_id_fkey", "invoice_lines",
                           type_="foreignkey")
        op.drop_column("invoice_lines", "order_line_id")
    else:  # SQLite drops a column with a REFERENCES clause only by a rebuild (nothing
        # references invoice_lines, so it is rebuilt safely with foreign keys on)
        with op.batch_alter_table("invoice_lines", recreate="always") as batch:
            batch.drop_column("order_line_id")
    for column in ORDER_LINE_COLUMNS:
        op.execute(sa.text(f"ALTER TABLE order_lines DROP COLUMN {column}"))
    op.execute(sa.text("ALTER TABLE products DROP COLUMN ssp_minor"))
