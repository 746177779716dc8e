"""collections: a covering partial index of open invoices for the per-customer aging aggregate

The daily digest aggregates every open invoice per customer (bucket sums, weighted overdue,
oldest due date, disputes). With this index the aggregate reads only the index, in customer
order, without touching the table or sorting (bench/digest.py: 1M open invoices).

Revision ID: 0003_i4 (kept as it was: deployed databases store it)
Revises: 0002
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_i4"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_invoices_open_aging", "invoices",
                    ["customer_id", "due_date", "balance_minor", "disputed"],
                    sqlite_where=sa.text("balance_minor > 0"),
                    postgresql_where=sa.text("balance_minor > 0"))


def downgrade() -> None:
    op.drop_index("ix_invoices_open_aging", table_name="invoices")
