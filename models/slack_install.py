"""The tables of slack_sdk's SQLAlchemy installation and OAuth state stores (OAuth install).

They belong to slack_sdk (`SQLAlchemyInstallationStore`, `SQLAlchemyOAuthStateStore`): built
here with the library's own table builders so `SQLModel.metadata` (Alembic, the schema test)
describes exactly what the stores read and write; migration 0016_oauth creates them — never the
stores' `create_tables()`. Their timestamps are naive UTC because that is how slack_sdk writes
and compares them (`slack_sdk.oauth.sqlalchemy_utils.normalize_datetime_for_db`).
"""

from __future__ import annotations

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlmodel import SQLModel

BOTS = "slack_bots"
INSTALLATIONS = "slack_installations"
OAUTH_STATES = "slack_oauth_states"

slack_bots = SQLAlchemyInstallationStore.build_bots_table(SQLModel.metadata, BOTS)
slack_installations = SQLAlchemyInstallationStore.build_installations_table(
    SQLModel.metadata, INSTALLATIONS)
slack_oauth_states = SQLAlchemyOAuthStateStore.build_oauth_states_table(
    SQLModel.metadata, OAUTH_STATES)
