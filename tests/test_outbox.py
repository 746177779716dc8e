"""The outbox worker against the stand-in: delivery, updates of earlier posts, retries with
Retry-After, outages that delay but never lose, permanent failures kept visible, claims that
expire, and two workers sharing the queue without sending anything twice."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.cli import main
from bot.outbox import LEASE, MAX_ATTEMPTS, RETRY_FOR, OutboxWorker, make_worker
from bot.server import build_deps
from models import OutboxMessage
from models.base import utcnow
from sandbox.webapi import Fault
from tests.conftest import test_settings
from workflows import outbox
from workflows.outbox import EPHEMERAL_GIVEN_UP


def worker_for(db, standin, database_url, **kwargs):
    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token="xoxb-test-token", base_url=standin.api_url, retry_handlers=[])
    return OutboxWorker(db, client, settings, **kwargs)


def posted_card(db, standin, database_url):
    """A card ("pending") posted to the approvals channel by a worker: (its row, the worker,
    the worker's now)."""
    with db.transaction() as s:
        post = outbox.post_to_channel(s, channel="approvals", template="text",
                                      context={"text": "pending"})
    worker = worker_for(db, standin, database_url)
    now = utcnow()
    worker.run_once(now=now)
    return post, worker, now


def row(db, row_id: int) -> OutboxMessage:
    with db.read_session() as s:
        return s.get(OutboxMessage, row_id)


def test_post_then_update_in_place(db, standin, database_url) -> None:
    # given: a post and an update of it, committed together (update first in id order is
    # impossible, but the worker must still wait for the post)
    with db.transaction() as s:
        post = outbox.post_to_channel(s, channel="approvals", template="text",
                                      context={"text": "first"})
        update = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                       context={"text": "second"})
    worker = worker_for(db, standin, database_url)
    # when
    worker.drain()
    # then
    messages = standin.api.messages("CAPPROVAL")
    assert len(messages) == 1 and messages[0]["text"] == "second"
    assert row(db, update.id).status == "sent"
    assert row(db, post.id).result["ts"] == messages[0]["ts"]


def test_rate_limit_honours_retry_after(db, standin, database_url) -> None:
    # given
    standin.api.inject("chat.postMessage", Fault(status=429, retry_after=30))
    with db.transaction() as s:
        message = outbox.post_to_user(s, user_id="USALES01", template="text",
                                      context={"text": "hello"})
    worker = worker_for(db, standin, database_url)
    # when
    worker.run_once()
    # then: not sent, not due again for ~30 s, and a 429 does not use up an attempt
    after = row(db, message.id)
    assert after.status == "pending" and after.attempts == 0
    assert timedelta(seconds=25) < after.next_attempt_at - utcnow() <= timedelta(seconds=31)
    # when the time has come
    worker.run_once(now=utcnow() + timedelta(seconds=31))
    # then: delivered exactly once
    assert row(db, message.id).status == "sent"
    assert len(standin.api.dm_messages("USALES01")) == 1


def test_permanent_error_is_kept_as_failed_and_can_be_requeued(db, standin, database_url) -> None:
    # given
    with db.transaction() as s:
        message = outbox.post_to_channel(s, channel="CNOPE", template="text",
                                         context={"text": "lost?"})
    worker = worker_for(db, standin, database_url)
    # when
    worker.drain()
    # then
    failed = row(db, message.id)
    assert failed.status == "failed" and "channel_not_found" in failed.last_error
    # when the channel exists and an operator re-queues it
    standin.api.add_channel("CNOPE", "nope")
    with db.transaction() as s:
        assert outbox.requeue_failed(s) == 1
    worker.drain()
    assert row(db, message.id).status == "sent"


