"""What an operator sees (issue 18): Prometheus metrics at `/metrics`, JSON log lines, and a
request id that follows a Slack request into its answer and the outbox rows it queued.

Metrics (`prometheus-client`, one registry per process: scrape every `o2c serve` process):

* `o2c_slack_ack_seconds{kind,command}`: from a verified Slack request to Bolt's ack;
* `o2c_slack_answer_seconds{kind,command}`: the work after the ack (the lazy listener);
* `o2c_outbox_depth{transport}` / `o2c_outbox_oldest_age_seconds{transport}`: rows waiting
  (pending or being sent) per channel kind (slack, email, webhook), read at scrape time;
* `o2c_outbox_deliveries_total{transport,outcome}`: sent, retried, 429, failed (webhook
  failures are `transport="webhook"`, outcome retried or failed);
* `o2c_webhook_failures_total{reason}`: outbound webhook attempts that failed, by reason
  (`timeout`, `connection`, `http_3xx` — a redirect, never followed —, `http_4xx`, `http_429`,
  `http_5xx`, `gone` — the subscription or event was deleted —, `inactive` — the
  subscription is disabled); each failed attempt counts once, retried or not;
* `o2c_job_runs_total{job,outcome}` and `o2c_job_duration_seconds{job}`: scheduled jobs.

`kind` is the Slack payload kind (command, block_actions, view_submission, event, ...) and
`command` the `/o2c` subcommand, action id, view callback or event type. A subcommand is
typed by people, so only the registered ones are labels (anything else is "other"); the ids
come from the app's own blocks through Slack's signed requests and are only length-checked.

The request id is the `X-Request-Id` header when a proxy sets a sane one, else a new one; it is
put in the Bolt request's context (Bolt copies the context into the lazy listener's request),
set in a context variable for the thread doing the work, printed in every log line (JSON, with
`O2C_LOG_FORMAT=json`) and stamped on every outbox row flushed while it is set.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session

from handlers.common import slack_id
from models import OutboxMessage, OutboxStatus, User

REQUEST_ID = contextvars.ContextVar("o2c_request_id", default=None)
# the Slack workspace a request came from: (enterprise_id, team_id), or None outside requests
SLACK_TEAM: contextvars.ContextVar[tuple[str | None, str | None] | None] = (
    contextvars.ContextVar("o2c_slack_team", default=None))
# the Slack user whose request it is (their workspace is recorded with the request's first
# outbox rows: `_record_requester_workspace`), or None
SLACK_USER: contextvars.ContextVar[str | None] = contextvars.ContextVar("o2c_slack_user",
                                                                       default=None)
CONTEXT_KEY = "o2c_request_id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30)

REGISTRY = CollectorRegistry(auto_describe=True)
ACK_SECONDS = Histogram("o2c_slack_ack_seconds", "Slack request verified to ack, seconds",
                        ["kind", "command"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
ANSWER_SECONDS = Histogram("o2c_slack_answer_seconds", "work after the ack, seconds",
                           ["kind", "command"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
DELIVERIES = Counter("o2c_outbox_deliveries", "outbox deliveries by outcome",
                     ["transport", "outcome"], registry=REGISTRY)
WEBHOOK_FAILURES = Counter("o2c_webhook_failures", "outbound webhook deliveries failing, by "
                           "reason", ["reason"], registry=REGISTRY)
JOB_RUNS = Counter("o2c_job_runs", "scheduled job runs by outcome", ["job", "outcome"],
                   registry=REGISTRY)
JOB_SECONDS = Histogram("o2c_job_duration_seconds", "scheduled job duration, seconds", ["job"],
                        buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600), registry=REGISTRY)

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _subcommands() -> set[str]:
    from handlers.commands import SUBCOMMANDS

    return set(SUBCOMMANDS)


def label_of(body: dict) -> tuple[str, str]:
    """(kind, command) of a parsed Slack payload, bounded to the names the app registers."""
    if "command" in body:
        words = str(body.get("text") or "").split()
        name = words[0].lower() if words else "help"
        return "command", name if name in _subcommands() else "other"
    kind = str(body.get("type") or "other")
    if kind == "block_actions":
        actions = body.get("actions") or [{}]
        name = str(actions[0].get("action_id") or "")
    elif kind in ("view_submission", "view_closed"):
        name = str((body.get("view") or {}).get("callback_id") or "")
    elif kind == "event_callback":
        name = str((body.get("event") or {}).get("type") or "")
        kind = "event"
    else:
        name = ""
    known = {"command", "block_actions", "view_submission", "view_closed", "event", "shortcut",
             "block_suggestion", "url_verification"}
    return (kind if kind in known else "other"), (name if _ID.match(name) else "other")


def new_request_id(header: str | None) -> str:
    return header if header and _SANE_ID.match(header) else uuid.uuid4().hex


@contextmanager
def request_scope(request_id: str | None,
                  team: tuple[str | None, str | None] | None = None,
                  user: str | None = None) -> Iterator[None]:
    token = REQUEST_ID.set(request_id)
    team_token = SLACK_TEAM.set(team if team and any(team) else None)
    user_token = SLACK_USER.set(slack_id(user))
    try:
        yield
    finally:
        SLACK_USER.reset(user_token)
        SLACK_TEAM.reset(team_token)
        REQUEST_ID.reset(token)


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(*labels).observe(time.perf_counter() - started)


def delivered(transport: str, outcome: str) -> None:
    DELIVERIES.labels(transport, outcome).inc()


def webhook_failed(reason: str) -> None:
    WEBHOOK_FAILURES.labels(reason).inc()


def webhook_failure_reason(status: int | None, timed_out: bool = False) -> str:
    """The label of a failed webhook attempt: its HTTP status class, or no answer."""
    if status is None:
        return "timeout" if timed_out else "connection"
    if status == 429:
        return "http_429"
    return f"http_{status // 100}xx" if 300 <= status < 600 else "http_other"


class OutboxCollector:
    """Outbox depth and oldest waiting row per transport, read when Prometheus scrapes, from
    the database of the app this process serves (the last one started: one per process)."""

    def __init__(self) -> None:
        self.db, self.clock = None, None

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("o2c_outbox_depth", "outbox rows waiting (pending or "
                                  "being sent)", labels=["transport"])
        oldest = GaugeMetricFamily("o2c_outbox_oldest_age_seconds", "age of the oldest "
                                   "waiting outbox row, seconds", labels=["transport"])
        table = OutboxMessage.__table__
        rows = []
        if self.db is not None:
            try:
                with self.db.engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(table.c.transport, sa.func.count(),
                                  sa.func.min(table.c.created_at))
                        .where(table.c.status.in_((OutboxStatus.PENDING,
                                                   OutboxStatus.SENDING)))
                        .group_by(table.c.transport)).all()
            except sa.exc.SQLAlchemyError:
                rows = []
        for transport, count, first in rows:
            now = self.clock.now()
            depth.add_metric([transport], int(count))
            if first is not None:
                if first.tzinfo is None:
                    first = first.replace(tzinfo=UTC)
                oldest.add_metric([transport], max((now - first).total_seconds(), 0.0))
        yield depth
        yield oldest


OUTBOX = OutboxCollector()
REGISTRY.register(OUTBOX)


def watch_outbox(db, clock) -> None:
    """Report the outbox of this database (the app's) in `o2c_outbox_*`."""
    OUTBOX.db, OUTBOX.clock = db, clock


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def stamp_outbox_rows() -> None:
    """Stamp outbox rows flushed under a request id with it, and the Slack rows that answer
    in a conversation of the request's workspace (a channel's thread, an ephemeral, a
    Workflow Builder step's completion, a DM to the requester) with that workspace; the
    requester's own row learns that workspace in the same flush, before anything is
    delivered, so even their first answer goes out with the right token (called once at
    start-up)."""
    if not event.contains(Session, "before_flush", _stamp_outbox_rows):
        event.listen(Session, "before_flush", _stamp_outbox_rows)


def _stamp_outbox_rows(session: Session, flush_context, instances) -> None:
    request_id, team = REQUEST_ID.get(), SLACK_TEAM.get()
    if request_id is None and team is None:
        return
    user, written = SLACK_USER.get(), False
    for row in session.new:
        if not isinstance(row, OutboxMessage):
            continue
        written = True
        if request_id is not None and row.request_id is None:
            row.request_id = request_id
        if team is not None and (in_request_workspace(row) or to_requester(row, user)):
            row.enterprise_id, row.team_id = team
    if written and team is not None and user is not None and not session.info.get(_RECORDED):
        session.info[_RECORDED] = True
        _record_requester_workspace(session, user, team)


_RECORDED = "o2c_requester_workspace_recorded"


def to_requester(row: OutboxMessage, user: str | None) -> bool:
    """A DM to the person whose request wrote it: delivered in the request's workspace
    (where they are now), whatever their row said before."""
    return (user is not None and row.transport == "slack"
            and row.method == "chat.postMessage" and row.target_outbox_id is None
            and (row.payload or {}).get("channel") == user)


def _record_requester_workspace(session: Session, user: str,
                                team: tuple[str | None, str | None]) -> None:
    """The requester's row (when they have one) records the request's workspace, in the
    transaction of the request's first outbox rows: their later DMs, also from jobs, go
    out there. A no-op UPDATE (no row locked) when it is recorded already."""
    enterprise_id, team_id = team
    if not all(v is None or slack_id(v) for v in team):  # a junk id is not recorded
        return
    users = User.__table__
    session.execute(sa.update(users).where(
        users.c.slack_user_id == user,
        sa.or_(users.c.team_id.is_distinct_from(team_id),
               users.c.enterprise_id.is_distinct_from(enterprise_id))).values(
        team_id=team_id, enterprise_id=enterprise_id))


def in_request_workspace(row: OutboxMessage) -> bool:
    """A Slack row not addressed yet that answers where the request came from: a post in a
    channel by its id (a thread reply, an ephemeral) or a step's completion. The logical
    channels belong to the installer's workspace, and a DM to its reader's
    (`workflows.outbox`); an update goes where its original went."""
    if row.transport != "slack" or row.team_id is not None or row.enterprise_id is not None:
        return False
    if row.method.startswith("functions."):
        return True
    if row.method not in ("chat.postMessage", "chat.postEphemeral"):
        return False
    channel = (row.payload or {}).get("channel")
    return isinstance(channel, str) and channel[:1] in ("C", "G", "D")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (for plain-text formats too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


# The customer's signed links carry their key in the path (`/c/<token>`, `/c/backorder/
# <token>/<choice>`, `/pay/<token>`): an access line shows the route, never the token (logs are
# read and shipped more widely than the links were sent).
LINK_TOKEN = re.compile(r"^(/c/(?:backorder/)?|/pay/)(?!static/)[^/?#]+")


class LinkTokenFilter(logging.Filter):
    """Takes the link token out of uvicorn's access lines (their third argument: the path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], LINK_TOKEN.sub(r"\1<link>", args[2]), *args[3:])
        return True


def configure_logging(fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    access = logging.getLogger("uvicorn.access")  # a filter of the logger: kept by uvicorn's
    if not any(isinstance(f, LinkTokenFilter) for f in access.filters):  # own log config
        access.addFilter(LinkTokenFilter())
