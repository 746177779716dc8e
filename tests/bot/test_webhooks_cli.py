"""`o2c webhooks`: list, the delivery log, replay (same webhook-id) and enable, as an
operator runs them."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.cli import main
from models import AuditEvent, OutboxMessage, SubscriptionStatus, WebhookSubscription
from models.base import utcnow
from tests.support import factories as f
from workflows import webhooks


def test_list_deliveries_replay_and_enable(monkeypatch, capsys, db, database_url) -> None:
    # given a subscription, an event it failed to get, and a disabled one
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s)
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        order = f.order(s)
        [row] = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "webhook")).all()
        row.status, row.last_error = "failed", "webhook: HTTP 500"
        s.add(row)
        webhooks.record_attempt(s, subscription_id=hook.id, event_id=row.payload["event_id"],
                                outbox_id=row.id, attempt=1, at=utcnow(), ok=False,
                                status_code=500, error="HTTP 500", duration_ms=7)
        other = webhooks.subscribe(s, url="https://dw.example/in", events=["invoice.paid"],
                                   actor="api")
        other.status = SubscriptionStatus.DISABLED
        s.add(other)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when / then
    assert main(["webhooks", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"#{hook.id} active https://erp.example/hooks" in listed and "failing since" in listed
    assert f"#{other.id} disabled" in listed
    assert main(["webhooks", "deliveries", str(hook.id)]) == 0
    assert "order.created" in capsys.readouterr().out
    assert main(["webhooks", "replay", str(hook.id)]) == 2  # says what to replay
    capsys.readouterr()
    assert main(["webhooks", "replay", str(hook.id), "--failed"]) == 0
    assert "1 event(s) queued again" in capsys.readouterr().out
    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "webhook")
                      .order_by(OutboxMessage.id)).all()
        assert [r.status for r in rows] == ["failed", "pending"]
        assert rows[0].payload == rows[1].payload  # the same event: the same webhook-id
    assert main(["webhooks", "replay", str(other.id), "--failed"]) == 2  # disabled
    assert "enable it first" in capsys.readouterr().err
    assert main(["webhooks", "enable", str(other.id)]) == 0
    with db.read_session() as s:
        assert s.get(WebhookSubscription, other.id).status == "active"
    assert order.number


def test_rotate_shows_the_new_secret_once_and_keeps_the_old_one_for_the_grace_period(
        monkeypatch, capsys, db, database_url) -> None:
    # given a subscription, and a grace period of 6 h
    with db.transaction() as s:
        hook = webhooks.subscribe(s, url="https://erp.example/hooks", events=["order.created"],
                                  actor="api")
        old = hook.secret
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("O2C_WEBHOOKS_SECRET_GRACE_HOURS", "6")
    # when an operator rotates its secret
    before = utcnow()
    assert main(["webhooks", "rotate", str(hook.id)]) == 0
    out = capsys.readouterr().out
    # then the new secret is printed (once), and the old one signs beside it for 6 h
    with db.read_session() as s:
        row = s.get(WebhookSubscription, hook.id)
        assert row.secret != old and row.secret in out and old not in out
        assert row.previous_secret == old
        assert timedelta(hours=6) <= row.previous_secret_until - before < timedelta(
            hours=6, minutes=1)
        [audited] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "webhook.secret_rotated")).all()
        assert (audited.actor, audited.entity_id) == ("cli", str(hook.id))
    assert f"until {row.previous_secret_until:%Y-%m-%d %H:%M} UTC" in out
    # and an unknown subscription is named, not a traceback
    assert main(["webhooks", "rotate", "999"]) == 2
    assert "no webhook subscription 999" in capsys.readouterr().err