def test_stale_claim_is_taken_over(db, standin, database_url) -> None:
    # given: a row claimed by a worker that died before delivering (its claim is stamped
    # by the lease's clock: the database's on PostgreSQL)
    with db.transaction() as s:
        message = outbox.post_to_user(s, user_id="USALES01", template="text",
                                      context={"text": "orphan"})
    assert worker_for(db, standin, database_url)._claim() == message.id
    other = worker_for(db, standin, database_url)
    assert other.run_once(now=utcnow() + LEASE - timedelta(seconds=5)) == 0  # still claimed
    # when the lease is over
    other.run_once(now=utcnow() + LEASE + timedelta(seconds=1))
    # then
    assert row(db, message.id).status == "sent"
    assert len(standin.api.dm_messages("USALES01")) == 1


def test_broken_template_fails_without_blocking_the_queue(db, standin, database_url) -> None:
    with db.transaction() as s:
        bad = outbox.post_to_user(s, user_id="USALES01", template="no-such-template",
                                  context={})
        good = outbox.post_to_user(s, user_id="USALES01", template="text",
                                   context={"text": "fine"})
    worker_for(db, standin, database_url).drain()
    assert row(db, bad.id).status == "failed"
    assert row(db, good.id).status == "sent"


def dm(db, text: str, user: str = "USALES01") -> int:
    with db.transaction() as s:
        return outbox.post_to_user(s, user_id=user, template="text", context={"text": text}).id


def test_two_workers_with_slow_slack_deliver_each_message_once(db, standin, database_url) -> None:
    # given: four DMs, a Slack that takes 1.5 s per call, and a 3 s lease (a batch takes 6 s)
    texts = [f"message {n}" for n in range(4)]
    for text in texts:
        dm(db, text)
    standin.api.inject("chat.postMessage", *[Fault(delay=1.5) for _ in range(8)])
    lease = timedelta(seconds=3)
    first = worker_for(db, standin, database_url, lease=lease)
    second = worker_for(db, standin, database_url, lease=lease)
    # when: the first claims the whole batch; the second polls once the first claim expired
    busy = threading.Thread(target=first.run_once)
    busy.start()
    time.sleep(3.3)
    taken_over = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        taken_over += second.run_once()
        with db.read_session() as s:
            if all(r.status == "sent" for r in s.exec(select(OutboxMessage))):
                break
        time.sleep(0.1)
    busy.join(30)
    # then: the second worker took over what the first had not reached, and nothing twice
    assert taken_over >= 1
    sent = [m["text"] for m in standin.api.dm_messages("USALES01")]
    assert sorted(sent) == texts


def test_rate_limit_pauses_the_method_and_many_429s_never_fail(db, standin, database_url) -> None:
    # given: three DMs and a Slack that rate-limits the first call
    ids = [dm(db, f"hello {n}") for n in range(3)]
    standin.api.inject("chat.postMessage", Fault(status=429, retry_after=30))
    worker = worker_for(db, standin, database_url)
    start = utcnow()
    # when
    worker.run_once(now=start)
    # then: one call was made; the other two waited for Retry-After without calling Slack
    assert len(standin.api.calls_to("chat.postMessage")) == 1
    for row_id in ids:
        waiting = row(db, row_id)
        assert waiting.status == "pending" and waiting.attempts == 0
        assert waiting.next_attempt_at >= start + timedelta(seconds=30)
    # when Slack keeps rate-limiting for far more than MAX_ATTEMPTS rounds
    standin.api.inject("chat.postMessage", *[Fault(status=429, retry_after=60)
                                             for _ in range(MAX_ATTEMPTS * 2)])
    now = start
    for _ in range(MAX_ATTEMPTS * 2 + 1):
        now += timedelta(seconds=61)
        worker.run_once(now=now)
        assert {row(db, row_id).status for row_id in ids} <= {"pending", "sent"}
    worker.run_once(now=now + timedelta(seconds=61))
    # then: everything arrived, once, and the 429s cost no attempt
    assert sorted(m["text"] for m in standin.api.dm_messages("USALES01")) == [
        "hello 0", "hello 1", "hello 2"]
    assert [row(db, row_id).attempts for row_id in ids] == [1, 1, 1]


