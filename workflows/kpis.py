"""O2C KPIs (SPEC §3), each computed in SQL over a trailing window and documented here.

Amounts are summed per currency; ratio KPIs use the *home* currency (the one with the most
receivables), since adding USD to EUR without rates would be wrong.

Window `W` = 90 days ending at `as_of` (inclusive). AR(t) = invoices issued on or before t,
minus allocations, credit notes and write-offs recorded on or before t.

* **DSO (standard)** = AR(as_of) / credit sales in W × days in W.
* **Best possible DSO** = current (not overdue) AR / credit sales in W × days in W.
* **Average days delinquent (ADD)** = DSO − best possible DSO.
* **Count-back DSO**: walk back month by month from `as_of`, subtracting each month's credit
  sales from AR(as_of); whole months count 30 days (or their real length), the last one pro rata.
* **CEI** (collection effectiveness) = (AR(start) + sales in W − AR(end)) /
  (AR(start) + sales in W − current AR(end)) × 100.
* **Cash-application auto-match rate** = payments received in W that the matching engine
  applied with no human allocation (status applied, or partially applied when the rest is an
  overpayment kept as credit; no allocation with method "manual") / payments received in W.
  By amount: the amount the engine allocated automatically / the amount received in W.
* **Approval turnaround** = mean hours from request to decision for approvals decided in W.
* **Order cycle time** = mean days from order date to its first shipment, for orders first
  shipped in W.
* **Invoice accuracy** = share of invoices issued in W without a credit note.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    Approval,
    CreditNote,
    Invoice,
    Order,
    Payment,
    Shipment,
    WriteOff,
    money,
)
from workflows.receivables import aging_by_currency

WINDOW_DAYS = 90
TWO = Decimal("0.01")


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def _q(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(TWO, rounding=ROUND_HALF_UP)


@dataclass
class KpiReport:
    as_of: date
    window_days: int
    currency: str | None
    ar_minor: int = 0
    current_ar_minor: int = 0
    credit_sales_minor: int = 0
    dso: Decimal | None = None
    best_possible_dso: Decimal | None = None
    average_days_delinquent: Decimal | None = None
    count_back_dso: Decimal | None = None
    cei: Decimal | None = None
    auto_match_rate: Decimal | None = None
    auto_match_amount_rate: Decimal | None = None
    payments_received: int = 0
    approval_turnaround_hours: Decimal | None = None
    order_cycle_days: Decimal | None = None
    invoice_accuracy: Decimal | None = None
    aging: dict[str, dict[str, int]] = field(default_factory=dict)


def sales_between(session: Session, currency: str, start: date, end: date) -> int:
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(Invoice.total_minor), 0)).where(
        Invoice.currency == currency, Invoice.issue_date >= start,
        Invoice.issue_date <= end)).one())


def ar_at(session: Session, currency: str, day: date) -> int:
    """AR balance at the end of `day`, rebuilt from issued amounts and settlements."""
    issued = sales_between(session, currency, date.min, day)
    cutoff = _end_of(day)
    settled = 0
    for model in (Allocation, CreditNote, WriteOff):
        settled += int(session.exec(
            select(sa.func.coalesce(sa.func.sum(model.amount_minor), 0))
            .join(Invoice, Invoice.id == model.invoice_id)
            .where(Invoice.currency == currency, model.created_at <= cutoff)).one())
    return issued - settled


def _count_back(session: Session, currency: str, as_of: date, ar: int) -> Decimal | None:
    if ar <= 0:
        return Decimal(0)
    remaining, days, end = Decimal(ar), Decimal(0), as_of
    for _ in range(36):
        start = end.replace(day=1)
        length = (end - start).days + 1
        sales = Decimal(sales_between(session, currency, start, end))
        if sales >= remaining and sales > 0:
            return days + remaining / sales * length
        remaining -= sales
        days += length
        end = start - timedelta(days=1)
        if end.day != calendar.monthrange(end.year, end.month)[1]:
            break
    return None  # more AR than three years of sales: not meaningful


def compute(session: Session, as_of: date, *, window_days: int = WINDOW_DAYS) -> KpiReport:
    start = as_of - timedelta(days=window_days - 1)
    aging = aging_by_currency(session, as_of)
    currency = max(aging, key=lambda c: aging[c].total) if aging else None
    report = KpiReport(as_of=as_of, window_days=window_days, currency=currency,
                       aging={c: dict(a.buckets) for c, a in aging.items()})
    days = Decimal(window_days)
    if currency:
        report.ar_minor = aging[currency].total
        report.current_ar_minor = aging[currency].buckets["current"]
        report.credit_sales_minor = sales_between(session, currency, start, as_of)
        if report.credit_sales_minor:
            sales = Decimal(report.credit_sales_minor)
            report.dso = _q(Decimal(report.ar_minor) / sales * days)
            report.best_possible_dso = _q(Decimal(report.current_ar_minor) / sales * days)
            report.average_days_delinquent = _q(report.dso - report.best_possible_dso)
        report.count_back_dso = _q(_count_back(session, currency, as_of, report.ar_minor))
        begin = ar_at(session, currency, start - timedelta(days=1))
        denominator = begin + report.credit_sales_minor - report.current_ar_minor
        if denominator > 0:
            numerator = begin + report.credit_sales_minor - report.ar_minor
            report.cei = _q(Decimal(numerator) / Decimal(denominator) * 100)
    _cash_application(session, report, start, as_of)
    _approvals(session, report, start, as_of)
    _cycle_time(session, report, start, as_of)
    _accuracy(session, report, start, as_of)
    return report


def _cash_application(session: Session, report: KpiReport, start: date, end: date) -> None:
    manual = select(Allocation.payment_id).where(Allocation.method == "manual")
    automatic = (select(Allocation.payment_id,
                        sa.func.sum(Allocation.amount_minor).label("allocated"))
                 .where(Allocation.method != "manual").group_by(Allocation.payment_id)
                 .subquery())
    rows = session.exec(
        select(Payment.status, Payment.amount_minor, Payment.id.in_(manual),
               sa.func.coalesce(automatic.c.allocated, 0))
        .outerjoin(automatic, automatic.c.payment_id == Payment.id)
        .where(Payment.received_at >= _end_of(start - timedelta(days=1)),
               Payment.received_at <= _end_of(end))).all()
    report.payments_received = len(rows)
    if not rows:
        return
    auto = [allocated for status, _, is_manual, allocated in rows
            if status in ("applied", "partially_applied") and not is_manual and allocated]
    report.auto_match_rate = _q(Decimal(len(auto)) / len(rows) * 100)
    total = sum(amount for _, amount, _, _ in rows)
    report.auto_match_amount_rate = _q(Decimal(sum(auto)) / total * 100)


def _approvals(session: Session, report: KpiReport, start: date, end: date) -> None:
    rows = session.exec(select(Approval.created_at, Approval.decided_at).where(
        Approval.decided_at.is_not(None), Approval.decided_at >= _end_of(start - timedelta(1)),
        Approval.decided_at <= _end_of(end))).all()
    if rows:
        seconds = sum(int((d - c).total_seconds()) for c, d in rows)
        report.approval_turnaround_hours = _q(Decimal(seconds) / 3600 / len(rows))


def _cycle_time(session: Session, report: KpiReport, start: date, end: date) -> None:
    first = (select(Shipment.order_id, sa.func.min(Shipment.shipped_at).label("first"))
             .group_by(Shipment.order_id).subquery())
    rows = session.exec(select(Order.order_date, first.c.first)
                        .join(first, first.c.order_id == Order.id)).all()
    days = [(shipped.date() - ordered).days for ordered, shipped in rows
            if start <= shipped.date() <= end]
    if days:
        report.order_cycle_days = _q(Decimal(sum(days)) / len(days))


def _accuracy(session: Session, report: KpiReport, start: date, end: date) -> None:
    issued = session.exec(select(sa.func.count()).select_from(Invoice).where(
        Invoice.issue_date >= start, Invoice.issue_date <= end)).one()
    if not issued:
        return
    corrected = session.exec(select(sa.func.count(sa.distinct(CreditNote.invoice_id)))
                             .join(Invoice, Invoice.id == CreditNote.invoice_id).where(
        Invoice.issue_date >= start, Invoice.issue_date <= end)).one()
    report.invoice_accuracy = _q(Decimal(issued - corrected) / issued * 100)


def to_json(report: KpiReport) -> dict:
    cur = report.currency

    def amt(minor: int) -> str | None:
        return money.to_str(minor, cur) if cur else None

    def num(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "as_of": report.as_of.isoformat(), "window_days": report.window_days, "currency": cur,
        "ar": amt(report.ar_minor), "current_ar": amt(report.current_ar_minor),
        "credit_sales": amt(report.credit_sales_minor),
        "dso": num(report.dso), "best_possible_dso": num(report.best_possible_dso),
        "count_back_dso": num(report.count_back_dso),
        "average_days_delinquent": num(report.average_days_delinquent),
        "cei_pct": num(report.cei),
        "cash_application": {"payments": report.payments_received,
                             "auto_match_rate_pct": num(report.auto_match_rate),
                             "auto_match_amount_pct": num(report.auto_match_amount_rate)},
        "approval_turnaround_hours": num(report.approval_turnaround_hours),
        "order_cycle_days": num(report.order_cycle_days),
        "invoice_accuracy_pct": num(report.invoice_accuracy),
        "aging": {c: {b: money.to_str(v, c) for b, v in buckets.items()}
                  for c, buckets in report.aging.items()},
    }


def flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        else:
            out[name] = value
    return out
