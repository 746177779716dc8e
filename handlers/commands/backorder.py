"""`/o2c backorder <order> <ship|wait|cancel|cancel-rest> <reason>` (issue 19): the rep's (or
an admin's) backorder choice with a reason — the way to override the choice the customer made
through their e-mail link (the DM's buttons refuse then, pointing here); `cancel-rest` cancels
what is left to ship of a partly shipped order (`fulfilment.cancel_rest`). Once per invocation; the
workflow checks who may choose and records the override next to the customer's choice."""

from __future__ import annotations

from blocks.common import render, section
from blocks.text import esc
from handlers.commands.call import CommandCall, claim_command
from handlers.common import describe_error, transaction
from workflows import fulfilment, receipts
from workflows.errors import DomainError
from workflows.orders import get_order

USAGE = "/o2c backorder <order> <ship|wait|cancel|cancel-rest> <reason>"


def backorder(call: CommandCall) -> None:
    parts = call.args.split(None, 2)
    if len(parts) < 3 or parts[1].lower() not in fulfilment.OVERRIDES:
        call.answer(render([section(f"Usage: `{esc(USAGE)}`")]), "Usage")
        return
    number, choice, reason = parts[0], parts[1].lower(), parts[2]
    now = call.deps.clock.now()
    try:
        with transaction(call.context) as session:
            receipt = claim_command(session, call, "backorder.override")
            done = fulfilment.override(session, order=get_order(session, number),
                                       choice=choice, actor=call.user_id, reason=reason,
                                       now=now)
            if receipt is not None:
                receipts.remember(session, receipt, done=done)
    except receipts.AlreadyHandled as handled:
        done = str(handled.result.get("done") or "already done")
    except DomainError as exc:
        call.answer(render([section(describe_error(exc))]), "Not done")
        return
    call.deps.notify_outbox()
    call.answer(render([section(f":white_check_mark: {esc(number.upper())}: {esc(done)}. "
                                "Billing was told.")]), "Backorder choice recorded")
