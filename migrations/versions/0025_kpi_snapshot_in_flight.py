"""KPI snapshots remember the writers in flight when their books marker was read

`kpi_snapshots.in_flight` (PostgreSQL): `pg_current_snapshot()` as the marker (the last audit
event's id) was read. Audit ids are drawn when a row is inserted, not when its transaction
commits: a transaction that drew a lower id and commits after another's higher one leaves the
marker where it was, and the snapshot looked fresh without its change. A snapshot is now fresh
only while none of the writers in flight then has committed since (`workflows.kpis.is_fresh`).
NULL (SQLite, whose writers commit one at a time in id order; and every snapshot stored before
this revision): on PostgreSQL such a snapshot is computed again once.

A nullable column: a plain ADD COLUMN, no rewrite. Downgrading drops it.

Revision ID: 0025_kpi_snapshot_in_flight
Revises: 0024_kpi_rollups_by_statement
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_kpi_snapshot_in_flight"
down_revision: str | None = "0024_kpi_rollups_by_statement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("kpi_snapshots", sa.Column("in_flight", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kpi_snapshots") as batch:  # (SQLite copies the table)
        batch.drop_column("in_flight")
