"""Another transaction at the same time, made deterministic: run a workflow in a thread while
the test holds a transaction open, and know when it waits for that transaction."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bot.db import Database


def in_thread(work: Callable[[], Any]) -> Callable[[], Any]:
    """Start `work` in a thread; the callable returned joins it and gives its result (or
    raises what it raised)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # (handed to the test's thread)
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(60)
        assert not thread.is_alive(), "the work in the thread did not end"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def at_once(work: Callable[[], Any], times: int) -> list[Any]:
    """`work` in `times` threads let go at the same moment (several processes running the same
    job, several requests): what each gave, in thread order, once all have ended — or the
    first error one raised."""
    start = threading.Barrier(times)

    def together() -> Any:
        start.wait(30)
        return work()

    results = [in_thread(together) for _ in range(times)]
    return [result() for result in results]


def wait_until_blocked(db: Database, seconds: float = 20) -> bool:
    """On PostgreSQL: wait until some connection to this database waits for a lock (True),
    failing after `seconds`. SQLite's waits can't be seen: give the thread a moment (False)."""
    if db.is_sqlite:
        time.sleep(0.5)
        return False
    deadline = time.monotonic() + seconds
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(sa.text(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")).scalar_one():
                return True
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError("nothing waited for the other transaction's lock")


def second_writer(db: Database, held: Session, work: Callable[[Session], Any]
                  ) -> tuple[Any, bool]:
    """Run `work` in a session of its own (committed after it) in a thread while `held`'s
    transaction is open; once the thread waits for it (`wait_until_blocked`), commit `held`.
    Gives what `work` gave, and whether it was seen waiting (always on PostgreSQL)."""

    def run() -> Any:
        with db.session() as s:
            value = work(s)
            s.commit()
            return value

    result = in_thread(run)
    waited = wait_until_blocked(db)
    held.commit()
    return result(), waited


def committed_out_of_order(db: Database, slow: Session, work: Callable[[Session], Any],
                           between: Callable[[], Any]) -> None:
    """A quicker writer's `work` (a transaction of its own) committed while `slow`'s
    transaction, which wrote first, is still open; `between` runs once the quicker one has
    committed, then `slow` commits. On SQLite the quicker writer waits for `slow`
    (`second_writer`): there they commit in order and `between` runs after both."""
    if db.is_postgres:
        with db.transaction() as quick:
            work(quick)
        between()
        slow.commit()
    else:
        second_writer(db, slow, work)
        between()


def side_by_side(db: Database, *steps: tuple[Callable[[Session], Any], Any, str],
                 seconds: float = 2) -> list[Any]:
    """Each step `(work, owner, name)` runs `work` in a transaction of its own (committed
    after it), in a thread of its own. On PostgreSQL each pauses once, just before it calls
    `owner.name`, until every step has reached its pause (or `seconds` passed: one of them
    waits for a lock another holds, as it should), so each still holds what it locked before
    that call when they all go on: the interleaving that ends in a deadlock when two paths
    take the same locks in different orders. SQLite serialises writers: the steps run as
    they come, without pausing. What each gave, or the error it raised, in step order."""
    meet = threading.Barrier(len(steps), timeout=seconds)
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in steps]

    def paused(original: Callable[..., Any]) -> Callable[..., Any]:
        first = threading.local()

        def call(*args: Any, **kwargs: Any) -> Any:
            if db.is_postgres and not getattr(first, "done", False):
                first.done = True
                # broken: another step waits for this one's locks, as it should
                with contextlib.suppress(threading.BrokenBarrierError):
                    meet.wait()
            return original(*args, **kwargs)

        return call

    def run(work: Callable[[Session], Any]) -> Callable[[], Any]:
        def in_transaction() -> Any:
            try:
                with db.transaction() as s:
                    return work(s)
            except Exception as error:
                return error
        return in_thread(in_transaction)

    for owner, name, original in originals:
        setattr(owner, name, paused(original))
    try:
        results = [run(work) for work, _, _ in steps]
        return [result() for result in results]
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
