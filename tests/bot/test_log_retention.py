"""The `log-retention` job: the outbound webhooks' delivery log is kept
`O2C_WEBHOOK_LOG_RETENTION_DAYS` (never an attempt of a delivery still retried), the
scheduler's firings 30 days; the weekly KPI post's rows, which stop a back-fill from posting a
week twice, are kept for ever."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot import jobs, reports, scheduler
from bot.db import Database
from bot.deps import Deps
from bot.settings import SettingsError, load_settings
from models import (
    JobRun,
    OutboxMessage,
    OutboxStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from models.base import utcnow


def _deps(db: Database, **settings: object) -> Deps:
    from slack_sdk import WebClient

    return Deps(settings=load_settings(database_url=db.url, **settings), db=db,
                client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/"))


def _attempts(db: Database) -> dict[str, int]:
    """Four attempts: 100 days old of a delivered message (past the retention), 100 days old
    of a message still being retried and of one being sent, 80 days old (within)."""
    now = utcnow()
    with db.transaction() as s:
        sub = WebhookSubscription(url="https://erp.example/hooks", events=["order.created"],
                                  secret="whsec_x")
        event = WebhookEvent(uid="msg_1", type="order.created", data={})
        s.add_all([sub, event])
        s.flush()
        ids = {}
        for name, status, age in (("sent-old", OutboxStatus.SENT, 100),
                                  ("retried-old", OutboxStatus.PENDING, 100),
                                  ("sending-old", OutboxStatus.SENDING, 100),
                                  ("sent-recent", OutboxStatus.SENT, 80)):
            row = OutboxMessage(transport="webhook", method="POST", dedupe_key=name,
                                payload={"subscription_id": sub.id, "event_id": event.id},
                                status=status)
            s.add(row)
            s.flush()
            delivery = WebhookDelivery(subscription_id=sub.id, event_id=event.id,
                                       outbox_id=row.id, attempted_at=now - timedelta(days=age),
                                       ok=status == OutboxStatus.SENT, status_code=500)
            s.add(delivery)
            s.flush()
            ids[name] = delivery.id
    return ids


def test_the_delivery_log_is_purged_after_the_retention_but_not_a_delivery_retried(
        db) -> None:
    ids = _attempts(db)
    # when the job runs with the default retention (90 days)
    summary = jobs.run_job("log-retention", _deps(db), None)
    # then the attempt of the delivered message past it is deleted; the attempts of messages
    # still queued or being sent, and the recent one, are kept
    assert summary["webhook_deliveries"] == 1
    assert summary["webhook_log_retention_days"] == 90
    with db.read_session() as s:
        kept = {d.id for d in s.exec(select(WebhookDelivery))}
    assert kept == {ids["retried-old"], ids["sending-old"], ids["sent-recent"]}
    # and a shorter retention deletes the recent one too; the unfinished ones stay
    assert jobs.run_job("log-retention", _deps(db, o2c_webhook_log_retention_days=30),
                        None)["webhook_deliveries"] == 1
    with db.read_session() as s:
        assert {d.id for d in s.exec(select(WebhookDelivery))} == {ids["retried-old"],
                                                                    ids["sending-old"]}
    assert jobs.JOBS["log-retention"].cron == {"minute": "55"}


def test_the_retention_is_a_setting_checked_at_start_up(monkeypatch) -> None:
    monkeypatch.setenv("O2C_WEBHOOK_LOG_RETENTION_DAYS", "7")
    assert load_settings().o2c_webhook_log_retention_days == 7
    for bad in ("0", "-1", "ninety"):
        monkeypatch.setenv("O2C_WEBHOOK_LOG_RETENTION_DAYS", bad)
        with pytest.raises(SettingsError, match="O2C_WEBHOOK_LOG_RETENTION_DAYS"):
            load_settings()


def test_scheduler_firings_are_purged_after_30_days_but_the_weekly_posts_are_kept(db) -> None:
    now = utcnow()
    with db.transaction() as s:
        s.add_all([
            JobRun(job="dunning", run_key="2026-01-05T09:05", started_at=now - timedelta(days=31)),
            JobRun(job="dunning", run_key="2026-02-01T09:05", started_at=now - timedelta(days=29)),
            JobRun(job=reports.NAME, run_key="2026-01-05T08:00",
                   started_at=now - timedelta(days=400)),
            # the weekly post's claim: a back-fill of that week finds it and posts nothing
            JobRun(job=reports.NAME, run_key="2025-W02", started_at=now - timedelta(days=400)),
        ])
    summary = jobs.run_job("log-retention", _deps(db), None)
    assert summary["job_runs"] == 2
    with db.read_session() as s:
        assert sorted((r.job, r.run_key) for r in s.exec(select(JobRun))) == [
            ("dunning", "2026-02-01T09:05"), (reports.NAME, "2025-W02")]
    # and nothing else is old enough
    assert scheduler.purge_runs(db, before=now - jobs.JOB_RUNS_KEPT) == 0
