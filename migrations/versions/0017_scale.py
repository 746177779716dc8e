"""scale: KPI indexes, the KPI snapshot of App Home, the outbox rows' request id

* `ix_invoices_open_currency (currency, issue_date, due_date, balance_minor) WHERE
  balance_minor > 0`: a currency's open invoices bucketed by due date (the aging of the KPIs
  and `/o2c ar`) and its open AR as of a day (CEI) read from the index alone — the only
  index with the currency in front, `ix_invoices_open_amount`, holds neither the due date
  nor the issue date, so every open invoice's row was read.
* `ix_invoices_issued (issue_date, fee_for_invoice_id)`: the sales invoices issued in the
  KPIs' window (invoice accuracy, dispute rate) counted from the index alone; until now every
  invoice was read (no index starts with the issue date).
* `kpi_snapshots`: the latest KPIs of a day, served to admins' App Home instead of
  recomputing them on every opening (`workflows.kpis.snapshot`). Nothing to carry over: the
  first job run or App Home opening fills it.

* `outbox.request_id`: the request whose work queued the row (`bot.observability`), so a
  delivery's log lines can be followed back to the Slack request; NULL for older rows.

All are additions; downgrading drops them.

Revision ID: 0017_scale
Revises: 0016_oauth
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0017_scale"
down_revision: str | None = "0016_oauth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_index("ix_invoices_issued", "invoices", ["issue_date", "fee_for_invoice_id"])
    op.create_index("ix_invoices_open_currency", "invoices",
                    ["currency", "issue_date", "due_date", "balance_minor"],
                    sqlite_where=sa.text("balance_minor > 0"),
                    postgresql_where=sa.text("balance_minor > 0"))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.execute(sa.text(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
        # a database analyzed before has statistics for every other index: without these
        # two's, SQLite's planner prefers the old ones (skip-scans of ix_invoices_sales)
        op.execute("ANALYZE ix_invoices_issued")
        op.execute("ANALYZE ix_invoices_open_currency")
    op.create_table(
        "kpi_snapshots",
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("audit_id", BIG, nullable=False),
        sa.Column("data", models.base.JSONType, nullable=False),
        sa.PrimaryKeyConstraint("as_of"),
    )


def downgrade() -> None:
    op.drop_table("kpi_snapshots")
    op.drop_index("ix_invoices_open_currency", table_name="invoices")
    op.drop_index("ix_invoices_issued", table_name="invoices")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+): rebuilding `outbox` (a batch operation) would
        # break the rows that point at it (dunning notices, chat updates of posted cards)
        op.execute(sa.text("ALTER TABLE outbox DROP COLUMN request_id"))
    else:
        op.drop_column("outbox", "request_id")
