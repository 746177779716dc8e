"""`/o2c help` (and the answer to anything unknown)."""

from __future__ import annotations

from blocks.help import help_message
from handlers.commands import SUBCOMMANDS, CommandCall, subcommand

# The order people need them in: lookups, then entering and deciding, then admin.
ORDER = ("help", "order", "orders", "customer", "ar", "new", "approvals", "worklist", "pay",
         "kpi", "revenue", "role", "policy", "admin")


def _rank(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


@subcommand("help", usage="/o2c help", summary="this list")
def show_help(call: CommandCall) -> None:
    unknown = call.name if call.name not in SUBCOMMANDS else None
    entries = [(SUBCOMMANDS[name].usage, SUBCOMMANDS[name].summary)
               for name in sorted(SUBCOMMANDS, key=_rank)]
    call.answer(help_message(entries, unknown=unknown), "o2c commands")
