"""Webhook secret rotation: the replaced secret signs beside the new one for a grace period

`webhook_subscriptions.previous_secret` (the secret `o2c webhooks rotate` replaced, stored as
`secret` is) and `previous_secret_until` (when it stops signing). Both nullable, added as
they are: existing subscriptions have no previous secret and keep signing with theirs, no
backfill, no rewrite. Downgrading drops them (a rotation in its grace period then signs with
the new secret only).

Revision ID: 0027_webhook_secret_rotation
Revises: 0026_idempotency_scope_longer
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0027_webhook_secret_rotation"
down_revision: str | None = "0026_idempotency_scope_longer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("previous_secret",
                                   sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch.add_column(sa.Column("previous_secret_until",
                                   models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("previous_secret_until")
        batch.drop_column("previous_secret")
