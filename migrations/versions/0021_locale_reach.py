"""locale reach: the Slack workspace of the channels the app posts to by id

* `channel_workspaces`: a channel configured by id (the disputes channel, a channel's
  `/o2c channel` setting) and the workspace (and Grid org) it belongs to, recorded from the
  request that configured it. Posts there by jobs go out with that workspace's installation;
  no row: the default installation, as before.

Downgrading drops the table (posts by channel id then use the default installation again).

Revision ID: 0021_locale_reach
Revises: 0020_dunning_catchup
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime)

revision: str = "0021_locale_reach"
down_revision: str | None = "0020_dunning_catchup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channel_workspaces",
        sa.Column("channel_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("team_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("enterprise_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("channel_id"),
    )


def downgrade() -> None:
    op.drop_table("channel_workspaces")
