"""Migration 0016_oauth on a populated database: slack_sdk's installation and state store
tables appear (empty), the data already there is untouched, and the stores work on them; the
downgrade drops only them.

The revision before this one is read from Alembic, never written here: the branches'
migrations are chained in the order they are merged."""

from __future__ import annotations

import sqlalchemy as sa
from slack_sdk.oauth.installation_store import Installation

from bot.clock import Clock
from bot.db import Database
from bot.migrate import downgrade, upgrade
from bot.slack_oauth import InstallationStore, StateStore
from tests.support import factories as f
from tests.support.migrations import previous_revision

REVISION = "0016_oauth"
TABLES = {"slack_installations", "slack_bots", "slack_oauth_states", "channel_settings"}


def tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_upgrade_adds_the_store_tables_and_keeps_the_data(db, database_url) -> None:
    # given: a populated database (made at head), taken down to the revision before
    with db.transaction() as s:
        f.customer(s)
    downgrade(database_url, previous_revision(database_url, REVISION))
    assert not TABLES & tables(db)
    # when
    upgrade(database_url, REVISION)
    # then: the tables are there, the data kept, and slack_sdk's stores work on them
    assert tables(db) >= TABLES
    with db.engine.connect() as conn:
        assert "locale" in {c["name"] for c in sa.inspect(conn).get_columns("users")}
    with db.read_session() as s:
        assert s.exec(sa.text("SELECT name FROM customers")).one()[0] == "Globex Corporation"
    store = InstallationStore("1.2", db)
    store.save(Installation(app_id="A1", team_id="T1", user_id="U1", bot_token="xoxb-1",
                            bot_id="B1", bot_user_id="UB1"))
    assert store.find_bot(enterprise_id=None, team_id="T1").bot_token == "xoxb-1"
    states = StateStore(db, Clock())
    state = states.issue()
    assert states.consume(state) and not states.consume(state)


def test_downgrade_drops_only_the_store_tables(db, database_url) -> None:
    # given: users with roles (rows that reference `users`), a customer
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
    # when
    downgrade(database_url, previous_revision(database_url, REVISION))
    # then
    assert not TABLES & tables(db)
    with db.read_session() as s:
        assert s.exec(sa.text("SELECT count(*) FROM customers")).one()[0] == 1
        assert s.exec(sa.text("SELECT role FROM user_roles")).one()[0] == "sales"
    upgrade(database_url)