def test_a_slack_outage_of_hours_delays_but_never_fails(db, standin, database_url) -> None:
    # given: Slack answers 503 to the next 40 calls (hours, with the backoff capped at 5 min)
    message = dm(db, "after the outage")
    standin.api.inject("chat.postMessage", *[Fault(status=503) for _ in range(40)])
    worker = worker_for(db, standin, database_url)
    now = utcnow()
    # when the worker keeps trying whenever the row is due
    for _ in range(40):
        worker.run_once(now=now)
        waiting = row(db, message)
        # then: it is delayed, never failed
        assert waiting.status == "pending" and "503" in waiting.last_error
        assert waiting.next_attempt_at - now <= timedelta(seconds=301)
        now = waiting.next_attempt_at
    assert now - utcnow() > timedelta(hours=2)
    # when Slack is back
    worker.run_once(now=now)
    # then: delivered, once
    assert row(db, message).status == "sent" and row(db, message).attempts == 41
    assert [m["text"] for m in standin.api.dm_messages("USALES01")] == ["after the outage"]


def test_transient_errors_fail_only_after_retrying_for_a_day(db, standin, database_url) -> None:
    # given: a DM queued a day ago that has been retried more than MAX_ATTEMPTS times
    message = dm(db, "too late")
    created = row(db, message).created_at
    standin.api.inject("chat.postMessage", *[Fault(status=500) for _ in range(MAX_ATTEMPTS + 2)])
    worker = worker_for(db, standin, database_url)
    now = created
    for _ in range(MAX_ATTEMPTS):
        worker.run_once(now=now)
        now = row(db, message).next_attempt_at
    assert row(db, message).status == "pending"
    # when it fails again once RETRY_FOR has passed
    worker.run_once(now=created + RETRY_FOR + timedelta(seconds=1))
    # then: it is kept as failed, visible, with the reason
    failed = row(db, message)
    assert failed.status == "failed" and "slack 500" in failed.last_error
    assert failed.attempts == MAX_ATTEMPTS + 1


def test_unknown_slack_error_fails_after_max_attempts(db, standin, database_url) -> None:
    message = dm(db, "odd")
    standin.api.inject("chat.postMessage", *[Fault(error="something_new")
                                             for _ in range(MAX_ATTEMPTS + 5)])
    worker = worker_for(db, standin, database_url)
    now = utcnow()
    for _ in range(MAX_ATTEMPTS + 5):
        worker.run_once(now=now)
        now = row(db, message).next_attempt_at
    failed = row(db, message)
    assert failed.status == "failed" and "something_new" in failed.last_error
    assert len(standin.api.calls_to("chat.postMessage")) == MAX_ATTEMPTS


def test_unexpected_error_while_delivering_fails_the_row(db, standin, database_url, caplog) -> None:
    # given: a row whose payload lacks its channel (a bug elsewhere), then a good one
    with db.transaction() as s:
        broken = OutboxMessage(transport="slack", method="chat.postMessage",
                               payload={"template": "text", "context": {"text": "where?"}})
        s.add(broken)
        s.flush()
        broken_id = broken.id
    good = dm(db, "fine")
    # when
    worker_for(db, standin, database_url).drain()
    # then: failed with the error, logged once, not left 'sending'; the queue went on
    failed = row(db, broken_id)
    assert failed.status == "failed" and "KeyError('channel')" in failed.last_error
    assert failed.claimed_by is None
    assert len([r for r in caplog.records if f"outbox {broken_id}" in r.getMessage()]) == 1
    assert row(db, good).status == "sent"


