"""Read-only lookups: `order`, `orders`, `customer`, `ar`."""

from __future__ import annotations

from blocks import lookup as render
from handlers.commands.call import CommandCall
from handlers.common import caller, today_for
from workflows import queries, receivables
from workflows.lookup import find_customer, order_number


def _resolve_customer(call: CommandCall, session, usage: str):
    """The unique customer for the argument, or None after answering with candidates."""
    if not call.args:
        call.answer(render.not_found("Which customer?", f"Usage: `{render.esc(usage)}`"),
                    "Which customer?")
        return None
    match = find_customer(session, call.args)
    if match.customer is None:
        call.answer(render.candidates(call.args, match.candidates, usage=usage),
                    "No unique customer")
        return None
    return match.customer


def order(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    number = order_number(call.args) if call.args else ""
    if not number:
        call.answer(render.not_found("Which order?", "Usage: `/o2c order SO-1001`"),
                    "Which order?")
        return
    with call.reading() as session:
        view = queries.order_view(session, number)
        if view is None:
            hint = ("Order numbers look like SO-1001 (`/o2c order 1001` works too). "
                    "`/o2c orders &lt;customer&gt;` lists a customer's orders.")
            if number.startswith("INV-"):
                hint = f"That looks like an invoice: try `/o2c invoice {render.esc(number)}`."
            call.answer(render.not_found(f"No order `{render.esc(number)}`.", hint),
                        f"No order {number}")
            return
        call.answer(render.order_card(view, tz=user.timezone, fmt=call.fmt),
                    f"Order {view.order.number}")


def orders(call: CommandCall) -> None:
    with call.reading() as session:
        customer = _resolve_customer(call, session, "/o2c orders <customer>")
        if customer is None:
            return
        items, total = queries.recent_orders(session, customer.id)
        call.answer(render.orders_list(customer.name, items, total, fmt=call.fmt),
                    f"Orders of {customer.name}")


def customer_actions(call: CommandCall, customer) -> list:
    """Buttons under the customer card: credit hold / release for those who may use them
    (the click re-checks the role on the server)."""
    from blocks.approvals import credit_hold_actions
    from workflows.credit_hold import may_change_hold

    with call.reading() as session:
        if not may_change_hold(session, call.user_id):
            return []
    return credit_hold_actions(customer.id, customer.name, customer.credit_hold)


def customer(call: CommandCall) -> None:
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    with call.reading() as session:
        found = _resolve_customer(call, session, "/o2c customer <name or id>")
        if found is None:
            return
        view = queries.customer_view(session, found, today, now=call.deps.clock.now())
        call.answer(render.customer_card(view, as_of=today,
                                         actions=customer_actions(call, found), fmt=call.fmt),
                    f"Customer {found.name}")


def ar(call: CommandCall) -> None:
    if call.args:
        customer(call)
        return
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    with call.reading() as session:
        aging = receivables.aging_by_currency(session, today, now=call.deps.clock.now())
        top = receivables.top_balances(session, today)
    call.answer(render.ar_overview(aging, top, as_of=today, fmt=call.fmt), "Accounts receivable")
