"""Answer processes: where `/o2c` answers are built after the ack (`O2C_ANSWER_PROCESSES`).

Why processes: the server acks every Slack request within milliseconds, but building an answer
(role check, lookups, Block Kit, the POST to `response_url`) costs about twice the CPU of the
ack itself. In threads of the server process, that work competes with the acks for one GIL, so
under load the acks wait behind answers (bench/RESULTS.md). Here answers run in a few worker
processes at a lower CPU priority (`nice`): the operating system runs the acks first, and
answers, which Slack lets us send for 30 minutes, take the CPU that is left.

Only the slash command's payload (a dict) crosses the process boundary; a worker rebuilds its
own dependencies (database engine, Web API client) from the server's settings once. A commit
in a worker that wrote outbox rows wakes the server's outbox worker when the answer is done.
If a worker process dies, the pool is rebuilt and the caller is told that their answer failed;
nothing else is lost (the command changed nothing that was not committed).

With an in-memory SQLite database (tests) or `O2C_ANSWER_PROCESSES=0`, answers run in a
thread pool of the server process instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import Any

from bot.db import sqlite_in_memory
from bot.settings import Settings

log = logging.getLogger("o2c.answers")

# How much lower than the server the answer processes run (a nice(2) increment; 19 is the
# lowest priority). It only matters while every CPU is busy: the server process is bound to one
# CPU by its GIL, so on a machine of its own the answer processes use the other CPUs whatever
# their niceness. When the CPUs are saturated (bench/ack_latency.py runs the load generator and
# a second server on the same two CPUs), the acks go first and the answers wait.
NICENESS = 19
READY_TIMEOUT = 60.0

# -- in the worker process ------------------------------------------------------------------
_worker_deps: Any = None


def _start_worker(settings: Settings, niceness: int, server_pid: int) -> None:
    global _worker_deps
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    threading.Thread(target=_exit_with_server, args=(server_pid,), name="o2c-answers-watch",
                     daemon=True).start()
    if niceness and hasattr(os, "nice"):  # Unix
        os.nice(niceness)
    logging.basicConfig(level=logging.INFO,
                        format="%(levelname)s:     [answers] %(name)s: %(message)s")
    import handlers.commands  # noqa: F401 - registers the subcommands
    from bot.server import build_deps

    _worker_deps = build_deps(settings)


def _exit_with_server(server_pid: int) -> None:
    """A server killed outright (SIGKILL, OOM) cannot stop its pool, and the pool's queue never
    reports it (each worker holds both ends of its pipe): leave when the parent is gone."""
    while os.getppid() == server_pid:
        time.sleep(1)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _answer(command: dict, clock_offset: timedelta = timedelta(0)) -> bool:
    """Answer one slash command; True when it committed outbox rows to deliver. The server's
    clock offset (the sandbox's Time travel) comes along, so both clocks say the same."""
    from handlers.commands import answer_command

    deps = _worker_deps
    deps.clock.offset = clock_offset
    deps.outbox_wakeup.clear()
    answer_command(deps, command)
    return deps.outbox_wakeup.is_set()


# -- in the server process ------------------------------------------------------------------
def usable(settings: Settings) -> bool:
    """Answer processes need a database that other processes can open."""
    return settings.o2c_answer_processes > 0 and not sqlite_in_memory(settings.database_url)


class AnswerProcesses:
    """A pool of answer processes, rebuilt if one of them dies."""

    def __init__(self, settings: Settings, *, on_outbox: Callable[[], None],
                 niceness: int = NICENESS) -> None:
        self.settings = settings
        self.size = settings.o2c_answer_processes
        self.niceness = niceness
        self.on_outbox = on_outbox
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._warming: list[Future] = []

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker,
                                   initargs=(self.settings, self.niceness, os.getpid()))
        # start the processes now, not on the first command
        self._warming = [pool.submit(_ready) for _ in range(self.size)]
        return pool

    def start(self, *, wait: bool = False) -> None:
        """Start the processes; with `wait`, return once they can answer (server start-up)."""
        with self._lock:
            if self._pool is None and not self._closed:
                self._pool = self._new_pool()
            warming = list(self._warming)
        if wait:
            done, pending = futures.wait(warming, timeout=READY_TIMEOUT)
            failed = [f.exception() for f in done if f.exception() is not None]
            if pending or failed:
                log.error("answer processes not ready: %s",
                          failed[0] if failed else f"still starting after {READY_TIMEOUT:.0f} s")

    def submit(self, command: dict, on_failure: Callable[[], None],
               clock_offset: timedelta = timedelta(0)) -> Future:
        """Queue an answer; `on_failure()` runs (in a thread) if its process died."""
        with self._lock:
            if self._closed:
                raise RuntimeError("answer processes are shut down")
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                future = self._pool.submit(_answer, command, clock_offset)
            except BrokenProcessPool:  # a process died since the last answer
                self._replace(self._pool)
                future = self._pool.submit(_answer, command, clock_offset)
            pool = self._pool

        def done(f: Future) -> None:
            error = f.exception()
            if error is None:
                if f.result():
                    self.on_outbox()
                return
            log.error("an answer process failed: %r", error)
            if isinstance(error, BrokenProcessPool):
                with self._lock:
                    if self._pool is pool and not self._closed:
                        self._replace(pool)
            threading.Thread(target=on_failure, name="o2c-answer-failed", daemon=True).start()

        future.add_done_callback(done)
        return future

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        broken.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def pids(self) -> list[int]:
        pool = self._pool
        return sorted((getattr(pool, "_processes", None) or {}).keys()) if pool else []

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)
