"""Exactly once for Slack interactions that create something (SPEC §5.2).

A modal submission or a click that creates a record claims a key in the same transaction as the
record: `view:<view id>` for a submission (Slack gives every opened modal its own id, and ours
close on success, so one id is one submission), a natural key for a click whose payload carries
no identity of its own (e.g. `snooze:<customer>:<until>`). The key is the primary key of
`interaction_receipts`, so a replay, a Slack retry or ten copies arriving at once from any
number of server processes create one record:

* sequentially, the copy finds the committed key and raises `AlreadyHandled`;
* concurrently on PostgreSQL, the copy's INSERT waits for the first transaction and fails with
  a unique violation once it commits (or goes ahead if the first rolled back); on SQLite, write
  transactions already queue.

The claim is taken first in the transaction, before any work, so duplicates wait instead of
doing the work twice. It does not depend on when the transaction runs relative to the ack, so
it keeps working when the work moves after the ack (lazy listeners).

Slack event receipts (`slack_event_receipts`, written by `handlers.common.first_delivery`)
only drop Slack's retries of an event, which come within minutes (three retries: at once,
after a minute, after five); they are purged once `EVENT_RECEIPTS_KEPT` old. Interaction
receipts are never purged: their keys also stop a person's later click doing it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models import InteractionReceipt, SlackEventReceipt

EVENT_RECEIPTS_KEPT = timedelta(days=3)  # far beyond Slack's retries of an event
PURGE_BATCH = 5000  # receipts deleted per transaction


class AlreadyHandled(Exception):
    """This interaction was handled before; `result` is what the first one recorded."""

    def __init__(self, key: str, result: dict) -> None:
        super().__init__(f"{key} was handled before")
        self.key = key
        self.result = result


def submission_key(view_id: str) -> str:
    return f"view:{view_id}"


def claim(session: Session, *, key: str, kind: str, actor: str) -> InteractionReceipt:
    """Claim `key` for this transaction, or raise `AlreadyHandled` if it is taken."""
    receipt = InteractionReceipt(key=key[:200], kind=kind, actor=actor[:64])
    try:
        with session.begin_nested():
            session.add(receipt)
            session.flush()
    except IntegrityError:
        first = session.get(InteractionReceipt, key[:200])
        raise AlreadyHandled(key, dict(first.result) if first is not None else {}) from None
    return receipt


def remember(session: Session, receipt: InteractionReceipt, **result: object) -> None:
    """What a replay of this interaction may be told (JSON-serialisable values)."""
    receipt.result = {**receipt.result, **result}
    session.add(receipt)


def purge_event_receipts(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` Slack event receipts recorded before `before` (by the recording
    clock, which wrote them); returns how many."""
    table = SlackEventReceipt.__table__
    doomed = (sa.select(table.c.event_id).where(table.c.received_at < before)
              .limit(limit).scalar_subquery())
    return session.execute(sa.delete(table).where(table.c.event_id.in_(doomed))).rowcount
