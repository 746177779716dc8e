"""The Bolt app: request verification, shared dependencies, listeners, one error handler."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.error import BoltError
from sqlalchemy.exc import IntegrityError

from bot.deps import Deps
from handlers import register_listeners
from handlers.common import describe_error
from models import SlackEventReceipt

log = logging.getLogger("o2c.slack")


def create_bolt_app(deps: Deps) -> App:
    settings = deps.settings
    app = App(
        client=deps.client,
        signing_secret=(settings.slack_signing_secret.get_secret_value()
                        if settings.slack_signing_secret else None),
        # auth.test at start-up would make booting depend on Slack being reachable
        token_verification_enabled=False,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        ignoring_self_events_enabled=True,
    )

    @app.middleware
    def inject_deps(context: BoltContext, body: dict, next) -> BoltResponse | None:  # noqa: A002
        context["deps"] = deps
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not _first_delivery(deps, event_id):
            log.info("duplicate event %s ignored", event_id)
            # 200 with nothing run: Slack stops retrying, and nothing happens twice
            return BoltResponse(status=200, body="")
        next()

    @app.error
    def on_error(error: Exception, respond, logger: logging.Logger) -> None:
        """One place that answers the user and logs once (no try/except in listeners)."""
        if isinstance(error, BoltError):
            logger.error("bolt error: %s", error)
        text = describe_error(error, logger)
        if respond is not None:  # present when the request carried a response_url
            try:
                respond(text=text, response_type="ephemeral", replace_original=False)
            except Exception:  # noqa: BLE001 - the error is already logged
                logger.warning("could not tell the user about an error")

    register_listeners(app)
    return app


def _first_delivery(deps: Deps, event_id: str) -> bool:
    """Record the event id; False when it was seen before (a Slack retry)."""
    try:
        with deps.db.transaction() as session:
            session.add(SlackEventReceipt(event_id=event_id))
        return True
    except IntegrityError:
        return False
