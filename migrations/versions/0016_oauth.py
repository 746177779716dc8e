"""Slack OAuth install: slack_sdk's SQLAlchemy installation and state store tables

* `slack_installations`, `slack_bots`: what `SQLAlchemyInstallationStore` keeps (one row per
  installation; the latest bot token per workspace or Enterprise Grid org, with its refresh
  token and expiry when token rotation is on);
* `slack_oauth_states`: the `state` values of installs under way (`SQLAlchemyOAuthStateStore`);
* `channel_settings`: how the bot answers record numbers mentioned in a channel (ephemeral,
  in the thread, or off; no row: ephemeral);
* `credit_requests`: credit approvals asked for by a Workflow Builder step, one per step
  execution (decided on the usual back-office approval card);
* `users.locale`: a user's Slack locale, cached for formatting amounts and dates (NULL until
  looked up).

The columns are slack_sdk 3.x's, frozen here (its timestamps are naive UTC, as the library
writes and compares them). Only used with SLACK_CLIENT_ID / SLACK_CLIENT_SECRET; nothing else
changes. Downgrading drops them (the workspace must be installed again), the channel
settings (back to the default) and the cached locales (looked up again).

Revision ID: 0016_oauth
Revises: 0015_chargebacks
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime)

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0016_oauth"
down_revision: str | None = "0015_chargebacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("enterprise_url", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime()),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("user_token", sa.String(200)),
        sa.Column("user_scopes", sa.String(1000)),
        sa.Column("user_refresh_token", sa.String(200)),
        sa.Column("user_token_expires_at", sa.DateTime()),
        sa.Column("incoming_webhook_url", sa.String(200)),
        sa.Column("incoming_webhook_channel", sa.String(200)),
        sa.Column("incoming_webhook_channel_id", sa.String(200)),
        sa.Column("incoming_webhook_configuration_url", sa.String(200)),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("token_type", sa.String(32)),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("slack_installations_idx", "slack_installations",
                    ["client_id", "enterprise_id", "team_id", "user_id", "installed_at"])
    op.create_table(
        "slack_bots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime()),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("slack_bots_idx", "slack_bots",
                    ["client_id", "enterprise_id", "team_id", "installed_at"])
    op.create_table(
        "slack_oauth_states",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(200), nullable=False),
        sa.Column("expire_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "channel_settings",
        sa.Column("channel_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("number_answers", sqlmodel.sql.sqltypes.AutoString(length=16),
                  nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel_id"),
    )
    op.create_table(
        "credit_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("amount_minor", BIG, nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("function_execution_id", sqlmodel.sql.sqltypes.AutoString(length=64),
                  nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("decided_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sqlmodel.sql.sqltypes.AutoString(length=2000),
                  nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("function_execution_id"),
    )
    op.create_index("ix_credit_requests_customer_id", "credit_requests", ["customer_id"])
    op.create_index("ix_credit_requests_status", "credit_requests", ["status"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(length=35),
                                   nullable=True))


def downgrade() -> None:
    # native ALTER TABLE ... DROP COLUMN (SQLite 3.35+): no copy of `users`, whose rows other
    # tables reference
    op.drop_column("users", "locale")
    op.drop_table("credit_requests")
    op.drop_table("channel_settings")
    op.drop_table("slack_oauth_states")
    op.drop_index("slack_bots_idx", table_name="slack_bots")
    op.drop_table("slack_bots")
    op.drop_index("slack_installations_idx", table_name="slack_installations")
    op.drop_table("slack_installations")
