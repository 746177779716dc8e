"""`/o2c help` (and the answer to anything unknown)."""

from __future__ import annotations

from blocks.help import help_message
from handlers.commands import SUBCOMMANDS, CommandCall, subcommand


@subcommand("help", usage="/o2c help", summary="this list")
def show_help(call: CommandCall) -> None:
    unknown = call.name if call.name not in SUBCOMMANDS else None
    entries = [(s.usage, s.summary) for s in SUBCOMMANDS.values()]
    call.answer(help_message(entries, unknown=unknown), "o2c commands")
