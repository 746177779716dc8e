"""`/o2c invoice <number>` (one invoice with its credit notes, disputes and late fees, and the
back-office buttons for those who may use them) and `/o2c disputes` (open disputes)."""

from __future__ import annotations

from blocks import backoffice as render
from blocks.lookup import not_found
from handlers.commands.call import CommandCall
from handlers.common import caller, today_for
from models import Role
from workflows import disputes, queries
from workflows.users import has_role

# who sees the invoice card's buttons (each click re-checks its own role on the server)
ACTING_ROLES = (Role.SALES, Role.COLLECTOR, Role.CREDIT_APPROVER)


def invoice(call: CommandCall) -> None:
    number = call.args.split()[0] if call.args else ""
    if not number:
        call.answer(not_found("Which invoice?", "Usage: `/o2c invoice INV-2026-000123`"),
                    "Which invoice?")
        return
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    with call.deps.db.read_session() as session:
        view = queries.invoice_view(session, number)
        if view is None:
            call.answer(not_found(f"No invoice `{render.esc(number)}`.",
                                  "Invoice numbers look like INV-2026-000123; "
                                  "`/o2c ar &lt;customer&gt;` lists a customer's open invoices."),
                        f"No invoice {number}")
            return
        can_act = has_role(session, call.user_id, *ACTING_ROLES)
        # the link, made once in its own short transaction (a read session does not block it)
        pay_url = (call.deps.pay_url(view.invoice.number) if view.invoice.balance_minor > 0
                   else None)
        call.answer(render.invoice_card(view, today=today, can_act=can_act, pay_url=pay_url,
                                        fmt=call.fmt),
                    f"Invoice {view.invoice.number}")


def open_disputes(call: CommandCall) -> None:
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    with call.deps.db.read_session() as session:
        rows, total = disputes.open_disputes(session, now=call.deps.clock.now())
        call.answer(render.dispute_list(rows, total, today=today, fmt=call.fmt), "Open disputes")
