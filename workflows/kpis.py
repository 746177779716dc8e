"""O2C KPIs (SPEC §3), each computed in SQL over a trailing window and documented here.

Amounts are summed per currency; ratio KPIs over amounts use the *home* currency — the one with
the most open AR at `as_of` (or, with no AR, the most credit sales in the window) — since
adding USD to EUR without rates would be wrong.

Window `W` = 90 days ending at `as_of` (inclusive).
AR(t) = open AR at the end of day t = Σ over invoices issued on or before t of total −
allocations − credit notes − write-offs *dated* on or before t — by economic date (a payment's
value date, a credit note's issue date, a write-off's effective date), whenever they were
recorded (`workflows.receivables` computes it). So a past day's KPIs are what the books say
happened up to that day: a payment of 1 May posted in July counts on 1 May.
Current AR(t) = the part of AR(t) not yet due at t (due date on or after t).
Credit sales in a period = the totals of invoices issued in it. Payments, approvals and
shipments are counted in W by their timestamps, days ending at midnight UTC.

With `known_at` (an audit: "what did the KPIs say then?") every figure counts only the rows
recorded (`created_at`; approvals by when they were decided) by that moment: invoices,
settlements, payments, approvals, shipments, credit notes.

* **DSO (standard)** = AR(as_of) / credit sales in W × days in W.
* **Best possible DSO** = current AR(as_of) / credit sales in W × days in W.
* **Average days delinquent (ADD)** = DSO − best possible DSO.
* **Count-back DSO**: walk back month by month from `as_of`, subtracting each month's credit
  sales from AR(as_of): the month of `as_of` counts its days up to `as_of`, earlier whole
  months their real length, and the month that covers the rest of AR pro rata
  (rest / that month's sales × its days). None when three years of sales do not cover AR.
* **CEI** (collection effectiveness) = (AR(start − 1) + sales in W − AR(as_of)) /
  (AR(start − 1) + sales in W − current AR(as_of)) × 100, `start` = the first day of W.
* **Cash-application auto-match rate** = payments received in W (all currencies: a count)
  that the matching engine applied with no human allocation (status applied, or partially
  applied when the rest is an overpayment kept as credit; no allocation with method "manual")
  / payments received in W.
  **By amount** (home currency only): the amount the engine allocated automatically from
  home-currency payments received in W / the home-currency amount received in W.
* **Approval turnaround** = mean hours from request to decision for approvals approved or
  rejected in W (cancelled requests were never decided by anyone and do not count).
* **Order cycle time** = mean days from order date to its first shipment, for orders first
  shipped in W.
* **Invoice accuracy** = share of invoices issued in W (late-fee invoices left out) with
  neither a credit note nor an accepted dispute.
* **Dispute rate** = invoices issued in W (late-fee invoices left out) on which a dispute was
  opened (by the end of `as_of`) / invoices issued in W.
* **Average days to resolve** = mean days (to 2 decimals, from the timestamps) from opening to
  resolution of the disputes resolved in W (accepted, rejected or withdrawn).
* **Deductions outstanding** = deductions recorded by the end of `as_of` that were not resolved
  by then and whose invoice still has something open: their number (all currencies) and
  amount (home currency).
* **Bad-debt ratio** = bad-debt write-offs (reason `bad_debt`) dated in W / credit sales in W
  (home currency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    Approval,
    ApprovalStatus,
    CreditNote,
    Deduction,
    DeductionStatus,
    Dispute,
    DisputeStatus,
    Invoice,
    Order,
    Payment,
    Shipment,
    WriteOff,
    WriteOffReason,
    money,
)
from workflows.receivables import aging_by_currency

WINDOW_DAYS = 90
COUNT_BACK_MONTHS = 36
TWO = Decimal("0.01")
DECIDED = (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _q(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(TWO, rounding=ROUND_HALF_UP)


@dataclass
class KpiReport:
    as_of: date
    window_days: int
    currency: str | None
    known_at: datetime | None = None
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
    dispute_rate: Decimal | None = None
    disputes_opened: int = 0
    disputes_resolved: int = 0
    days_to_resolve: Decimal | None = None
    deductions_outstanding: int = 0
    deductions_outstanding_minor: int = 0
    bad_debt_minor: int = 0
    bad_debt_ratio: Decimal | None = None
    aging: dict[str, dict[str, int]] = field(default_factory=dict)
    in_dispute: dict[str, int] = field(default_factory=dict)


def _known(column: sa.ColumnElement, known_at: datetime | None) -> list[sa.ColumnElement]:
    return [] if known_at is None else [column <= known_at]


def sales_between(session: Session, currency: str, start: date, end: date, *,
                  known_at: datetime | None = None) -> int:
    """Credit sales: the totals of invoices issued from `start` to `end` (inclusive)."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(Invoice.total_minor), 0)).where(
        Invoice.currency == currency, Invoice.issue_date >= start,
        Invoice.issue_date <= end, *_known(Invoice.created_at, known_at))).one())


