"""`/o2c new`: open the order-entry modal (sales reps and admins).

The modal must open within the trigger's 3 seconds (this runs right after the ack), so the
only work before `views.open` is the role check: a read (`checking`), one indexed query, which
never waits for SQLite's write lock. What happens next is in `handlers.views.order_entry`.
"""

from __future__ import annotations

from blocks.approvals import refusal
from blocks.order_entry import order_modal
from handlers.commands.call import CommandCall
from handlers.common import checking, formats_of, open_modal
from workflows.errors import PermissionDenied
from workflows.order_entry import check_may_enter


def new_order(call: CommandCall) -> None:
    try:
        with checking(call.context) as session:
            check_may_enter(session, call.user_id)
    except PermissionDenied as refused:
        call.answer(refusal(refused.detail), "Not allowed")
        return
    # the formats known already: nothing is asked or written before the modal opens
    fmt = formats_of(call.context, call.user_id, None)
    open_modal(call.client, call.trigger_id, order_modal(channel=call.channel_id, fmt=fmt))
