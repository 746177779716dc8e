"""Outbound webhooks delivered by the outbox to a real receiver on 127.0.0.1: Standard Webhooks
signatures, at least once with one `webhook-id`, exponential backoff for three days, the
delivery log, and a slow receiver that holds back neither Slack messages nor API answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from sqlmodel import select
from standardwebhooks import Webhook

from bot.outbox import OutboxWorker
from bot.webhooks_out import WebhookTransport
from models import OutboxMessage, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from tests.conftest import test_settings
from tests.support import factories as f
from tests.support.receiver import Receiver, Step
from workflows import webhooks


# the receivers listen on 127.0.0.1: these tests allow private addresses, as a developer
# trying a local receiver does (O2C_WEBHOOKS_ALLOW_PRIVATE=1); the ones about refusing them
# build their transport without it
@pytest.fixture
def server_settings(database_url, standin):
    return test_settings(database_url, standin.api_url, o2c_webhooks_allow_private=True)


def integrations_worker(db, database_url, **transport: object) -> OutboxWorker:
    settings = test_settings(database_url, "http://127.0.0.1:9/api/")
    options = {"allow_private": True, **transport}
    return OutboxWorker(db, None, settings, transports=[WebhookTransport(db, **options)])


def given_an_order_event(db, url: str, events: list[str] | None = None):
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UADMIN01", "admin")
        f.customer(s)
        f.product(s)
        hook = webhooks.subscribe(s, url=url, events=events or ["order.created"], actor="api",
                                  allow_private=True)
        order = f.order(s)
        return hook.id, hook.secret, order.number


def webhook_row(db) -> OutboxMessage:
    with db.read_session() as s:
        return s.exec(select(OutboxMessage).where(OutboxMessage.transport == "webhook")).one()


def test_a_receiver_failing_twice_gets_the_event_at_least_once_with_one_webhook_id(
        db, database_url) -> None:
    with Receiver([500, Step(503, headers={"Retry-After": "7"}), 200]) as receiver:
        # given an event for a receiver that fails twice, then succeeds
        hook_id, secret, number = given_an_order_event(db, receiver.url)
        worker = integrations_worker(db, database_url)
        start = utcnow()
        # when the worker tries now, then when each retry is due
        assert worker.run_once() == 1
        first = webhook_row(db)
        assert first.status == "pending" and first.last_error == "webhook: HTTP 500"
        assert timedelta(seconds=4) <= first.next_attempt_at - start <= timedelta(seconds=7)
        assert worker.run_once() == 0  # not due yet
        worker.run_once(now=first.next_attempt_at)
        second = webhook_row(db)
        # the receiver's Retry-After (7 s) beats the backoff (10 s)? no: the longer wins
        assert second.next_attempt_at - first.next_attempt_at >= timedelta(seconds=10)
        worker.run_once(now=second.next_attempt_at)
        requests = receiver.wait_for(3)
    # then three attempts of one message, the same id and body, each correctly signed
    assert webhook_row(db).status == "sent"
    ids = {r.headers["webhook-id"] for r in requests}
    assert len(ids) == 1 and ids.pop().startswith("msg_")
    assert len({r.body for r in requests}) == 1
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)  # raises if not
        assert request.headers["content-type"] == "application/json"
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == sorted(stamps) and stamps[2] - stamps[0] >= 15
    body = json.loads(requests[0].body)
    assert body["type"] == "order.created" and body["data"]["order"]["number"] == number
    assert set(body) == {"type", "timestamp", "data"}
    # and the delivery log shows each attempt
    with db.read_session() as s:
        log = webhooks.deliveries(s, hook_id)
        assert [(d.attempt, d.ok, d.status_code) for d, _ in log] == [
            (3, True, 200), (2, False, 503), (1, False, 500)]
        assert s.get(WebhookSubscription, hook_id).failing_since is None


def test_a_receiver_down_for_three_days_fails_the_delivery_and_disables_the_endpoint(
        db, database_url) -> None:
    # the clock stands still between the worker's passes (each pass sets the worker's clock
    # to the attempt's time; a busy machine must not add a second to the backoff it measures)
    with time_machine.travel(datetime(2026, 6, 30, 12, tzinfo=UTC), tick=False), \
            Receiver([500] * 100) as receiver:
        # given a receiver that always answers 500
        hook_id, _, _ = given_an_order_event(db, receiver.url)
        worker = integrations_worker(db, database_url)
        # when the worker keeps retrying on schedule
        worker.run_once()
        gaps = []
        for _ in range(60):
            row = webhook_row(db)
            if row.status != "pending":
                break
            previous = row.next_attempt_at
            worker.run_once(now=row.next_attempt_at)
            after = webhook_row(db)
            if after.status == "pending":
                gaps.append((after.next_attempt_at - previous).total_seconds())
        attempts = len(receiver.requests)
    # then: backoff doubles from 5 s up to 6 h apart, and it stops after three days
    row = webhook_row(db)
    assert row.status == "failed"
    assert [round(g) for g in gaps[:4]] == [10, 20, 40, 80]
    assert round(max(gaps)) == 6 * 3600
    assert row.next_attempt_at - row.created_at >= timedelta(days=3) - timedelta(hours=6)
    assert 15 <= attempts <= 30
    with db.read_session() as s:
        hook = s.get(WebhookSubscription, hook_id)
        assert hook.status == "disabled"
        told = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "slack")).all()
        assert sorted(t.payload["channel"] for t in told
                      if t.payload["template"] == "webhook_disabled") == ["UADMIN01", "alerts"]
        assert len(s.exec(select(WebhookDelivery)).all()) == attempts


def test_a_redirect_is_a_failure_and_is_not_followed(db, database_url) -> None:
    with Receiver([Step(302, headers={"Location": "http://127.0.0.1:9/elsewhere"})]) as rx:
        given_an_order_event(db, rx.url)
        integrations_worker(db, database_url).run_once()
        assert len(rx.wait_for(1)) == 1
    row = webhook_row(db)
    assert row.status == "pending" and row.last_error == "webhook: HTTP 302"


def test_a_slow_receiver_holds_back_neither_the_api_nor_slack(server, api, standin) -> None:
    def attempts_finished() -> int:
        with server.db.read_session() as s:
            return len(s.exec(select(WebhookDelivery)).all())

    with Receiver([Step(200, hold=True)] * 5) as receiver:
        # given a subscriber whose receiver does not answer (until the test releases it)
        with server.db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s)
            f.product(s)
            webhooks.subscribe(s, url=receiver.url, events=["order.created",
                                                            "order.approved"], actor="api",
                               allow_private=True)
        # when orders arrive through the API while the first delivery hangs
        first = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                          "currency": "USD",
                                          "lines": [{"sku": "WID-1", "quantity": 1}]})
        assert first.status_code == 201, first.text
        receiver.wait_for(1)
        second = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                           "currency": "USD",
                                           "lines": [{"sku": "WID-1", "quantity": 1}]})
        # then the API answered and the reps' DMs went out before that delivery finished
        assert second.status_code == 201, second.text
        standin.api.wait_for(lambda: len(standin.api.dm_messages("USALES01")) >= 2, 7,
                             "order DMs")
        assert attempts_finished() == 0
        assert receiver.requests[0].answered is None
        # and once the receiver answers, the delivery that waited for it is logged
        receiver.release()
        standin.api.wait_for(lambda: attempts_finished() >= 1, 15, "the first delivery")


def test_deliveries_api_lists_attempts(server, api) -> None:
    with Receiver([500, 200]) as receiver:
        created = api.post("/webhooks", json={"url": receiver.url,
                                              "events": ["customer.credit_hold"]})
        assert created.status_code == 201
        hook_id = created.json()["id"]
        with server.db.transaction() as s:
            f.user(s, "UCREDIT1", "credit_approver")
            customer = f.customer(s)
            from workflows.credit_hold import set_credit_hold

            set_credit_hold(s, customer_id=customer.id, actor="UCREDIT1", on_hold=True,
                            reason="late")
        server.deps.notify_outbox()
        receiver.wait_for(1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rows = api.get(f"/webhooks/{hook_id}/deliveries").json()["deliveries"]
            if rows:
                break
            time.sleep(0.05)
    assert rows[0]["ok"] is False and rows[0]["status_code"] == 500
    assert rows[0]["event"]["type"] == "customer.credit_hold"
    assert rows[0]["event"]["webhook_id"].startswith("msg_")
    assert httpx.codes.is_success(api.get(f"/webhooks/{hook_id}/deliveries").status_code)


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_and_holds_back_no_one(
        db, database_url) -> None:
    # given two subscribers: the first one's receiver sends its answer's headers a line
    # every 0.2 s (each read well within the read timeout) for 15 s; the second is fine
    slow_answer = Step(200, trickle=0.2, trickle_lines=75)
    with Receiver([slow_answer]) as slow, Receiver() as fine:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s)
            f.product(s)
            slow_hook = webhooks.subscribe(s, url=slow.url, events=["order.created"],
                                           actor="api", allow_private=True)
            webhooks.subscribe(s, url=fine.url, events=["order.created"], actor="api",
                               allow_private=True)
            f.order(s)
        worker = OutboxWorker(db, None, test_settings(database_url, "http://127.0.0.1:9/api/"),
                              transports=[WebhookTransport(db, deadline=1.0,
                                                           allow_private=True)])
        # when the worker delivers
        started = time.monotonic()
        assert worker.run_once() == 2
        elapsed = time.monotonic() - started
        # then the slow attempt was cut off at the deadline, logged as a timeout, and will be
        # retried; the other subscriber got its event meanwhile
        assert elapsed < 5, f"one pass took {elapsed:.1f} s"
        assert len(fine.wait_for(1)) == 1
    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "webhook")
                      .order_by(OutboxMessage.id)).all()
        assert [r.status for r in rows] == ["pending", "sent"]
        assert rows[0].payload["subscription_id"] == slow_hook.id
        assert rows[0].last_error == "webhook: no complete answer within 1 s"
        [logged] = s.exec(select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == slow_hook.id)).all()
        assert (logged.ok, logged.status_code) == (False, None)


def stored_subscription(db, url: str) -> int:
    """A subscription already in the database (registered before addresses were checked, or
    while O2C_WEBHOOKS_ALLOW_PRIVATE was on), and an order event queued for it."""
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s)
        hook = WebhookSubscription(url=url, events=["order.created"],
                                   secret=webhooks.new_secret())
        s.add(hook)
        s.flush()
        f.order(s)
        return hook.id


def fake_dns(monkeypatch, answers: dict[str, object]) -> list[str]:
    """`socket.getaddrinfo` answering the names given (an address, a list of them, or a
    function called with the name); other names as usual. Returns the names looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def resolve(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        answer = answers[host]
        if callable(answer):
            answer = answer(host)
        found = [answer] if isinstance(answer, str) else answer
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port or 0)) for a in found]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


