"""`/o2c pay`: record an incoming payment in a modal (collectors and admins).

The modal must open within the trigger's 3 seconds (this runs right after the ack), so its
role check is a read (`checking`), which never waits for SQLite's write lock. What happens on
submit is in `handlers.views.payment`."""

from __future__ import annotations

from blocks.cashapp import payment_modal
from blocks.common import render, section
from handlers.commands.call import CommandCall
from handlers.common import caller, checking, describe_error, open_modal, today_for
from handlers.views.payment import may_record
from models.money import CURRENCIES
from workflows.cash_application import usual_currency
from workflows.errors import PermissionDenied


def pay(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    try:
        with checking(call.context) as session:
            may_record(session, call.user_id)
            currency = usual_currency(session)
    except PermissionDenied as refused:
        call.answer(render([section(describe_error(refused))]), "Not allowed")
        return
    view = payment_modal(currencies=sorted(CURRENCIES), currency=currency,
                         today=today_for(call.context, user))
    open_modal(call.client, call.trigger_id, view)
