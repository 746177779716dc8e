"""Independent reads at once, in one consistent snapshot (PostgreSQL), as `pg_dump -j` does.

`run(session, jobs)` runs each job — a function of a session that only reads — and returns
their results in order. On PostgreSQL with `concurrently`, the caller's transaction exports its
snapshot (`pg_export_snapshot()`) and each job runs on another connection of the engine's pool
in a `REPEATABLE READ READ ONLY` transaction that imports it (`SET TRANSACTION SNAPSHOT`), on a
thread of its own: every job sees exactly the database the caller's transaction saw when it
exported, whatever commits meanwhile. Elsewhere (SQLite, or without `concurrently`) the jobs
run one after another in the caller's session — the same answers.

Only for sessions that have written nothing: an imported snapshot does not see the exporting
transaction's own uncommitted rows. No state is kept between calls (a thread pool per call).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

MAX_CONNECTIONS = 4  # pooled connections one call takes at most, besides the caller's
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")

Job = Callable[[Session], Any]


def exported_snapshot(session: Session) -> str | None:
    """The id of the caller's transaction's snapshot, exported for other connections (None
    when the database is not PostgreSQL)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    snapshot = session.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
    if not _SNAPSHOT_ID.match(snapshot):  # it goes into SQL text below: never anything else
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    return snapshot


def _in_snapshot(engine: sa.Engine, snapshot: str, job: Job) -> Any:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            # first statement of the transaction (the driver's BEGIN carries the level)
            conn.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            with Session(bind=conn) as session:
                return job(session)
        finally:
            conn.rollback()


def run(session: Session, jobs: Sequence[Job], *, concurrently: bool = False,
        snapshot: str | None = None) -> list[Any]:
    """The results of `jobs`, in order (see the module docstring). `snapshot`: one exported
    earlier in this transaction (`exported_snapshot`), for several calls in one snapshot."""
    engine = session.get_bind()
    if (not concurrently or not isinstance(engine, sa.Engine)
            or engine.dialect.name != "postgresql"):
        return [job(session) for job in jobs]
    snapshot = snapshot or exported_snapshot(session)
    with ThreadPoolExecutor(max_workers=min(len(jobs), MAX_CONNECTIONS),
                            thread_name_prefix="snapshot-read") as pool:
        futures = [pool.submit(_in_snapshot, engine, snapshot, job) for job in jobs]
        return [f.result() for f in futures]
