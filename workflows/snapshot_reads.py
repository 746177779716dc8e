"""Independent reads at once, in one consistent snapshot (PostgreSQL), as `pg_dump -j` does.

`run(session, jobs)` runs each job — a function of a session that only reads — and returns
their results in order. On PostgreSQL with `concurrently`, the caller's transaction exports its
snapshot (`pg_export_snapshot()`) and each job runs on another connection of the engine's pool
in a `REPEATABLE READ READ ONLY` transaction that imports it (`SET TRANSACTION SNAPSHOT`), on a
thread of its own: every job sees exactly the database the caller's transaction saw when it
exported, whatever commits meanwhile. Elsewhere (SQLite, or without `concurrently`) the jobs
run one after another in the caller's session — the same answers from a read session
(`bot.db.Database.read_session`: one snapshot, on PostgreSQL too).

Only for sessions that have written nothing: an imported snapshot does not see the exporting
transaction's own uncommitted rows. No state is kept between calls (a thread pool per call).

The other connections are a shortcut, never a need: each call takes them only as far as the
database's `Connections` (owned by `bot.db.Database`, in every session's `info`) has some to
spare, without waiting, and runs its jobs one after another in the caller's session when it
gets fewer than two. Taking them unbounded, 30 requests at once held the 30 connections of a
pool while their jobs waited for more: every one failed after the pool's timeout, and so did
everything else the process served meanwhile.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from workflows import policy

MAX_CONNECTIONS = 4  # pooled connections one call takes at most, besides the caller's
CONNECTIONS_KEY = "o2c.snapshot_connections"  # `Session.info`: the database's `Connections`
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")

Job = Callable[[Session], Any]


class Connections:
    """How many pooled connections the calls of one database may take at once, together
    (`bot.db.Database` keeps one, sized to a part of its pool, for every session)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._free = threading.BoundedSemaphore(self.limit) if self.limit else None

    @contextmanager
    def taken(self, wanted: int) -> Iterator[int]:
        """Up to `wanted` of them, as many as are free now (never waiting), given back after."""
        got = 0
        try:
            while self._free is not None and got < wanted and self._free.acquire(blocking=False):
                got += 1
            yield got
        finally:
            for _ in range(got):
                self._free.release()


def exported_snapshot(session: Session) -> str | None:
    """The id of the caller's transaction's snapshot, exported for other connections (None
    when the database is not PostgreSQL)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    snapshot = session.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
    if not _SNAPSHOT_ID.match(snapshot):  # it goes into SQL text below: never anything else
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    return snapshot


def _in_snapshot(engine: sa.Engine, snapshot: str, job: Job, info: dict) -> Any:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            # first statement of the transaction (the driver's BEGIN carries the level)
            conn.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            with Session(bind=conn, info=info) as session:
                return job(session)
        finally:
            conn.rollback()


def run(session: Session, jobs: Sequence[Job], *, concurrently: bool = False,
        snapshot: str | None = None) -> list[Any]:
    """The results of `jobs`, in order (see the module docstring). `snapshot`: one exported
    earlier in this transaction (`exported_snapshot`), for several calls in one snapshot."""
    engine = session.get_bind()
    connections = session.info.get(CONNECTIONS_KEY)
    if (not concurrently or not isinstance(engine, sa.Engine) or connections is None
            or engine.dialect.name != "postgresql"):
        return [job(session) for job in jobs]
    with connections.taken(min(len(jobs), MAX_CONNECTIONS)) as workers:
        if workers < 2:  # (none to spare: the caller's own connection does it all)
            return [job(session) for job in jobs]
        snapshot = snapshot or exported_snapshot(session)
        # the caller's policy defaults (the settings: business time zone, home currency)
        info = {k: session.info[k] for k in (policy.DEFAULTS_KEY,) if k in session.info}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-read") as pool:
            futures = [pool.submit(_in_snapshot, engine, snapshot, job, info) for job in jobs]
            return [f.result() for f in futures]
