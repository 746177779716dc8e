"""Migrations: they build exactly the schema the models describe, go down and up again
without loss, and make the audit log append-only in the database itself."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import models  # noqa: F401 - registers every table
from bot.migrate import downgrade, upgrade
from models import AuditEvent
from tests.support import factories as f


def test_models_and_migrations_agree(db) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], f"models differ from migrations; generate a revision: {diff}"


def test_downgrade_to_base_and_up_again(db, database_url) -> None:
    downgrade(database_url, "base")
    with db.engine.connect() as conn:
        assert "orders" not in sa.inspect(conn).get_table_names()
    upgrade(database_url)
    with db.engine.connect() as conn:
        assert "orders" in sa.inspect(conn).get_table_names()


def test_upgrade_keeps_existing_data(db, database_url) -> None:
    # given: data at the latest schema, and a re-run of the upgrade (a deploy)
    with db.transaction() as s:
        f.customer(s)
    # when
    upgrade(database_url)
    # then
    with db.read_session() as s:
        assert s.exec(sa.text("SELECT name FROM customers")).one()[0] == "Globex Corporation"


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory'",
                                       "DELETE FROM audit_log"])
def test_audit_log_is_append_only(db, statement) -> None:
    with db.transaction() as s:
        s.add(AuditEvent(actor="U1", action="test", entity_type="x", entity_id="1"))
    with pytest.raises(sa.exc.DatabaseError), db.transaction() as s:
        s.exec(sa.text(statement))
    with db.read_session() as s:
        assert s.exec(sa.text("SELECT actor FROM audit_log")).one()[0] == "U1"
