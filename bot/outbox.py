"""The outbox worker: delivers committed notifications to Slack (and e-mail), each once.

Lifecycle of a row: `pending` -> claimed (`sending`, with a lease) -> `sent`, or back to
`pending` with `next_attempt_at` pushed out (429 honours `Retry-After`; 5xx and network errors
back off exponentially), or `failed` (a permanent error such as `channel_not_found`, or too
many attempts) where it stays visible (`o2c outbox`) instead of being dropped.

Claiming is a conditional UPDATE on a batch picked with `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several server processes share the queue without delivering a row twice. A
claim whose worker died (crash between claim and delivery) expires after `LEASE` and the row
is delivered by someone else. The one unavoidable window — the process dies after Slack
accepted the call and before the row is marked sent — is as small as one UPDATE.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import templates
from bot.db import Database
from bot.settings import Settings
from models import OutboxMessage, OutboxStatus
from models.base import utcnow

log = logging.getLogger("o2c.outbox")

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 12
BATCH = 25
BACKOFF_BASE = 1.0  # seconds; doubled per attempt, capped at BACKOFF_MAX
BACKOFF_MAX = 300.0
# Errors that will not go away by retrying the same call.
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "invalid_auth",
    "account_inactive", "token_revoked", "no_permission", "missing_scope", "msg_too_long",
    "invalid_arguments", "user_not_found", "cant_update_message", "message_not_found",
    "no_text", "restricted_action", "not_authed", "invalid_blocks_format",
}


class Retry(Exception):
    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Permanent(Exception):
    pass


class Defer(Exception):
    """Not deliverable yet (an update whose original is not posted): try again soon, without
    counting an attempt."""


Mailer = Callable[[dict], dict]


class OutboxWorker:
    def __init__(self, db: Database, client: WebClient, settings: Settings, *,
                 mailer: Mailer | None = None, poll_interval: float = 1.0,
                 wakeup: threading.Event | None = None) -> None:
        self.db = db
        self.client = client
        self.settings = settings
        self.mailer = mailer
        self.poll_interval = poll_interval
        self.wakeup = wakeup or threading.Event()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outbox-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - keep the worker alive; the row stays pending
                log.exception("outbox pass failed")
                busy = 0
            if not busy:
                self.wakeup.wait(self.poll_interval)
                self.wakeup.clear()

    # -- one pass ----------------------------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> int:
        """Claim due rows and deliver them; returns how many were handled."""
        announced = self._announce_queued_emails() if self.mailer is None else 0
        ids = self._claim(now or utcnow())
        for row_id in ids:
            self._deliver(row_id)
        return len(ids) + announced

    def _announce_queued_emails(self) -> int:
        """Without a mailer (no SMTP_URL) e-mails stay queued; post a copy of each to the AR
        channel, once (the marker is a conditional UPDATE of `last_error`, and the copy's
        dedupe key is unique), so nobody thinks a customer was told when they were not."""
        table = OutboxMessage.__table__
        marker = "queued: SMTP_URL is not set"
        new = (sa.select(table.c.id, table.c.payload).where(
            table.c.transport == "email", table.c.status == OutboxStatus.PENDING,
            table.c.last_error.is_(None)).order_by(table.c.id).limit(BATCH))
        with self.db.read_session() as session:  # the common case: nothing new, no write lock
            if not session.execute(new).first():
                return 0
        with self.db.transaction() as session:
            rows = session.execute(new).all()
            for row_id, payload in rows:
                marked = session.execute(sa.update(table).where(
                    table.c.id == row_id, table.c.last_error.is_(None)).values(
                    last_error=marker))
                if marked.rowcount != 1:
                    continue
                subject, summary = describe_email(payload, session, self.settings)
                session.add(OutboxMessage(
                    transport="slack", method="chat.postMessage",
                    dedupe_key=f"email-queued:{row_id}",
                    payload={"channel": "ar", "template": "email_queued",
                             "context": {"outbox_id": row_id, "to": payload.get("to"),
                                         "subject": subject, "summary": summary}}))
        return len(rows)

    def drain(self, max_passes: int = 50) -> None:
        """Deliver until nothing is due (tests and `o2c run`)."""
        for _ in range(max_passes):
            if not self.run_once():
                return

    def _transports(self) -> list[str]:
        return ["slack", "email"] if self.mailer is not None else ["slack"]

    def _claim(self, now: datetime) -> list[int]:
        table = OutboxMessage.__table__
        with self.db.transaction() as session:
            due = sa.or_(
                sa.and_(table.c.status == OutboxStatus.PENDING, table.c.next_attempt_at <= now),
                sa.and_(table.c.status == OutboxStatus.SENDING,
                        table.c.claimed_at < now - LEASE),
            )
            query = (sa.select(table.c.id).where(due, table.c.transport.in_(self._transports()))
                     .order_by(table.c.id).limit(BATCH))
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [row[0] for row in session.execute(query)]
            if ids:
                session.execute(sa.update(table).where(table.c.id.in_(ids)).values(
                    status=OutboxStatus.SENDING, claimed_at=now, claimed_by=self.worker_id,
                    attempts=table.c.attempts + 1))
        return ids

    def _deliver(self, row_id: int) -> None:
        with self.db.read_session() as session:
            row = session.get(OutboxMessage, row_id)
            target = (session.get(OutboxMessage, row.target_outbox_id)
                      if row.target_outbox_id else None)
        try:
            result = self._send(row, target)
        except Defer:
            self._finish(row_id, status=OutboxStatus.PENDING, undo_attempt=True,
                         next_attempt_at=utcnow() + timedelta(seconds=1))
        except Retry as retry:
            if row.attempts >= MAX_ATTEMPTS:
                log.error("outbox %s failed after %s attempts: %s", row_id, row.attempts,
                          retry.reason)
                self._finish(row_id, status=OutboxStatus.FAILED, error=retry.reason)
            else:
                log.info("outbox %s retry in %.1fs: %s", row_id, retry.delay, retry.reason)
                self._finish(row_id, status=OutboxStatus.PENDING, error=retry.reason,
                             next_attempt_at=utcnow() + timedelta(seconds=retry.delay))
        except Permanent as exc:
            log.error("outbox %s failed permanently: %s", row_id, exc)
            self._finish(row_id, status=OutboxStatus.FAILED, error=str(exc))
        else:
            self._finish(row_id, status=OutboxStatus.SENT, result=result)

    def _finish(self, row_id: int, *, status: str, error: str | None = None,
                result: dict | None = None, next_attempt_at: datetime | None = None,
                undo_attempt: bool = False) -> None:
        table = OutboxMessage.__table__
        values: dict[str, Any] = {"status": status, "claimed_at": None, "claimed_by": None}
        if error is not None:
            values["last_error"] = error[:2000]
        if result is not None:
            values["result"] = result
        if status == OutboxStatus.SENT:
            values["sent_at"] = utcnow()
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if undo_attempt:
            values["attempts"] = table.c.attempts - 1
        with self.db.transaction() as session:
            # Only the claimant may finish a row: a stale worker cannot overwrite a newer claim.
            session.execute(sa.update(table).where(table.c.id == row_id,
                                                   table.c.claimed_by == self.worker_id)
                            .values(**values))

    # -- transports --------------------------------------------------------------------------
    def _send(self, row: OutboxMessage, target: OutboxMessage | None) -> dict:
        if row.transport == "email":
            return self._send_email(row)
        return self._send_slack(row, target)

    def _send_email(self, row: OutboxMessage) -> dict:
        try:
            return self.mailer({**row.payload, "outbox_id": row.id,  # type: ignore[misc]
                                "dedupe_key": row.dedupe_key})
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retry(self._backoff(row.attempts), f"smtp: {exc}") from exc

    def resolve_channel(self, channel: str) -> str:
        logical = {"approvals": self.settings.o2c_approvals_channel,
                   "alerts": self.settings.o2c_alerts_channel,
                   "ar": self.settings.o2c_ar_channel}
        return logical.get(channel, channel)

    def _send_slack(self, row: OutboxMessage, target: OutboxMessage | None) -> dict:
        payload = dict(row.payload)
        try:
            rendered = templates.render(payload.pop("template"), payload.pop("context", {}))
        except Exception as exc:  # noqa: BLE001 - a broken template must not block the queue
            raise Permanent(f"render failed: {exc!r}") from exc
        args: dict[str, Any] = {}
        if row.method == "views.publish":
            args = {"user_id": payload["user_id"], "view": rendered["view"]}
        elif row.method == "chat.update":
            if target is None or target.status != OutboxStatus.SENT:
                if target is not None and target.status == OutboxStatus.FAILED:
                    raise Permanent(f"original message (outbox {target.id}) was never posted")
                raise Defer()
            args = {"channel": target.result["channel"], "ts": target.result["ts"], **rendered}
        else:
            args = {"channel": self.resolve_channel(payload["channel"]), **rendered}
        try:
            response = self.client.api_call(row.method, json=args)
        except SlackApiError as exc:
            raise self._classify(exc, row) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retry(self._backoff(row.attempts), f"network: {exc}") from exc
        data = response.data if isinstance(response.data, dict) else {}
        result = {"ok": True}
        if "channel" in data:
            result["channel"] = data["channel"]
        if "ts" in data:
            result["ts"] = data["ts"]
        if row.method == "views.publish":
            result["view_id"] = (data.get("view") or {}).get("id")
        return result

    def _classify(self, exc: SlackApiError, row: OutboxMessage) -> Exception:
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429 or error == "ratelimited":
            retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                "retry-after")
            try:
                delay = float(retry_after) if retry_after else self._backoff(row.attempts)
            except ValueError:
                delay = self._backoff(row.attempts)
            return Retry(delay, "ratelimited (429)")
        if status >= 500:
            return Retry(self._backoff(row.attempts), f"slack {status}")
        if error in PERMANENT_ERRORS:
            return Permanent(f"slack error {error}")
        return Retry(self._backoff(row.attempts), f"slack error {error or status}")

    @staticmethod
    def _backoff(attempts: int) -> float:
        return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def describe_email(payload: dict, session: Any, settings: Settings) -> tuple[str, str]:
    """Subject and text of a queued e-mail, for its copy in Slack."""
    from bot.mailer import render_email

    try:
        return render_email(payload.get("template", ""), payload.get("context") or {},
                            from_email=settings.o2c_from_email, session=session)
    except Exception as exc:  # noqa: BLE001 - the copy must not block the queue
        log.warning("could not render queued e-mail: %r", exc)
        return f"({payload.get('template')} e-mail)", ""
