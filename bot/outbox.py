"""The outbox worker: delivers committed notifications to Slack (and e-mail), each once.

Lifecycle of a row: `pending` -> claimed (`sending`, with a lease) -> `sent`, or back to
`pending` with `next_attempt_at` pushed out, or `failed`, where it stays visible (`o2c outbox`,
`/o2c admin outbox`; a failed customer e-mail is also announced in the AR channel, once) until
an admin re-queues it. A dunning e-mail (and a collector's one-click reminder) is checked
against the books just before it is sent (`workflows.dunning.due_now`): what was paid or put in
dispute since it was queued is left out and the amounts are those of the moment; one with
nothing left to ask for is `withdrawn` (never sent, audited as `dunning.email_withdrawn`); so
is a customer's page-link e-mail whose link was revoked (or expired) before it went
(`customer.link_email_withdrawn`).

SPEC §5.4: a 429, a 5xx, a network error or a crash delays a notification, never loses it:

* 429 (`ratelimited`): wait `Retry-After` (seconds or an HTTP-date, at most an hour; 30 s
  when it is missing or garbage: `retry_after`); this does not count as an attempt, and the
  worker sends nothing more with that Web API method (or integration method: HubSpot's
  `deal.update`) until the wait is over;
* 5xx, Slack's own transient errors (`internal_error`, `service_unavailable`, ...), network
  errors, SMTP 4xx replies and SMTP connection trouble: retry with exponential backoff capped
  at `BACKOFF_MAX` (5 minutes), for as long as `RETRY_FOR` (24 hours) after the row was queued
  (and at least `MAX_ATTEMPTS` tries); only then is the row marked failed;
* an unknown Slack error: retried with backoff, failed after `MAX_ATTEMPTS` tries;
* a permanent error (`channel_not_found`, a 5xx SMTP reply, a template that does not render)
  or any unexpected exception while delivering (a malformed payload): failed at once, with the
  reason in `last_error`.

Claiming takes one row at a time (a conditional UPDATE of a row picked with `FOR UPDATE SKIP
LOCKED` on PostgreSQL), so several server processes (and `o2c run --deliver`) share the queue
and a worker that dies strands at most the one row it was sending. While it sends, the worker
renews its claim every third of the lease (`O2C_OUTBOX_LEASE_SECONDS`, 30 s by default); a
claim nobody renews expires after the lease and the row is taken over. Claims are stamped
and expire by one clock: on PostgreSQL the database's (`clock_timestamp()` in the claiming
UPDATE itself), so a server on a host whose clock runs ahead never sees a live claim as
expired; on SQLite (one host) the process's. Before each send the claim is also checked
(`WHERE claimed_by = me AND status = 'sending'`), so a worker that lost its claim never sends.

Sending twice, and what is left of it. A Web API call can reach Slack and still look failed
here: the response times out, the connection drops after the request went out, Slack answers
5xx after posting, or the process dies before it records the answer. So:

* every `chat.postMessage` carries a marker in its message metadata (`event_type`
  "o2c_outbox", the row's id and queue time). A row whose previous attempt's outcome is
  unknown (any second or later attempt) first looks for its marker in the conversation
  (`conversations.history` with `include_all_metadata`, from just before the row was queued;
  for a DM, the conversation from `conversations.open`) and, if it is there, is marked sent
  with that message instead of being posted again;
* `chat.update` and `views.publish` replace content: sending them twice shows the same thing;
  an update whose turn comes after a later update of the same message was sent (or is being
  sent) is left out (marked sent, `superseded_by`), and an update waits while an earlier one
  of the same message is in flight, so a retried update never brings back older content;
* an ephemeral (`chat.postEphemeral`: a record number's answer only its poster sees) can be
  neither found in a history, updated nor deleted, and these come from message events, which
  carry no `response_url` to replace one through. One whose attempt may have shown it (no
  answer, a 5xx, `internal_error` / `fatal_error`, or a claim taken over from a worker that
  stopped) is not sent again: it is failed, its `last_error` saying so, logged and counted
  (`o2c_outbox_deliveries{outcome="given_up"}`); "re-queue all" leaves it out. Nothing
  changed with it (it shows a record, which `/o2c` shows again), so losing one is the lesser
  harm;
* e-mail cannot be checked: an SMTP transaction that dies after the server took the message
  is sent again. Its `Message-ID` is derived from the row (`bot.mailer.message_id`: its
  dedupe key or id and its queue time), so the copy is recognisable and most mail clients
  show it once.

What remains: a duplicate post when (a) Slack accepted a message but does not list it in the
history yet when the next attempt looks (that attempt comes a backoff after the failed call,
which itself took up to `SLACK_TIMEOUT`, so Slack would have to lag that long); (b) a worker
stalls past its lease without renewing (the database unreachable for that long) while its send
is still in flight and another worker takes the row over; (c) the lookup is impossible: the
app lacks the `*:history` / `im:write` scopes of manifest.yml, or is not in the channel; the
worker then logs it and posts again (at least once, as before). A 429 on the lookup waits like
any 429 (Slack limits `conversations.history` to 1 request a minute for apps distributed
outside the Marketplace since 2025; the lookup only runs after an unknown outcome).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks import templates
from blocks.i18n import ENGLISH, Formats, formats
from bot import observability
from bot.customer_links import CustomerLinks
from bot.db import Database
from bot.settings import Settings
from handlers.common import locale_tag, note_database_down
from models import Customer, Invoice, OutboxMessage, OutboxStatus, User
from models.base import utcnow
from workflows import audit, customer_links, dunning, outbox, write_offs
from workflows.errors import database_unavailable

PAGE_LINK = "notice_page_link"  # the e-mail with a customer's page link (`send_portal_link`)

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger("o2c.outbox")

SLACK_TIMEOUT = 10  # seconds per Web API call (the worker's client never retries inside)
LEASE = timedelta(seconds=30)  # renewed every third of it while a row is being sent
BATCH = 10  # rows per pass, claimed and sent one at a time
MARKER = "o2c_outbox"  # metadata event_type of every message the outbox posts
HISTORY_PAGES = 5  # pages of conversations.history read when looking for an earlier post
HISTORY_PAGE = 200
HISTORY_MARGIN = timedelta(seconds=60)  # clock skew between us and Slack
# Lookup errors that mean "cannot check here" (not "try later"): post again, at least once.
CANNOT_LOOK = {"missing_scope", "not_in_channel", "channel_not_found", "not_allowed_token_type",
               "no_permission", "invalid_auth", "not_authed", "user_not_found",
               "method_not_supported_for_channel_type", "unknown_method"}
MAX_ATTEMPTS = 12  # unknown errors; transient ones also need RETRY_FOR to have passed
RETRY_FOR = timedelta(hours=24)
BACKOFF_BASE = 1.0  # seconds; doubled per attempt, capped at BACKOFF_MAX
BACKOFF_MAX = 300.0
RATE_LIMIT_DEFAULT = 30.0  # seconds to wait after a 429 without a usable Retry-After
RATE_LIMIT_MAX = 3600.0  # the longest Retry-After honoured
SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")  # Retry-After in seconds (decimals tolerated)
# Errors that will not go away by retrying the same call.
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "invalid_auth",
    "account_inactive", "token_revoked", "no_permission", "missing_scope", "msg_too_long",
    "invalid_arguments", "user_not_found", "cant_update_message", "message_not_found",
    "no_text", "restricted_action", "not_authed", "invalid_blocks_format",
    # functions.complete*: the step is over (or never was) / the outputs do not fit
    "execution_not_in_running_state", "function_execution_not_found",
    "parameter_validation_failed",
    # chat.postMessage's other documented refusals: the reader turned the app's Messages tab
    # off, the channel or thread takes no posts, the org or Enterprise Key Management refuses,
    # the message itself is malformed
    "messages_tab_disabled", "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel", "restricted_action_non_threadable_channel",
    "restricted_action_thread_locked", "cannot_reply_to_message", "team_access_not_granted",
    "ekm_access_denied", "access_denied", "too_many_attachments", "invalid_metadata_format",
    "invalid_metadata_schema", "metadata_too_large", "as_user_not_supported",
}
# Workflow Builder steps' completions: the payload's "args" are sent as they are
FUNCTION_METHODS = ("functions.completeSuccess", "functions.completeError")
LOCALE_CACHE_SECONDS = 300.0  # a reader's locale, read from `users`, is kept this long
NOT_INSTALLED_WAIT = timedelta(seconds=60)  # OAuth mode, no installation: look again after
# Slack templates that show an invoice's "Pay now" link (bot.paylinks)
PAY_LINK_TEMPLATES = ("order_shipped",)
# Slack's documented "try again later" errors (sometimes with HTTP 200, `ok: false`).
TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# ... of which Slack says "some aspect of the operation may have succeeded"
MAYBE_DONE_ERRORS = {"internal_error", "fatal_error"}


class Retry(Exception):
    """Try again after `delay` seconds (at least). `kind` is "transient" (5xx, network, SMTP
    4xx: retried for RETRY_FOR) or "unknown" (retried MAX_ATTEMPTS times). `maybe_done`: the
    call may have been carried out all the same (no answer, a 5xx, Slack's `internal_error`
    or `fatal_error`)."""

    def __init__(self, delay: float, reason: str, kind: str = "transient", *,
                 maybe_done: bool = False) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.kind = kind
        self.maybe_done = maybe_done


class RateLimited(Retry):
    """A 429: wait `delay` (Retry-After) without counting an attempt; `method` is the Web API
    method Slack limited (nothing more is sent with it until then)."""

    def __init__(self, delay: float, reason: str, method: str | None = None) -> None:
        super().__init__(delay, reason, kind="ratelimited")
        self.method = method


class Permanent(Exception):
    pass


class Defer(Exception):
    """Not deliverable yet (an update whose original is not posted): try again at `at` (or
    soon), without counting an attempt."""

    def __init__(self, at: datetime | None = None) -> None:
        super().__init__("waiting for the original message")
        self.at = at


Mailer = Callable[[dict], dict]


class Transport(Protocol):
    """Delivery of one kind of outbox row besides Slack and e-mail (outbound webhooks, CRM
    updates, payment-provider look-ups): `send` delivers a claimed row and returns what to
    keep as its result, or raises `Retry` / `Permanent` / `Defer` like the built-in ones.
    `retry_for` and `backoff` are its retry policy (a transient failure is retried with
    `backoff(attempts)` until `retry_for` after the row was queued)."""

    kind: str
    retry_for: timedelta

    def send(self, row: OutboxMessage, worker: OutboxWorker) -> dict: ...

    def backoff(self, attempts: int) -> float: ...


class OutboxWorker:
    """Claims due rows of its kinds and delivers them. `o2c serve` runs two: one for Slack
    and e-mail, one for the integrations (`transports`: webhooks, HubSpot, Stripe), so a slow
    receiver never holds a Slack message back."""

    def __init__(self, db: Database, client: WebClient | None, settings: Settings, *,
                 mailer: Mailer | None = None, poll_interval: float = 1.0,
                 wakeup: threading.Event | None = None, lease: timedelta = LEASE,
                 batch: int = BATCH, transports: list[Transport] | None = None) -> None:
        self.db = db
        self.client = client
        self.settings = settings
        self.mailer = mailer
        # given transports: this worker delivers only their kinds
        self.transports = {t.kind: t for t in transports or []}
        self.pay_links: Any = None  # bot.paylinks.PayLinks: "Pay now" on invoice cards
        # OAuth install (bot.slack_oauth.BotTokens): the bot token of each Slack send, None
        # while the app is not installed; unset: the client's own token (SLACK_BOT_TOKEN)
        self.bot_tokens: Any = None
        self.poll_interval = poll_interval
        self.wakeup = wakeup or threading.Event()
        self.lease = lease
        self.batch = batch
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset = timedelta(0)  # run_once(now=...) shifts this worker's clock
        self._taken_over: int | None = None  # the row just claimed, when its claim expired
        # Web API method (or an integration's, e.g. HubSpot's "deal.update") -> rate-limited
        # until
        self._paused: dict[str, datetime] = {}
        self._dm_channels: dict[str, str] = {}  # user id -> DM channel id (conversations.open)
        # readers' Slack locales: user id -> (locale or None: Slack said none, monotonic time
        # known); `make_worker` shares the dependencies' cache (`Deps.locales`)
        self.locales: dict[str, tuple[str | None, float]] = {}

    def now(self) -> datetime:
        return utcnow() + self._offset

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        name = "outbox-" + "-".join(self.transports) if self.transports else "outbox-worker"
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
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
            except Exception as error:
                if database_unavailable(error):
                    note_database_down(error, log)  # once a minute, no traceback
                else:
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
        announced = (self._announce_queued_emails()
                     if self.mailer is None and not self.transports else 0)
        handled = 0
        while handled < self.batch and not self._stop.is_set():
            row_id = self._claim()
            if row_id is None:
                break
            self._deliver(row_id)
            handled += 1
        return handled + announced

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
                subject, summary = describe_email(payload, session, self.settings,
                                                  pay_links=self.pay_links)
                pay_url = None
                if self.pay_links is not None:
                    pay_url = self.pay_links.email_values(
                        payload.get("template", ""), payload.get("context") or {},
                        session=session).get("pay_url")
                links = CustomerLinks.for_settings(self.settings).email_buttons(
                    payload.get("template", ""), payload.get("context") or {})
                session.add(OutboxMessage(
                    transport="slack", method="chat.postMessage",
                    dedupe_key=f"email-queued:{row_id}",
                    payload={"channel": "ar", "template": "email_queued",
                             "context": {"outbox_id": row_id, "to": payload.get("to"),
                                         "subject": subject, "summary": summary,
                                         "pay_url": pay_url,
                                         "links": [list(pair) for pair in links]}}))
        return len(rows)

    def drain(self, max_passes: int = 50) -> None:
        """Deliver until nothing is due (tests and `o2c run`)."""
        for _ in range(max_passes):
            if not self.run_once():
                return

    def _transports(self) -> list[str]:
        if self.transports:
            return sorted(self.transports)
        return ["slack", "email"] if self.mailer is not None else ["slack"]

    def _lease_now(self) -> Any:
        """The clock claims are stamped with and expire by. On PostgreSQL the database's
        (`clock_timestamp()`, read inside the claiming UPDATE): workers on several hosts share
        the queue, and a host whose clock runs ahead must not see another's live claim as
        expired and send its row a second time. On SQLite (one host) this worker's. Either way
        shifted like this worker's clock by `run_once(now=...)` (tests; nothing in production)."""
        if not self.db.is_postgres:
            return self.now()
        moment = sa.func.clock_timestamp(type_=sa.DateTime(timezone=True))
        return moment + self._offset if self._offset else moment

    def _due(self, now: datetime) -> Any:
        table = OutboxMessage.__table__
        return sa.or_(
            sa.and_(table.c.status == OutboxStatus.PENDING, table.c.next_attempt_at <= now),
            sa.and_(table.c.status == OutboxStatus.SENDING,
                    table.c.claimed_at < self._lease_now() - self.lease),
        )

    def _claim(self) -> int | None:
        """Claim the next due row (one: a crash strands at most the row being sent)."""
        table = OutboxMessage.__table__
        now = self.now()
        query = (sa.select(table.c.id)
                 .where(self._due(now), table.c.transport.in_(self._transports()))
                 .order_by(table.c.id).limit(1))
        with self.db.read_session() as session:  # idle: no write transaction (SQLite lock)
            if session.execute(query).first() is None:
                return None
        with self.db.transaction() as session:
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            picked = session.execute(query.add_columns(table.c.status)).first()
            if picked is None:
                return None
            row_id, status = picked
            # a claim that expired: whatever its worker did with the row is unknown
            self._taken_over = row_id if status == OutboxStatus.SENDING else None
            return session.execute(
                sa.update(table).where(table.c.id == row_id, self._due(now)).values(
                    status=OutboxStatus.SENDING, claimed_at=self._lease_now(),
                    claimed_by=self.worker_id,
                    attempts=table.c.attempts + 1).returning(table.c.id)).scalar()

    def _renew(self, row_id: int) -> bool:
        """Extend this worker's claim on a row just before sending it; False if the claim
        expired and another worker took the row over (it delivers it, not us)."""
        table = OutboxMessage.__table__
        with self.db.transaction() as session:
            renewed = session.execute(sa.update(table).where(
                table.c.id == row_id, table.c.claimed_by == self.worker_id,
                table.c.status == OutboxStatus.SENDING).values(claimed_at=self._lease_now()))
            return renewed.rowcount == 1

    @contextmanager
    def _heartbeat(self, row_id: int) -> Iterator[None]:
        """Renew the claim every third of the lease while the row is being sent: a slow send
        keeps it, and a worker that died loses it one lease after its last renewal."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.lease.total_seconds() / 3):
                try:
                    if not self._renew(row_id):
                        log.warning("outbox %s: claim lost while sending", row_id)
                        return
                except Exception as error:
                    if database_unavailable(error):
                        note_database_down(error, log)
                    else:
                        log.warning("outbox %s: could not renew the claim: %r", row_id, error)

        thread = threading.Thread(target=beat, name=f"outbox-claim-{row_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()

    def _deliver(self, row_id: int) -> None:
        if not self._renew(row_id):
            log.warning("outbox %s: claim lost to another worker, not sending it", row_id)
            return
        with self.db.read_session() as session:
            row = session.get(OutboxMessage, row_id)
            target = (session.get(OutboxMessage, row.target_outbox_id)
                      if row.target_outbox_id else None)
        if row.method == "chat.postEphemeral" and row_id == self._taken_over:
            self._give_up_ephemeral(row, "the worker sending it stopped before it was done")
            return
        if row.transport == "email" and (row.payload or {}).get("template") in dunning.TEMPLATES:
            row = self._as_due_now(row)
            if row is None:
                return
        if (row.transport == "email" and (row.payload or {}).get("template") == PAGE_LINK
                and not self._page_link_live(row)):
            return
        paused_until = self._paused.get(row.method)  # a 429's wait, for any transport
        if paused_until is not None and paused_until > self.now():
            self._finish(row_id, status=OutboxStatus.PENDING, undo_attempt=True,
                         next_attempt_at=paused_until)
            return
        token = observability.REQUEST_ID.set(row.request_id)  # its log lines: the request's
        try:
            with self._heartbeat(row_id):
                result = self._send(row, target)
        except Defer as defer:
            soon = self.now() + timedelta(seconds=1)
            self._finish(row_id, status=OutboxStatus.PENDING, undo_attempt=True,
                         next_attempt_at=max(soon, defer.at) if defer.at else soon)
        except RateLimited as limited:
            until = self.now() + timedelta(seconds=limited.delay)
            method = limited.method or row.method
            self._paused[method] = until
            log.info("outbox %s: %s, pausing %s for %.1fs", row_id, limited.reason, method,
                     limited.delay)
            self._finish(row_id, status=OutboxStatus.PENDING, error=limited.reason,
                         undo_attempt=True, next_attempt_at=until)
            observability.delivered(row.transport, "429")
        except Retry as retry:
            self._retry_or_fail(row, retry)
        except Permanent as exc:
            log.error("outbox %s failed permanently: %s", row_id, exc)
            self._fail(row, str(exc))
            observability.delivered(row.transport, "failed")
        except Exception as exc:
            log.exception("outbox %s failed: unexpected error", row_id)
            self._fail(row, f"unexpected: {exc!r}")
            observability.delivered(row.transport, "failed")
        else:
            self._finish(row_id, status=OutboxStatus.SENT, result=result)
            observability.delivered(row.transport, "sent")
        finally:
            observability.REQUEST_ID.reset(token)

    def _as_due_now(self, row: OutboxMessage) -> OutboxMessage | None:
        """A dunning e-mail or a collector's reminder as it is true now
        (`workflows.dunning.due_now`): what was paid or put in dispute since it was queued is
        left out and the amounts are today's (the row keeps what is sent); with nothing left to
        ask for it is withdrawn (never sent, audited) and None is returned. Only this worker's
        claim may change the row."""
        table = OutboxMessage.__table__
        payload = row.payload or {}
        mine = sa.and_(table.c.id == row.id, table.c.claimed_by == self.worker_id)
        with self.db.read_session() as session:  # the common case: nothing changed, no lock
            if dunning.due_now(session, payload["template"], payload.get("context") or {}) == (
                    payload["template"], payload.get("context") or {}):
                return row
        with self.db.transaction() as session:
            fresh = dunning.due_now(session, payload["template"], payload.get("context") or {})
            # the fees of the invoices the e-mail no longer names are not charged either
            unnamed = dunning.fees_unnamed(payload["template"], payload.get("context") or {},
                                           fresh)
            if fresh is None:
                reason = "withdrawn: nothing is due any more on its invoices (paid or in dispute)"
                if session.execute(sa.update(table).where(mine).values(
                        status=OutboxStatus.WITHDRAWN, claimed_at=None, claimed_by=None,
                        last_error=reason)).rowcount:
                    write_offs.withdraw_fees(session, unnamed, now=self.now())
                    context = payload.get("context") or {}
                    numbers = [i.get("number") for i in context.get("invoices") or
                               [context.get("invoice") or {}]]
                    audit.record(session, actor="system", action="dunning.email_withdrawn",
                                 entity_type="outbox", entity_id=row.id, from_state="sending",
                                 to_state=OutboxStatus.WITHDRAWN, reason=reason,
                                 to=payload.get("to"), template=payload["template"],
                                 invoices=numbers, at=self.now())
                    log.info("outbox %s: dunning e-mail withdrawn, nothing due on %s", row.id,
                             numbers)
                    observability.delivered(row.transport, "withdrawn")
                return None
            template, context = fresh
            if template == payload["template"] and context == payload.get("context"):
                return row
            payload = {**payload, "template": template, "context": context}
            if session.execute(sa.update(table).where(mine).values(payload=payload)).rowcount:
                write_offs.withdraw_fees(session, unnamed, now=self.now())
        row.payload = payload
        return row

    def _page_link_live(self, row: OutboxMessage) -> bool:
        """A customer's page-link e-mail goes only while its link works: one revoked (or
        expired) since it was queued is withdrawn (never sent, audited), as the revoke does
        to the rows not claimed yet (`customer_links.revoke`). Only this worker's claim may
        change the row."""
        link_id = ((row.payload or {}).get("context") or {}).get("link_id")
        with self.db.transaction() as session:
            state = customer_links.page_link_live(session, link_id, now=self.now())
            if state == "ok":
                return True
            if customer_links.withdraw_page_link_email(
                    session, row.id,
                    only_if=OutboxMessage.__table__.c.claimed_by == self.worker_id,
                    from_state="sending", link_id=link_id, actor="system",
                    reason=f"withdrawn: its link is {state}", now=self.now()):
                log.info("outbox %s: page-link e-mail withdrawn, link %s is %s", row.id,
                         link_id, state)
                observability.delivered(row.transport, "withdrawn")
        return False

    def _give_up_ephemeral(self, row: OutboxMessage, why: str) -> None:
        """An ephemeral an earlier attempt may have shown is not sent again: Slack can
        neither find one (no history), update nor delete it, so a second one could show
        twice. It is a courtesy (the answer to a record number in a channel, which `/o2c`
        shows again): losing one is better than showing it twice. Failed, with the reason;
        "re-queue all" leaves it out (an admin may still re-queue it by its id)."""
        log.warning("outbox %s: %s (%s); it may have been shown", row.id,
                    outbox.EPHEMERAL_GIVEN_UP, why)
        self._fail(row, f"{outbox.EPHEMERAL_GIVEN_UP}: {why}; it may have been shown")
        observability.delivered(row.transport, "given_up")

    def _retry_or_fail(self, row: OutboxMessage, retry: Retry) -> None:
        if row.method == "chat.postEphemeral" and retry.maybe_done:
            self._give_up_ephemeral(row, f"the outcome of sending it is unknown: {retry.reason}")
            return
        transport = self.transports.get(row.transport)
        give_up = row.attempts >= MAX_ATTEMPTS
        if transport is not None:  # its own policy: transient for as long as it says
            give_up = self.now() - row.created_at >= transport.retry_for
        elif retry.kind == "transient":  # an outage: keep trying for a day
            give_up = give_up and self.now() - row.created_at >= RETRY_FOR
        if give_up:
            log.error("outbox %s failed after %s attempts: %s", row.id, row.attempts,
                      retry.reason)
            self._fail(row, retry.reason)
            observability.delivered(row.transport, "failed")
            return
        backoff = (transport.backoff(row.attempts) if transport is not None
                   else self._backoff(row.attempts))
        delay = max(retry.delay, backoff)
        log.info("outbox %s retry in %.1fs: %s", row.id, delay, retry.reason)
        observability.delivered(row.transport, "retried")
        self._finish(row.id, status=OutboxStatus.PENDING, error=retry.reason,
                     next_attempt_at=self.now() + timedelta(seconds=delay))

    def _fail(self, row: OutboxMessage, reason: str) -> None:
        """Mark the row failed; a customer e-mail that failed is announced in the AR channel
        in the same transaction (once per row), naming the invoice(s) and the customer."""
        table = OutboxMessage.__table__
        with self.db.transaction() as session:
            failed = session.execute(sa.update(table).where(
                table.c.id == row.id, table.c.claimed_by == self.worker_id).values(
                status=OutboxStatus.FAILED, claimed_at=None, claimed_by=None,
                last_error=reason[:2000])).rowcount == 1
            if failed and row.transport == "email":
                announce_failed_email(session, row, reason)

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
        transport = self.transports.get(row.transport)
        if transport is not None:
            return transport.send(row, self)
        if row.transport == "email":
            return self._send_email(row)
        return self._send_slack(row, target)

    def _send_email(self, row: OutboxMessage) -> dict:
        try:
            return self.mailer({**row.payload, "outbox_id": row.id,  # type: ignore[misc]
                                "dedupe_key": row.dedupe_key,
                                "queued_at": row.created_at.isoformat()})
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retry(self._backoff(row.attempts), f"smtp: {exc}") from exc

    def resolve_channel(self, channel: str) -> str:
        logical = {"approvals": self.settings.o2c_approvals_channel,
                   "alerts": self.settings.o2c_alerts_channel,
                   "ar": self.settings.o2c_ar_channel}
        return logical.get(channel, channel)

    def _send_slack(self, row: OutboxMessage, target: OutboxMessage | None) -> dict:
        if self.bot_tokens is not None:
            try:
                token = self.bot_tokens.current(row.enterprise_id, row.team_id)
            except Exception as exc:  # the database or oauth.v2.access (rotation) failed
                raise Retry(self._backoff(row.attempts), f"bot token: {exc!r}") from exc
            if token is None:  # not installed (uninstalled): the row waits, nothing is lost
                log.info("outbox %s: the app is not installed in Slack (%s); waiting", row.id,
                         row.team_id or row.enterprise_id or "any workspace")
                raise Defer(self.now() + NOT_INSTALLED_WAIT)
            self.client.token = token  # this worker's own client, used by its thread only
        payload = dict(row.payload)
        if row.method in FUNCTION_METHODS:  # a Workflow Builder step's completion, as it is
            return self._call_slack(row, dict(payload["args"]))
        context = payload.pop("context", {})
        if self.pay_links is not None and payload.get("template") in PAY_LINK_TEMPLATES:
            context = {**context, "pay_url": self.pay_links.url_for(context.get("invoice"))}
        try:
            rendered = templates.render(payload.pop("template"), context,
                                        fmt=self._formats_for(row, target))
        except Exception as exc:
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
            newer = self._newer_update(row)
            if newer is not None:  # it shows later content: this one would overwrite it
                log.info("outbox %s: superseded by update %s; not sending it", row.id, newer)
                return {"ok": True, "channel": target.result["channel"],
                        "ts": target.result["ts"], "superseded_by": newer}
            args = {"channel": target.result["channel"], "ts": target.result["ts"], **rendered}
        else:
            args = {"channel": self.resolve_channel(payload["channel"]), **rendered}
            for key in ("thread_ts", "user"):  # a reply in a thread; an ephemeral's reader
                if payload.get(key):
                    args[key] = payload[key]
            if row.method == "chat.postMessage":
                args["metadata"] = marker(row)
                if row.attempts > 1:  # an earlier attempt may have posted it
                    found = self._find_posted(row, args["channel"])
                    if found is not None:
                        log.info("outbox %s: already posted (%s %s); not posting again",
                                 row.id, found["channel"], found["ts"])
                        return found
        return self._call_slack(row, args)

    def _newer_update(self, row: OutboxMessage) -> int | None:
        """The id of a later update of the same message that is being sent or was sent: it
        replaces the whole message, so this one is left out (a retried update must not bring
        back older content). While an earlier update of it is in flight, this one waits
        (`Defer`), so the two never reach Slack in the wrong order. (Whichever of the two
        was claimed first sees the other's claim.)"""
        table = OutboxMessage.__table__
        same = sa.and_(table.c.method == "chat.update",
                       table.c.target_outbox_id == row.target_outbox_id)
        live = [OutboxStatus.SENDING, OutboxStatus.SENT]
        with self.db.read_session() as session:
            # (`id >` and the status bound the scans: no index on target_outbox_id)
            newer = session.execute(sa.select(table.c.id).where(
                table.c.id > row.id, same, table.c.status.in_(live))
                .order_by(table.c.id.desc()).limit(1)).scalar()
            if newer is not None:
                return newer
            in_flight = session.execute(sa.select(table.c.id).where(
                table.c.status == OutboxStatus.SENDING, same, table.c.id < row.id)).first()
        if in_flight is not None:
            raise Defer(None)
        return None

    def _formats_for(self, row: OutboxMessage, target: OutboxMessage | None) -> Formats:
        """The formats of the one person a message is for (a DM, an ephemeral, App Home, an
        update of a DM): their Slack locale (`users.locale`; someone never looked up is asked
        now, `users.info` with the row's own token, and their row remembers it), cached for
        `LOCALE_CACHE_SECONDS`; a channel post keeps the app's formats."""
        payload = (target if row.method == "chat.update" and target is not None
                   else row).payload or {}
        reader = payload.get("user") or payload.get("user_id") or payload.get("channel")
        if not isinstance(reader, str) or reader[:1] not in ("U", "W"):
            return ENGLISH
        known = self.locales.get(reader)
        if known is None or time.monotonic() - known[1] > LOCALE_CACHE_SECONDS:
            with self.db.read_session() as session:
                user = session.get(User, reader)
            locale = user.locale if user is not None else None
            if locale is None:
                asked, locale = self._ask_locale(reader)
                if not asked:  # Slack could not say now: the app's formats, ask next time
                    return ENGLISH
            known = (locale, time.monotonic())
            self.locales[reader] = known
        return formats(known[0])

    def _ask_locale(self, reader: str) -> tuple[bool, str | None]:
        """(whether Slack answered, the reader's locale): `users.info` with `include_locale`,
        recorded on their row when they have one. A failure never holds the message back."""
        if self.client is None:
            return False, None
        try:
            info = self.client.users_info(user=reader, include_locale=True).get("user")
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            log.info("users.info failed for %s: %s", reader, error)
            return error in ("user_not_found", "missing_scope"), None
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.info("users.info failed for %s: %r", reader, exc)
            return False, None
        locale = locale_tag(info.get("locale") if isinstance(info, dict) else None)
        if locale is not None:
            table = User.__table__
            try:
                with self.db.transaction() as session:
                    session.execute(sa.update(table).where(
                        table.c.slack_user_id == reader, table.c.locale.is_(None)).values(
                        locale=locale))
            except Exception as error:  # remembered in the cache; the row learns it later
                log.info("could not record the locale of %s: %r", reader, error)
        return True, locale

    def _call_slack(self, row: OutboxMessage, args: dict) -> dict:
        try:
            response = self.client.api_call(row.method, json=args)
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if (row.method in FUNCTION_METHODS and row.attempts > 1
                    and error == "execution_not_in_running_state"):
                # an earlier attempt whose answer was lost completed it
                return {"ok": True, "completed_before": True}
            raise self._classify(exc, row) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retry(self._backoff(row.attempts), f"network: {exc}",
                        maybe_done=True) from exc
        data = response.data if isinstance(response.data, dict) else {}
        result = {"ok": True}
        if "channel" in data:
            result["channel"] = data["channel"]
        if "ts" in data:
            result["ts"] = data["ts"]
        if row.method == "views.publish":
            result["view_id"] = (data.get("view") or {}).get("id")
        return result

    def _find_posted(self, row: OutboxMessage, channel: str) -> dict | None:
        """The message an earlier attempt of this row posted, if Slack has it: looked up by
        the row's marker in the conversation's history. None when it is not there, or when
        it cannot be looked up here (then the row is posted, at least once)."""
        paused = self._paused.get("conversations.history")
        if paused is not None and paused > self.now():
            raise RateLimited((paused - self.now()).total_seconds(), "conversations.history "
                              "is rate-limited", method="conversations.history")
        want = marker(row)["event_payload"]
        try:
            conversation = self._conversation_of(channel)
            oldest = f"{(row.created_at - HISTORY_MARGIN).timestamp():.6f}"
            cursor = None
            for _ in range(HISTORY_PAGES):
                page = self.client.conversations_history(
                    channel=conversation, oldest=oldest, limit=HISTORY_PAGE,
                    include_all_metadata=True, **({"cursor": cursor} if cursor else {}))
                for message in page.get("messages") or []:
                    meta = message.get("metadata") or {}
                    if meta.get("event_type") == MARKER and meta.get("event_payload") == want:
                        return {"ok": True, "channel": conversation, "ts": message["ts"],
                                "found_after_unknown_outcome": True}
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
            log.warning("outbox %s: its marker was not in the last %d messages looked at; "
                        "posting it", row.id, HISTORY_PAGES * HISTORY_PAGE)
            return None
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if error in CANNOT_LOOK:
                log.warning("outbox %s: cannot check whether an earlier attempt posted it "
                            "(%s); posting it (it may show twice)", row.id, error)
                return None
            problem = self._classify(exc, row)
            if isinstance(problem, RateLimited):
                problem.method = "conversations.history"
            raise problem from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retry(self._backoff(row.attempts), f"network (history): {exc}") from exc

    def _conversation_of(self, channel: str) -> str:
        """A channel id for conversations.history: a user id (a DM) becomes the DM's id."""
        if channel[:1] not in ("U", "W"):
            return channel
        if channel not in self._dm_channels:
            opened = self.client.conversations_open(users=channel)
            self._dm_channels[channel] = opened["channel"]["id"]
        return self._dm_channels[channel]

    def _classify(self, exc: SlackApiError, row: OutboxMessage) -> Exception:
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429 or error == "ratelimited":
            header = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                "retry-after")
            return RateLimited(retry_after(header, now=self.now(), default=RATE_LIMIT_DEFAULT,
                                           cap=RATE_LIMIT_MAX), "ratelimited (429)")
        if status >= 500:
            return Retry(self._backoff(row.attempts), f"slack {status} {error or ''}".strip(),
                         maybe_done=True)
        if error in TRANSIENT_ERRORS:
            return Retry(self._backoff(row.attempts), f"slack error {error}",
                         maybe_done=error in MAYBE_DONE_ERRORS)
        if error in PERMANENT_ERRORS:
            return Permanent(f"slack error {error}")
        return Retry(self._backoff(row.attempts), f"slack error {error or status}",
                     kind="unknown")

    @staticmethod
    def _backoff(attempts: int) -> float:
        return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def retry_after(value: object, *, now: datetime, default: float, cap: float,
                floor: float = 1.0) -> float:
    """Seconds to wait from a `Retry-After` header (RFC 9110: a number of seconds or an
    HTTP-date), between `floor` and `cap`; `default` when there is none or it is not one
    (garbage, a negative or non-finite number, an unreadable date). One reader for Slack,
    outbound webhooks and HubSpot; each gives its own default and cap."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return default
    if SECONDS.fullmatch(text):
        seconds = float(text)  # digits only (never "nan", "inf", "-5"); too many: the cap
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return default
        if when.tzinfo is None:  # "-0000": UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()  # in the past: at once (the floor)
    return min(max(seconds, floor), cap)


def marker(row: OutboxMessage) -> dict:
    """The message metadata that identifies what this row posted (Slack shows it to nobody):
    the row id plus its queue time, so two databases posting to one channel never match."""
    return {"event_type": MARKER,
            "event_payload": {"outbox_id": row.id, "queued_at": row.created_at.isoformat()}}


EMAIL_KINDS = {"invoice": "invoice", "collections_reminder": "payment reminder",
               "dunning_friendly": "friendly reminder", "dunning_reminder": "overdue reminder",
               "dunning_firm": "firm reminder", "dunning_final": "final notice",
               "dunning_statement": "dunning statement"}


def announce_failed_email(session: Any, row: OutboxMessage, reason: str) -> None:
    """A customer e-mail that will not go out is told to AR in Slack, once per row: which
    e-mail, to whom, for which invoice(s) and customer, and why."""
    key = f"email-failed:{row.id}"
    if session.execute(sa.select(OutboxMessage.__table__.c.id).where(
            OutboxMessage.__table__.c.dedupe_key == key)).first() is not None:
        return  # failed before, re-queued, failed again: AR knows already
    payload = row.payload or {}
    context = payload.get("context") or {}
    template = payload.get("template") or ""
    customer = context.get("customer_name")
    invoices: list[str] = []
    if context.get("invoice_number"):
        invoices = [str(context["invoice_number"])]
        invoice = session.execute(sa.select(Invoice).where(
            Invoice.number == invoices[0])).scalars().first()
        if invoice is not None and customer is None:
            found = session.get(Customer, invoice.customer_id)
            customer = found.name if found is not None else None
    elif isinstance(context.get("invoice"), dict):
        invoices = [str(context["invoice"].get("number"))]
    elif isinstance(context.get("invoices"), list):
        invoices = [str(i.get("number")) for i in context["invoices"] if isinstance(i, dict)]
    session.add(OutboxMessage(
        transport="slack", method="chat.postMessage", dedupe_key=key,
        payload={"channel": "ar", "template": "email_failed", "context": {
            "outbox_id": row.id, "to": payload.get("to"), "customer": customer,
            "kind": EMAIL_KINDS.get(template, template or "e-mail"),
            "invoices": invoices[:20], "reason": reason[:500]}}))


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
    from bot.paylinks import PayLinks

    kwargs.setdefault("mailer", build_mailer(settings, deps.db, deps.clock))
    kwargs.setdefault("wakeup", deps.outbox_wakeup)
    kwargs.setdefault("lease", timedelta(seconds=settings.o2c_outbox_lease_seconds))
    worker = OutboxWorker(deps.db, client, settings, **kwargs)
    worker.pay_links = PayLinks.for_settings(settings, deps.db)
    worker.locales = deps.locales  # one cache of readers' locales with the listeners
    if deps.installations is not None:
        worker.bot_tokens = deps.installations.tokens
    return worker


def make_integrations_worker(deps: Deps, settings: Settings | None = None,
                             **kwargs: Any) -> OutboxWorker | None:
    """The second worker of a process: outbound webhooks, and the HubSpot and Stripe calls
    when they are configured (`bot.integrations.transports`)."""
    from bot.integrations import transports

    settings = settings or deps.settings
    kwargs.setdefault("wakeup", deps.integrations_wakeup)
    kwargs.setdefault("lease", timedelta(seconds=settings.o2c_outbox_lease_seconds))
    return OutboxWorker(deps.db, None, settings, transports=transports(deps, settings),
                        **kwargs)


def describe_email(payload: dict, session: Any, settings: Settings, *,
                   pay_links: Any = None) -> tuple[str, str]:
    """Subject and text of a queued e-mail, for its copy in Slack."""
    from bot.mailer import render_email

    try:
        return render_email(payload.get("template", ""), payload.get("context") or {},
                            from_email=settings.o2c_from_email, session=session,
                            pay_links=pay_links, write_session=session,
                            customer_links=CustomerLinks.for_settings(settings))
    except Exception as exc:
        log.warning("could not render queued e-mail: %r", exc)
        return f"({payload.get('template')} e-mail)", ""
