"""Helpers every listener uses: dependencies from the Bolt context, the caller's user row and
time zone, and a committed transaction that wakes the outbox worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from models import User
from workflows import audit
from workflows.errors import DomainError, PermissionDenied
from workflows.users import ensure_user

log = logging.getLogger("o2c.handlers")


def deps_of(context: BoltContext) -> Any:
    return context["deps"]


@contextmanager
def transaction(context: BoltContext) -> Iterator[Session]:
    """A state change from a listener: commit once, then wake the outbox worker. A refusal
    (PermissionDenied) rolls the change back and is then audited on its own."""
    deps = deps_of(context)
    try:
        with deps.db.transaction() as session:
            yield session
    except PermissionDenied as refused:
        with deps.db.transaction() as session:
            audit.refusal_of(session, refused)
        raise
    deps.notify_outbox()


def caller(context: BoltContext, user_id: str, user_name: str | None = None,
           client: WebClient | None = None) -> User:
    """The calling user's row, created (with their Slack time zone) on first contact."""
    deps = deps_of(context)
    with deps.db.read_session() as session:
        user = session.get(User, user_id)
    if user is not None:
        return user
    tz, real_name = "UTC", user_name
    if client is not None:
        try:
            info = client.users_info(user=user_id)["user"]
            tz = info.get("tz") or "UTC"
            real_name = info.get("real_name") or info.get("name") or user_name
        except SlackApiError as exc:
            log.info("users.info failed for %s: %s", user_id, exc.response.get("error"))
    with deps.db.transaction() as session:
        user = ensure_user(session, user_id, name=real_name)
        user.timezone = tz
        session.add(user)
    return user


@contextmanager
def answering(body: dict, respond: Any, client: WebClient) -> Iterator[None]:
    """Inside a listener that has already acked: turn a DomainError into an answer only the
    user sees (ephemeral where they clicked, else a DM) instead of raising.

    Why not let `@app.error` answer: with `process_before_response=False`, Bolt's thread
    runner resets the ack when a listener raises within ~10 ms of `ack()`, before the request
    thread has seen it, and Slack then gets "unhandled request" for a click that was handled.
    """
    from blocks.text import esc

    try:
        yield
    except DomainError as exc:
        text = f":warning: {esc(exc.detail)}"
        if respond is not None and body.get("response_url"):
            respond(text=text, response_type="ephemeral", replace_original=False)
        else:
            client.chat_postMessage(channel=body["user"]["id"], text=text)
