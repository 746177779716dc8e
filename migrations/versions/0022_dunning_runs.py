"""dunning runs: each run recorded, its notices tied to it, its summary written once

* `dunning_runs`: one row per dunning run of one process (opened with its first write
  transaction), with the counters its write transactions add to (e-mails, late fees, credit
  holds) and `finished`, set once by whoever writes the run's one AR-channel summary — the
  run itself, or a later run when this one was killed between batches.
* `dunning_notices.run_id`: the run that claimed the notice (NULL for notices sent before).
* `ix_invoices_sales` gains the invoice id `(currency, issue_date, total_minor, id)`: the KPIs'
  AR the day before the window joins the settlements dated later to the invoices issued by
  then from the index alone on PostgreSQL (a past day's allocations: 0.82 s -> 0.24 s at 1M
  invoices, bench/RESULTS.md). Rebuilt in place: a few seconds at 1M invoices, during which
  invoices cannot be written (migrate, then roll the processes).

Downgrading drops the column and the table (the notices stay; the summaries are in the outbox).

Revision ID: 0022_dunning_runs
Revises: 0021_locale_reach
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime)

revision: str = "0022_dunning_runs"
down_revision: str | None = "0021_locale_reach"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dunning_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("finished", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("emails", sa.Integer(), server_default="0", nullable=False),
        sa.Column("late_fees", sa.Integer(), server_default="0", nullable=False),
        sa.Column("credit_holds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("summary_outbox_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dunning_runs_heartbeat_at", "dunning_runs", ["heartbeat_at"])
    # a nullable column: a plain ADD COLUMN (no copy of a table that may hold millions of
    # rows); SQLite takes the reference inline (Alembic cannot add it there afterwards)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE dunning_notices ADD COLUMN run_id INTEGER "
                   "REFERENCES dunning_runs (id)")
    else:
        op.add_column("dunning_notices", sa.Column("run_id", sa.Integer(), nullable=True))
        op.create_foreign_key("dunning_notices_run_id_fkey", "dunning_notices",
                              "dunning_runs", ["run_id"], ["id"])
    op.create_index("ix_dunning_notices_run_id", "dunning_notices", ["run_id"])
    op.drop_index("ix_invoices_sales", table_name="invoices")
    op.create_index("ix_invoices_sales", "invoices",
                    ["currency", "issue_date", "total_minor", "id"])


def downgrade() -> None:
    op.drop_index("ix_invoices_sales", table_name="invoices")
    op.create_index("ix_invoices_sales", "invoices", ["currency", "issue_date", "total_minor"])
    op.drop_index("ix_dunning_notices_run_id", table_name="dunning_notices")
    with op.batch_alter_table("dunning_notices") as batch:
        batch.drop_column("run_id")
    op.drop_index("ix_dunning_runs_heartbeat_at", table_name="dunning_runs")
    op.drop_table("dunning_runs")