class DroppingServer:
    """A Web API that reads each request and hangs up without answering; counts requests
    (`paths`: the path of each, e.g. b"/api/chat.postMessage")."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.requests = 0
        self.paths: list[bytes] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.requests += 1
                    self.paths.append(data.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


def test_o2c_run_deliver_uses_the_server_worker_without_sdk_retries(
        db, database_url, monkeypatch, capsys) -> None:
    # given: a queued DM, and a Slack that drops the connection after reading the request
    # (it may have posted the message: a retry inside slack_sdk could post it twice)
    message = dm(db, "only once")
    slack = DroppingServer()
    for name, value in {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test-token",
                        "SLACK_API_URL": slack.url}.items():
        monkeypatch.setenv(name, value)
    try:
        # when
        assert main(["run", "approval-reminders", "--deliver"]) == 0
    finally:
        slack.close()
    # then: one post (the reader's locale was asked for too, once), and the row waits for
    # the worker's own retry
    assert slack.paths.count(b"/api/chat.postMessage") == 1
    assert slack.requests == len(slack.paths) <= 2
    waiting = row(db, message)
    assert waiting.status == "pending" and "network" in waiting.last_error


def test_make_worker_is_the_one_worker_of_serve_and_run(db, standin, database_url) -> None:
    deps = build_deps(test_settings(database_url, standin.api_url), db=db)
    worker = make_worker(deps, poll_interval=0.5)
    assert worker.client.retry_handlers == [] and deps.client.retry_handlers != []
    assert worker.client.base_url == standin.api_url and worker.wakeup is deps.outbox_wakeup
    assert worker.mailer is None and worker.poll_interval == 0.5


def test_a_dunning_email_that_keeps_failing_is_told_in_the_ar_channel_once(
        db, standin, database_url) -> None:
    from bot.outbox import Permanent, Retry

    # given a dunning e-mail and a mail server that refuses it for a day, then for good
    invoice = {"number": "INV-2026-000042", "currency": "USD", "total_minor": 10_000,
               "amount_due_minor": 10_000, "due_date": "2026-11-01", "days_past_due": 8}
    with db.transaction() as s:
        mail = outbox.send_email(s, to="ap@evil.example", template="dunning_firm", context={
            "kind": "firm", "level": 7, "customer_id": 1, "customer_name": "<!here> Evil",
            "invoice": invoice, "days_past_due": 8})
    failures = iter([Retry(1.0, "smtp 451 try later")] * MAX_ATTEMPTS
                    + [Permanent("recipient refused: 550 no such user")] * 2)

    def mailer(payload: dict) -> dict:
        raise next(failures)

    worker = worker_for(db, standin, database_url, mailer=mailer)
    now = utcnow()
    # when it is retried until the worker gives up (after RETRY_FOR), re-queued, fails again
    while row(db, mail.id).status == "pending":
        now = max(now, row(db, mail.id).next_attempt_at) + RETRY_FOR / MAX_ATTEMPTS
        worker.run_once(now=now)
    assert row(db, mail.id).status == "failed"
    with db.transaction() as s:
        outbox.requeue_failed(s, mail.id)
    worker.drain()
    worker.run_once(now=utcnow() + timedelta(minutes=10))
    # then AR was told once: which e-mail, which invoice, which customer (escaped), and why
    [notice] = [m for m in standin.api.messages("CAR000001") if "could not be sent" in m["text"]]
    shown = str(notice["blocks"])
    assert "INV-2026-000042" in shown and "&lt;!here&gt; Evil" in shown
    assert "firm reminder" in notice["text"] and "<!here>" not in shown


def test_an_update_retried_later_never_overwrites_a_newer_one(db, standin, database_url) -> None:
    # given: a posted card, then two updates of it; Slack fails the first update once (503)
    post, worker, now = posted_card(db, standin, database_url)
    with db.transaction() as s:
        older = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                      context={"text": "approved"})
        newer = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                      context={"text": "approved and invoiced"})
    standin.api.inject("chat.update", Fault(status=503))
    # when the worker delivers both, the first after its backoff
    for _ in range(5):
        now += timedelta(seconds=10)
        worker.run_once(now=now)
    # then: the card shows the newer content, and both rows are done
    messages = standin.api.messages("CAPPROVAL")
    assert [m["text"] for m in messages] == ["approved and invoiced"]
    assert (row(db, older.id).status, row(db, newer.id).status) == ("sent", "sent")
    assert row(db, older.id).result["superseded_by"] == newer.id
    assert len(standin.api.calls_to("chat.update")) == 2  # the 503, then the newer one


def test_an_update_waits_while_an_earlier_one_is_in_flight(db, standin, database_url) -> None:
    # given: a posted card and an update of it that another worker is sending right now
    post, worker, now = posted_card(db, standin, database_url)
    with db.transaction() as s:
        older = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                      context={"text": "approved"})
        newer = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                      context={"text": "approved and invoiced"})
    assert worker_for(db, standin, database_url)._claim() == older.id
    # when
    now = utcnow() + timedelta(seconds=1)
    worker.run_once(now=now)
    # then: the newer one waits (no attempt used), so it cannot be overtaken by the older
    waiting = row(db, newer.id)
    assert (waiting.status, waiting.attempts) == ("pending", 0)
    assert standin.api.calls_to("chat.update") == []
    # when the other worker is done with the older one
    with db.transaction() as s:
        done = s.get(OutboxMessage, older.id)
        done.status, done.claimed_by, done.claimed_at = "sent", None, None
        s.add(done)
    worker.run_once(now=now + timedelta(seconds=2))
    # then: the newer content is shown
    assert [m["text"] for m in standin.api.messages("CAPPROVAL")] == ["approved and invoiced"]


def test_retry_after_reads_seconds_dates_and_refuses_garbage() -> None:
    # given the one reader of Retry-After (Slack, outbound webhooks and HubSpot use it)
    from email.utils import format_datetime

    from bot.outbox import retry_after

    now = utcnow()

    def read(value):
        return retry_after(value, now=now, default=30.0, cap=3600.0)

    # then: seconds, within [1 s, the cap]
    assert read("120") == 120.0 and read("0") == 1.0 and read("1.5") == 1.5
    assert read("86400") == 3600.0 and read("1" + "0" * 400) == 3600.0
    # an HTTP-date (RFC 9110), in the future or the past
    assert 119.0 <= read(format_datetime(now + timedelta(seconds=120), usegmt=True)) <= 120.0
    assert read(format_datetime(now - timedelta(days=1), usegmt=True)) == 1.0
    assert read(format_datetime(now + timedelta(days=2), usegmt=True)) == 3600.0
    # nothing usable: the default
    for garbage in (None, "", "soon", "-5", "nan", "inf", "-inf", "Mon, 99 Foo 2026"):
        assert read(garbage) == 30.0, garbage


def test_a_429_with_an_unusable_retry_after_waits_the_default(db, standin, database_url) -> None:
    # given: Slack answers 429 with "Retry-After: nan" (garbage)
    standin.api.inject("chat.postMessage", Fault(status=429, retry_after=float("nan")))
    message = dm(db, "hello")
    worker = worker_for(db, standin, database_url)
    now = utcnow() + timedelta(seconds=1)
    # when
    worker.run_once(now=now)
    # then: the row waits the default 30 s without using an attempt (it is not left claimed)
    waiting = row(db, message)
    assert (waiting.status, waiting.attempts) == ("pending", 0)
    assert timedelta(seconds=30) <= waiting.next_attempt_at - now < timedelta(seconds=40)
    worker.run_once(now=waiting.next_attempt_at)
    assert [m["text"] for m in standin.api.dm_messages("USALES01")] == ["hello"]


def test_an_update_is_sent_while_the_later_one_has_not_gone_out(db, standin, database_url) -> None:
    # given: a posted card, an update of it, and a later update that will never render
    with db.transaction() as s:
        post = outbox.post_to_channel(s, channel="approvals", template="text",
                                      context={"text": "pending"})
        outbox.update_message(s, target_outbox_id=post.id, template="text",
                              context={"text": "approved"})
        broken = outbox.update_message(s, target_outbox_id=post.id, template="no-such-template",
                                       context={})
    # when
    worker_for(db, standin, database_url).drain()
    # then: the card shows the update that could go out; the broken one is kept as failed
    assert [m["text"] for m in standin.api.messages("CAPPROVAL")] == ["approved"]
    assert row(db, broken.id).status == "failed"


def test_slacks_documented_refusals_fail_at_once(db, standin, database_url) -> None:
    # given: DMs Slack refuses for good (chat.postMessage's documented errors: the reader
    # turned the app's Messages tab off, the channel is read-only, ...)
    refusals = ["messages_tab_disabled", "restricted_action_read_only_channel",
                "team_access_not_granted", "metadata_too_large"]
    ids = [dm(db, f"hello {n}") for n in range(len(refusals))]
    standin.api.inject("chat.postMessage", *[Fault(error=e) for e in refusals])
    # when
    worker_for(db, standin, database_url).drain()
    # then: each failed on its first attempt, visibly, with Slack's reason
    failed = [row(db, row_id) for row_id in ids]
    assert [(r.status, r.attempts) for r in failed] == [("failed", 1)] * len(refusals)
    assert [r.last_error for r in failed] == [f"slack error {e}" for e in refusals]


def test_a_rate_limited_integration_sends_nothing_more_with_that_method_meanwhile(
        db, database_url) -> None:
    # given: three queued calls of an integration (HubSpot's deal updates) whose API answers
    # the first with a 429 asking for a minute
    from bot.outbox import RateLimited

    class Crm:
        kind, retry_for = "hubspot", timedelta(days=1)

        def __init__(self) -> None:
            self.calls: list[int] = []

        def backoff(self, attempts: int) -> float:
            return 10.0

        def send(self, row, worker) -> dict:
            self.calls.append(row.id)
            if len(self.calls) == 1:
                raise RateLimited(60.0, "hubspot 429")
            return {"ok": True}

    with db.transaction() as s:
        ids = [outbox._add(s, transport="hubspot", method="deal.update",
                           payload={"deal_id": str(n)}).id for n in range(3)]
    crm = Crm()
    worker = OutboxWorker(db, None, test_settings(database_url, "http://127.0.0.1:9/api/"),
                          transports=[crm])
    now = utcnow() + timedelta(seconds=1)
    # when
    worker.run_once(now=now)
    # then: one call; the others wait out the minute too, without using an attempt
    assert crm.calls == ids[:1]
    assert [(row(db, i).status, row(db, i).attempts) for i in ids] == [("pending", 0)] * 3
    # when the minute has passed
    worker.run_once(now=now + timedelta(seconds=61))
    # then: each is sent, the first twice asked
    assert crm.calls == [ids[0], *ids]
    assert {row(db, i).status for i in ids} == {"sent"}


class AheadWorker(OutboxWorker):
    """A worker on another host whose clock runs two minutes ahead of this one's."""

    def now(self):
        return super().now() + timedelta(minutes=2)


