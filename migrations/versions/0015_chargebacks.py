"""chargebacks: a dispute remembers the provider's dispute it came from

Issue 16: a card chargeback (Stripe's `charge.dispute.created`) takes the money back and opens
a back-office dispute on the invoice it reopened; when Stripe closes it (won or lost) the
dispute is found again by `disputes.external_id` ("stripe:<dispute id>", several invoices of
one payment share it). Existing disputes came from people and the API: NULL.

Revision ID: 0015_chargebacks
Revises: 0014_cash_learning
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_chargebacks"
down_revision: str | None = "0014_cash_learning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("disputes", sa.Column("external_id", sa.String(length=255), nullable=True))
    op.create_index("ix_disputes_external_id", "disputes", ["external_id"])


def downgrade() -> None:
    op.drop_index("ix_disputes_external_id", table_name="disputes")
    with op.batch_alter_table("disputes") as batch:
        batch.drop_column("external_id")
