"""A pooled connection is pinged before use only when it sat idle for a while (`bot.db.
ping_when_idle`): a connection cut meanwhile (a database restart, a proxy's idle timeout) is
replaced unnoticed, and under load no request pays a round trip for a ping."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from bot.db import normalize_url, ping_when_idle

IDLE = 0.3


@pytest.fixture
def engine(database_url: str):
    engine = sa.create_engine(normalize_url(database_url), pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds=IDLE)
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted
    engine.pings = pings
    yield engine
    engine.dispose()


def used(engine) -> object:
    """Run one query; the raw connection it ran on."""
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        return conn.connection.dbapi_connection


def idle_past_the_threshold() -> None:
    time.sleep(IDLE + 0.1)  # the condition under test is the idle time itself


def test_a_connection_in_steady_use_is_not_pinged(engine) -> None:
    # given a connection just opened and used
    first = used(engine)
    # when it is used again at once, again and again
    again = [used(engine) for _ in range(5)]
    # then it is the same connection, never pinged
    assert all(conn is first for conn in again)
    assert engine.pings == []


def test_a_connection_cut_while_idle_is_replaced_unnoticed(engine) -> None:
    # given a pooled connection that was cut while it sat idle
    cut = used(engine)
    cut.close()
    idle_past_the_threshold()
    # when the next request checks it out, then its query runs on a fresh connection
    fresh = used(engine)
    assert fresh is not cut
    assert engine.pings == [cut]


def test_a_connection_cut_while_busy_fails_once_then_the_pool_recovers(engine) -> None:
    # given a connection cut right after it was used (not idle: not pinged)
    cut = used(engine)
    cut.close()
    # when the next request uses it, then it fails (the API answers 503, Slack "try again")
    with pytest.raises(sa.exc.DBAPIError):
        used(engine)
    # and the one after gets a working connection
    assert used(engine) is not cut
    assert engine.pings == []
