"""Shared fixtures: a fresh migrated database per test (SQLite or PostgreSQL, chosen by
`O2C_TEST_DB`), the Slack stand-in, the real server on a free port, a signed-request driver and
an authenticated REST client; for the tests that only read or are refused, one server and
database per module (`reading_server`, `reading_api`), each test checked to change no row.

`make test` runs the suite twice: all of it on SQLite, and on PostgreSQL every test that uses the
database (`pytest_collection_modifyitems` below). With `CI` set, a PostgreSQL that cannot be
reached is an error, never a skip.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
import time_machine
import uvicorn
from hypothesis import settings as hypothesis_settings

from bot.db import Database
from bot.server import create_app
from bot.settings import load_settings
from sandbox.driver import SlackDriver
from sandbox.webapi import SlackWebAPI, StandInServer
from tests.support import timetravel
from tests.support.databases import PostgresFactory, SqliteFactory
from tests.support.examples import examples

DB_KIND = os.environ.get("O2C_TEST_DB", "sqlite")
# property tests without their own number: Hypothesis's 100, or the share a run asks for;
# no deadline: a 200 ms limit per example is a timed test, and fails on a busy CI machine
# (performance targets live in bench/)
hypothesis_settings.register_profile("o2c", max_examples=examples(100), deadline=None)
hypothesis_settings.load_profile("o2c")
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token"
API_TOKEN = "test-api-token-s3cret"
ADMIN = "UADMIN01"


def pytest_report_header(config: pytest.Config) -> str:
    travel = timetravel.session_destination()
    return (f"o2c test database: {DB_KIND}"
            + (f"; travelling to {travel:%Y-%m-%d %H:%M} UTC ({timetravel.TODAY_VAR})"
               if travel else ""))


_session_travel: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    """`O2C_TEST_TODAY=YYYY-MM-DD`: the whole suite (and every process it starts, see
    `tests.support.timetravel`) runs on that day, time flowing."""
    global _session_travel
    config.addinivalue_line("markers", "postgresql_only: a behaviour of several hosts sharing "
                            "a PostgreSQL database (one clock, one queue); not collected in "
                            "the SQLite runs, where one host serves")
    destination = timetravel.session_destination()
    if destination is not None and _session_travel is None:
        _session_travel = time_machine.travel(destination, tick=True)
        _session_travel.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _session_travel
    if _session_travel is not None:
        _session_travel.stop()
        _session_travel = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL run runs the tests that use the database under test (every test whose
    fixtures reach `db_factory`); the others never see it — pure functions, the Slack
    stand-in, the sandbox on its own SQLite demo database, the CLI's files — and run in
    the SQLite runs (three of them in CI). Running them again here only cost CI minutes.
    The SQLite runs leave out the tests marked `postgresql_only` (several hosts)."""
    if DB_KIND != "postgresql":
        several_hosts = [item for item in items if item.get_closest_marker("postgresql_only")]
        if several_hosts:
            config.hook.pytest_deselected(items=several_hosts)
            items[:] = [item for item in items if item not in several_hosts]
        return
    keep, other = [], []
    for item in items:
        (keep if "db_factory" in getattr(item, "fixturenames", ()) else other).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = keep


@pytest.fixture(scope="session")
def db_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if DB_KIND == "sqlite":
        yield SqliteFactory(tmp_path_factory.mktemp("sqlite"))
        return
    if DB_KIND != "postgresql":
        raise pytest.UsageError(f"O2C_TEST_DB must be sqlite or postgresql, not {DB_KIND!r}")
    server = None
    url = os.environ.get("O2C_TEST_PG_URL")
    if not url:
        from tests.support.pg import TempPostgres

        server = TempPostgres()
        url = server.start()
    factory = PostgresFactory(url)
    try:
        yield factory
    finally:
        factory.close()
        if server is not None:
            server.stop()


