"""invoices: drop `sent_at`, a column nothing ever wrote

`invoices.sent_at` was created by 0001 for a feature that records delivery elsewhere (the
outbox row of the invoice e-mail has its own `sent_at`); it has been NULL in every row. Dropped
in place: PostgreSQL and SQLite 3.35+ drop a plain column without rebuilding the table. An
older SQLite keeps the unused column (logged); the application never reads it.

Revision ID: 0010_core
Revises: 0008_economic_dates
Create Date: 2026-12-07
"""
import logging
import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0010_core"
down_revision: str | None = "0008_economic_dates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def _has_sent_at() -> bool:
    return "sent_at" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("invoices")}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        log.warning("SQLite %s cannot drop a column in place: invoices.sent_at stays (unused)",
                    sqlite3.sqlite_version)
        return
    if _has_sent_at():
        bind.exec_driver_sql("ALTER TABLE invoices DROP COLUMN sent_at")


def downgrade() -> None:
    if not _has_sent_at():
        op.add_column("invoices", sa.Column("sent_at", models.base.UTCDateTime(timezone=True),
                                            nullable=True))