@pytest.mark.postgresql_only  # (SQLite serves one host: its workers share one clock)
def test_workers_whose_clocks_disagree_never_send_one_message_twice(
        db, standin, database_url) -> None:
    # given: a DM whose send takes 2 s, claimed by a worker on this host (30 s lease)
    message = dm(db, "once")
    standin.api.inject("chat.postMessage", Fault(delay=2.0))
    here = worker_for(db, standin, database_url)
    there = AheadWorker(db, here.client, here.settings)
    sending = threading.Thread(target=here.run_once)
    sending.start()
    deadline = time.monotonic() + 10
    while row(db, message).status != "sending" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # it renewed its claim and is in Slack's hands
    # when: the other host looks at the queue meanwhile (by its clock the claim is 2 min old)
    taken = there.run_once()
    sending.join(10)
    # then: the claim was not taken over, and the DM shows once
    assert taken == 0
    assert [m["text"] for m in standin.api.dm_messages("USALES01")] == ["once"]
    assert row(db, message).status == "sent"


def ephemeral(db, text: str, user: str = "USALES01") -> int:
    """A card only `user` sees in #general (as a record number's answer, `workflows.mentions`)."""
    with db.transaction() as s:
        message = OutboxMessage(transport="slack", method="chat.postEphemeral",
                                payload={"channel": "C0GENERAL", "user": user,
                                         "template": "text", "context": {"text": text}})
        s.add(message)
        s.flush()
        return message.id


