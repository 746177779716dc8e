"""Writing notifications to the outbox, inside the caller's transaction.

Workflows never talk to Slack or SMTP: they name a *template* and give it a JSON-serialisable
*context*; the outbox worker renders it (`blocks.templates`, e-mail templates) at delivery.
Channels are logical ("approvals", "alerts", "ar") and resolved from settings by the worker, or
a Slack user id for a DM. Because the row commits with the state change, a crash can delay a
notification but never lose it; a `dedupe_key` makes "send this once" a unique constraint.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from models import OutboxMessage

LOGICAL_CHANNELS = ("approvals", "alerts", "ar")


def _add(session: Session, **fields: Any) -> OutboxMessage:
    message = OutboxMessage(**fields)
    session.add(message)
    session.flush()  # assign the id, and surface a dedupe_key clash inside this transaction
    return message


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


def publish_home(session: Session, *, user_id: str, template: str, context: dict) -> OutboxMessage:
    return _add(session, transport="slack", method="views.publish",
                payload={"user_id": user_id, "template": template, "context": context})


def send_email(session: Session, *, to: str, template: str, context: dict,
               dedupe_key: str | None = None, attachments: list[dict] | None = None
               ) -> OutboxMessage:
    """An e-mail to a customer; attachments are described (e.g. an invoice PDF by number) and
    rendered at delivery so the row stays small."""
    return _add(session, transport="email", method="email", dedupe_key=dedupe_key,
                payload={"to": to, "template": template, "context": context,
                         "attachments": attachments or []})
