"""`/o2c new`: open the order-entry modal (sales reps and admins).

The modal must open within the trigger's 3 seconds (this runs right after the ack), so the
only work before `views.open` is the role check: a read (`checking`), one indexed query, which
never waits for SQLite's write lock. What happens next is in `handlers.views.order_entry`.
"""

from __future__ import annotations

from blocks.approvals import refusal
from blocks.order_entry import order_modal
from handlers.commands.call import CommandCall
from handlers.common import checking, open_modal_for
from workflows.errors import PermissionDenied
from workflows.order_entry import check_may_enter


def new_order(call: CommandCall) -> None:
    try:
        with checking(call.context) as session:
            check_may_enter(session, call.user_id)
    except PermissionDenied as refused:
        call.answer(refusal(refused.detail), "Not allowed")
        return
    # the formats known already: nothing is asked or written before the modal opens (an
    # unknown locale is looked up after it opened, and the modal updated: `open_modal_for`)
    open_modal_for(call.context, call.client, call.trigger_id, call.user_id,
                   lambda fmt: order_modal(channel=call.channel_id, fmt=fmt))