def _count_back(session: Session, currency: str, as_of: date, ar: int,
                known_at: datetime | None = None) -> Decimal | None:
    if ar <= 0:
        return Decimal(0)
    remaining, days, end = Decimal(ar), Decimal(0), as_of
    for _ in range(COUNT_BACK_MONTHS):
        start = end.replace(day=1)
        length = (end - start).days + 1
        sales = Decimal(sales_between(session, currency, start, end, known_at=known_at))
        if sales >= remaining and sales > 0:
            return days + remaining / sales * length
        remaining -= sales
        days += length
        end = start - timedelta(days=1)  # the last day of the month before
    return None  # more AR than three years of sales: not meaningful


def _home_currency(session: Session, aging: dict, start: date, end: date,
                   known_at: datetime | None = None) -> str | None:
    if aging:
        return max(sorted(aging), key=lambda c: aging[c].total)
    sales = sa.func.sum(Invoice.total_minor)
    return session.exec(select(Invoice.currency).where(
        Invoice.issue_date >= start, Invoice.issue_date <= end,
        *_known(Invoice.created_at, known_at))
        .group_by(Invoice.currency).order_by(sales.desc(), Invoice.currency).limit(1)).first()


def compute(session: Session, as_of: date, *, window_days: int = WINDOW_DAYS,
            known_at: datetime | None = None, now: datetime | None = None) -> KpiReport:
    """Every KPI as of the end of `as_of` by economic date; with `known_at`, as the books
    knew them at that moment (see the module docstring). `now` is not needed (a day's KPIs
    do not depend on when they are asked) and is accepted for callers that pass the clock."""
    start = as_of - timedelta(days=window_days - 1)
    aging = aging_by_currency(session, as_of, known_at=known_at)
    currency = _home_currency(session, aging, start, as_of, known_at)
    report = KpiReport(as_of=as_of, window_days=window_days, currency=currency,
                       known_at=known_at,
                       aging={c: dict(a.buckets) for c, a in sorted(aging.items())},
                       in_dispute={c: a.disputed for c, a in sorted(aging.items())})
    days = Decimal(window_days)
    if currency:
        if currency in aging:
            report.ar_minor = aging[currency].total
            report.current_ar_minor = aging[currency].buckets["current"]
        report.credit_sales_minor = sales_between(session, currency, start, as_of,
                                                  known_at=known_at)
        if report.credit_sales_minor:
            sales = Decimal(report.credit_sales_minor)
            report.dso = _q(Decimal(report.ar_minor) / sales * days)
            report.best_possible_dso = _q(Decimal(report.current_ar_minor) / sales * days)
            report.average_days_delinquent = _q(report.dso - report.best_possible_dso)
        report.count_back_dso = _q(_count_back(session, currency, as_of, report.ar_minor,
                                               known_at))
        before = aging_by_currency(session, start - timedelta(days=1),
                                   known_at=known_at).get(currency)
        begin = before.total if before else 0
        denominator = begin + report.credit_sales_minor - report.current_ar_minor
        if denominator > 0:
            numerator = begin + report.credit_sales_minor - report.ar_minor
            report.cei = _q(Decimal(numerator) / Decimal(denominator) * 100)
    _cash_application(session, report, start, as_of)
    _approvals(session, report, start, as_of)
    _cycle_time(session, report, start, as_of)
    _accuracy(session, report, start, as_of)
    _back_office(session, report, start, as_of)
    return report


