"""Migration 0026_idempotency_scope_longer on a populated database: the keys stored before are
kept through going down and up; after it a scope of the longest POST path is stored (on
PostgreSQL the 200 characters were enforced); going down deletes only the keys the older code
could not have stored.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

import sqlalchemy as sa

from bot.migrate import downgrade, upgrade
from tests.support.migrations import plain_engine, previous_revision

REVISION = "0026_idempotency_scope_longer"
SHORT = "POST /api/v1/orders"
LONG = f"POST /api/v1/orders/{'S' * 200}/lines/200/cancellation"
_ADD = sa.text("INSERT INTO idempotency_keys (scope, key, request_hash, response_status, "
               "response_body, created_at) VALUES (:scope, :key, 'h', 201, '{}', "
               "'2026-12-07 09:00:00')")


def _keys(conn: sa.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT scope, key FROM idempotency_keys ORDER BY length(scope), key"))]


def _scope_length(conn: sa.Connection) -> int | None:
    [column] = [c for c in sa.inspect(conn).get_columns("idempotency_keys")
                if c["name"] == "scope"]
    return column["type"].length


def test_keys_stay_and_a_scope_of_the_longest_path_fits(database_url) -> None:
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)  # (the database is made at the head)
    with plain_engine(database_url) as engine:
        # given a key stored before the revision
        with engine.begin() as conn:
            assert _scope_length(conn) == 200
            conn.execute(_ADD, {"scope": SHORT, "key": "k-1"})
        # when
        upgrade(database_url, REVISION)
        # then it is kept, and a scope of 260 characters is stored whole
        with engine.begin() as conn:
            assert _scope_length(conn) == 1000
            assert _keys(conn) == [(SHORT, "k-1")]
            conn.execute(_ADD, {"scope": LONG, "key": "k-2"})
            assert _keys(conn) == [(SHORT, "k-1"), (LONG, "k-2")]
        # and going down keeps what the older code could store, and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert _scope_length(conn) == 200
            assert _keys(conn) == [(SHORT, "k-1")]
        upgrade(database_url)
        with engine.connect() as conn:
            assert _scope_length(conn) == 1000
            assert _keys(conn) == [(SHORT, "k-1")]
