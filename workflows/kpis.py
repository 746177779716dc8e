"""O2C KPIs (SPEC §3), each computed in SQL over a trailing window and documented here.

Amounts are summed per currency; ratio KPIs over amounts use the *home* currency — the
settings' (`O2C_HOME_CURRENCY`, policy `home_currency`) when it has open AR at `as_of` (or,
with no AR, credit sales in the window), else the one with the most of them (in minor units)
— since adding USD to EUR without rates would be wrong.

Window `W` = 90 days ending at `as_of` (inclusive).
AR(t) = open AR at the end of day t = Σ over invoices issued on or before t of total −
allocations − credit notes − write-offs *dated* on or before t — by economic date (a payment's
value date, a credit note's issue date, a write-off's effective date), whenever they were
recorded (`workflows.receivables` computes it). So a past day's KPIs are what the books say
happened up to that day: a payment of 1 May posted in July counts on 1 May. AR is gross: an
invoice's balance is never negative, and unapplied cash and customer credit (an overpayment,
the part of a credit note beyond what its invoice had open) are not netted against it;
amounts in dispute stay in it (the aging shows them as "in dispute").
Current AR(t) = the part of AR(t) not yet due at t (due date on or after t).
Credit sales in a period = *net* credit sales: the totals of invoices issued in it, late-fee
invoices left out (a fee is owed, so it is in AR, but it is not a sale), less the credit
notes dated in it (`effective_date`, the day the books count them on) against sales
invoices, whenever those were issued — as a finance team computes DSO (a credit note takes
back part of a sale; one waiving a late fee takes back no sale and is not taken off). They
may be zero or negative (more credited than sold): the ratios over them are then None.
Billed in a period = the totals of every invoice issued in it, fees included, credit notes
not taken off (what CEI collects against: the fees are in AR at both ends of its window, so
leaving them out of what was billed would count a fee collected as collected from nothing).
Every window is made of business days in the policy's `business_timezone` (a day ends at
midnight there): invoices, credit notes and write-offs by their dates; payments, approvals,
disputes, deductions and shipments by their timestamps' business day (a payment received at
23:30 Los Angeles time on 30 November counts on 30 November, not on 1 December UTC).

With `known_at` (an audit: "what did the KPIs say then?") every figure counts only the rows
recorded (`created_at`; approvals by when they were decided) by that moment: invoices,
settlements, payments, approvals, shipments, credit notes — and the settlements a correction
reversed after that moment, as they were (`workflows.receivables.reversed_then`).

Every rate and figure in days or hours is a `Decimal` rounded half-up to 2 decimals once, at
the end (ADD: the difference of the two rounded DSOs, so the three figures shown add up); one
with nothing to divide by (no credit sales in W, CEI's denominator not above 0, no payments,
approvals, shipments, invoices or resolved disputes in W) is None, shown as "—", never 0.

* **DSO (standard)** = AR(as_of) / credit sales in W × days in W.
* **Best possible DSO** = current AR(as_of) / credit sales in W × days in W.
* **Average days delinquent (ADD)** = DSO − best possible DSO.
* **Count-back DSO**: walk back month by month from `as_of`, subtracting each month's credit
  sales from AR(as_of): the month of `as_of` counts its days up to `as_of`, earlier whole
  months their real length, and the month that covers the rest of AR pro rata
  (rest / that month's sales × its days). None when three years of sales do not cover AR.
* **CEI** (collection effectiveness) = (AR(start − 1) + billed in W − AR(as_of)) /
  (AR(start − 1) + billed in W − current AR(as_of)) × 100, `start` = the first day of W.
* **Cash-application auto-match rate** = payments received in W (all currencies: a count)
  that the matching engine applied with no human allocation (status applied, or partially
  applied when the rest is an overpayment kept as credit; no allocation with method "manual")
  / payments received in W.
  **By amount** (home currency only): what was allocated from the home-currency payments
  received in W that count as matched automatically above (a payment a person allocated any
  part of counts for nothing here) / the home-currency amount received in W.
* **Approval turnaround** = mean wall-clock hours (not working hours) from request to
  decision for approvals approved or rejected in W (cancelled requests were never decided
  by anyone and do not count).
* **Order cycle time** = mean days from order date to the business day of its first shipment
  (both dates in the books' time zone: an order dated 06-25 and shipped at 23:30 New York time
  on 06-30 took 5 days), for orders first shipped in W (by that business day).
* **Invoice accuracy** = share of invoices issued in W (late-fee invoices left out) with
  neither a credit note (dated by the end of `as_of`) nor a dispute accepted by then.
* **Dispute rate** = invoices issued in W (late-fee invoices left out) on which a dispute was
  opened (by the end of `as_of`) / invoices issued in W.
* **Average days to resolve** = mean days (to 2 decimals, from the timestamps) from opening to
  resolution of the disputes resolved in W (accepted, rejected or withdrawn).
* **Deductions outstanding** = deductions recorded by the end of `as_of` that were not resolved
  by then and whose invoice still has something open: their number (all currencies) and
  amount (home currency) — what was left of them then (their amount less the credit notes of
  disputes opened from them issued by then), per invoice at most what the invoice had open.
* **Bad-debt ratio** = bad-debt write-offs (reason `bad_debt`) dated in W / credit sales in W
  (home currency).

Where the figures are read (the same answers either way, to the cent): without `known_at`,
credit sales (and the credit notes taken off them), the sales invoices issued, AR the day
before W, bad debt and the cash-application counts and amounts come from `kpi_daily` — per
currency and day, kept by database triggers in the statement of every write to invoices,
allocations, credit notes, write-offs and payments (migrations 0023_kpi_rollups, 0028, 0031;
`workflows.invariants.validate_kpi_rollups` recomputes it) — so only the aging, the disputes,
approvals and shipments read many rows. The payments' rollups are kept by UTC day: the UTC
days wholly inside W come from them, the hours at either end of W (when the business time
zone is not UTC) from the payments received then (`ix_payments_received`). With `known_at` (what was
recorded by a moment) every figure is read from the base rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    Approval,
    ApprovalStatus,
    AuditEvent,
    CreditNote,
    Deduction,
    DeductionStatus,
    Dispute,
    DisputeStatus,
    Invoice,
    KpiDaily,
    KpiSnapshot,
    Order,
    Payment,
    ReversedKind,
    ReversedSettlement,
    Shipment,
    WriteOff,
    WriteOffReason,
    money,
)
from workflows import policy, snapshot_reads
from workflows.deductions import credited_minor
from workflows.receivables import (
    SETTLEMENTS,
    Aging,
    aging_by_currency,
    ar_total_parts,
    not_counted,
    reversed_by_invoice,
    reversed_then,
)
from workflows.workcalendar import zone_or_utc

WINDOW_DAYS = 90
COUNT_BACK_MONTHS = 36
TWO = Decimal("0.01")
DECIDED = (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)


def _start_of(day: date, zone: tzinfo = UTC) -> datetime:
    """The first moment of `day` in `zone` (UTC: the rollups' days), in UTC."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


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


# what a late-fee invoice adds to the billed total and not to credit sales
_FEE_TOTAL = sa.case((Invoice.fee_for_invoice_id.is_(None), 0), else_=Invoice.total_minor)


def _credited_in(currency: str, start: date, end: date, known_at: datetime | None
                 ) -> list[sa.ColumnElement]:
    """Credit notes against sales invoices (not late fees) of `currency` dated from `start` to
    `end`: what credit sales are net of."""
    return [Invoice.id == CreditNote.invoice_id, Invoice.currency == currency,
            Invoice.fee_for_invoice_id.is_(None), CreditNote.effective_date >= start,
            CreditNote.effective_date <= end, *_known(CreditNote.created_at, known_at)]


def sales_between(session: Session, currency: str, start: date, end: date, *,
                  known_at: datetime | None = None) -> int:
    """Net credit sales: the totals of invoices issued from `start` to `end` (inclusive),
    late-fee invoices left out, less the credit notes against sales dated then."""
    sold = int(session.exec(select(sa.func.coalesce(sa.func.sum(Invoice.total_minor), 0)).where(
        Invoice.currency == currency, Invoice.issue_date >= start,
        Invoice.issue_date <= end, Invoice.fee_for_invoice_id.is_(None),
        *_known(Invoice.created_at, known_at))).one())
    return sold - int(session.exec(
        select(sa.func.coalesce(sa.func.sum(CreditNote.amount_minor), 0))
        .where(*_credited_in(currency, start, end, known_at))).one())


def sales_by_day(session: Session, currency: str, start: date, end: date, *,
                 known_at: datetime | None = None) -> dict[date, tuple[int, int, int]]:
    """Per day from `start` to `end` (inclusive), the totals of the invoices issued, of the
    late-fee invoices among them and of the credit notes against sales dated that day: one
    grouped range scan of `ix_invoices_sales (currency, issue_date, total_minor, id)`, one of
    `ix_credit_notes_effective`."""
    daily = {day: (int(total), int(fees), 0) for day, total, fees in session.exec(
        select(Invoice.issue_date, sa.func.sum(Invoice.total_minor), sa.func.sum(_FEE_TOTAL))
        .where(Invoice.currency == currency, Invoice.issue_date >= start,
               Invoice.issue_date <= end, *_known(Invoice.created_at, known_at))
        .group_by(Invoice.issue_date)).all()}
    for day, credited in session.exec(
            select(CreditNote.effective_date, sa.func.sum(CreditNote.amount_minor))
            .where(*_credited_in(currency, start, end, known_at))
            .group_by(CreditNote.effective_date)).all():
        total, fees, _ = daily.get(day, (0, 0, 0))
        daily[day] = (total, fees, int(credited))
    return daily


def count_back_months(as_of: date) -> list[tuple[date, date]]:
    """The count-back's months, newest first: (first day, last day counted) — the month of
    `as_of` up to `as_of`, then COUNT_BACK_MONTHS - 1 whole months before it."""
    months, end = [], as_of
    for _ in range(COUNT_BACK_MONTHS):
        start = end.replace(day=1)
        months.append((start, end))
        end = start - timedelta(days=1)  # the last day of the month before
    return months


class _Sales:
    """Net credit sales of one currency by day, read in at most two grouped queries: the first
    (`first_range`, from `first_start`) covers the window and the newest months (where the
    count-back usually stops), the second (`rest`) the rest of the count-back's three years —
    read with the first when `jobs(whole=True)` (the caller expects the count-back to go
    further back), else only when the count-back gets there (through `reads`, so in the same
    snapshot as the rest)."""

    FIRST_MONTHS = 4

    def __init__(self, currency: str, as_of: date, window_start: date,
                 known_at: datetime | None, reads: Callable[[list], list]) -> None:
        self.currency, self.known_at, self.reads = currency, known_at, reads
        self.months = count_back_months(as_of)
        self.start = self.first_start(as_of, window_start)
        self.as_of = as_of
        # (billed, late fees among them, credit notes against sales)
        self.daily: dict[date, tuple[int, int, int]] = {}

    @classmethod
    def first_start(cls, as_of: date, window_start: date) -> date:
        return min(window_start, count_back_months(as_of)[cls.FIRST_MONTHS - 1][0])

    def first_range(self, session: Session) -> dict[date, tuple[int, int, int]]:
        return sales_by_day(session, self.currency, self.start, self.as_of,
                            known_at=self.known_at)

    def rest(self, session: Session) -> dict[date, tuple[int, int, int]]:
        return sales_by_day(session, self.currency, self.months[-1][0],
                            self.start - timedelta(days=1), known_at=self.known_at)

    def jobs(self, *, whole: bool) -> list[Callable[[Session], dict[date, tuple[int, int, int]]]]:
        return [self.first_range, self.rest] if whole else [self.first_range]

    def load(self, ranges: list[dict[date, tuple[int, int, int]]]) -> None:
        """Take `jobs`' results."""
        for daily in ranges:
            self.daily.update(daily)
        if len(ranges) == 2:
            self.start = self.months[-1][0]

    def between(self, start: date, end: date) -> int:
        """Net credit sales from `start` to `end` (late fees left out, credit notes taken
        off)."""
        if start < self.start:
            self.daily.update(self.reads([self.rest])[0])
            self.start = self.months[-1][0]
        if start < self.start:
            return self.reads([lambda s: sales_between(s, self.currency, start, end,
                                                       known_at=self.known_at)])[0]
        return sum(total - fees - credited for day, (total, fees, credited)
                   in self.daily.items() if start <= day <= end)

    def billed(self, start: date, end: date) -> int:
        """Every invoice issued from `start` to `end`, fees included (`start` within the
        first range: the window)."""
        return sum(total for day, (total, _, _) in self.daily.items()
                   if start <= day <= end)


def _count_back(sales: _Sales, ar: int) -> Decimal | None:
    if ar <= 0:
        return Decimal(0)
    remaining, days = Decimal(ar), Decimal(0)
    for start, end in sales.months:
        length = (end - start).days + 1
        month = Decimal(sales.between(start, end))
        if month >= remaining and month > 0:
            return days + remaining / month * length
        remaining -= month
        days += length
    return None  # more AR than three years of sales: not meaningful


def _home_currency(aging: dict, home: str) -> str | None:
    """`home`, the settings' home currency (`O2C_HOME_CURRENCY`, policy `home_currency`), when
    it has open AR; else the currency with the most open AR (in minor units: without rates no
    comparison of currencies is right, which is why the setting comes first)."""
    if not aging:
        return None
    if home in aging and aging[home].total:
        return home
    return max(sorted(aging), key=lambda c: aging[c].total)


def _top_sales_currency(session: Session, start: date, end: date, home: str,
                        known_at: datetime | None = None) -> str | None:
    """With no open AR: the settings' home currency when it has credit sales in the window,
    else the currency of the most of them (late fees are not sales: `_issued_in`)."""
    sales = dict(session.exec(select(Invoice.currency, sa.func.sum(Invoice.total_minor))
                              .where(*_issued_in(start, end, known_at))
                              .group_by(Invoice.currency)).all())
    if not sales:
        return None
    if sales.get(home):
        return home
    return max(sorted(sales), key=lambda c: int(sales[c]))


def compute(session: Session, as_of: date, *, window_days: int = WINDOW_DAYS,
            known_at: datetime | None = None, now: datetime | None = None,
            concurrently: bool = False, rollups: bool = True) -> KpiReport:
    """Every KPI as of the end of `as_of` by economic date; with `known_at`, as the books
    knew them at that moment (see the module docstring). `now` is not needed (a day's KPIs
    do not depend on when they are asked) and is accepted for callers that pass the clock.

    The statements are independent reads: with `concurrently` (a session that has written
    nothing), PostgreSQL runs them at once on several pooled connections sharing the
    session's snapshot (`workflows.snapshot_reads`) — first what needs no home currency (the
    aging, which also sums the open part of AR the day before the window, cash application,
    approvals, cycle time, accuracy, disputes), then what does (credit sales, each kind of
    settlement dated after the day before the window, bad debt). The same answers as one after
    another, which SQLite and the default do.

    Without `known_at` (and unless `rollups` is False, which tests use to compare), credit
    sales, AR the day before the window, bad debt, the sales invoices issued and the cash
    application figures come from the per-day rollups (`kpi_daily`, kept by triggers: see
    `_from_rollups`) instead of the base rows — the same answers, to the cent."""
    start = as_of - timedelta(days=window_days - 1)
    snapshot = snapshot_reads.exported_snapshot(session) if concurrently else None

    def reads(jobs: list) -> list:
        return snapshot_reads.run(session, jobs, concurrently=snapshot is not None,
                                  snapshot=snapshot)

    report = KpiReport(as_of=as_of, window_days=window_days, currency=None,
                       known_at=known_at)
    books = policy.current(session)  # (read once: its home currency and time zone)
    home_currency, zone = books.home_currency, zone_or_utc(books.business_timezone)
    if rollups and known_at is None:
        return _from_rollups(report, reads, start, home_currency, zone)
    # the aging's pass over the open invoices also sums those issued the day before the
    # window (AR then: its first part) and before the credit sales' first range (a hint)
    before, first_start = start - timedelta(days=1), _Sales.first_start(as_of, start)
    older = first_start - timedelta(days=1)
    aging, payments, _, deductions = reads([
        lambda s: aging_by_currency(s, as_of, known_at=known_at, issued_by=(before, older)),
        lambda s: _payments(s, start, as_of, known_at, zone),
        lambda s: (_approvals(s, report, start, as_of, zone),
                   _cycle_time(s, report, start, as_of, zone)),
        lambda s: _quality(s, report, start, as_of, zone)])
    currency = _home_currency(aging, home_currency) or reads([lambda s: _top_sales_currency(
        s, start, as_of, home_currency, known_at)])[0]
    home = _from_aging(report, currency, aging, deductions)
    _cash_application(report, payments)
    if not currency:
        return report
    sales = _Sales(currency, as_of, start, known_at, reads)
    # read the count-back's older months at once (other connections) when open AR was
    # issued before its first range: the count-back then usually goes back that far
    whole = (snapshot is not None and home is not None
             and home.open_issued_by.get(older, 0) > 0)
    sales_jobs = sales.jobs(whole=whole)
    # AR the day before the window (CEI): the open part came with the aging; each kind of
    # settlement dated later is a statement of its own (at once, on other connections: one
    # statement over the three joined the invoices once but was the longest of its batch)
    _, *later = ar_total_parts(currency, before, known_at=known_at)
    bad_debt, *settled = reads([
        lambda s: _bad_debt(s, currency, start, as_of, known_at),
        *(lambda s, part=part: int(s.exec(part).one()) for part in later), *sales_jobs])
    settled, ranges = settled[:len(later)], settled[len(later):]
    sales.load(ranges)
    begin = (home.open_issued_by.get(before, 0) if home is not None else 0) + sum(settled)
    _figures(report, sales, begin, bad_debt)
    return report


def _from_aging(report: KpiReport, currency: str | None, aging: dict[str, Aging],
                deductions: dict[str, tuple[int, int]]) -> Aging | None:
    """What the aging's pass and the deductions give the report (either path of `compute`):
    the home currency, buckets and disputes per currency, deductions outstanding, and the home
    currency's AR; its aging, if it has open invoices."""
    report.currency = currency
    report.aging = {c: dict(a.buckets) for c, a in sorted(aging.items())}
    report.in_dispute = {c: a.disputed for c, a in sorted(aging.items())}
    report.deductions_outstanding = sum(n for n, _ in deductions.values())
    report.deductions_outstanding_minor = deductions.get(currency or "", (0, 0))[1]
    home = aging.get(currency) if currency else None
    if home is not None:
        report.ar_minor = home.total
        report.current_ar_minor = home.buckets["current"]
    return home


def _figures(report: KpiReport, sales: _Sales, begin: int, bad_debt: int) -> None:
    """The KPIs over amounts, from the home currency's AR (set on `report`), its credit sales,
    AR the day before the window (`begin`) and the bad debt in the window."""
    days = Decimal(report.window_days)
    start = report.as_of - timedelta(days=report.window_days - 1)
    report.credit_sales_minor = sales.between(start, report.as_of)
    if report.credit_sales_minor > 0:  # (net: more may have been credited than sold)
        in_window = Decimal(report.credit_sales_minor)
        report.dso = _q(Decimal(report.ar_minor) / in_window * days)
        report.best_possible_dso = _q(Decimal(report.current_ar_minor) / in_window * days)
        report.average_days_delinquent = _q(report.dso - report.best_possible_dso)
    report.count_back_dso = _q(_count_back(sales, report.ar_minor))
    billed = sales.billed(start, report.as_of)
    denominator = begin + billed - report.current_ar_minor
    if denominator > 0:
        numerator = begin + billed - report.ar_minor
        report.cei = _q(Decimal(numerator) / Decimal(denominator) * 100)
    report.bad_debt_minor = bad_debt
    if report.credit_sales_minor > 0:
        report.bad_debt_ratio = _q(Decimal(bad_debt) / report.credit_sales_minor * 100)


def _daily(session: Session, first: date, last: date, before: date
           ) -> tuple[list[tuple], dict[str, int]]:
    """The rollups' days from `first` to `last` (every currency), and per currency AR at the
    end of `before`: the sum of the invoices issued (fees too) less settlements counted (each
    on the first day it counts in AR) over every day up to it (`models.system.KpiDaily`)."""
    d = KpiDaily
    sums = (sa.func.sum(c) for c in (d.sales_minor, d.invoices_issued, d.bad_debt_minor,
                                     d.payments, d.payments_auto, d.received_minor,
                                     d.auto_matched_minor, d.fees_minor,
                                     d.credited_minor))
    rows = session.exec(select(d.currency, d.day, *sums)  # a day's stripes summed
                        .where(d.day >= first, d.day <= last)
                        .group_by(d.currency, d.day)).all()
    ar = {currency: int(total) for currency, total in session.exec(
        select(d.currency, sa.func.sum(d.sales_minor - d.settled_minor))
        .where(d.day <= before).group_by(d.currency)).all()}
    return [tuple(row) for row in rows], ar


def _issued_from_rollups(session: Session, start: date, end: date) -> int:
    """Sales invoices (late fees left out) issued from `start` to `end`, every currency."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(KpiDaily.invoices_issued), 0))
                            .where(KpiDaily.day >= start, KpiDaily.day <= end)).one())


def _from_rollups(report: KpiReport, reads: Callable[[list], list], start: date,
                  home_currency: str, zone: tzinfo) -> KpiReport:
    """`compute` without `known_at`, from the rollups where they hold the answer: besides
    the aging (one pass over the open invoices), the disputes, approvals and shipments, it
    reads a few hundred rows of `kpi_daily` — invoices billed, late fees among them and
    sales invoices issued by day,
    payments received and matched automatically by day, bad debt by day, and AR the day
    before the window as Σ(billed − settlements) over the days up to it (so by the AR
    invariant: balance = total − settlements)."""
    as_of = report.as_of
    before = start - timedelta(days=1)
    first = min(start, count_back_months(as_of)[-1][0])
    aging, (daily, ar_before), _, deductions = reads([
        lambda s: aging_by_currency(s, as_of),
        lambda s: _daily(s, first, as_of, before),
        lambda s: (_approvals(s, report, start, as_of, zone),
                   _cycle_time(s, report, start, as_of, zone)),
        lambda s: _quality(s, report, start, as_of, zone,
                           issued=_issued_from_rollups(s, start, as_of))])
    currency = _home_currency(aging, home_currency) or reads([lambda s: _top_sales_currency(
        s, start, as_of, home_currency)])[0]
    _from_aging(report, currency, aging, deductions)
    sales = _Sales(currency or "", as_of, start, None, reads)
    sales.start = first
    bad_debt = 0
    # the payments: the UTC days (their rollups' days) wholly in the window of business days,
    # and the payments received in the hours at either end (none when the zone is UTC)
    lo, hi = _start_of(start, zone), _start_of(as_of + timedelta(days=1), zone)
    first_day = lo.date() if lo == _start_of(lo.date()) else lo.date() + timedelta(days=1)
    last_day = hi.date() - timedelta(days=1)
    ends = [(lo, hi)] if first_day > last_day else [  # (no whole UTC day: all of it)
        (a, b) for a, b in ((lo, _start_of(first_day)),
                            (_start_of(last_day + timedelta(days=1)), hi)) if a < b]
    payments = reads([lambda s: _payments_received(s, ends)])[0] if ends else {}
    for cur, day, sold, _, bad, count, auto, received, matched, fees, credited in daily:
        if first_day <= day <= last_day:
            was = payments.get(cur, (0, 0, 0, 0))
            payments[cur] = (was[0] + int(count), was[1] + int(auto),
                             was[2] + int(received), was[3] + int(matched))
        if cur == currency:
            sales.daily[day] = (int(sold), int(fees), int(credited))
            if start <= day:
                bad_debt += int(bad)
    _cash_application(report, {c: p for c, p in payments.items() if p[0]})
    if not currency:
        return report
    _figures(report, sales, ar_before.get(currency, 0), bad_debt)
    return report


def _payments(session: Session, start: date, end: date, known: datetime | None,
              zone: tzinfo = UTC) -> dict[str, tuple[int, int, int, int]]:
    """One aggregate over the window's payments (each with its allocations summed first), per
    currency: (payments, matched automatically, amount received, amount allocated
    automatically). With `known`, the allocations recorded by then, those reversed after it
    too."""
    allocations = Allocation.__table__ if known is None else _allocations_known(known)
    is_manual = allocations.c.method == "manual"
    per_payment = (
        select(Payment.status.label("status"), Payment.currency.label("currency"),
               Payment.amount_minor.label("amount"),
               sa.func.coalesce(sa.func.sum(sa.case((is_manual, 1), else_=0)), 0)
               .label("manual"),
               sa.func.coalesce(sa.func.sum(sa.case((is_manual, 0),
                                                    else_=allocations.c.amount_minor)), 0)
               .label("allocated"))
        .outerjoin(allocations, allocations.c.payment_id == Payment.id)
        .where(Payment.received_at >= _start_of(start, zone),
               Payment.received_at < _start_of(end + timedelta(days=1), zone),
               *_known(Payment.created_at, known))
        # (by the key alone: the payment's other columns depend on it; grouping by its
        # strings too cost a comparison of each per row)
        .group_by(Payment.id)
        .subquery())
    p = per_payment.c
    # (with `known_at`, a payment counts as matched if the engine had allocated from it by then)
    settled = sa.true() if known else p.status.in_(("applied", "partially_applied"))
    auto = sa.and_(settled, p.manual == 0, p.allocated != 0)
    return {currency: (int(count), int(auto_count), int(received), int(matched))
            for currency, count, auto_count, received, matched in session.exec(select(
                p.currency, sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((auto, 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(p.amount), 0),
                sa.func.coalesce(sa.func.sum(sa.case((auto, p.allocated), else_=0)), 0))
                .group_by(p.currency)).all()}


def _payments_received(session: Session, ranges: list[tuple[datetime, datetime]]
                       ) -> dict[str, tuple[int, int, int, int]]:
    """What `kpi_daily` holds of the payments (the same four figures per currency, from the
    payments' own rollup columns) for those received in `ranges` (from, until): a few hours
    of payments, read from `ix_payments_received`."""
    auto = sa.and_(Payment.status.in_(("applied", "partially_applied")),
                   Payment.manual_allocations == 0, Payment.auto_allocated_minor != 0)
    return {currency: (int(count), int(auto_count), int(received), int(matched))
            for currency, count, auto_count, received, matched in session.exec(select(
                Payment.currency, sa.func.count(),
                sa.func.sum(sa.case((auto, 1), else_=0)), sa.func.sum(Payment.amount_minor),
                sa.func.sum(sa.case((auto, Payment.auto_allocated_minor), else_=0)))
                .where(sa.or_(*(sa.and_(Payment.received_at >= a, Payment.received_at < b)
                                for a, b in ranges)))
                .group_by(Payment.currency)).all()}


def _allocations_known(known: datetime) -> sa.Subquery:
    """The allocations (payment, method, amount) on the books at `known`: recorded by then,
    and those reversed since."""
    taken_back = ReversedSettlement
    return sa.union_all(
        select(Allocation.payment_id, Allocation.method, Allocation.amount_minor)
        .where(Allocation.created_at <= known),
        select(taken_back.payment_id, taken_back.method, taken_back.amount_minor)
        .where(taken_back.kind == ReversedKind.ALLOCATION, *reversed_then(None, known))
    ).subquery()


def _cash_application(report: KpiReport, payments: dict[str, tuple[int, int, int, int]]
                      ) -> None:
    """The auto-match rates from `_payments`: by count over every currency, by amount in the
    home currency."""
    count = sum(p[0] for p in payments.values())
    auto_count = sum(p[1] for p in payments.values())
    _, _, received, matched = payments.get(report.currency or "", (0, 0, 0, 0))
    report.payments_received = count
    if not count:
        return
    report.auto_match_rate = _q(Decimal(auto_count) / count * 100)
    if received and report.currency:
        report.auto_match_amount_rate = _q(Decimal(matched) / received * 100)


def _approvals(session: Session, report: KpiReport, start: date, end: date,
               zone: tzinfo = UTC) -> None:
    """Approval turnaround, for the approvals decided in the window's business days."""
    rows = session.exec(select(Approval.created_at, Approval.decided_at).where(
        Approval.status.in_(DECIDED), Approval.decided_at.is_not(None),
        Approval.decided_at >= _start_of(start, zone),
        Approval.decided_at < _start_of(end + timedelta(days=1), zone),
        *_known(Approval.decided_at, report.known_at))).all()
    if rows:
        seconds = sum(int((d - c).total_seconds()) for c, d in rows)
        report.approval_turnaround_hours = _q(Decimal(seconds) / 3600 / len(rows))


def _cycle_time(session: Session, report: KpiReport, start: date, end: date,
                zone: tzinfo) -> None:
    """Order cycle time in business days: an order's date and the day it first shipped are both
    dates in the books' time zone `zone` (the shipment's invoice is dated so), as is the
    window."""
    first = (select(Shipment.order_id, sa.func.min(Shipment.shipped_at).label("first"))
             .where(*_known(Shipment.created_at, report.known_at))
             .group_by(Shipment.order_id).subquery())
    rows = session.exec(select(Order.order_date, first.c.first)
                        .join(first, first.c.order_id == Order.id)
                        .where(first.c.first >= _start_of(start, zone),
                               first.c.first < _start_of(end + timedelta(days=1), zone))).all()
    days = [(shipped.astimezone(zone).date() - ordered).days for ordered, shipped in rows]
    if days:
        report.order_cycle_days = _q(Decimal(sum(days)) / len(days))


def _issued_in(start: date, end: date, known: datetime | None) -> list[sa.ColumnElement]:
    """Sales invoices issued in the window (late-fee invoices are not sales)."""
    return [Invoice.issue_date >= start, Invoice.issue_date <= end,
            Invoice.fee_for_invoice_id.is_(None), *_known(Invoice.created_at, known)]


def _issued_count(session: Session, start: date, end: date, known: datetime | None) -> int:
    """Sales invoices issued in the window: a range scan of `ix_invoices_issued`."""
    return int(session.exec(select(sa.func.count()).select_from(Invoice).where(
        *_issued_in(start, end, known))).one())


def _quality(session: Session, report: KpiReport, start: date, end: date,
             zone: tzinfo = UTC, issued: int | None = None) -> dict[str, tuple[int, int]]:
    """Invoice accuracy, dispute rate and resolution (set on `report`); returns the
    deductions outstanding per currency (number, amount), for the home currency's share.
    `issued`: the sales invoices issued in the window when the caller knows it. Days end at
    midnight in `zone` (the books' time zone)."""
    if issued is None:
        issued = _issued_count(session, start, end, report.known_at)
    _accuracy(session, report, start, end, issued, zone)
    return _back_office(session, report, start, end, issued, zone)


def _accuracy(session: Session, report: KpiReport, start: date, end: date,
              issued: int, zone: tzinfo = UTC) -> None:
    known = report.known_at
    if not issued:
        return
    # corrected by the end of `end` (a credit note by the day the books count it on, an
    # accepted dispute by when it was accepted): a later correction leaves a past day as it was
    cutoff = _start_of(end + timedelta(days=1), zone)
    corrected_ids = sa.union(
        select(CreditNote.invoice_id.label("invoice_id"))
        .where(CreditNote.effective_date <= end, *_known(CreditNote.created_at, known)),
        select(Dispute.invoice_id.label("invoice_id"))
        .where(Dispute.status == DisputeStatus.ACCEPTED, Dispute.resolved_at < cutoff,
               *_known(Dispute.resolved_at, known))).subquery()
    corrected = int(session.exec(
        select(sa.func.count(sa.distinct(Invoice.id)))
        .join(corrected_ids, corrected_ids.c.invoice_id == Invoice.id)
        .where(*_issued_in(start, end, known))).one())
    report.invoice_accuracy = _q(Decimal(issued - corrected) / issued * 100)


def _back_office(session: Session, report: KpiReport, start: date, end: date,
                 issued: int, zone: tzinfo = UTC) -> dict[str, tuple[int, int]]:
    known = report.known_at
    end_of = _start_of(end + timedelta(days=1), zone)
    cutoff = min(end_of, known) if known is not None else end_of
    # from the (few) disputes, each invoice probed by its key (never the window's invoices)
    in_window = sa.exists(select(Invoice.id).where(Invoice.id == Dispute.invoice_id,
                                                   *_issued_in(start, end, known)))
    report.disputes_opened = int(session.exec(
        select(sa.func.count(sa.distinct(Dispute.invoice_id)))
        .where(Dispute.opened_at < cutoff, in_window)).one())
    if issued:
        report.dispute_rate = _q(Decimal(report.disputes_opened) / issued * 100)
    resolved = session.exec(select(Dispute.opened_at, Dispute.resolved_at).where(
        Dispute.resolved_at.is_not(None), Dispute.resolved_at >= _start_of(start, zone),
        Dispute.resolved_at < cutoff)).all()
    report.disputes_resolved = len(resolved)
    if resolved:
        seconds = sum(int((r - o).total_seconds()) for o, r in resolved)
        report.days_to_resolve = _q(Decimal(seconds) / 86400 / len(resolved))
    return _deductions_outstanding(session, end, known, cutoff)


def _deductions_outstanding(session: Session, end: date, known: datetime | None,
                            cutoff: datetime) -> dict[str, tuple[int, int]]:
    """Per currency (number, amount) of the deductions recorded before `cutoff` and not
    resolved by then whose invoice was open at the end of `end` (as known at `known`): its
    balance today plus what was settled with a later date, as the aging counts it — not
    today's balance alone, which a later payment would take a past day's deduction off with.
    The amount is what was left of them before `cutoff` (less the credit notes of disputes
    opened from them issued by then: `workflows.deductions.credited_minor`), per invoice at
    most what it had open.
    The settlements dated later are summed only for the deductions' invoices, and only when
    one of them has any (a probe): as of today there are none to sum."""
    not_resolved = sa.or_(Deduction.status != DeductionStatus.RESOLVED,
                          Deduction.resolved_at.is_(None), Deduction.resolved_at >= cutoff)
    held = (Deduction.created_at < cutoff, not_resolved)
    rows = session.exec(select(Invoice.id, Invoice.currency, Invoice.balance_minor,
                               sa.func.count(), sa.func.sum(Deduction.amount_minor))
                        .join(Invoice, Invoice.id == Deduction.invoice_id).where(*held)
                        .group_by(Invoice.id, Invoice.currency, Invoice.balance_minor)).all()
    if not rows:
        return {}
    theirs = select(Deduction.invoice_id).where(*held)
    later: dict[int, int] = {}
    for model in SETTLEMENTS:
        scope = (model.invoice_id.in_(theirs), not_counted(model, end, known))
        if session.exec(select(model.id).where(*scope).limit(1)).first() is None:
            continue
        for invoice_id, amount in session.exec(
                select(model.invoice_id, sa.func.sum(model.amount_minor)).where(*scope)
                .group_by(model.invoice_id)):
            later[invoice_id] = later.get(invoice_id, 0) + int(amount or 0)
    for invoice_id, amount in reversed_by_invoice(session, theirs, end, known).items():
        later[invoice_id] = later.get(invoice_id, 0) - amount
    credited = credited_minor(session, select(Deduction.id).where(*held), before=cutoff,
                              per_invoice=True)
    out: dict[str, tuple[int, int]] = {}
    for invoice_id, currency, balance, n, amount in rows:
        open_then = balance + later.get(invoice_id, 0)
        if open_then > 0:
            count, total = out.get(currency, (0, 0))
            left = int(amount or 0) - credited.get(invoice_id, 0)
            out[currency] = (count + int(n), total + min(left, open_then))
    return out


def _bad_debt(session: Session, currency: str, start: date, end: date,
              known: datetime | None) -> int:
    """Bad-debt write-offs of `currency` dated in the window (with `known`, those reversed
    after it too)."""
    bad_debt = int(session.exec(select(sa.func.coalesce(sa.func.sum(
        WriteOff.amount_minor), 0)).join(Invoice, Invoice.id == WriteOff.invoice_id).where(
        Invoice.currency == currency, WriteOff.reason == WriteOffReason.BAD_DEBT,
        WriteOff.effective_date >= start, WriteOff.effective_date <= end,
        *_known(WriteOff.created_at, known))).one())
    if known is None:
        return bad_debt
    taken_back = ReversedSettlement
    return bad_debt + int(session.exec(select(sa.func.coalesce(sa.func.sum(
        taken_back.amount_minor), 0)).join(Invoice, Invoice.id == taken_back.invoice_id).where(
        Invoice.currency == currency, taken_back.kind == ReversedKind.WRITE_OFF,
        taken_back.reason == WriteOffReason.BAD_DEBT, taken_back.effective_date >= start,
        *reversed_then(end, known))).one())


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


@dataclass(frozen=True)
class BooksMarker:
    """Where the books stood when a snapshot's KPIs were read: the last audit event's id (every
    change to the books writes one, SPEC §5.7) and, on PostgreSQL, the writers then in flight
    (`pg_current_snapshot()` as text). PostgreSQL draws an audit id when the row is inserted,
    not when its transaction commits: a writer that drew a lower id and commits after another's
    higher one leaves the last id where it was, so the id alone would call a snapshot without
    that writer's change fresh."""

    audit_id: int
    in_flight: str | None = None


_LAST_ID = sa.func.coalesce(sa.func.max(AuditEvent.id), 0)
_LAST_EVENT = sa.select(_LAST_ID)
_MARKER_PG = sa.select(_LAST_ID, sa.cast(sa.func.pg_current_snapshot(), sa.Text))
# Has any writer in flight then committed since (or is its fate forgotten: NULL)?
_LANDED_PG = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_snapshot_xip(CAST(:in_flight AS pg_snapshot)) AS x "
    "WHERE coalesce(pg_xact_status(x) NOT IN ('in progress', 'aborted'), true))")


def books_marker(session: Session) -> BooksMarker:
    """Where the books stand now (see `BooksMarker`); one statement, so on PostgreSQL the id
    and the writers in flight are of one snapshot."""
    if session.get_bind().dialect.name == "postgresql":
        last, in_flight = session.execute(_MARKER_PG).one()
        return BooksMarker(int(last), in_flight)
    return BooksMarker(int(session.execute(_LAST_EVENT).scalar_one()))


def _still_right(session: Session, row: KpiSnapshot | None) -> bool:
    """Whether nothing was recorded since `row` was computed: no audit event after its
    marker, and (PostgreSQL) none of the writers then in flight committed since. A writer in
    flight may have committed nothing for the books: the snapshot is computed again once,
    never shown without a change. A row kept before writers were recorded (`in_flight` NULL)
    counts as changed on PostgreSQL."""
    if row is None or row.audit_id != int(session.execute(_LAST_EVENT).scalar_one()):
        return False
    if session.get_bind().dialect.name != "postgresql":
        return True  # (one writer at a time: ids are committed in order)
    if row.in_flight is None:
        return False
    return not session.execute(_LANDED_PG, {"in_flight": row.in_flight}).scalar_one()


def snapshot(session: Session, as_of: date) -> KpiSnapshot | None:
    """The KPI snapshot of `as_of`, or else the newest of an earlier day (App Home shows its
    day and age), None when there is none yet."""
    return session.exec(select(KpiSnapshot).where(KpiSnapshot.as_of <= as_of)
                        .order_by(KpiSnapshot.as_of.desc()).limit(1)).first()


def is_fresh(session: Session, as_of: date) -> bool:
    """Whether `as_of`'s snapshot exists and nothing was recorded since it was computed."""
    return _still_right(session, session.get(KpiSnapshot, as_of))


def fresh_snapshot(session: Session, as_of: date) -> dict | None:
    """`as_of`'s KPIs (`to_json`) from its snapshot when nothing was recorded since it was
    computed — exactly what `compute` would answer, for two or three index probes — else
    None."""
    row = session.get(KpiSnapshot, as_of)
    return row.data if _still_right(session, row) else None


def compute_snapshot(session: Session, as_of: date, *, concurrently: bool = False
                     ) -> tuple[dict, BooksMarker]:
    """`as_of`'s KPIs (`to_json`) and where the books stood when they were computed (read
    first, so a change recorded during the computation makes the snapshot stale, never
    lost)."""
    from workflows.home import open_ar_trend

    marker = books_marker(session)
    data = to_json(compute(session, as_of, concurrently=concurrently))
    # the admins' App Home trend line: open AR at the end of each of the last 8 weeks
    data["open_ar_trend"] = open_ar_trend(session, as_of, data.get("currency"), weeks=8)
    return data, marker


def store_snapshot(session: Session, as_of: date, data: dict, marker: BooksMarker,
                   now: datetime) -> KpiSnapshot:
    """Replace `as_of`'s snapshot (one row per day) unless a newer one is already there."""
    row = session.get(KpiSnapshot, as_of)
    if row is None:
        row = KpiSnapshot(as_of=as_of, computed_at=now, audit_id=marker.audit_id,
                          in_flight=marker.in_flight, data=data)
        session.add(row)
    elif row.audit_id <= marker.audit_id:
        row.computed_at, row.audit_id, row.in_flight, row.data = (
            now, marker.audit_id, marker.in_flight, data)
    return row


def flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        else:
            out[name] = value
    return out
