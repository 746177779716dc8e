"""deliveries per workspace: the Slack workspace (and Grid org) each outbox row is for

* `outbox.team_id`, `outbox.enterprise_id`: the installation whose bot token delivers the row
  (OAuth install into several workspaces of one org). NULL, as on every existing row: the
  default installation (the org's, else the newest workspace's), as before.
* `users.team_id`, `users.enterprise_id`: the workspace a user was last seen in, so a DM or an
  App Home for them goes out through that workspace's installation. NULL until seen.

Downgrading drops the columns (existing deliveries fall back to the default installation).

Revision ID: 0019_delivery_team
Revises: 0018_customer
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019_delivery_team"
down_revision: str | None = "0018_customer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("outbox", "users")
COLUMNS = ("team_id", "enterprise_id")


def upgrade() -> None:
    # plain ADD COLUMN (no batch "move and copy": other tables' foreign keys point at these)
    for table in TABLES:
        for column in COLUMNS:
            op.add_column(table, sa.Column(column, sqlmodel.sql.sqltypes.AutoString(length=32),
                                           nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35 and PostgreSQL): a batch copy of `outbox` or `users`
    # would drop a table other tables' foreign keys point at
    for table in TABLES:
        for column in reversed(COLUMNS):
            op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
