"""Delivery under attack and at real amounts (issue 11): the outbox when Slack answers late,
answers 5xx after posting, or the server is killed (-9) mid-call; e-mails that cannot be sent;
the Slack endpoint while the database is down.

What is measured: duplicate messages seen by the recipients (by the outbox marker each post
carries in its metadata), rows left undelivered, and how long draining takes after the last
crash (one lease, not five minutes)."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient
from sqlmodel import select

from bot.db import Database
from bot.outbox import MARKER, OutboxWorker
from handlers import common
from models import OutboxMessage
from models.base import utcnow
from sandbox.webapi import Fault
from tests.conftest import BOT_TOKEN, start_server, test_settings
from tests.support import factories as f
from tests.support.processes import ServeProcess, o2c_env
from tests.support.slack import text_of
from tests.support.timetravel import frozen_at
from workflows import outbox

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday; time flows from there
frozen_time = frozen_at(NOON, tick=True)

WAIT = 20.0


def worker_for(db, standin, database_url, *, timeout: float = 5.0, **kwargs):
    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token=BOT_TOKEN, base_url=standin.api_url, retry_handlers=[],
                       timeout=timeout)
    return OutboxWorker(db, client, settings, **kwargs)


def queue(db, count: int, users=("USALES01", "UCOLL001")) -> list[int]:
    """`count` messages: DMs to `users` and posts in the AR channel, alternately."""
    ids = []
    with db.transaction() as s:
        for n in range(count):
            if n % 2:
                row = outbox.post_to_user(s, user_id=users[n % len(users)], template="text",
                                          context={"text": f"message {n}"})
            else:
                row = outbox.post_to_channel(s, channel="ar", template="text",
                                             context={"text": f"message {n}"})
            ids.append(row.id)
    return ids


def delivered(api, users=("USALES01", "UCOLL001")) -> Counter:
    """How many messages each outbox row shows as, where its recipients look."""
    seen: Counter = Counter()
    for messages in [api.messages("CAR000001"), *(api.dm_messages(u) for u in users)]:
        for message in messages:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == MARKER:
                seen[meta["event_payload"]["outbox_id"]] += 1
    return seen


def statuses(db) -> Counter:
    with db.read_session() as s:
        return Counter(r.status for r in s.exec(select(OutboxMessage)))


# -- Slack answers late, or 5xx, after it posted ------------------------------------------------
def test_a_post_whose_answer_timed_out_or_failed_after_posting_shows_once(
        db, standin, database_url) -> None:
    api = standin.api
    # given four messages, and a Slack that posts each but answers too late (2 of them) or
    # with a 503 (the other 2)
    ids = queue(db, 4)
    api.inject("chat.postMessage", Fault(delay_after=1.5), Fault(delay_after=1.5),
               Fault(status=503, applied=True), Fault(status=503, applied=True))
    worker = worker_for(db, standin, database_url, timeout=0.5)
    # when the worker sends them (each attempt's outcome unknown), then retries
    worker.run_once()
    assert statuses(db) == {"pending": 4}
    assert dict(delivered(api)) == dict.fromkeys(ids, 1)  # Slack has every one already
    worker.run_once(now=utcnow() + timedelta(minutes=1))
    # then each was found where it was posted, and none was posted again
    assert statuses(db) == {"sent": 4}
    assert dict(delivered(api)) == dict.fromkeys(ids, 1)
    assert len(api.calls_to("chat.postMessage")) == 4
    assert len(api.calls_to("conversations.history")) == 4
    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage)).all()
    assert all(r.result.get("found_after_unknown_outcome") and r.result["ts"] for r in rows)


def test_a_retry_after_slack_did_not_post_posts_once(db, standin, database_url) -> None:
    # given a message whose first attempt failed before Slack posted it (a plain 503)
    [row_id] = queue(db, 1)
    standin.api.inject("chat.postMessage", Fault(status=503))
    worker = worker_for(db, standin, database_url)
    worker.run_once()
    # when it is retried
    worker.run_once(now=utcnow() + timedelta(minutes=1))
    # then it looked, found nothing, and posted it once
    assert dict(delivered(standin.api)) == {row_id: 1}
    assert len(standin.api.calls_to("conversations.history")) == 1


def test_a_row_stranded_by_a_dead_worker_is_found_not_reposted(db, standin,
                                                               database_url) -> None:
    # given a worker that delivered a channel post, then claimed a DM, posted it, and died
    # before recording it
    post_id, row_id = queue(db, 2)
    dead = worker_for(db, standin, database_url, lease=timedelta(seconds=30))
    dead._deliver(dead._claim())
    assert dead._claim() == row_id
    with db.read_session() as s:
        row = s.get(OutboxMessage, row_id)
    dead._send(row, None)  # posted; the process dies here
    # when another worker runs once the claim has expired
    other = worker_for(db, standin, database_url, lease=timedelta(seconds=30))
    assert other.run_once(now=utcnow() + timedelta(seconds=20)) == 0  # still claimed
    other.run_once(now=utcnow() + timedelta(seconds=31))
    # then the DM is marked sent with the message the dead worker posted
    assert statuses(db)["sent"] == 2
    assert delivered(standin.api)[row_id] == 1


def test_without_history_access_the_post_is_sent_again_at_least_once(db, standin,
                                                                     database_url,
                                                                     caplog) -> None:
    # given an install without the history scopes, and a post whose answer timed out
    [row_id] = queue(db, 1)
    standin.api.inject("chat.postMessage", Fault(delay_after=1.0))
    standin.api.inject("conversations.history", Fault(error="missing_scope"))
    worker = worker_for(db, standin, database_url, timeout=0.3)
    worker.run_once()
    worker.run_once(now=utcnow() + timedelta(minutes=1))
    # then it is delivered (twice: said in the log), never stuck
    assert statuses(db) == {"sent": 1}
    assert delivered(standin.api)[row_id] == 2
    assert any("cannot check whether an earlier attempt posted it" in r.getMessage()
               for r in caplog.records)


def test_a_rate_limited_lookup_waits_and_posts_nothing_meanwhile(db, standin,
                                                                 database_url) -> None:
    [row_id] = queue(db, 1)
    standin.api.inject("chat.postMessage", Fault(status=503, applied=True))
    standin.api.inject("conversations.history", Fault(status=429, retry_after=60))
    worker = worker_for(db, standin, database_url)
    now = utcnow()
    worker.run_once(now=now)
    worker.run_once(now=now + timedelta(seconds=30))  # looks: 429, waits 60 s
    assert statuses(db) == {"pending": 1}
    worker.run_once(now=now + timedelta(seconds=60))  # still waiting: nothing sent
    assert len(standin.api.calls_to("chat.postMessage")) == 1
    worker.run_once(now=now + timedelta(seconds=100))
    assert statuses(db) == {"sent": 1}
    assert dict(delivered(standin.api)) == {row_id: 1}


def test_a_failed_post_requeued_after_an_unknown_outcome_shows_once(db, standin,
                                                                     database_url) -> None:
    # given a post Slack made but answered 503, whose look-up on the retry then failed for
    # good (the token was revoked meanwhile): the row failed, its first outcome unknown
    [row_id] = queue(db, 1)
    standin.api.inject("chat.postMessage", Fault(status=503, applied=True))
    standin.api.inject("conversations.history", Fault(error="token_revoked"))
    worker = worker_for(db, standin, database_url)
    now = utcnow()
    worker.run_once(now=now)
    worker.run_once(now=now + timedelta(minutes=1))
    assert statuses(db) == {"failed": 1}
    assert dict(delivered(standin.api)) == {row_id: 1}
    # when an admin re-queues it once the token is fixed
    with db.transaction() as s:
        assert outbox.requeue_failed(s, row_id) == 1
    worker.run_once(now=now + timedelta(minutes=2))
    # then it is found where Slack posted it, and not posted again
    assert statuses(db) == {"sent": 1}
    assert dict(delivered(standin.api)) == {row_id: 1}
    assert len(standin.api.calls_to("chat.postMessage")) == 1


# -- kill -9 while Slack is slow ----------------------------------------------------------------
def test_kill_9_during_delivery_doubles_nothing_and_strands_nothing(database_url, standin,
                                                                    tmp_path) -> None:
    api = standin.api
    db = Database(database_url)
    # given 24 messages, and a Slack that posts each at once but answers 250 ms later
    ids = queue(db, 24)
    api.inject("chat.postMessage", *[Fault(delay_after=0.25) for _ in range(100)])
    env = o2c_env(database_url, standin.api_url, O2C_OUTBOX_LEASE_SECONDS="3")
    # when a server is killed (SIGKILL) four times right after Slack took a post from it
    kills = 0
    for n in range(4):
        server = ServeProcess(env, tmp_path / f"serve{n}.log").start()
        seen = len(api.calls_to("chat.postMessage"))
        api.wait_for(lambda s=seen: len(api.calls_to("chat.postMessage")) > s + 1, WAIT,
                     "a post")
        server.kill()
        kills += 1
    # and a last one delivers what is left
    last = ServeProcess(env, tmp_path / "last.log").start()
    started = time.monotonic()
    try:
        api.wait_for(lambda: statuses(db) == {"sent": 24}, 60, "every row sent")
        drained = time.monotonic() - started
    finally:
        last.stop()
    # then every message shows exactly once, and draining took about one lease
    shown = delivered(api)
    duplicates = sum(n - 1 for n in shown.values())
    print(f"kill -9 x{kills} at 250 ms latency: {duplicates} duplicate(s), "
          f"{len(ids) - len(shown)} missing, drained {drained:.1f} s after the last start")
    assert duplicates == 0 and sorted(shown) == ids
    assert drained < 30, drained
    db.dispose()


# -- e-mails that cannot be sent ----------------------------------------------------------------
@pytest.fixture
def mail_server(database_url, standin, smtp):
    running = start_server(test_settings(database_url, standin.api_url, smtp_url=smtp.url))
    running.worker.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


def test_an_invoice_email_the_server_refuses_is_told_in_the_ar_channel_once(
        mail_server, standin, smtp) -> None:
    import httpx

    from tests.conftest import API_TOKEN

    api = standin.api
    evil = "<!channel> Evil & Co"
    smtp.refuse["ap@evil.example"] = "550 5.1.1 no such mailbox"
    with mail_server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        # (order notices go elsewhere: only the invoice e-mail meets the refusing mailbox)
        f.customer(s, "C-EVIL", evil, billing_email="ap@evil.example", sales_rep="USALES01",
                   notice_email="orders@evil.example")
        f.product(s, "WID-1", price="10.00")
    rest = httpx.Client(base_url=f"{mail_server.base_url}/api/v1",
                        headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)
    created = rest.post("/orders", json={"customer": "C-EVIL", "sales_rep": "USALES01",
                                         "currency": "USD",
                                         "lines": [{"sku": "WID-1", "quantity": 2}]})
    number = created.json()["number"]
    shipped = rest.post("/shipments", json={"order": number, "carrier": "UPS",
                                            "tracking_number": "1Z1",
                                            "shipped_at": NOON.isoformat()})
    assert shipped.status_code == 201, shipped.text
    invoice = rest.get(f"/orders/{number}").json()["invoices"][0]["number"]
    # when the invoice e-mail is refused for good
    notice = api.wait_for(lambda: [m for m in api.messages("CAR000001")
                                   if "could not be sent" in m["text"]] or None, WAIT)
    # then AR is told which invoice, which customer (escaped) and why
    shown = text_of(notice[0])
    assert invoice in shown and "Evil &amp; Co" in shown and "550" in shown
    assert "<!channel>" not in shown
    # and a re-queued e-mail that fails again is not announced twice
    with mail_server.db.transaction() as s:
        assert outbox.requeue_failed(s) == 1
    mail_server.deps.notify_outbox()
    api.wait_for(lambda: statuses(mail_server.db)["failed"] == 1
                 and statuses(mail_server.db)["pending"] == 0, WAIT)
    time.sleep(0.5)
    assert len([m for m in api.messages("CAR000001") if "could not be sent" in m["text"]]) == 1
    assert [m for m in smtp.received() if m["To"] == "ap@evil.example"] == []
    rest.close()


# -- the database goes away ---------------------------------------------------------------------
@contextmanager
def database_outage(db_factory, database_url: str, server) -> object:
    """The server's database stops accepting connections (PostgreSQL: connections refused and
    the open ones cut, as in a restart; SQLite: the file cannot be opened) until the block
    ends."""
    if db_factory.kind == "postgresql":
        name = sa.engine.make_url(database_url).database
        with db_factory.admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"),
                         {"name": name})
        try:
            yield
        finally:
            with db_factory.admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        return
    path = Path(database_url.removeprefix("sqlite:///"))
    server.db.dispose()
    away = [(Path(f"{path}{suffix}"), Path(f"{path}{suffix}.away"))
            for suffix in ("", "-wal", "-shm") if Path(f"{path}{suffix}").exists()]
    for source, target in away:
        os.replace(source, target)
    path.mkdir()  # a directory where the database was: it cannot be opened
    try:
        yield
    finally:
        shutil.rmtree(path)
        for source, target in away:
            os.replace(target, source)
        server.db.dispose()


def test_the_slack_endpoint_answers_clearly_while_the_database_is_down(
        server, slack, standin, db_factory, database_url, caplog, monkeypatch) -> None:
    api = standin.api
    monkeypatch.setattr(common, "_database_down_log", common.Throttle())
    today = NOON.date()
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex", collector="UCOLL001")
        f.invoice(s, "INV-1", "C-GLOBEX", total="100.00", due=today - timedelta(days=10))
    # given a collector with their worklist and an open promise modal
    assert slack.slash("UCOLL001", "worklist").status_code == 200
    account = api.wait_for(lambda: (api.ephemerals("UCOLL001") or [None])[-1], WAIT)
    slack.click("UCOLL001", account, "collections_promise")
    modal = api.wait_for(lambda: (api.views_for("UCOLL001") or [None])[-1], WAIT)
    seen = len(api.responses)
    caplog.clear()
    with database_outage(db_factory, database_url, server):
        # when they type a command, click a button, submit the modal; and an event arrives
        assert slack.slash("UCOLL001", "worklist").status_code == 200
        assert slack.click("UCOLL001", account, "collections_snooze").status_code == 200
        submitted = slack.submit_view("UCOLL001", modal, {
            "promise_amount": {"promise_amount_input": "10.00"},
            "promise_date": {"promise_date_input": today + timedelta(days=2)}})
        event = slack.app_home_opened("UCOLL001")
        answers = api.wait_for(lambda: api.responses[seen:] if len(api.responses) >= seen + 2
                               else None, WAIT, "two answers")
        time.sleep(1.0)  # the outbox worker polls meanwhile
    # then each is told plainly (or Slack retries the event), and the log has one line
    assert all("cannot reach its database" in text_of(a["payload"]) for a in answers)
    assert submitted.status_code == 200
    assert "cannot reach its database" in api.view_errors(modal["id"])["promise_amount"]
    assert event.status_code == 503
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 40] == []
    assert len([r for r in caplog.records if "database unavailable" in r.getMessage()]) == 1
    # and once it is back, the same command works
    seen = len(api.responses)
    assert slack.slash("UCOLL001", "worklist").status_code == 200
    api.wait_for(lambda: any("Globex" in text_of(r["payload"]) for r in api.responses[seen:]),
                 WAIT, "the worklist again")