def _cash_application(session: Session, report: KpiReport, start: date, end: date) -> None:
    known = report.known_at
    is_manual = Allocation.method == "manual"
    rows = session.exec(
        select(Payment.status, Payment.currency, Payment.amount_minor,
               sa.func.coalesce(sa.func.sum(sa.case((is_manual, 1), else_=0)), 0),
               sa.func.coalesce(sa.func.sum(sa.case((is_manual, 0),
                                                    else_=Allocation.amount_minor)), 0))
        .outerjoin(Allocation, sa.and_(Allocation.payment_id == Payment.id,
                                       *_known(Allocation.created_at, known)))
        .where(Payment.received_at >= _start_of(start),
               Payment.received_at < _start_of(end + timedelta(days=1)),
               *_known(Payment.created_at, known))
        .group_by(Payment.id, Payment.status, Payment.currency, Payment.amount_minor)).all()
    report.payments_received = len(rows)
    if not rows:
        return
    # (with `known_at`, a payment counts as matched if the engine had allocated from it by then)
    auto = [(currency, int(allocated)) for status, currency, _, manual, allocated in rows
            if (status in ("applied", "partially_applied") or known) and not manual
            and allocated]
    report.auto_match_rate = _q(Decimal(len(auto)) / len(rows) * 100)
    received = sum(amount for _, currency, amount, _, _ in rows
                   if currency == report.currency)
    if received:
        matched = sum(allocated for currency, allocated in auto if currency == report.currency)
        report.auto_match_amount_rate = _q(Decimal(matched) / received * 100)


def _approvals(session: Session, report: KpiReport, start: date, end: date) -> None:
    rows = session.exec(select(Approval.created_at, Approval.decided_at).where(
        Approval.status.in_(DECIDED), Approval.decided_at.is_not(None),
        Approval.decided_at >= _start_of(start),
        Approval.decided_at < _start_of(end + timedelta(days=1)),
        *_known(Approval.decided_at, report.known_at))).all()
    if rows:
        seconds = sum(int((d - c).total_seconds()) for c, d in rows)
        report.approval_turnaround_hours = _q(Decimal(seconds) / 3600 / len(rows))


def _cycle_time(session: Session, report: KpiReport, start: date, end: date) -> None:
    first = (select(Shipment.order_id, sa.func.min(Shipment.shipped_at).label("first"))
             .where(*_known(Shipment.created_at, report.known_at))
             .group_by(Shipment.order_id).subquery())
    rows = session.exec(select(Order.order_date, first.c.first)
                        .join(first, first.c.order_id == Order.id)
                        .where(first.c.first >= _start_of(start),
                               first.c.first < _start_of(end + timedelta(days=1)))).all()
    days = [(shipped.date() - ordered).days for ordered, shipped in rows]
    if days:
        report.order_cycle_days = _q(Decimal(sum(days)) / len(days))


def _issued_in(start: date, end: date, known: datetime | None) -> list[sa.ColumnElement]:
    """Sales invoices issued in the window (late-fee invoices are not sales)."""
    return [Invoice.issue_date >= start, Invoice.issue_date <= end,
            Invoice.fee_for_invoice_id.is_(None), *_known(Invoice.created_at, known)]


def _accuracy(session: Session, report: KpiReport, start: date, end: date) -> None:
    known = report.known_at
    issued = session.exec(select(sa.func.count()).select_from(Invoice).where(
        *_issued_in(start, end, known))).one()
    if not issued:
        return
    credited = sa.exists(select(CreditNote.id).where(
        CreditNote.invoice_id == Invoice.id, *_known(CreditNote.created_at, known)))
    accepted = sa.exists(select(Dispute.id).where(
        Dispute.invoice_id == Invoice.id, Dispute.status == DisputeStatus.ACCEPTED,
        *_known(Dispute.resolved_at, known)))
    corrected = session.exec(select(sa.func.count()).select_from(Invoice).where(
        *_issued_in(start, end, known), sa.or_(credited, accepted))).one()
    report.invoice_accuracy = _q(Decimal(issued - corrected) / issued * 100)


