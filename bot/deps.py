"""What every listener, API route and job needs, built once per process (`build_deps`).

Listeners see these through `handlers.deps.Deps` (a protocol: handlers never import bot); API
routes and jobs get this class. The dependencies own the process's state: the database (with
the policy of the settings, `Database(policy=...)`), the Web API client, the one clock, the
outbox wake-up and the cache of users seen. Nothing of it lives in a module.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from slack_sdk import WebClient

from bot.clock import Clock
from bot.db import Database
from bot.settings import Settings
from models import User
from workflows import policy


@dataclass
class Deps:
    settings: Settings
    db: Database
    client: WebClient  # the bot's Web API client (base_url = SLACK_API_URL)
    clock: Clock = field(default_factory=Clock)  # the one source of now and today (bot.clock)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    # the integrations' outbox worker (webhooks, HubSpot, Stripe) has its own
    integrations_wakeup: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)  # set at shutdown
    # Users seen recently: id -> (User row, monotonic time seen); saves a query per command.
    users_seen: dict[str, tuple[User, float]] = field(default_factory=dict)
    # Slack locales looked up: user id -> (locale or None, monotonic time looked up)
    locales: dict[str, tuple[str | None, float]] = field(default_factory=dict)
    # OAuth install (SLACK_CLIENT_ID/SECRET): the installation store, Bolt's OAuth settings and
    # the outbox's bot tokens (bot.slack_oauth.Installations); None with SLACK_BOT_TOKEN
    installations: Any = None
    # where work after the acks runs (the server's lazy-listener threads); None: inline
    background: Executor | None = None

    @property
    def email_enabled(self) -> bool:
        """Customer e-mails are sent (SMTP_URL set); else they wait in the outbox."""
        return self.settings.smtp_url is not None

    @cached_property
    def pay_links(self):  # bot.paylinks.PayLinks | None
        from bot.paylinks import PayLinks

        return PayLinks.for_settings(self.settings, self.db)

    def pay_url(self, invoice_number: str) -> str | None:
        """The invoice's "Pay now" link when customers can pay online (Stripe or the
        sandbox) and something is open; made now if it has none (`bot.paylinks`)."""
        links = self.pay_links
        return links.url_for(invoice_number) if links is not None else None

    @property
    def customer_links_enabled(self) -> bool:
        """Signed customer links can be made (O2C_LINK_SECRETS and O2C_PUBLIC_URL set, or the
        sandbox's own address in the demo)."""
        from bot.customer_links import CustomerLinks

        return CustomerLinks.for_settings(self.settings).enabled

    def business_today(self) -> date:
        """Today in the business time zone: the policy's (admins may change it), which is the
        setting unless they did."""
        with self.db.read_session() as session:
            tz = policy.current(session).business_timezone
        return self.clock.business_today(tz)

    def answering(self, body: dict, request_id: str | None) -> AbstractContextManager[None]:
        """The work after a Slack request's ack: timed (`o2c_slack_answer_seconds`) and
        logged, with its outbox rows stamped, under the request's id (and those answering
        in the request's conversation with its workspace: `observability.SLACK_TEAM`)."""
        from slack_bolt.request.internals import (
            extract_enterprise_id,
            extract_team_id,
            extract_user_id,
        )

        from bot import observability

        kind, command = observability.label_of(body)
        scope = ExitStack()
        try:
            team = tuple(value if isinstance(value, str) and 0 < len(value) <= 32 else None
                         for value in (extract_enterprise_id(body), extract_team_id(body)))
            user = extract_user_id(body)
        except (TypeError, AttributeError, KeyError, IndexError):  # a junk payload
            team, user = None, None
        scope.enter_context(observability.request_scope(request_id, team, user))
        scope.enter_context(observability.timed(observability.ANSWER_SECONDS, kind, command))
        return scope

    def notify_outbox(self) -> None:
        """Wake the outbox workers after a commit that wrote notifications."""
        self.outbox_wakeup.set()
        self.integrations_wakeup.set()

    def __deepcopy__(self, memo: dict) -> Deps:
        """Shared, never copied: Bolt deep-copies a request's context for its lazy listeners
        (`BoltContext.to_copyable`), and they must see this process's dependencies."""
        return self


def make_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=10)


def build_deps(settings: Settings, *, db: Database | None = None,
               client: WebClient | None = None) -> Deps:
    """What jobs and the API need; no Slack listener (so `o2c run` needs no Slack secrets)."""
    deps = Deps(settings=settings,
                db=db or Database(settings.database_url, policy=settings.policy()),
                client=client or make_client(settings),
                clock=Clock(settings.o2c_business_timezone))
    if settings.oauth_enabled:
        from bot.slack_oauth import build_installations

        deps.installations = build_installations(settings, deps.db, deps.clock, deps.client)
    return deps
