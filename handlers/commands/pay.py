"""`/o2c pay`: record an incoming payment in a modal (collectors and admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import select

from blocks.cashapp import payment_modal
from blocks.common import render, section
from blocks.text import esc
from handlers.commands import CommandCall, subcommand
from handlers.common import caller, transaction
from models import Customer, Role
from models.money import CURRENCIES
from workflows.errors import PermissionDenied
from workflows.users import require_role


def local_today(tz: str) -> datetime:
    try:
        return datetime.now(ZoneInfo(tz or "UTC"))
    except Exception:  # noqa: BLE001 - a bad tz from Slack falls back to UTC
        return datetime.now(UTC)


@subcommand("pay", usage="/o2c pay",
            summary="record an incoming payment (collectors); it is matched to invoices")
def pay(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    try:
        with transaction(call.context) as session:
            require_role(session, user_id=call.user_id, roles=(Role.COLLECTOR,),
                         action="payment.record", entity_type="command", entity_id="pay")
            common = session.exec(select(Customer.currency).group_by(Customer.currency)
                                  .order_by(sa.func.count().desc()).limit(1)).first()
    except PermissionDenied as refused:
        call.answer(render([section(f":no_entry: {esc(refused.detail)}")]), "Not allowed")
        return
    view = payment_modal(currencies=sorted(CURRENCIES), currency=common or "USD",
                         today=local_today(user.timezone).date())
    call.client.views_open(trigger_id=call.trigger_id, view=view)
