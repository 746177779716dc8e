"""Revenue answers: the monthly close summary in the AR channel (`revenue_close`) and
`/o2c revenue [YYYY-MM]` for admins. Amounts arrive as decimal strings with their currency
(`workflows.revenue.to_json`, the close's summary); nothing here is user-typed text."""

from __future__ import annotations

from decimal import Decimal

from blocks.common import context, fields, header, render, section
from models import money

TYPE_LABELS = {"goods": "Goods", "service": "Services", "subscription": "Subscriptions"}


def _money(value: str, currency: str) -> str:
    return money.format_money(money.to_minor(value, currency), currency)


def _change(now: str, before: str, currency: str) -> str:
    delta = money.to_minor(Decimal(now) - Decimal(before), currency)
    sign = "+" if delta > 0 else ""
    return f"{sign}{money.format_money(delta, currency)}"


def close_blocks(summary: dict) -> list[dict]:
    period = summary["period"]
    blocks = [header(f"Revenue closed for {period}")]
    for cur, c in summary["currencies"].items():
        prev = c["previous"]
        by_type = " · ".join(f"{TYPE_LABELS.get(k, k)} {_money(v, cur)}"
                             for k, v in c["by_type"].items())
        blocks.append(fields([
            (f"Recognised ({cur})", f"{_money(c['recognized'], cur)}\n"
                                    f"{_change(c['recognized'], prev['recognized'], cur)} vs "
                                    f"{prev['month']}"),
            ("Deferred at month end", f"{_money(c['deferred'], cur)}\n"
                                      f"{_change(c['deferred'], prev['deferred'], cur)} vs "
                                      f"{prev['month']}"),
            ("Unbilled (contract asset)", _money(c["unbilled"], cur)),
        ], text=f"*{cur}* — {by_type}"))
    if not summary["currencies"]:
        blocks.append(section("No revenue to recognise yet."))
    earlier = [m for m in summary.get("months", []) if m != period]
    note = "Closed months never change; later changes land in the first open month."
    if earlier:
        span = earlier[0] if len(earlier) == 1 else f"{earlier[0]} to {earlier[-1]}"
        note = f"Also recorded: {span}. " + note
    blocks.append(context(note))
    return blocks[:50]


def revenue_close(ctx: dict) -> dict:
    parts = [f"{cur} {c['recognized']} recognised, {c['deferred']} deferred"
             for cur, c in ctx["currencies"].items()]
    text = f"Revenue closed for {ctx['period']}" + (f": {'; '.join(parts)}" if parts else "")
    return {"text": text, "blocks": render(close_blocks(ctx))}


def report_blocks(data: dict, *, month: str) -> list[dict]:
    """`/o2c revenue [YYYY-MM]`: that month (default: the last closed one) per currency, and
    today's deferred revenue by the month it will be recognised."""
    blocks = [header(f"Revenue {month}")]
    for cur, c in data["currencies"].items():
        m = next((m for m in c["months"] if m["month"] == month), None)
        if m is None:
            continue
        state = "closed" if m["closed"] else "open (as the books stand now)"
        by_type = " · ".join(f"{TYPE_LABELS.get(k, k)} {_money(v, cur)}"
                             for k, v in m["recognized"]["by_type"].items())
        blocks.append(fields([
            (f"Recognised ({cur})", _money(m["recognized"]["total"], cur)),
            ("Deferred at month end", _money(m["deferred"], cur)),
            ("Unbilled at month end", _money(m["unbilled"], cur)),
            ("Deferred today", _money(c["deferred"], cur)),
        ], text=f"*{cur}*, {state} — {by_type}"))
        if c["waterfall"]:
            shown = c["waterfall"][:12]
            text = " · ".join(f"{w['month']}: {_money(w['amount'], cur)}" for w in shown)
            more = len(c["waterfall"]) - len(shown)
            blocks.append(section(f"*When today's deferred {cur} will be recognised* — "
                                  f"{text}{f' · and {more} more month(s)' if more else ''}"))
    if len(blocks) == 1:
        blocks.append(section("No revenue in that month."))
    closed = data.get("closed_through")
    blocks.append(context(f"Closed through {closed}." if closed else "No month is closed yet.",
                          "Full report: GET /api/v1/reports/revenue (JSON or CSV)."))
    return blocks[:50]


def report_message(data: dict, *, month: str) -> list[dict]:
    return render(report_blocks(data, month=month))
