"""KPI answers: `/o2c kpi`, the weekly KPI post and the admins' App Home section."""

from __future__ import annotations

from blocks.common import context, divider, fields, header, render, section
from blocks.i18n import ENGLISH, Formats
from models import money


def _money(cur: str | None, amount: str | None, *, fmt: Formats = ENGLISH) -> str:
    """A report's decimal string in the grouped form every other answer uses."""
    if not cur or amount is None:
        return "—"
    try:
        return fmt.money(money.to_minor(str(amount), cur), cur)
    except (ValueError, ArithmeticError):
        return f"{cur} {amount}"


def _num(value: str | None, unit: str = "") -> str:
    return "—" if value is None else f"{value}{unit}"


def kpi_blocks(data: dict, *, title: str = "O2C KPIs", fmt: Formats = ENGLISH) -> list:
    """Block objects (not yet rendered) for a `workflows.kpis.to_json` report."""
    cur = data.get("currency")
    cash = data["cash_application"]
    blocks = [
        header(title),
        fields([
            ("DSO", _num(data["dso"], " days")),
            ("Best possible DSO", _num(data["best_possible_dso"], " days")),
            ("Count-back DSO", _num(data["count_back_dso"], " days")),
            ("Avg days delinquent", _num(data["average_days_delinquent"], " days")),
            ("CEI", _num(data["cei_pct"], " %")),
            ("Open AR", _money(cur, data["ar"], fmt=fmt)),
        ]),
        fields([
            ("Cash auto-match", f"{_num(cash['auto_match_rate_pct'], ' %')} of "
                                f"{cash['payments']} payments"),
            (f"Auto-matched amount{f' ({cur})' if cur else ''}",
             _num(cash["auto_match_amount_pct"], " %")),
            ("Approval turnaround", _num(data["approval_turnaround_hours"], " h")),
            ("Order cycle time", _num(data["order_cycle_days"], " days")),
            ("Invoice accuracy", _num(data["invoice_accuracy_pct"], " %")),
        ]),
    ]
    disputes = data.get("disputes")
    if disputes is not None:  # the back office (SPEC §3)
        deductions = data["deductions_outstanding"]
        bad_debt = data["bad_debt"]
        blocks.append(fields([
            ("Dispute rate", f"{_num(disputes['rate_pct'], ' %')} of invoices"),
            ("Days to resolve", f"{_num(disputes['avg_days_to_resolve'], ' days')} "
                                f"({disputes['resolved']} resolved)"),
            ("Deductions outstanding",
             f"{deductions['count']}" + (f" · {_money(cur, deductions['amount'], fmt=fmt)}"
                                         if cur else "")),
            ("Bad-debt ratio", _num(bad_debt["ratio_pct"], " %")
             + (f" ({_money(cur, bad_debt['amount'], fmt=fmt)})" if cur else "")),
        ]))
    in_dispute = data.get("in_dispute") or {}
    for currency, buckets in sorted(data.get("aging", {}).items()):
        text = " · ".join(f"{name}: {_money(currency, value, fmt=fmt)}"
                          for name, value in buckets.items())
        held = in_dispute.get(currency)
        if held and held.strip("0.") != "":
            text += f" · _of which in dispute {_money(currency, held, fmt=fmt)}_"
        blocks.append(section(f"*Aging {currency}* — {text}"))
    blocks.append(context(f"As of {fmt.date(data['as_of'])}; rates over the last "
                          f"{data['window_days']} days."))
    return blocks


def kpi_message(data: dict, *, fmt: Formats = ENGLISH) -> list[dict]:
    return render(kpi_blocks(data, fmt=fmt))


def home_section(data: dict, *, trend: list[int] | None = None, weeks: int = 8,
                 fmt: Formats = ENGLISH
                 ) -> list[dict]:
    """The KPI section of an admin's App Home tab, with the open-AR trend as a sparkline."""
    from blocks.home import trend_text

    blocks = kpi_blocks(data, fmt=fmt)
    line = trend_text(trend or [], data.get("currency"), weeks, fmt=fmt)
    if line:
        blocks.insert(1, section(line))
    return render([*blocks, divider()])


def kpi_report(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    data = ctx["kpis"]
    cur = data.get("currency")
    summary = f"Weekly O2C KPIs: DSO {_num(data['dso'])}, CEI {_num(data['cei_pct'], '%')}"
    if cur:
        summary += f", open AR {_money(cur, data['ar'], fmt=fmt)}"
    return {"text": summary, "blocks": render(kpi_blocks(data, title="Weekly O2C KPIs", fmt=fmt))}