def test_an_ephemeral_whose_outcome_is_unknown_is_not_shown_twice(db, standin,
                                                                  database_url) -> None:
    # given: two ephemerals Slack shows but answers too late, or with a 503, and a third it
    # refuses (ok: false: nothing shown)
    late, failed, refused = (ephemeral(db, t) for t in ("late", "503", "refused"))
    standin.api.inject("chat.postEphemeral", Fault(delay_after=1.5),
                       Fault(status=503, applied=True), Fault(error="service_unavailable"))
    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token="xoxb-test-token", base_url=standin.api_url, retry_handlers=[],
                       timeout=0.5)
    worker = OutboxWorker(db, client, settings)
    # when the worker sends them, then comes back after the backoff
    worker.run_once()
    worker.run_once(now=utcnow() + timedelta(minutes=1))
    # then: each is seen once; the two of unknown outcome are not sent again (given up,
    # saying why), the refused one is sent again
    shown = sorted(e["text"] for e in standin.api.ephemerals("USALES01"))
    assert shown == ["503", "late", "refused"]
    assert len(standin.api.calls_to("chat.postEphemeral")) == 4
    for row_id in (late, failed):
        given_up = row(db, row_id)
        assert given_up.status == "failed" and given_up.attempts == 1
        assert given_up.last_error.startswith(EPHEMERAL_GIVEN_UP)
    assert row(db, refused).status == "sent"
    # and "re-queue all failed" leaves them out (an admin may still re-queue one by its id)
    with db.transaction() as s:
        assert outbox.requeue_failed(s) == 0


