"""dunning catch-up: skipped levels recorded, and an admin's confirmation of a large run

* `dunning_notices.skipped`: a level passed over because a later one was due at once (an
  imported book); recorded so that it is never sent later. Existing notices were sent (false).
* `dunning_confirmations`: one row per dunning day whose run would send more e-mails than
  `O2C_DUNNING_CONFIRM_ABOVE`; nothing is sent that day until an admin confirms it.

Downgrading drops the table and the column (the confirmations are in the audit log).

Revision ID: 0020_dunning_catchup
Revises: 0019_delivery_team
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime)

revision: str = "0020_dunning_catchup"
down_revision: str | None = "0019_delivery_team"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    # plain ADD COLUMN (no batch "move and copy" of a table that may hold millions of rows)
    op.add_column("dunning_notices", sa.Column("skipped", sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    op.create_table(
        "dunning_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("emails", sa.Integer(), nullable=False),
        sa.Column("notices", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("confirmed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("as_of"),
    )


def downgrade() -> None:
    op.drop_table("dunning_confirmations")
    with op.batch_alter_table("dunning_notices") as batch:
        batch.drop_column("skipped")
