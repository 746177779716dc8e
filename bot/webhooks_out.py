"""Delivering outbound webhooks (transport "webhook" of the outbox; `workflows.webhooks` queues
them).

Each attempt POSTs the event's body (`workflows.webhooks.body_of`, the same bytes every
time) with the Standard Webhooks headers, signed with the `standardwebhooks` library:

    webhook-id: <the event's uid, the same on every attempt and replay>
    webhook-timestamp: <this attempt's time, seconds>
    webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
        (after `o2c webhooks rotate`, during the grace period: two of them, space-separated,
        the new secret's first, so a receiver holding either verifies)

A 2xx answer delivers it. Anything else — another status, a redirect (never followed), a
timeout, a refused connection — is logged in the delivery log and retried with exponential
backoff (5 s, doubling, at most 6 h apart) until three days after it was queued; then it fails
and stays visible (`o2c outbox`, `o2c webhooks replay`). A `Retry-After` (429/503; seconds
or an HTTP-date, `bot.outbox.retry_after`) is honoured up to the cap. Each attempt resolves
the URL's host, checks every address it got
(`workflows.destinations`: public ones only, unless O2C_WEBHOOKS_ALLOW_PRIVATE) and connects to
the address it checked, the `Host` header and TLS (SNI, certificate) still naming the host; a
refused address sends nothing and fails the attempt like an unreachable receiver, with the
reason. The answer's body is never read, and a whole attempt (resolving the name, connecting,
sending, the answer's status line and headers) has `DEADLINE` seconds: httpx's timeouts
bound each read, so a receiver sending its answer a byte at a time would otherwise hold the
integrations worker (every other subscriber, HubSpot, Stripe) for as long as it liked; at
the deadline the connection is shut down and the attempt is a timeout. The claim of the row
(lease, renewal, takeover after a crash) is the outbox's: a `kill -9` mid-request loses
nothing, and the next attempt carries the same `webhook-id`, so receivers can drop the
duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks import Webhook

from bot import observability
from bot.db import Database
from bot.outbox import Permanent, Retry, retry_after
from models import OutboxMessage, SubscriptionStatus, WebhookEvent, WebhookSubscription
from workflows import destinations, webhooks

if TYPE_CHECKING:
    from bot.outbox import OutboxWorker

log = logging.getLogger("o2c.webhooks")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # each connect / read / write
DEADLINE = 30.0  # seconds for a whole attempt, however the receiver paces its answer
BACKOFF_BASE = 5.0
BACKOFF_MAX = 6 * 3600.0
USER_AGENT = "o2c-bot-webhooks/1"


class WebhookTransport:
    kind = webhooks.TRANSPORT
    retry_for = webhooks.RETRY_FOR

    def __init__(self, db: Database, *, client: httpx.Client | None = None,
                 deadline: float = DEADLINE, allow_private: bool = False) -> None:
        self.db = db
        self.deadline = deadline
        self.allow_private = allow_private  # O2C_WEBHOOKS_ALLOW_PRIVATE
        # a new connection per attempt (no keep-alive): the deadline shuts down the one it
        # saw opened, and no receiver's half-read connection is ever reused
        self.client = client or httpx.Client(
            timeout=TIMEOUT, follow_redirects=False, headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_keepalive_connections=0))

    def backoff(self, attempts: int) -> float:
        return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)

    def send(self, row: OutboxMessage, worker: OutboxWorker) -> dict:
        payload = row.payload or {}
        with self.db.read_session() as session:
            subscription = session.get(WebhookSubscription, payload.get("subscription_id"))
            event = session.get(WebhookEvent, payload.get("event_id"))
        if subscription is None or event is None:
            observability.webhook_failed("gone")
            raise Permanent("the webhook subscription or event no longer exists")
        if subscription.status != SubscriptionStatus.ACTIVE:
            observability.webhook_failed("inactive")
            raise Permanent(f"the webhook subscription is {subscription.status}")
        body = webhooks.body_of(event)
        now = worker.now()
        headers = {"content-type": "application/json", "webhook-id": event.uid,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": " ".join(
                       Webhook(secret).sign(event.uid, now, body)
                       for secret in webhooks.signing_secrets(subscription, now))}
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        timed_out = False
        wait: float = 0.0  # the receiver's Retry-After
        resolved = False
        url = httpx.URL(subscription.url)
        host = url.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 address without brackets
        cutoff = _Cutoff(self.deadline)
        try:
            with cutoff:
                # resolved and checked within the deadline; the connection goes to the address
                # checked, TLS (SNI, certificate) and the Host header still name the host
                address = destinations.checked(
                    host, url.port or (443 if url.scheme == "https" else 80),
                    allow_private=self.allow_private, timeout=cutoff.remaining())[0]
                resolved = True
                with self.client.stream(
                        "POST", url.copy_with(host=address), content=body,
                        headers={**headers, "host": url.netloc.decode("ascii")},
                        extensions={"trace": cutoff.trace, "sni_hostname": host},
                ) as response:
                    status = response.status_code  # the body is never read
                    # none, garbage, or one in the past: the backoff decides
                    wait = retry_after(response.headers.get("retry-after"), now=now,
                                       default=0.0, cap=BACKOFF_MAX, floor=0.0)
        except destinations.Refused as exc:
            error = f"refused: {exc}"[:500]
        except destinations.Unresolved as exc:
            timed_out = exc.timed_out
            error = (f"no answer from DNS for {host} within {self.deadline:g} s"
                     if timed_out else str(exc)[:500])
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            timed_out = isinstance(exc, httpx.TimeoutException)
        if cutoff.fired and status is None and resolved:
            error = f"no complete answer within {self.deadline:g} s"
            timed_out = True
        ok = status is not None and 200 <= status < 300
        if not ok and error is None:
            error = f"HTTP {status}"
        elapsed = int((time.monotonic() - started) * 1000)
        with self.db.transaction() as session:
            webhooks.record_attempt(session, subscription_id=subscription.id,
                                    event_id=event.id, outbox_id=row.id, attempt=row.attempts,
                                    at=now, ok=ok, status_code=status, error=error,
                                    duration_ms=elapsed)
        if ok:
            return {"ok": True, "status": status, "webhook_id": event.uid}
        observability.webhook_failed(observability.webhook_failure_reason(status, timed_out))
        log.info("webhook %s to subscription %s: %s", event.uid, subscription.id, error)
        raise Retry(wait, f"webhook: {error}")


class _Cutoff:
    """The deadline of one attempt: it learns the attempt's connection when httpcore opens it
    (its `trace` extension) and keeps a duplicate of the socket (`dup`: the TLS wrapper takes
    the original over); once `seconds` have passed it shuts the connection down, which ends
    whatever read, write or TLS handshake is blocked on it (httpx then raises)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._seconds = seconds
        self._started = 0.0
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Cutoff:
        self._started = time.monotonic()
        self._timer.start()
        return self

    def remaining(self) -> float:
        """Seconds left of the deadline (name resolution gets at most these)."""
        return max(self._seconds - (time.monotonic() - self._started), 0.0)

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()  # the duplicate only: the connection is httpx's to close

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock.dup())
            if self.fired:
                _shut(self._sockets[-1])

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the connection is gone already
        sock.shutdown(socket.SHUT_RDWR)

