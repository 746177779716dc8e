"""`/o2c` answers built in answer processes (O2C_ANSWER_PROCESSES, bot/answers.py), as `o2c
serve` runs them: signed requests to the real server, answers from another process at the
lowest CPU priority, with role checks, audit, outbox wake-ups and dead processes handled."""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from bot.answers import AnswerProcesses
from models import AuditEvent, OutboxMessage
from tests.conftest import ADMIN, test_settings
from tests.support import factories as f
from tests.support.slack import ask, text_of


@pytest.fixture
def server_settings(database_url: str, standin):  # noqa: ANN001, ANN201
    return test_settings(database_url, standin.api_url, o2c_answer_processes=1)


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def test_lookups_are_answered_by_a_lower_priority_process(server, slack, standin) -> None:  # noqa: ANN001
    # given
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.product(s, "WID-1", price="100.00")
        order = f.order(s, lines=[("WID-1", 3)])
    # when
    answer = ask(slack, standin.api, "USALES01", f"order {order.number}")
    # then the answer is the lookup, built by an answer process at the lowest priority
    assert f"Order {order.number}" in text_of(answer) and "USD 300.00" in text_of(answer)
    pids = server.deps.answer_processes.pids()
    assert len(pids) == 1 and os.getpid() not in pids
    assert niceness(pids[0]) == min(niceness(os.getpid()) + 19, 19)


def test_a_refusal_in_an_answer_process_is_explained_and_audited(server, slack, standin) -> None:  # noqa: ANN001
    # given
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
    # when a collector asks for the admins' outbox view
    answer = ask(slack, standin.api, "UCOLL001", "admin outbox")
    # then they are told why not, and the refusal is in the audit log
    assert "admin role" in text_of(answer)
    with server.db.read_session() as s:
        refused = s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.admin.outbox")).all()
    assert [e.actor for e in refused] == ["UCOLL001"]


def test_a_commit_in_an_answer_process_wakes_the_outbox_worker(server, slack, standin) -> None:  # noqa: ANN001
    # given the outbox worker polls only once a minute: only a wake-up delivers at once
    server.worker.poll_interval = 60
    time.sleep(0.2)  # the worker's current short wait ends
    with server.db.transaction() as s:
        s.add(OutboxMessage(transport="slack", method="chat.postMessage", status="failed",
                            attempts=5, last_error="ratelimited",
                            payload={"channel": "CAR000001", "template": "text",
                                     "context": {"text": "requeued note"}}))
    # when an admin re-queues it (the commit happens in the answer process)
    answer = ask(slack, standin.api, ADMIN, "admin outbox retry all")
    assert "1 message(s) queued again" in text_of(answer)
    # then the server's worker delivers it within seconds, not at its next poll
    standin.api.wait_for(lambda: [c for c in standin.api.calls_to("chat.postMessage")
                                  if "requeued note" in str(c.params)], 5, "the message")


def test_a_killed_answer_process_is_replaced(server, slack, standin) -> None:  # noqa: ANN001
    # given
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
    first = server.deps.answer_processes.pids()
    # when the answer process dies (OOM killer, a crash)
    os.kill(first[0], signal.SIGKILL)
    # then a command sent before the server noticed gets an apology (it may have been running
    # in the dead process: it is not run twice), or its answer; never silence
    answer = text_of(ask(slack, standin.api, "USALES01", "help", timeout=30))
    assert "/o2c order" in answer or "something went wrong on our side while answering" in answer
    # and the next one is answered by a new process
    assert "/o2c order" in text_of(ask(slack, standin.api, "USALES01", "help", timeout=30))
    assert server.deps.answer_processes.pids() not in ([], first)


class KillingSink(BaseHTTPRequestHandler):
    """A response_url that kills the answer process while it waits for this answer."""

    victims: list[int] = []
    posts: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        KillingSink.posts.append(self.rfile.read(int(self.headers["content-length"])))
        for pid in KillingSink.victims:
            os.kill(pid, signal.SIGKILL)
        KillingSink.victims = []
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_whose_process_dies_is_reported_to_the_user(database_url, standin) -> None:  # noqa: ANN001
    # given answer processes and a response_url that kills the process answering it
    sink = ThreadingHTTPServer(("127.0.0.1", 0), KillingSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    woken: list[bool] = []
    processes = AnswerProcesses(test_settings(database_url, standin.api_url,
                                              o2c_answer_processes=1),
                                on_outbox=lambda: woken.append(True))
    failures: list[str] = []
    try:
        processes.start(wait=True)
        KillingSink.victims, KillingSink.posts = processes.pids(), []
        command = {"text": "help", "user_id": "USALES01", "user_name": "rep",
                   "channel_id": "C1", "trigger_id": "1.2",
                   "response_url": f"http://127.0.0.1:{sink.server_port}/response"}
        # when
        died = processes.submit(command, on_failure=lambda: failures.append("told"))
        # then the caller hears that the answer failed (once), and nothing else
        assert died.exception(timeout=30) is not None
        deadline = time.monotonic() + 5
        while not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert failures == ["told"]
        # and the next answer comes from a new process
        again = processes.submit(command, on_failure=lambda: failures.append("again"))
        assert again.result(timeout=30) is False  # answered; wrote no outbox rows
        assert len(KillingSink.posts) == 2 and failures == ["told"] and woken == []
    finally:
        processes.close()
        sink.shutdown()


@pytest.mark.parametrize(("url", "processes"), [
    ("sqlite:///o2c.db", True), ("postgresql://o2c@db/o2c", True), ("sqlite://", False),
    ("sqlite:///:memory:", False), ("sqlite:///file:o2c?mode=memory&uri=true", False)])
def test_answer_processes_only_for_a_database_other_processes_can_open(url, processes) -> None:  # noqa: ANN001
    from bot.answers import usable

    api = "http://127.0.0.1:1/api/"
    assert usable(test_settings(url, api, o2c_answer_processes=2)) is processes
    assert usable(test_settings(url, api, o2c_answer_processes=0)) is False