@pytest.fixture
def database_url(db_factory) -> Iterator[str]:
    url = db_factory.create()
    yield url
    db_factory.drop(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


# The demo company (`o2c seed --demo`) as of this day: seeding runs every workflow and takes
# seconds, so it is seeded once per session and each test that needs it gets a copy.
DEMO_DAY = date(2026, 3, 15)


@pytest.fixture(scope="session")
def demo_company(db_factory) -> Iterator[tuple[str, dict]]:
    """(url, summary) of a database seeded with the demo company as of DEMO_DAY, which no test
    uses directly (PostgreSQL copies only a database nobody is connected to)."""
    from bot.seed import seed_demo

    url = db_factory.create()
    database = Database(url)
    summary = seed_demo(database, today=DEMO_DAY)
    database.dispose()
    yield url, summary
    db_factory.drop(url)


@pytest.fixture
def demo_db(db_factory, demo_company) -> Iterator[Database]:
    """A fresh copy of the demo company, for one test."""
    url = db_factory.clone(demo_company[0])
    database = Database(url)
    yield database
    database.dispose()
    db_factory.drop(url)


@pytest.fixture
def session(db: Database):
    """A write session for workflow unit tests; the test commits when it means to."""
    with db.session() as s:
        yield s


# -- Slack stand-in, server, driver ---------------------------------------------------------------
# Slack's trigger_id lives 3 seconds; the stand-in enforces that (tests/sandbox/test_webapi.py
# proves expiry). Here a functional test is not a timing test: in CI three suites share two
# cores, and a lazy listener that starts a few seconds late must not fail a test about forms
# (how fast the bot answers is bench/'s business: bench/ack_latency.py).
TRIGGER_TTL = 30.0


@pytest.fixture
def standin() -> Iterator[StandInServer]:
    with StandInServer(api=SlackWebAPI(bot_token=BOT_TOKEN, trigger_ttl=TRIGGER_TTL)) as server:
        yield workspace(server)


def workspace(server: StandInServer) -> StandInServer:
    """The stand-in's people and channels, the same for every test."""
    for user_id, name, tz in [(ADMIN, "ada.admin", "Europe/London"),
                              ("USALES01", "sam.sales", "America/New_York"),
                              ("USALES02", "sue.sales", "America/Chicago"),
                              ("UCREDIT1", "carl.credit", "Europe/Berlin"),
                              ("UDISC001", "dana.discount", "Europe/Paris"),
                              ("UCOLL001", "cole.collector", "America/Los_Angeles"),
                              ("UNOBODY1", "nora.nobody", "UTC")]:
        server.api.add_user(user_id, name, real_name=name.replace(".", " ").title(), tz=tz)
    for channel_id, name in [("CAPPROVAL", "approvals"), ("CALERTS01", "alerts"),
                             ("CAR000001", "ar"), ("C0GENERAL", "general")]:
        server.api.add_channel(channel_id, name)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_settings(database_url: str, api_url: str, **overrides: object):
    values = dict(
        slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET,
        slack_api_url=api_url, database_url=database_url, o2c_api_token=API_TOKEN,
        o2c_approvals_channel="CAPPROVAL", o2c_alerts_channel="CALERTS01",
        o2c_ar_channel="CAR000001", o2c_admins=[ADMIN], o2c_scheduler=False,
    )
    values.update(overrides)
    return load_settings(**values)


test_settings.__test__ = False  # a helper, not a test, when imported into test modules


@dataclass
class RunningServer:
    base_url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def deps(self):
        return self.app.state.deps

    @property
    def db(self) -> Database:
        return self.app.state.deps.db

    @property
    def worker(self):
        return self.app.state.runtime.worker

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(settings, *, port: int | None = None,
                 **app_kwargs) -> RunningServer:
    app = create_app(settings, **app_kwargs)
    # The socket is bound here and handed to uvicorn: a port picked now and bound later could
    # be taken meanwhile (by CI's other suites, or as some connection's local port).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return RunningServer(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture
def server_settings(database_url: str, standin: StandInServer):
    return test_settings(database_url, standin.api_url)


@pytest.fixture
def server(server_settings) -> Iterator[RunningServer]:
    running = start_server(server_settings)
    running.worker.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


@pytest.fixture
def slack(server: RunningServer, standin: StandInServer) -> SlackDriver:
    return SlackDriver(f"{server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/api/v1",
                      headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client:
        yield client


# -- one server for a module's tests that only read ------------------------------------------
# Starting the server and copying a migrated database for each test is a third of a SQLite run.
# Tests that only read, or whose input is refused, share one per module: `reading_api` (and
# `reading_server`), on a database the module seeds once through its own module-scoped fixture.
# A test that writes must not use them (it gets `api`/`server`, fresh per test): each test on
# the shared server is checked to leave every table's rows as it found them, so a write — a
# refusal that stored something after all, or a test put here by mistake — fails that test.
@pytest.fixture(scope="module")
def shared_standin() -> Iterator[StandInServer]:
    with StandInServer(api=SlackWebAPI(bot_token=BOT_TOKEN, trigger_ttl=TRIGGER_TTL)) as server:
        yield workspace(server)


@pytest.fixture(scope="module")
def shared_server(db_factory, shared_standin: StandInServer) -> Iterator[RunningServer]:
    url = db_factory.create()
    running = start_server(test_settings(url, shared_standin.api_url))
    running.worker.poll_interval = 0.05
    try:
        yield running
    finally:
        running.stop()
        running.db.dispose()
        db_factory.drop(url)


@pytest.fixture(scope="module")
def shared_api(shared_server: RunningServer) -> Iterator[httpx.Client]:
    """A client of the module's shared server, for its module-scoped fixture to seed with."""
    with httpx.Client(base_url=f"{shared_server.base_url}/api/v1",
                      headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def shared_tables(shared_server: RunningServer):
    """The shared database's tables, as migrated (read once: reflecting is slow)."""
    import sqlalchemy as sa

    tables = sa.MetaData()
    tables.reflect(shared_server.db.engine)
    return tables


def every_row(database: Database, tables) -> dict[str, list[tuple]]:
    """Each table's rows (sorted), to show that a test on the shared server wrote nothing."""
    import sqlalchemy as sa

    with database.engine.connect() as connection:
        return {name: sorted((tuple(row) for row in connection.execute(sa.select(table))),
                             key=repr)
                for name, table in tables.tables.items()}


@pytest.fixture
def reading_server(shared_server: RunningServer, shared_tables) -> Iterator[RunningServer]:
    """The module's shared server, for one test that must leave its database as it was."""
    shared_server.worker.drain()
    before = every_row(shared_server.db, shared_tables)
    yield shared_server
    after = every_row(shared_server.db, shared_tables)
    changed = sorted(name for name in before.keys() | after.keys()
                     if before.get(name) != after.get(name))
    assert not changed, f"a test on the shared (read-only) server wrote to {changed}"


@pytest.fixture
def reading_api(reading_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{reading_server.base_url}/api/v1",
                      headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client:
        yield client


@pytest.fixture
def artifacts_dir() -> Path:
    # one folder per run: CI's runs go side by side and write the same tests' screenshots
    run = DB_KIND + (f"-{os.environ[timetravel.TODAY_VAR]}"
                     if os.environ.get(timetravel.TODAY_VAR) else "")
    path = Path(os.environ.get("O2C_TEST_ARTIFACTS", "test-artifacts")) / run
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def smtp() -> Iterator[object]:
    """A real local SMTP server (aiosmtpd) that records the e-mails it receives."""
    from tests.support.smtp import LocalSmtp

    server = LocalSmtp().start()
    yield server
    server.stop()
