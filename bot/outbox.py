"""The outbox worker: delivers committed notifications to Slack (and e-mail), each once.

Lifecycle of a row: `pending` -> claimed (`sending`, with a lease) -> `sent`, or back to
`pending` with `next_attempt_at` pushed out, or `failed`, where it stays visible (`o2c outbox`,
`/o2c admin outbox`) until an admin re-queues it. SPEC §5.4: a 429, a 5xx, a network error or a
crash delays a notification, never loses it:

* 429 (`ratelimited`): wait `Retry-After`; this does not count as an attempt, and the worker
  sends nothing more with that Web API method until the wait is over;
* 5xx, Slack's own transient errors (`internal_error`, `service_unavailable`, ...), network
  errors, SMTP 4xx replies and SMTP connection trouble: retry with exponential backoff capped
  at `BACKOFF_MAX` (5 minutes), for as long as `RETRY_FOR` (24 hours) after the row was queued
  (and at least `MAX_ATTEMPTS` tries); only then is the row marked failed;
* an unknown Slack error: retried with backoff, failed after `MAX_ATTEMPTS` tries;
* a permanent error (`channel_not_found`, a 5xx SMTP reply, a template that does not render)
  or any unexpected exception while delivering (a malformed payload): failed at once, with the
  reason in `last_error`.

Claiming is a conditional UPDATE on a batch picked with `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several server processes (and `o2c run --deliver`) share the queue. A claim
whose worker died expires after `LEASE` and the row is delivered by someone else. Before each
send the worker renews its claim with a conditional UPDATE (`WHERE claimed_by = me AND status =
'sending'`) and skips the row if someone else took it over, so a slow batch never leads to a
second delivery; the lease therefore only has to outlast one send (a Slack call times out
after `SLACK_TIMEOUT`; an SMTP send is a handful of operations of at most `bot.mailer.TIMEOUT`
each). The one unavoidable window — the process dies after Slack accepted the call and before
the row is marked sent — is as small as one UPDATE.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import templates
from bot.db import Database
from bot.settings import Settings
from models import OutboxMessage, OutboxStatus
from models.base import utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger("o2c.outbox")

SLACK_TIMEOUT = 10  # seconds per Web API call (the worker's client never retries inside)
LEASE = timedelta(minutes=5)  # comfortably longer than one send; renewed before each send
BATCH = 10
MAX_ATTEMPTS = 12  # unknown errors; transient ones also need RETRY_FOR to have passed
RETRY_FOR = timedelta(hours=24)
BACKOFF_BASE = 1.0  # seconds; doubled per attempt, capped at BACKOFF_MAX
BACKOFF_MAX = 300.0
RATE_LIMIT_DEFAULT = 30.0  # seconds to wait after a 429 without a usable Retry-After
# Errors that will not go away by retrying the same call.
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "invalid_auth",
    "account_inactive", "token_revoked", "no_permission", "missing_scope", "msg_too_long",
    "invalid_arguments", "user_not_found", "cant_update_message", "message_not_found",
    "no_text", "restricted_action", "not_authed", "invalid_blocks_format",
}
# Slack's documented "try again later" errors (sometimes with HTTP 200, `ok: false`).
TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Retry(Exception):
    """Try again after `delay` seconds (at least). `kind` is "transient" (5xx, network, SMTP
    4xx: retried for RETRY_FOR) or "unknown" (retried MAX_ATTEMPTS times)."""

    def __init__(self, delay: float, reason: str, kind: str = "transient") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.kind = kind


class RateLimited(Retry):
    """A 429: wait `delay` (Retry-After) without counting an attempt."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(delay, reason, kind="ratelimited")


class Permanent(Exception):
    pass


class Defer(Exception):
    """Not deliverable yet (an update whose original is not posted): try again at `at` (or
    soon), without counting an attempt."""

    def __init__(self, at: datetime | None = None) -> None:
        super().__init__("waiting for the original message")
        self.at = at


