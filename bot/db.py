"""Database engine and sessions for SQLite (default) and PostgreSQL (production).

SQLite needs care to be a correct multi-threaded store:
* WAL journal so readers never block the writer, `foreign_keys` on, a long busy timeout;
* write transactions start with `BEGIN IMMEDIATE`, so two writers queue on the lock instead of
  both reading and then failing with "database is locked" when they try to upgrade; read-only
  sessions (`Database.read_session`) use a deferred BEGIN and run concurrently.

PostgreSQL writes at READ COMMITTED; exactly-once rules are enforced by unique constraints and
conditional updates (`UPDATE ... WHERE status = 'pending'`), which behave the same on both.
Its read sessions are `REPEATABLE READ READ ONLY`: every read of one session sees the same
snapshot, as a SQLite read transaction does — a report's figures (the KPIs' dozen reads, a
statement's lines and totals) are of one moment even while payments commit between them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import QueuePool, StaticPool
from sqlmodel import Session

from workflows import exposure
from workflows.cash_candidates import CustomerNames
from workflows.policy import DEFAULTS_KEY, Policy
from workflows.snapshot_reads import CONNECTIONS_KEY, Connections


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` use psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_in_memory(url: str) -> bool:
    """An SQLite database that lives in one process's memory: `sqlite://`, `:memory:`, or a
    `mode=memory` URI. Each connection of a pool would see its own empty database, and no
    other process can open it."""
    parsed = sa.engine.make_url(url)
    return parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory")


# Seconds to wait for a PostgreSQL connection: an unreachable server is a quick 503, not a
# request hanging until the client gives up.
CONNECT_TIMEOUT = 5
# What a client told "the database is unavailable" should wait before retrying (seconds).
RETRY_AFTER = 5


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_timeout", 10)
    if "connect_timeout" not in sa.engine.make_url(url).query:
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    engine = sa.create_engine(url, **kwargs)
    ping_when_idle(engine)
    return engine


# A pooled PostgreSQL connection idle longer than this is pinged before use (a restart or a
# proxy may have cut it meanwhile); one used more recently is not: under load each request
# would otherwise pay a round trip, and a connection cut while in use is found by the query
# itself — SQLAlchemy then invalidates the whole pool, and the request answers 503.
IDLE_PING_SECONDS = 2.0


def ping_when_idle(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """`pool_pre_ping`, but only for connections idle for a while (SQLAlchemy's pessimistic
    disconnect handling: a checkout listener that raises `DisconnectionError` makes the pool
    retry with a fresh connection)."""
    pool = engine.pool

    @event.listens_for(pool, "connect")
    def connected(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc


def unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (restarting, down, out of
    connections, a lock wait given up): the request may succeed if retried, so callers answer
    503 with Retry-After (API) or one clear line (CLI). Refusals of the data itself (integrity,
    data errors) are not this."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return False


# PostgreSQL's SQLSTATEs for a transaction it rolled back because it lost a race with
# another one: nothing it did was kept, and running it again may succeed at once.
LOST_A_RACE = {"40P01": "deadlock detected", "40001": "serialization failure"}


def lost_a_race(exc: BaseException) -> bool:
    """A deadlock or a serialization failure (psycopg's `DeadlockDetected`,
    `SerializationFailure`): the whole transaction was rolled back and may be run again."""
    return (isinstance(exc, sa.exc.OperationalError)
            and getattr(exc.orig, "sqlstate", None) in LOST_A_RACE)


def describe(url: str) -> str:
    """The database URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the configured database"


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    memory = sqlite_in_memory(url)
    if memory:
        kwargs.setdefault("poolclass", StaticPool)
    else:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


# The part of a pool that reads at once (`workflows.snapshot_reads`: the KPIs on several
# connections) may hold together; the rest is left to requests, one connection each.
SNAPSHOT_SHARE = 3  # a third


def spare_connections(engine: Engine) -> int:
    """How many of the engine's pooled connections reads at once may take together."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):  # (one shared connection, or none kept)
        return 0
    overflow = pool._max_overflow  # (SQLAlchemy has no public reader; -1: no limit)
    return (pool.size() + (overflow if overflow >= 0 else pool.size())) // SNAPSHOT_SHARE


class Database:
    """The engine plus session factories; one per process, built from settings.

    It also owns what the workflows may cache about this database, handed to them explicitly:
    `customer_names`, the customer-name directory of cash application, kept fresh by an
    `after_flush` listener registered here on this database's sessions (no module state, no
    listener registered as an import side effect). Its `before_commit` listener refreshes the
    credit-approval cards of the customers whose exposure the transaction moved
    (`workflows.exposure`).

    `policy` is the policy of the settings (`Settings.policy()`); every session carries it in
    its `info`, where `workflows.policy.current` finds it (without it: `Policy`'s defaults).
    So does the share of the pool that reads at once may take (`workflows.snapshot_reads`)."""

    def __init__(self, url: str, *, policy: Policy | None = None, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self._info = {DEFAULTS_KEY: policy} if policy is not None else {}
        self.engine = make_engine(self.url, **engine_kwargs)
        self._info[CONNECTIONS_KEY] = Connections(spare_connections(self.engine))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._read_engine = (
            self.engine.execution_options(sqlite_begin="DEFERRED") if self.is_sqlite
            else self.engine.execution_options(isolation_level="REPEATABLE READ",
                                               postgresql_readonly=True)
            if self.is_postgres else self.engine
        )
        self.customer_names = CustomerNames()
        self._sessions = sessionmaker(self.engine, class_=Session, expire_on_commit=False,
                                      info=self._info)
        self._read_sessions = sessionmaker(self._read_engine, class_=Session,
                                           expire_on_commit=False, info=self._info)
        event.listen(self._sessions, "after_flush", self.customer_names.on_flush)
        # credit cards still waiting show the exposure a transaction moved, as it commits
        event.listen(self._sessions, "before_commit", exposure.refresh)

    def session(self) -> Session:
        """A session for a state change; commit once at the end of the transition."""
        return self._sessions()

    def read_session(self) -> Session:
        """A session for lookups, each of its transactions one snapshot of the database; never
        write or commit in it (PostgreSQL refuses writes there)."""
        return self._read_sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """`with db.transaction() as session:` commits on success, rolls back on error."""
        with self.session() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
