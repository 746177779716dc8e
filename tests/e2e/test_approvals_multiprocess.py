"""Exactly-once across server processes (issue 3, acceptance 2; SPEC §5.2): two `o2c serve`
processes share one database (PostgreSQL with O2C_TEST_DB=postgresql, else a SQLite file)
and the same approval card is clicked concurrently through both."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from models import Approval, AuditEvent, Order, OutboxMessage
from sandbox.driver import FORM, SlackDriver
from tests.conftest import ADMIN, API_TOKEN, BOT_TOKEN, SIGNING_SECRET, free_port
from tests.support import factories as f
from tests.support.slack import prepared_click, text_of
from tests.support.timetravel import child_env

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


class ServerProcess:
    """`python -m bot.cli serve` in a subprocess, its output kept for failure messages."""

    def __init__(self, database_url: str, api_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": api_url,
               "O2C_API_TOKEN": API_TOKEN, "PORT": str(self.port), "O2C_SCHEDULER": "false",
               "O2C_APPROVALS_CHANNEL": "CAPPROVAL", "O2C_ALERTS_CHANNEL": "CALERTS01",
               "O2C_AR_CHANNEL": "CAR000001", "O2C_ADMINS": ADMIN}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"], cwd=ROOT,
            env=child_env(env), stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def start_process(database_url: str, api_url: str) -> ServerProcess:
    """A ready server; a free port taken by someone else between probe and bind (a race on a
    shared machine) is retried with another port, anything else fails with the output."""
    for attempt in range(3):
        server = ServerProcess(database_url, api_url)
        try:
            server.wait_ready()
            return server
        except RuntimeError:
            clash = "address already in use" in server.output().lower()
            server.stop()
            if not clash or attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def two_servers(database_url: str, standin) -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):
            servers.append(start_process(database_url, standin.api_url))
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_concurrent_clicks_through_two_processes_decide_once(two_servers, db,
                                                             standin) -> None:
    api = standin.api
    # given approvers and a new customer's order, in the database both servers share
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        for approver in ("UCREDIT1", "UDISC001", "UCOLL001"):
            f.user(s, approver, "credit_approver")
        f.customer(s, "C-NEW", "Newco", reviewed=False)
        f.product(s, "WID-1")
        number = f.order(s, "C-NEW").number
    posted = api.wait_for(lambda: next((m for m in api.messages("CAPPROVAL")
                                        if number in m["text"]), None), WAIT, "the card")
    drivers = [SlackDriver(f"{srv.url}/slack/events", SIGNING_SECRET, api=api)
               for srv in two_servers]
    clickers = ["UCREDIT1", ADMIN, "UDISC001", "UCOLL001", "UCREDIT1", ADMIN]
    bodies = [prepared_click(drivers[0], user, posted, "approval_approve") for user in clickers]
    # when the clicks arrive at the same moment, alternately at each process
    start = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(i: int) -> None:
        start.wait()
        statuses.append(drivers[i % 2].send(bodies[i], FORM).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert statuses == [200] * len(bodies)
    # and a click is replayed at each process
    for driver in drivers:
        driver.send(bodies[0], FORM, retry_num=1)
    # then every loser (and each replay) was told who decided
    api.wait_for(lambda: len(api.ephemerals()) >= len(bodies) + 1, WAIT, "the explanations")
    with db.read_session() as s:
        decided = s.exec(select(Approval).join(Order, Order.id == Approval.order_id)
                         .where(Order.number == number)).one()
    assert decided.status == "approved" and decided.decided_by in clickers
    assert all(f"<@{decided.decided_by}>" in text_of(e) for e in api.ephemerals())
    # and exactly one decision was recorded, notified and applied
    api.wait_for(lambda: api.calls_to("chat.update"), WAIT, "the card update")
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01") if "request for" in m["text"]],
                 WAIT, "the DM")
    time.sleep(1.5)  # both workers poll every second: give a duplicate the chance to show
    with db.read_session() as s:
        decisions = s.exec(select(AuditEvent).where(AuditEvent.action == "approval.approved"))
        assert [e.actor for e in decisions] == [decided.decided_by]
        approved = s.exec(select(AuditEvent).where(AuditEvent.action == "order.transition",
                                                   AuditEvent.to_state == "approved")).all()
        assert len(approved) == 1
        dms = s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "approval_decided")).all()
        assert len(dms) == 1
        assert s.exec(select(Order.status).where(Order.number == number)).one() == "approved"
    assert len([c for c in api.calls_to("chat.update") if c.params["ts"] == posted["ts"]]) == 1
    assert len([m for m in api.dm_messages("USALES01") if "request for" in m["text"]]) == 1
    assert len(api.ephemerals()) == len(bodies) + 1