Mailer = Callable[[dict], dict]


class OutboxWorker:
    def __init__(self, db: Database, client: WebClient, settings: Settings, *,
                 mailer: Mailer | None = None, poll_interval: float = 1.0,
                 wakeup: threading.Event | None = None, lease: timedelta = LEASE,
                 batch: int = BATCH) -> None:
        self.db = db
        self.client = client
        self.settings = settings
        self.mailer = mailer
        self.poll_interval = poll_interval
        self.wakeup = wakeup or threading.Event()
        self.lease = lease
        self.batch = batch
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset = timedelta(0)  # run_once(now=...) shifts this worker's clock
        self._paused: dict[str, datetime] = {}  # Web API method -> rate-limited until

    def now(self) -> datetime:
        return utcnow() + self._offset

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
        """Claim due rows and deliver them; returns how many were handled. `now` (tests) sets
        this worker's clock, which then runs on from there."""
        self._offset = (now - utcnow()) if now is not None else timedelta(0)
        announced = self._announce_queued_emails() if self.mailer is None else 0
        ids = self._claim()
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
            table.c.last_error.is_(None)).order_by(table.c.id).limit(self.batch))
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

    def _due(self, now: datetime) -> Any:
        table = OutboxMessage.__table__
        return sa.or_(
            sa.and_(table.c.status == OutboxStatus.PENDING, table.c.next_attempt_at <= now),
            sa.and_(table.c.status == OutboxStatus.SENDING,
                    table.c.claimed_at < now - self.lease),
        )

    def _claim(self) -> list[int]:
        table = OutboxMessage.__table__
        now = self.now()
        with self.db.transaction() as session:
            query = (sa.select(table.c.id)
                     .where(self._due(now), table.c.transport.in_(self._transports()))
                     .order_by(table.c.id).limit(self.batch))
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [row[0] for row in session.execute(query)]
            if not ids:
                return []
            claimed = session.execute(
                sa.update(table).where(table.c.id.in_(ids), self._due(now)).values(
                    status=OutboxStatus.SENDING, claimed_at=now, claimed_by=self.worker_id,
                    attempts=table.c.attempts + 1).returning(table.c.id))
            return sorted(row[0] for row in claimed)

    def _renew(self, row_id: int) -> bool:
        """Extend this worker's claim on a row just before sending it; False if the claim
        expired and another worker took the row over (it delivers it, not us)."""
        table = OutboxMessage.__table__
        with self.db.transaction() as session:
            renewed = session.execute(sa.update(table).where(
                table.c.id == row_id, table.c.claimed_by == self.worker_id,
                table.c.status == OutboxStatus.SENDING).values(claimed_at=self.now()))
            return renewed.rowcount == 1

    def _deliver(self, row_id: int) -> None:
        if not self._renew(row_id):
            log.warning("outbox %s: claim lost to another worker, not sending it", row_id)
            return
        with self.db.read_session() as session:
            row = session.get(OutboxMessage, row_id)
            target = (session.get(OutboxMessage, row.target_outbox_id)
                      if row.target_outbox_id else None)
        paused_until = self._paused.get(row.method) if row.transport == "slack" else None
        if paused_until is not None and paused_until > self.now():
            self._finish(row_id, status=OutboxStatus.PENDING, undo_attempt=True,
                         next_attempt_at=paused_until)
            return
        try:
            result = self._send(row, target)
        except Defer as defer:
            soon = self.now() + timedelta(seconds=1)
            self._finish(row_id, status=OutboxStatus.PENDING, undo_attempt=True,
                         next_attempt_at=max(soon, defer.at) if defer.at else soon)
        except RateLimited as limited:
            until = self.now() + timedelta(seconds=limited.delay)
            self._paused[row.method] = until
            log.info("outbox %s: %s, pausing %s for %.1fs", row_id, limited.reason, row.method,
                     limited.delay)
            self._finish(row_id, status=OutboxStatus.PENDING, error=limited.reason,
                         undo_attempt=True, next_attempt_at=until)
        except Retry as retry:
            self._retry_or_fail(row, retry)
        except Permanent as exc:
            log.error("outbox %s failed permanently: %s", row_id, exc)
            self._finish(row_id, status=OutboxStatus.FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad row must fail, not stay 'sending'
            log.exception("outbox %s failed: unexpected error", row_id)
            self._finish(row_id, status=OutboxStatus.FAILED, error=f"unexpected: {exc!r}")
        else:
            self._finish(row_id, status=OutboxStatus.SENT, result=result)

    def _retry_or_fail(self, row: OutboxMessage, retry: Retry) -> None:
        give_up = row.attempts >= MAX_ATTEMPTS
        if retry.kind == "transient":  # an outage: keep trying for a day
            give_up = give_up and self.now() - row.created_at >= RETRY_FOR
        if give_up:
            log.error("outbox %s failed after %s attempts: %s", row.id, row.attempts,
                      retry.reason)
            self._finish(row.id, status=OutboxStatus.FAILED, error=retry.reason)
            return
        delay = max(retry.delay, self._backoff(row.attempts))
        log.info("outbox %s retry in %.1fs: %s", row.id, delay, retry.reason)
        self._finish(row.id, status=OutboxStatus.PENDING, error=retry.reason,
                     next_attempt_at=self.now() + timedelta(seconds=delay))

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
            values["sent_at"] = self.now()
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
                waiting = target is not None and target.status == OutboxStatus.PENDING
                raise Defer(target.next_attempt_at if waiting else None)
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
                delay = float(retry_after) if retry_after else RATE_LIMIT_DEFAULT
            except ValueError:
                delay = RATE_LIMIT_DEFAULT
            return RateLimited(min(max(delay, 1.0), 3600.0), "ratelimited (429)")
        if status >= 500:
            return Retry(self._backoff(row.attempts), f"slack {status} {error or ''}".strip())
        if error in TRANSIENT_ERRORS:
            return Retry(self._backoff(row.attempts), f"slack error {error}")
        if error in PERMANENT_ERRORS:
            return Permanent(f"slack error {error}")
        return Retry(self._backoff(row.attempts), f"slack error {error or status}",
                     kind="unknown")

    @staticmethod
    def _backoff(attempts: int) -> float:
        return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def make_worker(deps: Deps, settings: Settings | None = None, **kwargs: Any) -> OutboxWorker:
    """The outbox worker of a process, the same for `o2c serve` and `o2c run --deliver`.

    It gets its own WebClient without slack_sdk's retry handlers (the default one re-sends a
    call after a connection error, which can post a message twice; the worker retries itself,
    with the row's claim), the e-mail transport when SMTP_URL is set, and wakes up on
    `deps.notify_outbox()`. Keyword arguments go to OutboxWorker (poll_interval, lease, ...)."""
    from bot.mailer import build_mailer

    settings = settings or deps.settings
    client = WebClient(token=deps.client.token, base_url=deps.client.base_url,
                       timeout=SLACK_TIMEOUT, retry_handlers=[])
    kwargs.setdefault("mailer", build_mailer(settings, deps.db))
    kwargs.setdefault("wakeup", deps.outbox_wakeup)
    return OutboxWorker(deps.db, client, settings, **kwargs)


def describe_email(payload: dict, session: Any, settings: Settings) -> tuple[str, str]:
    """Subject and text of a queued e-mail, for its copy in Slack."""
    from bot.mailer import render_email

    try:
        return render_email(payload.get("template", ""), payload.get("context") or {},
                            from_email=settings.o2c_from_email, session=session)
    except Exception as exc:  # noqa: BLE001 - the copy must not block the queue
        log.warning("could not render queued e-mail: %r", exc)
        return f"({payload.get('template')} e-mail)", ""
