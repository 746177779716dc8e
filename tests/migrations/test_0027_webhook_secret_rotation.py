"""Migration 0027_webhook_secret_rotation on a populated database: the subscriptions already
there keep their secret and get no previous one (deliveries keep signing as before); a
rotation's previous secret and its end are stored after it; going down drops only those two
columns.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

import sqlalchemy as sa

from bot.migrate import downgrade, upgrade
from tests.support.migrations import plain_engine, previous_revision

REVISION = "0027_webhook_secret_rotation"
_ADD = sa.text("INSERT INTO webhook_subscriptions (id, url, events, description, secret, "
               "status, created_at) VALUES (7, 'https://erp.example/hooks', "
               "'[\"order.created\"]', 'ERP', 'whsec_b2xkLXNlY3JldC1vZi10aGUtZXJw', "
               "'active', '2026-12-01 09:00:00')")
_ROW = sa.text("SELECT id, url, secret, status FROM webhook_subscriptions ORDER BY id")
KEPT = [(7, "https://erp.example/hooks", "whsec_b2xkLXNlY3JldC1vZi10aGUtZXJw", "active")]


def _columns(conn: sa.Connection) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns("webhook_subscriptions")}


def test_subscriptions_keep_their_secret_and_a_rotation_can_be_stored(database_url) -> None:
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)  # (the database is made at the head)
    with plain_engine(database_url) as engine:
        # given a subscription stored before the revision
        with engine.begin() as conn:
            assert "previous_secret" not in _columns(conn)
            conn.execute(_ADD)
        # when
        upgrade(database_url, REVISION)
        # then it is kept as it was, with no previous secret
        with engine.begin() as conn:
            assert [tuple(r) for r in conn.execute(_ROW)] == KEPT
            assert conn.execute(sa.text(
                "SELECT previous_secret, previous_secret_until FROM webhook_subscriptions"
            )).one() == (None, None)
            # and a rotation is stored
            conn.execute(sa.text(
                "UPDATE webhook_subscriptions SET previous_secret = secret, "
                "secret = 'whsec_bmV3LXNlY3JldC1vZi10aGUtZXJw', "
                "previous_secret_until = '2026-12-08 09:00:00' WHERE id = 7"))
            assert conn.execute(sa.text(
                "SELECT secret, previous_secret FROM webhook_subscriptions")).one() == (
                "whsec_bmV3LXNlY3JldC1vZi10aGUtZXJw", "whsec_b2xkLXNlY3JldC1vZi10aGUtZXJw")
        # and going down drops only the two columns (the current secret stays), and up again
        downgrade(database_url, before)
        with engine.connect() as conn:
            assert not {"previous_secret", "previous_secret_until"} & _columns(conn)
            assert [tuple(r) for r in conn.execute(_ROW)] == [
                (7, "https://erp.example/hooks", "whsec_bmV3LXNlY3JldC1vZi10aGUtZXJw",
                 "active")]
        upgrade(database_url)
        with engine.connect() as conn:
            assert {"previous_secret", "previous_secret_until"} <= _columns(conn)
