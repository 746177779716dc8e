"""Writing notifications to the outbox, inside the caller's transaction.

Workflows never talk to Slack or SMTP: they name a *template* and give it a JSON-serialisable
*context*; the outbox worker renders it (`blocks.templates`, e-mail templates) at delivery.
Channels are logical ("approvals", "alerts", "ar") and resolved from settings by the worker, or
a Slack user id for a DM. Because the row commits with the state change, a crash can delay a
notification but never lose it; a `dedupe_key` makes "send this once" a unique constraint.

Which Slack workspace a row is for (OAuth install into several workspaces of one org: each
delivers with its own installation's token): a DM goes through the workspace its reader was
last seen in (`users.team_id`), an update where its original went; the logical channels
belong to the installer's workspace (no team: the default installation); a post in a channel
by its id goes to the workspace recorded for that channel when it was configured
(`channel_workspaces`, `record_channel_workspace`), else it is stamped with the workspace of
the request that wrote it (`bot.observability`); a job's post in a channel nobody recorded
uses the default installation.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import ChannelWorkspace, OutboxMessage, OutboxStatus, User

LOGICAL_CHANNELS = ("approvals", "alerts", "ar")


def _add(session: Session, **fields: Any) -> OutboxMessage:
    message = OutboxMessage(**fields, **_workspace(session, fields))
    session.add(message)
    session.flush()  # assign the id, and surface a dedupe_key clash inside this transaction
    return message


def _workspace(session: Session, fields: dict) -> dict:
    """The workspace a DM (its reader's), an update (its original's) or a post in a channel
    by its id (the channel's, as recorded) is delivered in."""
    if fields.get("transport") != "slack":
        return {}
    source: Any = None
    channel = (fields.get("payload") or {}).get("channel")
    if fields.get("target_outbox_id") is not None:
        source = session.get(OutboxMessage, fields["target_outbox_id"])
    elif isinstance(channel, str) and channel[:1] in ("U", "W"):
        source = session.get(User, channel)
    elif isinstance(channel, str) and channel and channel not in LOGICAL_CHANNELS:
        source = session.get(ChannelWorkspace, channel)
    if source is None or not (source.team_id or source.enterprise_id):
        return {}
    return {"team_id": source.team_id, "enterprise_id": source.enterprise_id}


def record_channel_workspace(session: Session, *, channel: str, team_id: str | None,
                             enterprise_id: str | None) -> None:
    """Remember which workspace a configured channel (by id) belongs to: its posts, also by
    jobs, go out with that workspace's installation. Nothing for a logical channel or
    without a workspace (single-token mode: one installation)."""
    channel = channel.strip()
    if (not channel or len(channel) > 64 or channel in LOGICAL_CHANNELS
            or not (team_id or enterprise_id)):
        return
    row = session.get(ChannelWorkspace, channel)
    if row is None:
        row = ChannelWorkspace(channel_id=channel)
    elif (row.team_id, row.enterprise_id) == (team_id, enterprise_id):
        return
    row.team_id, row.enterprise_id = team_id, enterprise_id
    session.add(row)


def post_to_channel(session: Session, *, channel: str, template: str, context: dict,
                    dedupe_key: str | None = None) -> OutboxMessage:
    """A message in a logical channel ("approvals", "alerts", "ar") or a channel id."""
    return _add(session, transport="slack", method="chat.postMessage", dedupe_key=dedupe_key,
                payload={"channel": channel, "template": template, "context": context})


def post_to_user(session: Session, *, user_id: str, template: str, context: dict,
                 dedupe_key: str | None = None) -> OutboxMessage:
    """A direct message from the bot to a Slack user."""
    return _add(session, transport="slack", method="chat.postMessage", dedupe_key=dedupe_key,
                payload={"channel": user_id, "template": template, "context": context})


def update_message(session: Session, *, target_outbox_id: int, template: str, context: dict,
                   dedupe_key: str | None = None) -> OutboxMessage:
    """Replace a message this outbox posted earlier (the worker waits until it is posted)."""
    return _add(session, transport="slack", method="chat.update", dedupe_key=dedupe_key,
                target_outbox_id=target_outbox_id,
                payload={"template": template, "context": context})


def send_email(session: Session, *, to: str, template: str, context: dict,
               dedupe_key: str | None = None, attachments: list[dict] | None = None
               ) -> OutboxMessage:
    """An e-mail to a customer; attachments are described (e.g. an invoice PDF by number) and
    rendered at delivery so the row stays small."""
    return _add(session, transport="email", method="email", dedupe_key=dedupe_key,
                payload={"to": to, "template": template, "context": context,
                         "attachments": attachments or []})


# -- what an operator sees (`o2c outbox`, `/o2c admin outbox`) ---------------------------------
def has_message(session: Session, dedupe_key: str) -> bool:
    """Whether a message with this dedupe key is in the outbox (queued, sent or failed): told
    already. (The unique index still decides between two transactions at once.)"""
    table = OutboxMessage.__table__
    return session.execute(sa.select(table.c.id).where(
        table.c.dedupe_key == dedupe_key)).first() is not None


def queued(session: Session, limit: int = 50) -> list[OutboxMessage]:
    """Messages not delivered yet (pending or being sent), oldest first."""
    return list(session.exec(select(OutboxMessage)
                             .where(OutboxMessage.status.in_([OutboxStatus.PENDING,
                                                              OutboxStatus.SENDING]))
                             .order_by(OutboxMessage.id).limit(limit)))


def failed(session: Session, limit: int = 50) -> list[OutboxMessage]:
    """Messages the worker gave up on, newest first; they stay until re-queued."""
    return list(session.exec(select(OutboxMessage)
                             .where(OutboxMessage.status == OutboxStatus.FAILED)
                             .order_by(OutboxMessage.id.desc()).limit(limit)))


# `last_error` of a failed webhook row `webhooks.replay` queued again as a new row
REPLAYED = "replayed as a new delivery"
# how `last_error` of an ephemeral the worker did not send again begins (`bot.outbox`): an
# earlier attempt may have shown it, and Slack can neither find, update nor delete one
EPHEMERAL_GIVEN_UP = "ephemeral not sent again"


def requeue_failed(session: Session, row_id: int | None = None) -> int:
    """Put failed messages back in the queue (after the cause was fixed); returns how many.
    All of them (`row_id` None) leaves out webhook rows replayed already (their event went
    out again as a new row).

    Nor, all of them, an ephemeral the worker gave up on (`EPHEMERAL_GIVEN_UP`): an earlier
    attempt may have shown it; by its id it goes out again.

    A row that was attempted before keeps one attempt on its count: an earlier attempt may
    have reached Slack with its answer lost, and the worker looks for such a post before
    posting again only from a row's second attempt on (`bot.outbox`), so a re-queued post is
    found where it is instead of shown twice. A row never attempted starts from nothing."""
    table = OutboxMessage.__table__
    query = sa.update(table).where(table.c.status == OutboxStatus.FAILED)
    if row_id is not None:
        query = query.where(table.c.id == row_id)
    else:  # (all: not a webhook whose event was replayed as a new delivery already, nor an
        # ephemeral that may have been shown already)
        query = query.where(sa.or_(table.c.last_error.is_(None), sa.and_(
            table.c.last_error != REPLAYED,
            sa.not_(table.c.last_error.startswith(EPHEMERAL_GIVEN_UP, autoescape=True)))))
    # due at once: any time in the past will do, and the row's own creation time needs no clock
    result = session.execute(query.values(
        status=OutboxStatus.PENDING, attempts=sa.case((table.c.attempts > 0, 1), else_=0),
        next_attempt_at=table.c.created_at))
    return result.rowcount
