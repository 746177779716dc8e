"""`/o2c revenue [YYYY-MM]` (admins): a month's recognised revenue by type, its closing
deferred and unbilled balances, and when today's deferred revenue will be earned."""

from __future__ import annotations

from blocks.revenue import report_message
from handlers.commands.call import CommandCall
from workflows import periods, policy, revenue


def revenue_report(call: CommandCall) -> None:
    with call.deps.db.read_session() as session:
        today = policy.business_date(session, call.deps.clock.now())
        # default: the last month that has ended
        first = (periods.parse_period(call.args.split()[0], "month") if call.args.strip()
                 else revenue.previous_month(today.replace(day=1)))
        data = revenue.to_json(revenue.report(session, first=first, last=first, today=today))
    month = periods.period_of(first)
    call.answer(report_message(data, month=month), f"Revenue {month}")
