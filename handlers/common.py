"""Helpers every listener uses: dependencies from the Bolt context, the caller's user row and
time zone, and a committed transaction that wakes the outbox worker."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from blocks.text import esc
from models import User
from workflows import audit
from workflows.errors import DomainError, PermissionDenied
from workflows.users import ensure_user

log = logging.getLogger("o2c.handlers")


def deps_of(context: BoltContext) -> Any:
    return context["deps"]


@contextmanager
def _refusal_audited(deps: Any) -> Iterator[None]:
    """A PermissionDenied rolls its own transaction back; the refusal is then recorded in a
    short transaction of its own (refusals belong in the audit log, SPEC §5.7)."""
    try:
        yield
    except PermissionDenied as refused:
        with deps.db.transaction() as session:
            audit.refusal_of(session, refused)
        raise


@contextmanager
def transaction(context: BoltContext) -> Iterator[Session]:
    """A state change from a listener: commit once, then wake the outbox worker. A refusal
    (PermissionDenied) rolls the change back and is then audited on its own."""
    deps = deps_of(context)
    with _refusal_audited(deps), deps.db.transaction() as session:
        yield session
    deps.notify_outbox()


@contextmanager
def checking(context: BoltContext) -> Iterator[Session]:
    """Read-only checks (roles, segregation of duties) before opening a modal or answering.

    A read session, so on SQLite it never waits for the write lock a long job may hold (a
    trigger_id expires 3 s after the click); a refusal (PermissionDenied) is still audited."""
    deps = deps_of(context)
    with _refusal_audited(deps), deps.db.read_session() as session:
        yield session


USER_CACHE_SECONDS = 300


def caller(context: BoltContext, user_id: str, user_name: str | None = None,
           client: WebClient | None = None) -> User:
    """The calling user's row, created (with their Slack time zone) on first contact.
    Rows are cached for a few minutes: a user's name and time zone rarely change, and this
    runs on every command. Roles are never cached (they are checked on every action)."""
    deps = deps_of(context)
    seen = deps.users_seen.get(user_id)
    if seen is not None and time.monotonic() - seen[1] < USER_CACHE_SECONDS:
        return seen[0]
    with deps.db.read_session() as session:
        user = session.get(User, user_id)
    if user is not None:
        deps.users_seen[user_id] = (user, time.monotonic())
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


def describe_error(error: Exception, logger: logging.Logger = log) -> str:
    """What to tell the user about a failed request; unexpected errors are logged once, with a
    reference the user can quote, and never shown (no stack traces, no secrets)."""
    if isinstance(error, DomainError):
        return f":warning: {esc(error.detail)}"  # details may quote user input
    ref = uuid.uuid4().hex[:8]
    logger.error("unhandled error ref=%s", ref, exc_info=error)
    return f"Sorry, something went wrong on our side (ref `{ref}`). Nothing was changed."


def after_ack(context: BoltContext, func: Callable[[], None],
              on_error: Callable[[str], None]) -> None:
    """Run `func` in the answers pool (after the ack went out); errors reach the user via
    `on_error(text)` as the app's error handler would tell them."""
    def run() -> None:
        try:
            func()
        except Exception as error:  # noqa: BLE001 - reported to the user and logged once
            text = describe_error(error)
            try:
                on_error(text)
            except Exception:  # noqa: BLE001
                log.warning("could not tell the user about an error")

    deps_of(context).answers.submit(run)


def tell_user(body: dict, respond: Any, client: WebClient, text: str) -> None:
    """Say something only the acting user sees: ephemeral where they clicked or typed, else
    (a modal, an event) in their DM with the bot."""
    if respond is not None and body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    else:
        user = body.get("user") or {}
        user_id = user.get("id") if isinstance(user, dict) else body.get("user_id")
        if user_id:
            client.chat_postMessage(channel=user_id, text=text)


_BOLT_ARGS = ("logger", "client", "context", "body", "payload", "options", "shortcut",
              "action", "view", "command", "event", "message", "ack", "say", "respond")


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a listener so that an error raised *after* it acked is answered here.

    Why: with `process_before_response=False`, Bolt's thread runner replaces an ack that the
    request thread has not picked up yet (it polls every 10 ms) when the listener then raises,
    and Slack gets "unhandled request" for a click or command that was in fact handled. Errors
    before the ack still go to the app's `@app.error` handler. Bolt injects arguments by name,
    so the wrapper asks for every argument a listener may use and passes each listener the ones
    it declares."""
    from slack_bolt.util.utils import get_arg_names_of_callable

    wanted = get_arg_names_of_callable(func)
    unknown = set(wanted) - set(_BOLT_ARGS)
    if unknown:
        raise TypeError(f"{func.__name__}: unsupported listener arguments {sorted(unknown)}")

    def listener(logger, client, context, body, payload, options, shortcut, action,  # noqa: ANN001, ANN202, PLR0913
                 view, command, event, message, ack, say, respond):
        given = locals()
        try:
            return func(**{name: given[name] for name in wanted})
        except Exception as error:
            if getattr(ack, "response", None) is None:
                raise  # not acked yet: Bolt answers with the error handler
            text = describe_error(error, logger)
            try:
                tell_user(body, respond, client, text)
            except Exception:  # noqa: BLE001 - the error is already logged
                logger.warning("could not tell the user about an error")
            return None

    listener.__name__ = func.__name__
    listener.__qualname__ = func.__qualname__
    listener.__doc__ = func.__doc__
    return listener


class GuardedApp:
    """The Bolt app as listener modules see it: every listener they register is `guarded`."""

    _REGISTRARS = frozenset({"command", "action", "block_action", "view", "view_submission",
                             "view_closed", "options", "block_suggestion", "event", "shortcut",
                             "message"})

    def __init__(self, app: Any) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._app, name)
        if name not in self._REGISTRARS:
            return attr

        def register(*args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
            decorator = attr(*args, **kwargs)
            return lambda func: decorator(guarded(func))
        return register


# -- the clock (bot/clock.py, carried on the dependencies) ---------------------------------------
def now_of(context: BoltContext) -> datetime:
    """This moment (aware, UTC) by the app's one clock."""
    return deps_of(context).clock.now()


def today_for(context: BoltContext, user: User) -> date:
    """Today in the user's Slack time zone (an unknown or missing zone is UTC): every "today" a
    person sees — days past due, aging, the default date of a form — is this one."""
    return deps_of(context).clock.today(user.timezone)
