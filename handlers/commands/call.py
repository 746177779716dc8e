"""What a subcommand of `/o2c` is and what it gets (`handlers.commands` lists them all)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.i18n import Formats
from blocks.text import plain
from handlers.common import formats_of
from handlers.deps import Deps, deps_of
from models import InteractionReceipt, Role
from workflows import receipts


@dataclass
class CommandCall:
    """What a subcommand gets: the parsed text plus the Bolt utilities it may need."""

    name: str
    args: str
    user_id: str
    user_name: str
    channel_id: str
    trigger_id: str
    respond: Respond
    client: WebClient
    context: BoltContext
    command: dict = field(default_factory=dict)
    # a lookup's read session: the one its caller's role was checked in (`reads=True`)
    session: Session | None = None
    # answers given while that session is open, sent once it is closed (`send_held`)
    held: list[dict] = field(default_factory=list)

    @property
    def deps(self) -> Deps:
        return deps_of(self.context)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read session for a lookup: the one the caller's role was checked in when there
        is one — one connection and one transaction per answer, not one per step."""
        if self.session is not None:
            yield self.session
            return
        with self.deps.db.read_session() as session:
            yield session

    @cached_property
    def fmt(self) -> Formats:
        """How amounts, dates and numbers are written for the caller (their Slack locale)."""
        return formats_of(self.context, self.user_id, self.client)

    def answer(self, blocks: list[dict], text: str) -> None:
        """Reply only to the caller. `text` is the plain notification fallback (escaped).
        A lookup's answer waits until its read session is closed (`send_held`): no database
        connection and transaction are held while Slack takes the answer."""
        message = {"blocks": blocks, "text": plain(text, 3000), "response_type": "ephemeral"}
        if self.session is not None:
            self.held.append(message)
        else:
            self.respond(**message)

    def send_held(self) -> None:
        """Send the answers given in the read session, now that it is closed."""
        self.session = None
        while self.held:
            self.respond(**self.held.pop(0))


Handler = Callable[[CommandCall], None]


@dataclass(frozen=True)
class Subcommand:
    """`/o2c <name> ...`: `func` runs after the ack (`handlers.commands.answer`). With `roles`,
    the caller must hold one of them: checked on the server before `func` runs; a refusal is
    audited and explained. With `reads`, `func` reads through `call.reading()` in the session
    the role was checked in."""

    name: str
    usage: str
    summary: str
    func: Handler
    roles: tuple[str, ...] = ()
    # a lookup: it only reads, in the session its caller's role was checked in
    reads: bool = False


# Any role of the bot: who may read orders, customers and AR at all.
ANY_ROLE = tuple(Role)


def claim_command(session: Session, call: CommandCall, kind: str) -> InteractionReceipt | None:
    """A subcommand that changes something runs once per invocation: Slack gives each one its
    own trigger_id, which a replay or a retry of the request repeats (`workflows.receipts`;
    raises `receipts.AlreadyHandled` for a copy). None when there is no trigger_id."""
    if not call.trigger_id:
        return None
    return receipts.claim(session, key=f"command:{call.trigger_id}", kind=kind,
                          actor=call.user_id)
