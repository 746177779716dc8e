"""Outbound webhook events on the workflows: who gets which event, in the same transaction as
the change, the body's shape, replays and subscriptions that keep failing."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import (
    AuditEvent,
    OrderStatus,
    OutboxMessage,
    WebhookEvent,
    WebhookSubscription,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, cash_application, outbox, shipping, webhooks
from workflows.credit_hold import set_credit_hold
from workflows.errors import NotFound, ValidationFailed
from workflows.inputs import DisputeOpenIn, PaymentIn
from workflows.invoicing import get_invoice
from workflows.orders import pending_approvals

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def company(session) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UADMIN01", "admin")
    f.customer(session)
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.product(session, "WID-1", price="100.00")


def webhook_rows(session) -> list[OutboxMessage]:
    return list(session.exec(select(OutboxMessage).where(OutboxMessage.transport == "webhook")
                             .order_by(OutboxMessage.id)))


def events(session) -> list[WebhookEvent]:
    return list(session.exec(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_without_subscribers_nothing_is_written(db) -> None:
    # given
    with db.transaction() as s:
        company(s)
    # when an order is created and approved
    with db.transaction() as s:
        f.order(s, now=NOW)
    # then
    with db.read_session() as s:
        assert events(s) == [] and webhook_rows(s) == []


def test_an_order_emits_created_then_approved_to_the_subscriber_that_wants_them(db) -> None:
    # given two subscriptions, one for orders, one for payments only
    with db.transaction() as s:
        company(s)
        orders_hook = webhooks.subscribe(s, url="https://erp.example/hooks",
                                         events=["order.created", "order.approved"],
                                         actor="api")
        webhooks.subscribe(s, url="https://dw.example/in", events=["payment.received"],
                           actor="api")
    # when
    with db.transaction() as s:
        order = f.order(s, now=NOW)
        number = order.number
    # then one event per type, one outbox row each, for the orders subscription only
    with db.read_session() as s:
        found = events(s)
        assert [e.type for e in found] == ["order.created", "order.approved"]
        rows = webhook_rows(s)
        assert [r.payload for r in rows] == [
            {"subscription_id": orders_hook.id, "event_id": found[0].id},
            {"subscription_id": orders_hook.id, "event_id": found[1].id}]
        approved = found[1]
        assert approved.data["order"]["number"] == number
        assert approved.data["order"]["status"] == OrderStatus.APPROVED
        assert approved.data["order"]["total"] == "200.00"
        assert approved.data["order"]["customer"] == "C-GLOBEX"
        assert approved.uid.startswith("msg_") and found[0].uid != approved.uid
        body = json.loads(webhooks.body_of(approved))
        assert body == {"type": "order.approved", "timestamp": "2026-03-02T09:00:00Z",
                        "data": approved.data}


def test_the_event_rolls_back_with_the_change(db) -> None:
    # given
    with db.transaction() as s:
        company(s)
        webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                           actor="api")
    # when the transaction that created the order fails
    with pytest.raises(RuntimeError), db.transaction() as s:
        f.order(s, now=NOW)
        raise RuntimeError("boom")
    # then no event and no delivery exist
    with db.read_session() as s:
        assert events(s) == [] and webhook_rows(s) == []


def test_rejection_shipment_invoice_payment_and_credit_hold_events(db) -> None:
    # given a subscription to everything
    with db.transaction() as s:
        company(s)
        webhooks.subscribe(s, url="https://erp.example/hooks",
                           events=list(webhooks.EVENT_TYPES), actor="api")
    # when: an order of a new customer is rejected; another is shipped, invoiced and paid
    with db.transaction() as s:
        held = f.order(s, "C-NEW", now=NOW)
    with db.transaction() as s:
        approval = pending_approvals(s, held.id)[0]
        approvals.decide(session=s, approval_id=approval.id, user_id="UCREDIT1",
                         approve=False, note="no credit history", now=NOW)
    with db.transaction() as s:
        order = f.order(s, now=NOW)
        shipping.ship_order(s, order_number=order.number, carrier="UPS",
                            tracking_number="1Z1", shipped_at=NOW, lines=None, actor="api",
                            now=NOW)
    with db.transaction() as s:
        number = [e for e in events(s) if e.type == "invoice.issued"][0].data["invoice"][
            "number"]
        payment, _ = cash_application.record_payment(s, PaymentIn(
            amount="200.00", currency="USD", received_at=NOW, reference=number,
            customer="C-GLOBEX"), actor="api")
    with db.transaction() as s:
        set_credit_hold(s, customer_id=get_invoice(s, number).customer_id, actor="UCREDIT1",
                        on_hold=True, reason="watch list", now=NOW)
    # then
    with db.read_session() as s:
        types = [e.type for e in events(s)]
        assert types == ["order.created", "order.rejected", "order.created", "order.approved",
                         "order.shipped", "invoice.issued", "invoice.paid",
                         "payment.received", "payment.applied", "customer.credit_hold"]
        by_type = {e.type: e.data for e in events(s)}
        assert by_type["order.rejected"]["reason"] == "credit approval rejected: no credit history"
        assert by_type["invoice.paid"]["invoice"]["balance"] == "0.00"
        assert by_type["invoice.paid"]["invoice"]["status"] == "paid"
        assert by_type["payment.applied"]["payment"]["allocations"] == [
            {"invoice": number, "amount": "200.00"}]
        assert by_type["customer.credit_hold"]["on_hold"] is True
        assert by_type["customer.credit_hold"]["customer"]["external_id"] == "C-GLOBEX"


@pytest.mark.parametrize(("url", "field_detail"), [
    ("ftp://erp.example/x", "absolute https"),
    ("http://erp.example/hooks", "must use https"),
    ("https://user:pw@erp.example/hooks", "user name or password"),
    ("https://erp.example/hooks#x", "fragment"),
    ("not a url", "absolute https"),
])
def test_subscription_urls_are_checked(db, url, field_detail) -> None:
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        webhooks.subscribe(s, url=url, events=["order.created"], actor="api")
    assert refused.value.errors[0].field == "url"
    assert field_detail in refused.value.errors[0].detail


def test_unknown_event_types_are_refused_by_name(db) -> None:
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        webhooks.subscribe(s, url="https://erp.example/h", events=["order.created", "order.eaten"],
                           actor="api")
    assert refused.value.errors[0].field == "events"
    assert "order.eaten" in refused.value.errors[0].detail


def test_a_local_http_receiver_needs_private_addresses_allowed_and_the_secret_is_standard(
        db) -> None:
    with db.transaction() as s:
        row = webhooks.subscribe(s, url="http://127.0.0.1:9999/hooks",
                                 events=["order.created"], actor="api", allow_private=True)
        assert row.secret.startswith("whsec_") and len(row.secret) > 30
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        webhooks.subscribe(s, url="http://127.0.0.1:9999/hooks", events=["order.created"],
                           actor="api")
    assert "O2C_WEBHOOKS_ALLOW_PRIVATE" in refused.value.errors[0].detail


@pytest.mark.parametrize(("url", "said"), [
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("https://10.0.0.5/hooks", "10.0.0.5 is a private address"),
    ("https://192.168.1.20/hooks", "192.168.1.20 is a private address"),
    ("http://127.0.0.1:9999/hooks", "127.0.0.1 is a loopback address"),
    ("https://[::1]:8443/hooks", "::1 is a loopback address"),
    ("https://[::ffff:169.254.169.254]/hooks", "169.254.169.254 is a link-local address"),
    ("https://[fe80::1]/hooks", "fe80::1 is a link-local address"),
    ("https://[fd00::7]/hooks", "fd00::7 is a private address"),
    ("https://0.0.0.0/hooks", "0.0.0.0 is an unspecified address"),
    ("https://224.0.0.1/hooks", "224.0.0.1 is a multicast address"),
    ("https://240.0.0.1/hooks", "240.0.0.1 is a reserved address"),
    ("https://100.64.0.1/hooks", "100.64.0.1 is not a public address"),
    ("https://localhost/hooks", "localhost is a loopback name"),
    ("https://api.localhost/hooks", "api.localhost is a loopback name"),
    # names the resolver turns into a loopback address (127.0.0.1 written as one number)
    ("https://2130706433/hooks", "2130706433 resolves to 127.0.0.1, a loopback address"),
])
def test_private_destinations_are_refused_at_registration(db, url, said) -> None:
    # when an endpoint inside the network (or the cloud's metadata service) is registered
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        webhooks.subscribe(s, url=url, events=["order.created"], actor="api")
    # then it is refused, saying which address and why
    assert refused.value.errors[0].field == "url"
    assert said in refused.value.errors[0].detail, refused.value.errors[0].detail
    with db.read_session() as s:
        assert s.exec(select(WebhookSubscription)).all() == []


def test_a_name_resolving_to_a_private_address_is_refused_at_registration(
        db, monkeypatch) -> None:
    # given a public-looking name whose DNS answers one public and one internal address
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.erp.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    # when it is registered, then it is refused by the address it resolves to
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        webhooks.subscribe(s, url="https://hooks.erp.example/in", events=["order.created"],
                           actor="api")
    assert ("hooks.erp.example resolves to 10.1.2.3, a private address"
            in refused.value.errors[0].detail)


def test_deleting_a_subscription_fails_what_was_queued_and_stops_new_events(db) -> None:
    # given an undelivered event
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
    # when
    with db.transaction() as s:
        webhooks.delete_subscription(s, subscription_id=hook.id, actor="api")
        f.order(s, now=NOW)
    # then
    with db.read_session() as s:
        [row] = webhook_rows(s)
        assert row.status == "failed" and "deleted" in row.last_error
        assert len(events(s)) == 1
        with pytest.raises(NotFound):
            webhooks.get_subscription(s, hook.id)
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "webhook.deleted")).one()


def test_replay_queues_the_same_event_again_with_its_webhook_id(db) -> None:
    # given a delivered event
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
    # when it is replayed twice
    with db.transaction() as s:
        [event] = events(s)
        assert webhooks.replay(s, subscription_id=hook.id, event_ids=[event.id],
                               actor="cli") == 1
        assert webhooks.replay(s, subscription_id=hook.id, event_ids=[event.id],
                               actor="cli") == 1
    # then three deliveries of one event (one webhook-id)
    with db.read_session() as s:
        rows = webhook_rows(s)
        assert [r.payload["event_id"] for r in rows] == [event.id] * 3
        assert len({r.dedupe_key for r in rows}) == 3
    with pytest.raises(NotFound), db.transaction() as s:
        webhooks.replay(s, subscription_id=hook.id, event_ids=[event.id + 99], actor="cli")


def test_replaying_failed_events_sends_each_failure_once_not_on_every_replay(db) -> None:
    # given an event the subscriber failed to get, replayed with --failed and then delivered
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
        [row] = webhook_rows(s)
        row.status, row.last_error = "failed", "webhook: HTTP 500"
        s.add(row)
    with db.transaction() as s:
        assert webhooks.replay(s, subscription_id=hook.id, failed=True, actor="cli") == 1
    with db.transaction() as s:
        replayed = webhook_rows(s)[1]
        replayed.status = "sent"
        s.add(replayed)
    # when, later, another event fails and the failures are replayed again
    with db.transaction() as s:
        f.order(s, now=NOW)
        newer = webhook_rows(s)[2]
        newer.status, newer.last_error = "failed", "webhook: HTTP 503"
        s.add(newer)
    with db.transaction() as s:
        count = webhooks.replay(s, subscription_id=hook.id, failed=True, actor="cli")
    # then only the new failure is queued: the delivered one is not sent to them again
    with db.read_session() as s:
        rows = webhook_rows(s)
        assert count == 1
        assert [(r.status, r.payload["event_id"]) for r in rows] == [
            ("failed", rows[0].payload["event_id"]), ("sent", rows[0].payload["event_id"]),
            ("failed", newer.payload["event_id"]), ("pending", newer.payload["event_id"])]


def test_retrying_every_failed_message_leaves_out_webhooks_replayed_already(db) -> None:
    # given an event the subscriber failed to get, replayed as a new delivery and delivered,
    # and a Slack post that failed
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
        [row] = webhook_rows(s)
        row.status, row.last_error = "failed", "webhook: HTTP 500"
        s.add(row)
        post = outbox.post_to_channel(s, channel="ar", template="text",
                                      context={"text": "hello"}, dedupe_key="t:1")
        post.status, post.last_error = "failed", "slack: channel_not_found"
        s.add(post)
    with db.transaction() as s:
        assert webhooks.replay(s, subscription_id=hook.id, failed=True, actor="cli") == 1
        replayed = webhook_rows(s)[1]
        replayed.status = "sent"
        s.add(replayed)
    # when an admin retries every failed message (`o2c outbox --retry all`)
    with db.transaction() as s:
        count = outbox.requeue_failed(s)
    # then the Slack post is queued again, the replayed webhook is not sent a third time
    with db.read_session() as s:
        assert count == 1
        assert [r.status for r in webhook_rows(s)] == ["failed", "sent"]
        assert s.get(OutboxMessage, post.id).status == "pending"


def test_an_endpoint_failing_for_three_days_is_disabled_and_admins_are_told(db) -> None:
    # given a subscription with a queued event
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
        [event] = events(s)
    # when attempts fail from NOW and still fail just under, then past, three days later
    for at in (NOW, NOW + timedelta(days=2, hours=23), NOW + timedelta(days=3, minutes=1)):
        with db.transaction() as s:
            webhooks.record_attempt(s, subscription_id=hook.id, event_id=event.id,
                                    outbox_id=1, attempt=1, at=at, ok=False, status_code=500,
                                    error="HTTP 500", duration_ms=12)
            status = s.get(WebhookSubscription, hook.id).status
        assert status == ("disabled" if at > NOW + timedelta(days=3) else "active")
    # then the admins are told once (alerts channel, a DM to the admin); new events skip it
    with db.transaction() as s:
        notices = s.exec(select(OutboxMessage).where(
            OutboxMessage.transport == "slack")).all()
        told = sorted(n.payload["channel"] for n in notices
                      if n.payload["template"] == "webhook_disabled")
        assert told == ["UADMIN01", "alerts"]
        [queued] = webhook_rows(s)
        assert queued.status == "failed" and "disabled" in queued.last_error
        f.order(s, now=NOW)
        assert len(events(s)) == 1
        assert webhooks.enable_subscription(s, subscription_id=hook.id, actor="cli") is True


def test_a_success_clears_the_failing_streak(db) -> None:
    with db.transaction() as s:
        company(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        f.order(s, now=NOW)
        [event] = events(s)
    for at, ok in ((NOW, False), (NOW + timedelta(days=2), True),
                   (NOW + timedelta(days=4), False)):
        with db.transaction() as s:
            webhooks.record_attempt(s, subscription_id=hook.id, event_id=event.id,
                                    outbox_id=1, attempt=1, at=at, ok=ok,
                                    status_code=200 if ok else 500, error=None,
                                    duration_ms=5)
    with db.read_session() as s:
        row = s.get(WebhookSubscription, hook.id)
        assert row.status == "active"
        assert row.failing_since == NOW + timedelta(days=4)


def test_a_credit_note_is_an_event(db) -> None:
    from workflows.invoicing import issue_credit_note

    with db.transaction() as s:
        company(s)
        webhooks.subscribe(s, url="https://erp.example/hooks", events=["credit_note.issued"],
                           actor="api")
        invoice = f.invoice(s, "INV-CN-1", total="300.00", issued=NOW.date(),
                            due=NOW.date() + timedelta(days=30))
    with db.transaction() as s:
        note = issue_credit_note(s, invoice_number=invoice.number, amount="50.00",
                                 reason="damaged", actor="UCOLL001", now=NOW)
    with db.read_session() as s:
        [event] = events(s)
        assert event.type == "credit_note.issued"
        assert event.data["credit_note"] == {
            "number": note.number, "invoice": "INV-CN-1", "currency": "USD",
            "amount": "50.00", "applied_to_invoice": "50.00", "customer_credit": "0.00",
            "reason": "damaged", "issue_date": "2026-03-02"}
        assert event.data["invoice"]["balance"] == "250.00"


def test_a_dispute_opened_and_resolved_are_events(db) -> None:
    from workflows import disputes

    # given a subscriber to disputes and an open invoice
    with db.transaction() as s:
        company(s)
        f.user(s, "UCOLL001", "collector")
        webhooks.subscribe(s, url="https://erp.example/hooks",
                           events=["dispute.opened", "dispute.resolved"], actor="api")
        f.invoice(s, "INV-D-1", total="300.00", issued=NOW.date(),
                  due=NOW.date() + timedelta(days=30))
    # when a collector disputes 120.00 of it and then withdraws the dispute
    with db.transaction() as s:
        dispute = disputes.open_dispute(s, "INV-D-1", DisputeOpenIn(
            reason="pricing", amount="120.00"), actor="UCOLL001", now=NOW)
    with db.transaction() as s:
        disputes.resolve(s, dispute_id=dispute.id, outcome="withdrawn", by="UCOLL001",
                         now=NOW + timedelta(hours=1))
    # then one event each, with the dispute and its invoice
    with db.read_session() as s:
        opened, resolved = events(s)
        assert (opened.type, resolved.type) == ("dispute.opened", "dispute.resolved")
        assert opened.data["dispute"]["amount"] == "120.00"
        assert opened.data["dispute"]["status"] == "open"
        assert opened.data["invoice"]["number"] == "INV-D-1"
        assert resolved.data["dispute"]["status"] == "withdrawn"
        assert resolved.data["dispute"]["resolved_by"] == "UCOLL001"


def test_a_revenue_close_is_an_event_once(db) -> None:
    from workflows import revenue

    # given a subscriber and a month of goods shipped
    with db.transaction() as s:
        company(s)
        webhooks.subscribe(s, url="https://erp.example/hooks",
                           events=["revenue.period_closed"], actor="api")
        f.order(s, now=NOW)
    # when February is closed, twice
    later = NOW + timedelta(days=1)
    with db.transaction() as s:
        revenue.close_month(s, period="2026-02", actor="UADMIN01", now=later)
    with db.transaction() as s:
        revenue.close_month(s, period="2026-02", actor="UADMIN01", now=later)
    # then one event, carrying the close's summary
    with db.read_session() as s:
        [event] = events(s)
        assert event.type == "revenue.period_closed"
        assert event.data["revenue_close"]["period"] == "2026-02"


def test_rotating_a_secret_keeps_the_previous_one_for_the_grace_period_and_is_audited(
        db) -> None:
    rotated_at = datetime(2026, 6, 30, 12, tzinfo=UTC)
    with db.transaction() as s:
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        first = hook.secret
    # when it is rotated, then rotated again within the grace period
    with db.transaction() as s:
        second = webhooks.rotate_secret(s, subscription_id=hook.id, actor="UADMIN01",
                                        now=rotated_at, grace=timedelta(hours=24)).secret
    again = rotated_at + timedelta(hours=2)
    with db.transaction() as s:
        third = webhooks.rotate_secret(s, subscription_id=hook.id, actor="cli", now=again,
                                       grace=timedelta(hours=24)).secret
    # then the one replaced last signs beside the new one until its grace period ends
    assert len({first, second, third}) == 3
    with db.read_session() as s:
        row = s.get(WebhookSubscription, hook.id)
        assert row.secret == third and row.previous_secret == second
        assert row.previous_secret_until == again + timedelta(hours=24)
        assert webhooks.signing_secrets(row, again + timedelta(hours=23)) == [third, second]
        assert webhooks.signing_secrets(row, again + timedelta(hours=24)) == [third]
        # and each rotation is in the audit log, without any secret
        audited = s.exec(select(AuditEvent).where(AuditEvent.action == "webhook.secret_rotated")
                         .order_by(AuditEvent.id)).all()
    assert [(a.actor, a.entity_id, a.data["previous_valid_until"]) for a in audited] == [
        ("UADMIN01", str(hook.id), "2026-07-01T12:00:00Z"),
        ("cli", str(hook.id), "2026-07-01T14:00:00Z")]
    assert not any(secret in json.dumps(a.data) for a in audited
                   for secret in (first, second, third))


def test_rotating_the_secret_of_an_unknown_subscription_names_it(db) -> None:
    with pytest.raises(NotFound) as missing, db.transaction() as s:
        webhooks.rotate_secret(s, subscription_id=999, actor="cli", now=NOW,
                               grace=timedelta(hours=24))
    assert "999" in missing.value.detail
