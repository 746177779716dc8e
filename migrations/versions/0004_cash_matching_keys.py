"""cash application: indexed invoice-number key and open-amount index for the matching engine

Revision ID: 0003_i5 (kept as it was: deployed databases store it; the fourth migration)
Revises: 0003_i4
Create Date: 2026-11-24
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_i5"
down_revision: str | None = "0003_i4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(number: str) -> str:
    # Same rule as models.invoices.invoice_number_key, frozen here so the migration never
    # changes meaning if the model's function evolves.
    return "".join(ch for ch in number if ch in "123456789")[:64]


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number_key", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_invoices_number_key", ["number_key"], unique=False)
        batch_op.create_index("ix_invoices_open_amount", ["currency", "balance_minor"],
                              unique=False)
    bind = op.get_bind()
    invoices = sa.table("invoices", sa.column("id", sa.Integer),
                        sa.column("number", sa.String), sa.column("number_key", sa.String))
    rows = bind.execute(sa.select(invoices.c.id, invoices.c.number)).all()
    for row_id, number in rows:
        bind.execute(sa.update(invoices).where(invoices.c.id == row_id)
                     .values(number_key=_key(number)))


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_open_amount")
        batch_op.drop_index("ix_invoices_number_key")
        batch_op.drop_column("number_key")
