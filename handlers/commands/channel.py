"""`/o2c channel answers <ephemeral|thread|off>` (admins), typed in the channel it is for: how
record numbers mentioned there are answered (`workflows.mentions`)."""

from __future__ import annotations

from blocks.common import render, section
from blocks.text import esc
from handlers.commands.call import CommandCall
from handlers.common import record_channel_workspace, transaction
from models import NumberAnswers
from workflows import mentions

USAGE = "/o2c channel answers <" + "|".join(m.value for m in NumberAnswers) + ">"
MEANING = {NumberAnswers.EPHEMERAL: "only the person who mentioned it sees the card",
           NumberAnswers.THREAD: "the card is a reply in the message's thread, for everyone "
                                 "in this channel",
           NumberAnswers.OFF: "no answer"}


def channel(call: CommandCall) -> None:
    parts = call.args.lower().split()
    if not parts:
        with call.deps.db.read_session() as session:
            mode = mentions.answers_in(session, call.channel_id)
        call.answer(render([section(f"Record numbers in this channel: *{mode.value}* "
                                    f"({MEANING[mode]}). Change: `{esc(USAGE)}`")]),
                    "Channel settings")
        return
    if len(parts) != 2 or parts[0] != "answers" or parts[1] not in set(NumberAnswers):
        call.answer(render([section(f"Usage: `{esc(USAGE)}`")]), "Usage")
        return
    with transaction(call.context) as session:
        mentions.set_number_answers(session, channel=call.channel_id, mode=parts[1],
                                    actor=call.user_id)
        # its posts go out through the workspace it was set from
        record_channel_workspace(session, call.context, call.channel_id)
    mode = NumberAnswers(parts[1])
    call.answer(render([section(f":white_check_mark: Record numbers in this channel: "
                                f"*{mode.value}* ({MEANING[mode]}).")]), "Channel settings")
