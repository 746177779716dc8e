"""exactly-once Slack interactions: `interaction_receipts`

One row per modal submission (`view:<view id>`) or click (its natural key) that created
something, written in the same transaction as what it created; the primary key turns a replay,
a retry or a concurrent duplicate into a no-op. A new table: nothing to backfill.

Revision ID: 0007_exactly_once
Revises: 0006_money_bigint
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0007_exactly_once"
down_revision: str | None = "0006_money_bigint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interaction_receipts",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("result", models.base.JSONType, nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("interaction_receipts")
