"""`/o2c pay`: record an incoming payment in a modal (collectors and admins).

The modal must open within the trigger's 3 seconds (this runs right after the ack), so its
role check is a read (`checking`), which never waits for SQLite's write lock. What happens on
submit is in `handlers.views.payment`."""

from __future__ import annotations

from blocks.cashapp import payment_modal
from blocks.common import render, section
from handlers.commands.call import CommandCall
from handlers.common import caller, checking, describe_error, open_modal, today_for
from models import Role
from models.money import CURRENCIES
from workflows.cash_application import usual_currency
from workflows.errors import PermissionDenied
from workflows.users import require_role


def pay(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    try:
        with checking(call.context) as session:
            require_role(session, user_id=call.user_id, roles=(Role.COLLECTOR,),
                         action="payment.record", entity_type="command", entity_id="pay")
            currency = usual_currency(session)
    except PermissionDenied as refused:
        call.answer(render([section(describe_error(refused))]), "Not allowed")
        return
    view = payment_modal(currencies=sorted(CURRENCIES), currency=currency,
                         today=today_for(call.context, user))
    open_modal(call.client, call.trigger_id, view)