def test_a_private_destination_is_refused_at_every_delivery_and_fails_like_an_unreachable_one(
        db, database_url, monkeypatch) -> None:
    with Receiver() as receiver:
        # given a subscription stored with a name that now resolves to this computer
        fake_dns(monkeypatch, {"erp.example": "127.0.0.1"})
        hook_id = stored_subscription(db, receiver.url.replace("127.0.0.1", "erp.example"))
        # when the worker (private addresses not allowed: the default) tries to deliver
        worker = integrations_worker(db, database_url, allow_private=False)
        assert worker.run_once() == 1
        # then nothing is sent; the attempt is logged with the reason, and retried later
        row = webhook_row(db)
        assert receiver.requests == []
        reason = ("refused: erp.example resolves to 127.0.0.1, a loopback address; "
                  "webhooks go to public addresses only")
        assert row.status == "pending" and row.last_error.startswith(f"webhook: {reason}")
        with db.read_session() as s:
            [(logged, _)] = webhooks.deliveries(s, hook_id)
            assert (logged.ok, logged.status_code) == (False, None)
            assert logged.error.startswith(reason)
        # and three days later it has failed for good, still without sending anything
        worker.run_once(now=row.created_at + timedelta(days=3, hours=1))
        assert webhook_row(db).status == "failed"
        assert receiver.requests == []


