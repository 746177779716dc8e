"""The outbox worker against the stand-in: delivery, updates of earlier posts, retries with
Retry-After, permanent failures kept visible, claims that expire."""

from __future__ import annotations

from datetime import timedelta

from slack_sdk import WebClient

from bot.outbox import LEASE, OutboxWorker
from models import OutboxMessage
from models.base import utcnow
from sandbox.webapi import Fault
from tests.conftest import test_settings
from workflows import outbox


def make_worker(db, standin, database_url):  # noqa: ANN001, ANN201
    settings = test_settings(database_url, standin.api_url)
    client = WebClient(token="xoxb-test-token", base_url=standin.api_url, retry_handlers=[])
    return OutboxWorker(db, client, settings)


def row(db, row_id: int) -> OutboxMessage:  # noqa: ANN001
    with db.read_session() as s:
        return s.get(OutboxMessage, row_id)


def test_post_then_update_in_place(db, standin, database_url) -> None:  # noqa: ANN001
    # given: a post and an update of it, committed together (update first in id order is
    # impossible, but the worker must still wait for the post)
    with db.transaction() as s:
        post = outbox.post_to_channel(s, channel="approvals", template="text",
                                      context={"text": "first"})
        update = outbox.update_message(s, target_outbox_id=post.id, template="text",
                                       context={"text": "second"})
    worker = make_worker(db, standin, database_url)
    # when
    worker.drain()
    # then
    messages = standin.api.messages("CAPPROVAL")
    assert len(messages) == 1 and messages[0]["text"] == "second"
    assert row(db, update.id).status == "sent"
    assert row(db, post.id).result["ts"] == messages[0]["ts"]


def test_rate_limit_honours_retry_after(db, standin, database_url) -> None:  # noqa: ANN001
    # given
    standin.api.inject("chat.postMessage", Fault(status=429, retry_after=30))
    with db.transaction() as s:
        message = outbox.post_to_user(s, user_id="USALES01", template="text",
                                      context={"text": "hello"})
    worker = make_worker(db, standin, database_url)
    # when
    worker.run_once()
    # then: not sent, and not due again for ~30 s
    after = row(db, message.id)
    assert after.status == "pending" and after.attempts == 1
    assert timedelta(seconds=25) < after.next_attempt_at - utcnow() <= timedelta(seconds=31)
    # when the time has come
    worker.run_once(now=utcnow() + timedelta(seconds=31))
    # then: delivered exactly once
    assert row(db, message.id).status == "sent"
    assert len(standin.api.dm_messages("USALES01")) == 1


def test_permanent_error_is_kept_as_failed_and_can_be_requeued(db, standin, database_url) -> None:  # noqa: ANN001
    # given
    with db.transaction() as s:
        message = outbox.post_to_channel(s, channel="CNOPE", template="text",
                                         context={"text": "lost?"})
    worker = make_worker(db, standin, database_url)
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


def test_stale_claim_is_taken_over(db, standin, database_url) -> None:  # noqa: ANN001
    # given: a row claimed by a worker that died before delivering
    with db.transaction() as s:
        message = outbox.post_to_user(s, user_id="USALES01", template="text",
                                      context={"text": "orphan"})
        message.status, message.claimed_by = "sending", "dead-worker"
        message.claimed_at = utcnow() - LEASE - timedelta(seconds=1)
        s.add(message)
    # when
    make_worker(db, standin, database_url).drain()
    # then
    assert row(db, message.id).status == "sent"
    assert len(standin.api.dm_messages("USALES01")) == 1


def test_broken_template_fails_without_blocking_the_queue(db, standin, database_url) -> None:  # noqa: ANN001
    with db.transaction() as s:
        bad = outbox.post_to_user(s, user_id="USALES01", template="no-such-template",
                                  context={})
        good = outbox.post_to_user(s, user_id="USALES01", template="text",
                                   context={"text": "fine"})
    make_worker(db, standin, database_url).drain()
    assert row(db, bad.id).status == "failed"
    assert row(db, good.id).status == "sent"