def _back_office(session: Session, report: KpiReport, start: date, end: date) -> None:
    known = report.known_at
    end_of = _start_of(end + timedelta(days=1))
    cutoff = min(end_of, known) if known is not None else end_of
    issued = session.exec(select(sa.func.count()).select_from(Invoice).where(
        *_issued_in(start, end, known))).one()
    disputed = sa.exists(select(Dispute.id).where(Dispute.invoice_id == Invoice.id,
                                                  Dispute.opened_at < cutoff))
    report.disputes_opened = int(session.exec(select(sa.func.count()).select_from(Invoice)
                                              .where(*_issued_in(start, end, known),
                                                     disputed)).one())
    if issued:
        report.dispute_rate = _q(Decimal(report.disputes_opened) / issued * 100)
    resolved = session.exec(select(Dispute.opened_at, Dispute.resolved_at).where(
        Dispute.resolved_at.is_not(None), Dispute.resolved_at >= _start_of(start),
        Dispute.resolved_at < cutoff)).all()
    report.disputes_resolved = len(resolved)
    if resolved:
        seconds = sum(int((r - o).total_seconds()) for o, r in resolved)
        report.days_to_resolve = _q(Decimal(seconds) / 86400 / len(resolved))
    not_resolved = sa.or_(Deduction.status != DeductionStatus.RESOLVED,
                          Deduction.resolved_at.is_(None), Deduction.resolved_at >= cutoff)
    rows = session.exec(select(Invoice.currency, sa.func.count(),
                               sa.func.coalesce(sa.func.sum(Deduction.amount_minor), 0))
                        .join(Invoice, Invoice.id == Deduction.invoice_id)
                        .where(Deduction.created_at < cutoff, not_resolved,
                               Invoice.balance_minor > 0)
                        .group_by(Invoice.currency)).all()
    report.deductions_outstanding = sum(int(n) for _, n, _ in rows)
    report.deductions_outstanding_minor = sum(int(a) for cur, _, a in rows
                                              if cur == report.currency)
    if report.currency:
        report.bad_debt_minor = int(session.exec(select(sa.func.coalesce(sa.func.sum(
            WriteOff.amount_minor), 0)).join(Invoice, Invoice.id == WriteOff.invoice_id).where(
            Invoice.currency == report.currency, WriteOff.reason == WriteOffReason.BAD_DEBT,
            WriteOff.effective_date >= start, WriteOff.effective_date <= end,
            *_known(WriteOff.created_at, known))).one())
        if report.credit_sales_minor:
            report.bad_debt_ratio = _q(Decimal(report.bad_debt_minor)
                                       / report.credit_sales_minor * 100)


def to_json(report: KpiReport) -> dict:
    cur = report.currency

    def amt(minor: int) -> str | None:
        return money.to_str(minor, cur) if cur else None

    def num(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "as_of": report.as_of.isoformat(), "window_days": report.window_days, "currency": cur,
        **({"known_at": report.known_at.isoformat()} if report.known_at else {}),
        "ar": amt(report.ar_minor), "current_ar": amt(report.current_ar_minor),
        "credit_sales": amt(report.credit_sales_minor),
        "dso": num(report.dso), "best_possible_dso": num(report.best_possible_dso),
        "count_back_dso": num(report.count_back_dso),
        "average_days_delinquent": num(report.average_days_delinquent),
        "cei_pct": num(report.cei),
        "cash_application": {"payments": report.payments_received,
                             "auto_match_rate_pct": num(report.auto_match_rate),
                             "auto_match_amount_pct": num(report.auto_match_amount_rate),
                             "amount_currency": cur},
        "approval_turnaround_hours": num(report.approval_turnaround_hours),
        "order_cycle_days": num(report.order_cycle_days),
        "invoice_accuracy_pct": num(report.invoice_accuracy),
        "disputes": {"rate_pct": num(report.dispute_rate),
                     "invoices_disputed": report.disputes_opened,
                     "resolved": report.disputes_resolved,
                     "avg_days_to_resolve": num(report.days_to_resolve)},
        "deductions_outstanding": {"count": report.deductions_outstanding,
                                   "amount": amt(report.deductions_outstanding_minor),
                                   "amount_currency": cur},
        "bad_debt": {"amount": amt(report.bad_debt_minor),
                     "ratio_pct": num(report.bad_debt_ratio)},
        "aging": {c: {b: money.to_str(v, c) for b, v in buckets.items()}
                  for c, buckets in report.aging.items()},
        "in_dispute": {c: money.to_str(v, c) for c, v in report.in_dispute.items()},
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