def test_a_delivery_connects_to_the_address_it_checked(db, database_url, monkeypatch) -> None:
    # given a name whose first answer is this computer and every later one is gone (a name
    # re-pointed between the check and the connection: DNS rebinding)
    answers = iter([["127.0.0.1"]])

    def once(_host):
        try:
            return next(answers)
        except StopIteration:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None

    with Receiver() as receiver:
        asked = fake_dns(monkeypatch, {"rebind.example": once})
        port = receiver.url.split(":")[2].split("/")[0]
        stored_subscription(db, f"http://rebind.example:{port}/hooks")
        # when it is delivered (private addresses allowed, so that the receiver is reachable)
        integrations_worker(db, database_url).run_once()
        [request] = receiver.wait_for(1)
    # then the name was looked up once: the connection went to the address checked, and the
    # request still names the host it was meant for
    assert asked == ["rebind.example"]
    assert request.headers["host"] == f"rebind.example:{port}"
    assert webhook_row(db).status == "sent"


def test_a_resolver_that_hangs_is_cut_off_at_the_deadline(db, database_url, monkeypatch) -> None:
    # given a subscriber whose name the resolver never answers (for 10 s)
    answer = threading.Event()

    def hang(_host):
        answer.wait(10)
        return ["127.0.0.1"]

    fake_dns(monkeypatch, {"slow-dns.example": hang})
    stored_subscription(db, "https://slow-dns.example/hooks")
    worker = integrations_worker(db, database_url, deadline=1.0)
    try:
        # when the worker delivers
        started = time.monotonic()
        assert worker.run_once() == 1
        elapsed = time.monotonic() - started
    finally:
        answer.set()
    # then the attempt ended at the deadline, as a timeout to retry
    assert elapsed < 5, f"one pass took {elapsed:.1f} s"
    row = webhook_row(db)
    assert row.status == "pending"
    assert row.last_error == "webhook: no answer from DNS for slow-dns.example within 1 s"


