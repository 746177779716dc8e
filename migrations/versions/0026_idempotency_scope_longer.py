"""An Idempotency-Key's scope holds any POST path the API accepts

`idempotency_keys.scope` is "POST " and the request's path, whose keys (an order or invoice
number) may be up to 200 characters each (`api.routes.Key`): "POST /api/v1/orders/<200
characters>/lines/1/cancellation" did not fit the 200 characters of the column, and on
PostgreSQL the request failed (500) before it was looked at. Widened to 1,000.

PostgreSQL: widening a varchar is a change of the catalogue only (no rewrite, the primary key's
index is kept). SQLite does not enforce the length; its table is copied (batch) so that its
declared type says the same as the model's. Downgrading narrows it again after deleting the
keys whose scope is longer than 200 characters (the older code could not have stored them;
requests retried with them are then taken as new).

Revision ID: 0026_idempotency_scope_longer
Revises: 0025_kpi_snapshot_in_flight
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_idempotency_scope_longer"
down_revision: str | None = "0025_kpi_snapshot_in_flight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _scope_type(old: int, new: int) -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("scope", existing_type=sa.String(old), type_=sa.String(new),
                           existing_nullable=False)


def upgrade() -> None:
    _scope_type(200, 1000)


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE length(scope) > 200")
    _scope_type(1000, 200)
