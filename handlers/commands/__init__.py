"""`/o2c <subcommand> ...`: one dispatcher, one module per group of subcommands.

The dispatcher acks at once (empty ack: nothing shows until the answer arrives), then runs
the subcommand, which answers ephemerally through `respond`. Unknown subcommands get help.
A subcommand module registers with `@subcommand(...)`; add it to MODULES at the bottom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from blocks import ids
from blocks.common import section
from blocks.text import plain
from handlers.common import after_ack, checking, describe_error
from models import Role
from workflows.users import require_role

Handler = Callable[["CommandCall"], None]
log = logging.getLogger("o2c.commands")


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    func: Handler
    inline: bool = False
    roles: tuple[str, ...] = ()


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, usage: str, summary: str, inline: bool = False,
               roles: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Register `/o2c <name>`. `inline` subcommands run in the listener thread right after the
    ack — for those that open a modal, since a trigger_id expires 3 s after the click; the rest
    run after the ack in an answer process (bot/answers.py) or, without those, in the answers
    thread pool, so they must not depend on state of the server process. With `roles`, the
    caller must hold one of them (checked on the server before the subcommand runs; a refusal
    is audited and explained)."""
    def register(func: Handler) -> Handler:
        SUBCOMMANDS[name] = Subcommand(name, usage, summary, func, inline, roles)
        return func
    return register


# Any role of the bot: who may read orders, customers and AR at all.
ANY_ROLE = tuple(Role)


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

    @property
    def deps(self):  # noqa: ANN201 - bot.deps.Deps, not imported to keep layers one-way
        return self.context["deps"]

    def answer(self, blocks: list[dict], text: str) -> None:
        """Reply only to the caller. `text` is the plain notification fallback (escaped)."""
        self.respond(blocks=blocks, text=plain(text, 3000), response_type="ephemeral")


def claim_command(session: Any, call: CommandCall, kind: str) -> Any:
    """A subcommand that changes something runs once per invocation: Slack gives each one its
    own trigger_id, which a replay or a retry of the request repeats (`workflows.receipts`;
    raises `receipts.AlreadyHandled` for a copy). None when there is no trigger_id."""
    from workflows import receipts

    if not call.trigger_id:
        return None
    return receipts.claim(session, key=f"command:{call.trigger_id}", kind=kind,
                          actor=call.user_id)


def parse(text: str) -> tuple[str, str]:
    parts = (text or "").strip().split(None, 1)
    if not parts:
        return "help", ""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""


def _call(command: dict, respond: Respond, client: WebClient,
          context: BoltContext) -> tuple[Subcommand, CommandCall]:
    name, args = parse(command.get("text", ""))
    sub = SUBCOMMANDS.get(name) or SUBCOMMANDS["help"]
    if name not in SUBCOMMANDS:
        args = command.get("text", "")
    return sub, CommandCall(name=name, args=args,
                            user_id=command["user_id"], user_name=command.get("user_name", ""),
                            channel_id=command.get("channel_id", ""),
                            trigger_id=command.get("trigger_id", ""), respond=respond,
                            client=client, context=context, command=command)


def _run(sub: Subcommand, call: CommandCall) -> None:
    if sub.roles:
        with checking(call.context) as session:
            require_role(session, user_id=call.user_id, roles=sub.roles,
                         action=f"command.{sub.name}")
    sub.func(call)


def _tell_error(respond: Respond, text: str) -> None:
    # describe_error's text is already escaped: sent as is, not through answer()'s plain()
    respond(blocks=[section(text)], text=text, response_type="ephemeral")


def handle_o2c(ack: Ack, command: dict, respond: Respond, client: WebClient,
               context: BoltContext) -> None:
    ack()
    sub, call = _call(command, respond, client, context)
    if sub.inline:
        _run(sub, call)
        return
    processes = call.deps.answer_processes
    if processes is not None:  # bot/answers.py: built in another process, at a lower priority
        processes.submit(dict(command), on_failure=lambda: _tell_error(respond, FAILED),
                         clock_offset=call.deps.clock.offset)
        return
    after_ack(context, lambda: _run(sub, call), on_error=lambda text: _tell_error(respond, text))


FAILED = "Sorry, something went wrong on our side while answering; please try again."


def answer_command(deps: Any, command: dict) -> None:
    """Answer a slash command outside the Bolt request that acked it (in an answer process):
    the same subcommand, role check and error handling, with Bolt's utilities rebuilt from the
    payload and this process's dependencies."""
    respond = Respond(response_url=command["response_url"])
    context = BoltContext({"deps": deps, "client": deps.client})
    sub, call = _call(command, respond, deps.client, context)
    try:
        _run(sub, call)
    except Exception as error:  # noqa: BLE001 - reported to the user and logged once
        try:
            _tell_error(respond, describe_error(error))
        except Exception:  # noqa: BLE001
            log.warning("could not tell the user about an error")


def register(app: App) -> None:
    app.command(ids.COMMAND)(handle_o2c)


# Subcommand modules (each registers on import).
MODULES = ("approvals", "backoffice", "collections", "help", "kpi", "lookups", "order_entry",
           "pay", "roles")
for _module in MODULES:
    import_module(f"handlers.commands.{_module}")
