"""The Bolt app: request verification, shared dependencies, listeners, one error handler.

Every listener acks first and does its slow work after the ack, in a Bolt lazy listener
(`handlers.common.after_ack`). The app runs with `process_before_response=True`: the ack
function runs in the request's own thread and its answer goes back to Slack as soon as it
returns; only the lazy listeners run in the listener executor (`LISTENER_THREADS`). So an ack
never queues behind slow work, and a listener that fails cannot replace an ack already given.
More load is served by more server processes (they share the database safely: SKIP LOCKED
outbox claims, advisory-locked jobs, event and interaction receipts).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor
from typing import Any

from slack_bolt import Ack, App, BoltRequest, BoltResponse, Respond
from slack_bolt.error import BoltError
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient

from bot.deps import Deps
from bot.slack_request import PayloadShape
from handlers import register_listeners
from handlers.common import (
    EVENT_RECEIPT,
    describe_error,
    first_input_block,
    note_database_down,
    tell_user,
)
from handlers.events.messages import from_a_person, in_dm
from models import SlackEventReceipt
from workflows.errors import database_unavailable
from workflows.mentions import numbers_in

log = logging.getLogger("o2c.slack")

# Threads for the work after the acks (lazy listeners). Most of their time is spent waiting
# for Slack (response_url, views.open, chat.postMessage) or the database, so several run at
# once; fewer than the database pool's connections (bot/db.py), so they never wait for one.
LISTENER_THREADS = 16


def create_bolt_app(deps: Deps, listener_executor: Executor) -> App:
    settings = deps.settings
    oauth = deps.installations  # OAuth install mode (bot.slack_oauth), else SLACK_BOT_TOKEN
    app = App(
        client=deps.client,
        signing_secret=(settings.slack_signing_secret.get_secret_value()
                        if settings.slack_signing_secret else None),
        # auth.test at start-up would make booting depend on Slack being reachable
        token_verification_enabled=False,
        # the ack in the request thread, the rest in lazy listeners (see the module docstring)
        process_before_response=True,
        listener_executor=listener_executor,
        raise_error_for_unhandled_request=False,
        ignoring_self_events_enabled=True,
        oauth_flow=oauth.flow if oauth is not None else None,
        authorize=oauth.authorize if oauth is not None else None,
    )
    app.use(PayloadShape())  # before anything reads the payload (Socket Mode too)
    app.use(Dependencies(deps))
    app.error(on_error)
    register_listeners(app)
    return app


class Dependencies(Middleware):
    """Puts the process's dependencies on every request's context (`context["deps"]`), and
    lets each Events API event through once, so a retry Slack sends (it does when an ack is
    slow) runs nothing twice: an event id seen before is answered at once and runs nothing;
    a new one is recorded by its listener right after the ack, before it does anything
    (`handlers.common.after_ack`, `EVENT_RECEIPT`; the unique event id decides between
    copies running at once). Before the ack only a read happens: on SQLite a write would
    wait for the one write lock, which a long job (an import, the nightly runs) may hold for
    longer than Slack's 3 seconds (SPEC §5.3)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Any
                ) -> BoltResponse | None:
        req.context["deps"] = self.deps
        body = req.body
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and _acts_on(body.get("event")):
            try:
                seen = _seen_before(self.deps, event_id)
            except Exception as error:
                if not database_unavailable(error):
                    raise
                note_database_down(error, log)
                return BoltResponse(status=503, body="")  # Slack retries the event later
            if seen:
                log.info("duplicate event %s ignored", event_id)
                # 200 with nothing run: Slack stops retrying, and nothing happens twice
                return BoltResponse(status=200, body="")
            req.context[EVENT_RECEIPT] = event_id  # recorded after the ack (`after_ack`)
        return next()


def on_error(error: Exception, body: dict, response: BoltResponse | None, ack: Ack,
             respond: Respond | None, client: WebClient, logger: logging.Logger
             ) -> BoltResponse | None:
    """The app's one error handler: answers a failed request and logs it once (no try/except
    in listeners).

    After the ack — a lazy listener failed (`response` is None: `handlers.common.after_ack`),
    or an ack function failed after acking — the user is told where they typed or clicked
    (`respond`), else in a DM, and the ack stands. Before it, a modal submission is answered
    in the modal itself (an inline error on its first input: the form stays open with what was
    typed), anything else through `respond` when the request carried a response_url."""
    if isinstance(error, BoltError):
        logger.error("bolt error: %s", error)
    if response is None or ack.response is not None:
        try:
            tell_user(body, respond, client, describe_error(error, logger))
        except Exception:
            logger.warning("could not tell the user about an error")
        return None if response is None else ack.response
    if isinstance(body, dict) and body.get("type") == "view_submission":
        block = first_input_block(body.get("view"))
        if block is not None:
            text = describe_error(error, logger, plain=True)
            return BoltResponse(status=200, body=json.dumps({
                "response_action": "errors", "errors": {block: text[:300]}}),
                headers={"content-type": "application/json; charset=utf-8"})
    text = describe_error(error, logger)
    if respond is not None:  # present when the request carried a response_url
        try:
            respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception:
            logger.warning("could not tell the user about an error")
    if database_unavailable(error):
        return BoltResponse(status=503, body="")  # e.g. an event: Slack retries it
    return None


def _acts_on(event: object) -> bool:
    """Whether an event can do anything (so its id must be recorded first). Messages in the
    channels the bot is in are the busiest events by far, and only those naming a record
    number are answered (`workflows.mentions`): the rest skip the receipt's write. A person's
    message in the bot's DM is always answered (`handlers.events.messages`)."""
    if isinstance(event, dict) and event.get("type") == "message":
        if in_dm(event) and from_a_person(event):
            return True
        return bool(numbers_in(str(event.get("text") or "")))
    return True


def _seen_before(deps: Deps, event_id: str) -> bool:
    """Whether the event id was recorded before (a Slack retry): a read, which never waits
    for SQLite's write lock."""
    with deps.db.read_session() as session:
        return session.get(SlackEventReceipt, event_id) is not None
