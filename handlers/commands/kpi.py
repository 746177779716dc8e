"""`/o2c kpi`: DSO, CEI, aging, cash auto-match, cycle times (formulas in workflows/kpis.py).

Served from today's KPI snapshot (the `kpi-snapshot` job's, every 5 minutes) while nothing was
recorded since it was computed — the same figures, for two index probes — else computed."""

from __future__ import annotations

from blocks.kpi import kpi_message
from handlers.commands.call import CommandCall
from handlers.common import caller, today_for
from workflows import kpis


def kpi(call: CommandCall) -> None:
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    with call.deps.db.read_session() as session:
        data = kpis.fresh_snapshot(session, today)
        if data is None:
            data = kpis.to_json(kpis.compute(session, today, now=call.deps.clock.now(),
                                             concurrently=True))
    call.answer(kpi_message(data, fmt=call.fmt), "O2C KPIs")