def test_an_ephemeral_stranded_by_a_dead_worker_is_not_shown_again(db, standin,
                                                                   database_url) -> None:
    # given: a worker that claimed an ephemeral, showed it, and died before recording it
    message = ephemeral(db, "once")
    dead = worker_for(db, standin, database_url)
    assert dead._claim() == message
    with db.read_session() as s:
        dead._send(s.get(OutboxMessage, message), None)
    # when another worker takes the row over once the claim has expired
    worker_for(db, standin, database_url).run_once(now=utcnow() + LEASE + timedelta(seconds=1))
    # then: it is not shown again, and the row says why
    assert [e["text"] for e in standin.api.ephemerals("USALES01")] == ["once"]
    stranded = row(db, message)
    assert stranded.status == "failed" and stranded.last_error.startswith(EPHEMERAL_GIVEN_UP)


def test_a_page_link_email_whose_link_was_revoked_meanwhile_is_withdrawn_not_sent(
        db, standin, database_url) -> None:
    # given a page-link e-mail queued for the customer, its link revoked since (by a revoke
    # that committed while a worker held the row, or before a failed row was re-queued)
    import sqlalchemy as sa

    from models import AuditEvent, CustomerLink
    from tests.support import factories as f
    from workflows import customer_links

    now = utcnow()
    with db.transaction() as s:
        f.user(s, "UCOLL01", "collector")
        customer = f.customer(s)
        link, _ = customer_links.send_portal_link(s, customer=customer, actor="UCOLL01",
                                                  now=now)
        mail = s.exec(select(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"customer-page-link:{link.id}")).one()
        s.execute(sa.update(CustomerLink.__table__).where(CustomerLink.id == link.id)
                  .values(revoked_at=now, revoked_by="UCOLL01"))
    sent: list[dict] = []
    worker = worker_for(db, standin, database_url, mailer=lambda p: sent.append(p) or {})
    # when the worker's turn comes (by the clock read now: the row was queued at the real
    # time, which a loaded machine may have moved on by more than a second since `now`)
    worker.run_once(now=utcnow() + timedelta(seconds=1))
    # then nothing is sent: the row is withdrawn with its reason, and audited
    assert sent == []
    assert (row(db, mail.id).status, row(db, mail.id).last_error) == (
        "withdrawn", "withdrawn: its link is revoked")
    with db.read_session() as s:
        [audited] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.link_email_withdrawn")).all()
        assert (audited.entity_id, audited.data["link_id"]) == (str(mail.id), link.id)
