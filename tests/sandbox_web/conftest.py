"""Fixtures for the browser sandbox: the real server with `O2C_SANDBOX` on, serving the demo
company (seeded before start, like `o2c demo`), test-only bot listeners, and a test job.

The sandbox only runs on an SQLite database made by `o2c demo` (`bot.demo.fresh_database`), so
these fixtures use one whichever database (`O2C_TEST_DB`) the rest of the suite runs on."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot import jobs
from bot.clock import Clock
from bot.db import Database
from bot.demo import fresh_database
from handlers.commands import SUBCOMMANDS, Subcommand
from tests.conftest import TRIGGER_TTL, free_port, start_server
from tests.support import demo_seed
from tests.support.sandbox_web import (
    FORM_CALLBACK,
    PING_JOB,
    TEST_BUTTON,
    Sandbox,
    clicked,
    customer_options,
    open_form,
    ping,
    sandbox_settings,
    submit_form,
)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-demo")


@pytest.fixture(scope="session")
def demo_template(demo_dir: Path) -> str:
    """The demo company seeded once per session in a database made like `o2c demo` makes it;
    each test gets a copy (seeding takes seconds, copying milliseconds)."""
    url = fresh_database(demo_dir / "template.db")
    db = Database(url)
    demo_seed.seed(db, Clock().business_today())
    db.dispose()
    return url


@pytest.fixture
def demo_database_url(demo_dir: Path, demo_template: str) -> Iterator[str]:
    path = demo_dir / f"t_{uuid.uuid4().hex[:10]}.db"
    shutil.copyfile(demo_template.removeprefix("sqlite:///"), path)
    yield f"sqlite:///{path}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def sandbox(demo_database_url: str) -> Iterator[Sandbox]:
    database_url = demo_database_url
    port = free_port()
    running = start_server(sandbox_settings(database_url, port), port=port)
    running.worker.poll_interval = 0.05
    running.app.state.sandbox.api.trigger_ttl = TRIGGER_TTL  # a test, not a timing (conftest)
    client = httpx.Client(base_url=f"{running.base_url}/sandbox/api/", timeout=30)
    try:
        yield Sandbox(running, client)
    finally:
        client.close()
        running.stop()
        running.db.dispose()


@pytest.fixture
def test_listeners(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """`/o2c sandbox-form` opens the test form; its customer select loads options; a button
    handler edits its message with chat.update."""
    monkeypatch.setitem(SUBCOMMANDS, "sandbox-form", Subcommand(
        "sandbox-form", "/o2c sandbox-form", "test form", open_form))
    bolt = sandbox.server.app.state.runtime.bolt
    bolt.options("pick")(customer_options)
    bolt.view(FORM_CALLBACK)(submit_form)
    bolt.action(TEST_BUTTON)(clicked)
    return sandbox


@pytest.fixture
def ping_job(monkeypatch: pytest.MonkeyPatch) -> str:
    """A job that DMs the collector, standing in for the digest (registered like any job)."""
    monkeypatch.setitem(jobs.JOBS, PING_JOB, jobs.Job(PING_JOB, ping, None,
                                                      "DM the collector (test job)"))
    return PING_JOB