def test_a_rotated_secret_signs_beside_the_new_one_for_the_grace_period_only(
        db, database_url) -> None:
    from standardwebhooks.webhooks import WebhookVerificationError

    rotated_at = datetime(2026, 6, 30, 12, tzinfo=UTC)

    def deliver_an_order_event_at(moment: datetime, receiver: Receiver, count: int):
        with time_machine.travel(moment, tick=False):
            with db.transaction() as s:
                f.order(s)
            integrations_worker(db, database_url).run_once()
            return receiver.wait_for(count)[-1]

    with Receiver() as receiver:
        # given an endpoint whose secret is rotated with a grace period of 24 h
        with time_machine.travel(rotated_at - timedelta(days=1), tick=False), \
                db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s)
            f.product(s)
            hook = webhooks.subscribe(s, url=receiver.url, events=["order.created"],
                                      actor="api", allow_private=True)
            old = hook.secret
        with db.transaction() as s:
            new = webhooks.rotate_secret(s, subscription_id=hook.id, actor="cli",
                                         now=rotated_at, grace=timedelta(hours=24)).secret
        assert new != old and new.startswith("whsec_")
        # when an event is delivered during the grace period, and one after it
        during = deliver_an_order_event_at(rotated_at + timedelta(hours=23, minutes=59),
                                           receiver, 1)
        after = deliver_an_order_event_at(rotated_at + timedelta(hours=24, seconds=1),
                                          receiver, 2)
    # then during it, a receiver holding either secret verifies the delivery: it carries
    # both signatures, space-separated, the new one first
    with time_machine.travel(rotated_at + timedelta(hours=23, minutes=59), tick=False):
        signatures = during.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
        for secret in (new, old):
            Webhook(secret).verify(during.body, during.headers)
    # and after it, only the new secret does
    with time_machine.travel(rotated_at + timedelta(hours=24, seconds=1), tick=False):
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(after.body, after.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(after.body, after.headers)


def test_a_retry_after_as_an_http_date_or_garbage_is_read_like_slacks(db, database_url) -> None:
    from email.utils import format_datetime

    # (a whole second, as an HTTP-date has, well after the event is queued below: a start
    # within the second the event is queued in found it not yet due, and nothing was sent)
    start = utcnow().replace(microsecond=0) + timedelta(seconds=30)
    later = format_datetime(start + timedelta(hours=1), usegmt=True)
    with Receiver([Step(503, headers={"Retry-After": later}),
                   Step(429, headers={"Retry-After": "nan"}), 200]) as receiver:
        # given an event for a receiver asking to come back in an hour (an HTTP-date), then
        # answering a 429 whose Retry-After is garbage
        given_an_order_event(db, receiver.url)
        worker = integrations_worker(db, database_url)
        # when the worker tries, then tries again when it is due
        worker.run_once(now=start)
        first = webhook_row(db)
        # then the first retry waits the hour the receiver asked for (the backoff is 5 s)
        assert first.status == "pending"
        assert abs(first.next_attempt_at - start - timedelta(hours=1)) < timedelta(seconds=1)
        worker.run_once(now=first.next_attempt_at)
        # and garbage is ignored: the backoff decides (10 s), nothing is left claimed
        second = webhook_row(db)
        assert second.status == "pending" and second.last_error == "webhook: HTTP 429"
        waited = second.next_attempt_at - first.next_attempt_at
        assert timedelta(seconds=10) <= waited < timedelta(seconds=11)
        worker.run_once(now=second.next_attempt_at)
        receiver.wait_for(3)
    assert webhook_row(db).status == "sent"
