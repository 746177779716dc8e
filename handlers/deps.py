"""What listeners use of the app's dependencies (`context["deps"]`), typed here.

The dependencies are built once per process by `bot.deps.Deps` and put on every request's
context by a middleware (`bot.slack_app`). Listeners must not import `bot` (bot builds the app
from the listeners, not the other way round), so they see the dependencies through this small
protocol: the database, the one clock, the cache of users seen, and the outbox wake-up.
"""

from __future__ import annotations

from concurrent.futures import Executor
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol

from slack_bolt import BoltContext
from sqlmodel import Session

from models import User
from workflows.cash_candidates import CustomerNames


class Database(Protocol):
    def transaction(self) -> AbstractContextManager[Session]:
        """A write transaction: commits on success, rolls back on an error."""
        ...

    def read_session(self) -> Session:
        """A session for reads only (on SQLite it never waits for the write lock)."""
        ...

    @property
    def customer_names(self) -> CustomerNames:
        """Cash application's customer-name directory of this database, kept fresh by it."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def now_in(self, tz: str | None) -> datetime: ...

    def today(self, tz: str | None) -> date: ...


class Deps(Protocol):
    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def users_seen(self) -> dict[str, tuple[User, float]]:
        """Users seen recently: id -> (row, monotonic time seen)."""
        ...

    @property
    def locales(self) -> dict[str, tuple[str | None, float]]:
        """Slack locales looked up recently: id -> (locale or None, monotonic time)."""
        ...

    def pay_url(self, invoice_number: str) -> str | None:
        """The invoice's "Pay now" link, when customers can pay online and it has a balance."""
        ...

    @property
    def email_enabled(self) -> bool:
        """True when customer e-mails are sent (SMTP_URL is set), else they wait queued."""
        ...

    @property
    def installations(self) -> Any:
        """OAuth install mode: `.store` (slack_sdk's installation store, cached per team);
        None with a single SLACK_BOT_TOKEN."""
        ...

    @property
    def customer_links_enabled(self) -> bool:
        """True when signed customer links can be made (the customer's page, issue 19)."""
        ...

    @property
    def background(self) -> Executor | None:
        """Where work after the acks runs (the lazy listeners' threads); None: inline."""
        ...

    def notify_outbox(self) -> None:
        """Wake the outbox worker after a commit that wrote notifications."""
        ...

    def answering(self, body: dict, request_id: str | None) -> AbstractContextManager[None]:
        """Wraps the work after a request's ack: timed, logged under the request id."""
        ...


def deps_of(context: BoltContext) -> Deps:
    return context["deps"]
