"""Revenue recognition (SPEC §3, ASC 606 / IFRS 15): what was earned, what is deferred, and
what will be earned when.

**Obligations.** Each order line of a contract is a performance obligation. A contract is an
order that was approved: every order but drafts, orders waiting for approval, rejected and
cancelled ones (an order on hold stays a contract: the hold stops shipping and billing, not
what was already delivered). An order cancelled after a close recorded revenue of it (a
service under way, not delivered or invoiced yet) stays on the books with nothing left to
recognise: its closed months keep what they recorded and the first open month reverses it.
A line's *effective* quantity leaves out what was cancelled; a subscription cancelled from
a period on keeps only the periods before it. A line cancelled whole (every unit, or a
subscription from its first day) is no obligation any more: it is left out of the allocation,
so an order whose other lines share one revenue type keeps their net amounts. The arithmetic
(allocation by standalone selling price, goods at shipment, services ratably by day, credit
notes reducing what is left) is in `workflows.revenue_schedule`; this module reads the
orders, shipments, invoices and credit notes, and keeps the books by month.

**Invoiced and credited, per line.** Invoiced: the net amount (before tax) of our invoice lines
that bill the line (`InvoiceLine.order_line_id`), on their invoice's issue date. Credited: what
each credit note takes off each invoice line (`credit_by_invoice_line`), on the credit note's
effective date (`workflows.periods`: a note dated in a closed month counts from the first open
day). An ERP's own invoices carry no order lines: they are receivables, not obligations here.

**Deferred and unbilled.** At the end of a day, per line: `invoiced - credited - recognised`;
positive it is deferred revenue (a contract liability), negative it is unbilled (a contract
asset). So `recognised + deferred - unbilled = invoiced - credited` for every line, always.

**The close** (`record_through`) records, for every month up to the one it closes, each line's
recognised, invoiced and credited movements (`RevenueEntry`, append-only). A closed month is
read from those rows and never changes. An open month is computed from the current schedule:
cumulative figures at its end are the schedule's, so whatever changed since the close (a late
shipment, a cancellation, an allocation that moved) lands in the first open month, as the
difference between the schedule and what the closed months recorded.

**One lock date for AR and revenue.** The revenue close closes the month through
`periods.close_period(source="revenue")`, the same closed-periods table the AR close uses, and
an AR close records revenue for the months it closes. One "books closed through June" for the
finance team: a credit note or payment dated in June but recorded in July is booked in July
by AR and by revenue alike (credit notes reduce revenue from their effective date), so the AR
and revenue reports of a closed month agree and neither changes afterwards. The price: the
scheduled revenue close (first working day of the month, for the month before) also closes
AR for that month — a late bank statement is then booked in the open month, which is what a
closed month means. (Months closed before this feature have no revenue recorded: they are
computed like open months until the next revenue close records them.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    Order,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentLine,
    money,
)
from models.revenue import RevenueClose, RevenueEntry
from workflows import audit, outbox, periods, policy, webhooks
from workflows.credit_notes import credit_by_line
from workflows.revenue_schedule import (
    AllocationLine,
    Entry,
    allocate,
    first_of_month,
    goods_schedule,
    half_up,
    month_end,
    next_month,
    service_schedule,
)

TYPES = ("goods", "service", "subscription")
# Orders that are not (yet) contracts: nothing of theirs is recognised.
NOT_CONTRACTS = (OrderStatus.DRAFT, OrderStatus.PENDING_APPROVAL, OrderStatus.REJECTED,
                 OrderStatus.CANCELLED)
MAX_REPORT_MONTHS = 120


# -- what a credit note takes off each invoice line ----------------------------------------------
def credit_by_invoice_line(session: Session, note: CreditNote) -> dict[int, int]:
    """How much an issued credit note takes off the net amount (before tax) of each line of
    its invoice: {invoice line id: minor units}. This is the only place revenue asks: the back
    office's credit-note lines (`workflows.credit_notes.credit_by_line`: the lines credited,
    or the note's amount spread over them), including the part of a note that became
    customer credit."""
    return {c.invoice_line_id: c.net_minor for c in credit_by_line(session, note)
            if c.net_minor}


# -- obligations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """One line's cumulative figures at the end of a day (minor units)."""

    recognized: int = 0
    invoiced: int = 0
    credited: int = 0

    @property
    def balance(self) -> int:
        """invoiced - credited - recognised: deferred when positive, unbilled when negative."""
        return self.invoiced - self.credited - self.recognized

    @property
    def deferred(self) -> int:
        return max(self.balance, 0)

    @property
    def unbilled(self) -> int:
        return max(-self.balance, 0)

    def __sub__(self, other: Figures) -> Figures:
        return Figures(self.recognized - other.recognized, self.invoiced - other.invoiced,
                       self.credited - other.credited)

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.recognized + other.recognized, self.invoiced + other.invoiced,
                       self.credited + other.credited)


@dataclass
class Obligation:
    line_id: int
    order_id: int
    order_number: str
    line_no: int
    sku: str
    currency: str
    revenue_type: str
    quantity: int  # ordered less cancelled
    net_minor: int  # its net amount (after discount, before tax) for that quantity
    ssp_minor: int  # standalone selling price of that quantity
    service_start: date | None = None
    service_end: date | None = None  # the last day served (a cancelled subscription: sooner)
    allocated_minor: int = 0
    shipments: list[tuple[date, int]] = field(default_factory=list)
    invoiced: list[Entry] = field(default_factory=list)
    credited: list[Entry] = field(default_factory=list)
    closed: dict[str, Figures] = field(default_factory=dict)  # recorded movements by month
    _schedule: list[Entry] | None = None
    _running: tuple | None = None

    @property
    def ratable(self) -> bool:
        """Recognised by day over a service period (else at shipment, like goods: a service
        entered before service periods existed has none)."""
        return self.revenue_type != "goods" and self.service_start is not None

    @property
    def live(self) -> bool:
        """Still an obligation of the contract: not all its quantity cancelled, nor a
        subscription cancelled from its first day. A line that is not counts for nothing in
        the allocation (its net amount and SSP are nil), nor in whether the order mixes
        revenue types."""
        return self.quantity > 0 and not (self.ratable and self.service_end < self.service_start)

    @property
    def starts(self) -> date | None:
        """The first day anything may be recognised: the period's start, or the first
        shipment (None: nothing delivered yet)."""
        if self.ratable:
            return self.service_start
        return min((day for day, _ in self.shipments), default=None)

    @property
    def schedule(self) -> list[Entry]:
        """The recognition schedule as the books stand now: (day, amount) entries."""
        if self._schedule is None:
            if self.ratable:
                if self.service_end < self.service_start:  # cancelled before it started
                    base = [(self.service_start, self.allocated_minor)] \
                        if self.allocated_minor else []
                    self._schedule = sorted(base + [(max(d, self.service_start), -a)
                                                     for d, a in self.credited if a])
                else:
                    self._schedule = service_schedule(self.allocated_minor, self.service_start,
                                                      self.service_end, self.credited)
            else:
                self._schedule = goods_schedule(self.allocated_minor, self.quantity,
                                                self.shipments, self.credited)
        return self._schedule

    def figures(self, day: date) -> Figures:
        """Cumulative figures at the end of `day` by the current schedule (open months)."""
        if self._running is None:  # (days, running totals) of each series, built once
            self._running = tuple(_running(series) for series in (
                self.schedule, self.invoiced, self.credited))
        return Figures(*(_through(series, day) for series in self._running))

    def closed_figures(self, period: str) -> Figures:
        """Cumulative figures at the end of a closed month, as recorded."""
        total = Figures()
        for month, moved in self.closed.items():
            if month <= period:
                total = total + moved
        return total

    def first_day(self) -> date | None:
        """The first day this line moved: recognised, invoiced or credited."""
        days = [d for d, _ in self.schedule] + [d for d, _ in self.invoiced] + \
               [d for d, _ in self.credited]
        return min(days, default=None)


def _running(entries: list[Entry]) -> tuple[list[date], list[int]]:
    days, totals, total = [], [], 0
    for day, amount in sorted(entries):
        total += amount
        days.append(day)
        totals.append(total)
    return days, totals


def _through(series: tuple[list[date], list[int]], day: date) -> int:
    """A running total at the end of `day` (entries on or before it)."""
    days, totals = series
    index = bisect_right(days, day)
    return totals[index - 1] if index else 0


def _effective(line: OrderLine, currency: str) -> tuple[int, int, int, date | None]:
    """(quantity, net amount, SSP, last day served) of a line after cancellations."""
    from workflows.subscriptions import live_periods

    quantity = line.quantity - line.qty_cancelled
    ssp = line.ssp_minor * quantity
    end = line.service_end
    if line.billing and line.service_start is not None:
        net = sum(amount for _, _, amount in live_periods(line))
        if line.cancelled_from is not None:
            end = line.cancelled_from - timedelta(days=1)
        # SSP in the same proportion as the consideration kept
        ssp = half_up(ssp * net, line.line_total_minor) if line.line_total_minor else 0
    elif line.qty_cancelled:
        net = money.line_total(quantity, line.unit_price_minor, line.discount_bp, currency)
    else:
        net = line.line_total_minor
    return quantity, net, ssp, end


def load_obligations(session: Session, *, order_ids: list[int] | None = None
                     ) -> list[Obligation]:
    """Every contract's obligations with their shipments, invoices, credits and recorded
    months, allocated (a few queries, whatever the number of lines)."""
    # A contract, or an order that was one when a close recorded its revenue (a contract
    # cancelled since): its closed months keep what they recorded, and with nothing left to
    # recognise the first open month takes the reversal.
    recorded = (select(OrderLine.order_id)
                .join(RevenueEntry, RevenueEntry.order_line_id == OrderLine.id))
    contract = sa.or_(Order.status.not_in(list(NOT_CONTRACTS)), Order.id.in_(recorded))
    scope = [contract] + ([Order.id.in_(order_ids)] if order_ids is not None else [])
    rows = session.exec(select(OrderLine, Order.number, Order.currency, Order.status)
                        .join(Order, Order.id == OrderLine.order_id).where(*scope)
                        .order_by(OrderLine.order_id, OrderLine.line_no)).all()
    obligations: dict[int, Obligation] = {}
    for line, number, currency, status in rows:
        quantity, net, ssp, end = _effective(line, currency)
        if status in NOT_CONTRACTS:  # no longer a contract: nothing is recognised any more
            quantity, net, ssp = 0, 0, 0
        obligations[line.id] = Obligation(
            line_id=line.id, order_id=line.order_id, order_number=number, line_no=line.line_no,
            sku=line.sku, currency=currency, revenue_type=line.revenue_type, quantity=quantity,
            net_minor=net, ssp_minor=ssp, service_start=line.service_start, service_end=end)
    if not obligations:
        return []
    zone = policy.business_zone(session)
    # Goods are recognised on the shipment date, or on the delivery date for a shipment made
    # under terms that say so (issue 19; not before it is delivered).
    delivered_goods = []
    for line_id, shipped_at, delivered_at, at_delivery, quantity in session.exec(
            select(ShipmentLine.order_line_id, Shipment.shipped_at, Shipment.delivered_at,
                   Shipment.recognize_at_delivery, ShipmentLine.quantity)
            .join(Shipment, Shipment.id == ShipmentLine.shipment_id)
            .join(Order, Order.id == Shipment.order_id).where(*scope)
            .order_by(Shipment.shipped_at, Shipment.id)):
        if line_id not in obligations:
            continue
        if at_delivery:
            if delivered_at is not None:
                delivered_goods.append((line_id, delivered_at.astimezone(zone).date(),
                                        quantity))
            continue
        obligations[line_id].shipments.append((shipped_at.astimezone(zone).date(), quantity))
    for line_id, day, quantity in delivered_goods:
        obligations[line_id].shipments.append((day, quantity))
    for ob in obligations.values():
        ob.shipments.sort(key=lambda item: item[0])
    invoice_lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    invoices: dict[int, Invoice] = {}
    for invoice_line, invoice in session.exec(
            select(InvoiceLine, Invoice).join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Order, Order.id == Invoice.order_id).where(*scope)
            .order_by(InvoiceLine.invoice_id, InvoiceLine.line_no)):
        invoice_lines[invoice.id].append(invoice_line)
        invoices[invoice.id] = invoice
        if invoice_line.order_line_id in obligations:
            obligations[invoice_line.order_line_id].invoiced.append(
                (invoice.issue_date, invoice_line.line_total_minor))
    if invoices:
        for note in session.exec(
                select(CreditNote).join(Invoice, Invoice.id == CreditNote.invoice_id)
                .join(Order, Order.id == Invoice.order_id).where(*scope)
                .order_by(CreditNote.effective_date, CreditNote.id)):
            lines = invoice_lines.get(note.invoice_id, [])
            by_line = {line.id: line.order_line_id for line in lines}
            shares = credit_by_invoice_line(session, note)
            for invoice_line_id, amount in shares.items():
                target = by_line.get(invoice_line_id)
                if target in obligations and amount:
                    obligations[target].credited.append((note.effective_date, amount))
    for entry in session.exec(select(RevenueEntry).join(
            OrderLine, OrderLine.id == RevenueEntry.order_line_id)
            .join(Order, Order.id == OrderLine.order_id).where(*scope)):
        if entry.order_line_id in obligations:
            obligations[entry.order_line_id].closed[entry.period] = Figures(
                entry.recognized_minor, entry.invoiced_minor, entry.credited_minor)
    by_order: dict[int, list[Obligation]] = defaultdict(list)
    for ob in obligations.values():
        by_order[ob.order_id].append(ob)
    for group in by_order.values():
        allocated = allocate([AllocationLine(ob.line_id, ob.revenue_type, ob.net_minor,
                                             ob.ssp_minor) for ob in group if ob.live])
        for ob in group:
            ob.allocated_minor = allocated.get(ob.line_id, 0)
    return list(obligations.values())


# -- the books by month ---------------------------------------------------------------------------
def recorded_through(session: Session) -> date | None:
    """The last day of the latest month whose revenue is recorded (closed), or None."""
    return session.exec(select(sa.func.max(RevenueClose.last_day))).one()


def month_key(first: date) -> str:
    return periods.period_of(first)


def figures_at_month_end(ob: Obligation, first: date, recorded: date | None) -> Figures:
    """A line's cumulative figures at the end of the month starting `first`: as recorded when
    the month is closed, by the current schedule when it is open."""
    end = month_end(first)
    if recorded is not None and end <= recorded:
        return ob.closed_figures(month_key(first))
    return ob.figures(end)


def figures_on(ob: Obligation, day: date, recorded: date | None) -> Figures:
    """A line's cumulative figures at the end of `day`: what was true that day.

    In an open month, by the current schedule. On the last day of a closed month, as the
    close recorded it. On another day of a closed month: the month before's closed figures
    plus the month's own movements dated on or before `day` (by the current schedule), each
    of recognised, invoiced and credited kept between nothing and what the close recorded for
    the whole month — so 12 March of a closed March shows 12 March (not 31 March), and a
    change dated in March but made after its close (a late carrier's delivery event) does
    not appear in a closed month's days any more than at its end: it lands in the first open
    month. (Only month ends are recorded: within those bounds a day inside a closed month is
    read from the schedule as the books stand now, so a later change dated inside the month
    — a back-dated shipment, a cancellation forgoing a closed month's periods — can still
    move where in the month its recorded movement shows; never the month's figures.)"""
    if recorded is None or day > recorded:
        return ob.figures(day)
    period = periods.period_of(day)
    end = month_end(day)
    if day == end:
        return ob.closed_figures(period)
    before_end = first_of_month(day) - timedelta(days=1)
    before = ob.closed_figures(periods.period_of(before_end))
    month = ob.closed.get(period, Figures())
    so_far = ob.figures(day) - ob.figures(before_end)

    def within(value: int, whole: int) -> int:
        return min(max(value, min(whole, 0)), max(whole, 0))

    return before + Figures(within(so_far.recognized, month.recognized),
                            within(so_far.invoiced, month.invoiced),
                            within(so_far.credited, month.credited))


@dataclass
class MonthTotals:
    month: str
    closed: bool
    recognized: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    deferred: int = 0
    unbilled: int = 0

    @property
    def recognized_total(self) -> int:
        return sum(self.recognized.values())


@dataclass
class CurrencyReport:
    currency: str
    months: list[MonthTotals]
    deferred: int = 0  # today's deferred balance
    unbilled: int = 0
    waterfall: dict[str, int] = field(default_factory=dict)  # month -> amount; "later"


@dataclass
class RevenueReport:
    first: date
    last: date
    as_of: date
    closed_through: date | None
    currencies: dict[str, CurrencyReport]


def month_firsts(first: date, last: date) -> list[date]:
    out = []
    month = first_of_month(first)
    while month <= last:
        out.append(month)
        month = next_month(month)
    return out


def previous_month(first: date) -> date:
    return first_of_month(first - timedelta(days=1))


def monthly(obligations: list[Obligation], months: list[date], recorded: date | None
            ) -> dict[str, list[MonthTotals]]:
    """Per currency, each month's recognised revenue by type and its closing deferred and
    unbilled balances."""
    out: dict[str, list[MonthTotals]] = {}
    if not months:
        return out
    # the month before the first, then each month: its end, key and whether it is closed
    ends = [(month_end(m), month_key(m)) for m in [previous_month(months[0]), *months]]
    closed = [recorded is not None and end <= recorded for end, _ in ends]
    for ob in obligations:
        totals = out.get(ob.currency)
        if totals is None:
            totals = out[ob.currency] = [MonthTotals(key, shut) for (_, key), shut
                                         in zip(ends[1:], closed[1:], strict=True)]
        series = [ob.closed_figures(key) if shut else ob.figures(end)
                  for (end, key), shut in zip(ends, closed, strict=True)]
        for i, (before, now) in enumerate(pairwise(series)):
            month = totals[i]
            month.recognized[ob.revenue_type] = (month.recognized.get(ob.revenue_type, 0)
                                                 + now.recognized - before.recognized)
            month.deferred += now.deferred
            month.unbilled += now.unbilled
    return out


def waterfall(ob: Obligation, today: date) -> dict[str, int]:
    """When today's deferred revenue of a line will be recognised, by month: its schedule
    after today consumes it in order; what no scheduled entry covers is "later" (e.g. goods
    billed for more than their share of a bundle)."""
    left = ob.figures(today).deferred
    out: dict[str, int] = {}
    for day, amount in ob.schedule:
        if left <= 0:
            break
        if day <= today or amount <= 0:
            continue
        take = min(amount, left)
        out[periods.period_of(day)] = out.get(periods.period_of(day), 0) + take
        left -= take
    if left > 0:
        out["later"] = left
    return out


def report(session: Session, *, first: date, last: date, today: date) -> RevenueReport:
    """Months `first`..`last` (any day in them) and today's deferred balance and waterfall."""
    months = month_firsts(first, last)
    obligations = load_obligations(session)
    recorded = recorded_through(session)
    by_currency = monthly(obligations, months, recorded)
    currencies = {cur: CurrencyReport(cur, totals) for cur, totals in by_currency.items()}
    for ob in obligations:
        entry = currencies.setdefault(ob.currency, CurrencyReport(ob.currency, []))
        now = figures_on(ob, today, recorded)
        entry.deferred += now.deferred
        entry.unbilled += now.unbilled
        for month, amount in waterfall(ob, today).items():
            entry.waterfall[month] = entry.waterfall.get(month, 0) + amount
    for entry in currencies.values():
        entry.waterfall = dict(sorted(entry.waterfall.items(),
                                      key=lambda kv: (kv[0] == "later", kv[0])))
    return RevenueReport(first_of_month(first), first_of_month(last), today, recorded,
                         dict(sorted(currencies.items())))


def line_positions(session: Session, day: date, *, order_ids: list[int] | None = None
                   ) -> dict[int, tuple[Obligation, Figures]]:
    """Each line's obligation and its figures at the end of `day` (invariant checks, the
    order view)."""
    recorded = recorded_through(session)
    return {ob.line_id: (ob, figures_on(ob, day, recorded))
            for ob in load_obligations(session, order_ids=order_ids)}


# -- the close ------------------------------------------------------------------------------------
def record_through(session: Session, last_day: date, *, actor: str, now: datetime
                   ) -> RevenueClose | None:
    """Record revenue for every month not recorded yet up to the month ending `last_day`:
    each line's movements per month (`RevenueEntry`), then the close itself, its audit event
    and the summary post to the AR channel. None when it was recorded already. The caller
    holds the period lock (`periods.close_period`)."""
    done = recorded_through(session)
    if done is not None and done >= last_day:
        return None
    period = periods.period_of(last_day)
    obligations = load_obligations(session)
    if done is not None:
        start = next_month(first_of_month(done))
    else:
        starts = [d for d in (ob.first_day() for ob in obligations) if d is not None]
        start = first_of_month(min(starts)) if starts else first_of_month(last_day)
    months = month_firsts(start, last_day)
    for ob in obligations:
        before = ob.closed_figures(periods.period_of(done)) if done else Figures()
        for month in months:
            now_figures = ob.figures(month_end(month))
            moved = now_figures - before
            if moved != Figures():
                session.add(RevenueEntry(period=month_key(month), order_line_id=ob.line_id,
                                         currency=ob.currency, revenue_type=ob.revenue_type,
                                         recognized_minor=moved.recognized,
                                         invoiced_minor=moved.invoiced,
                                         credited_minor=moved.credited, created_at=now))
                ob.closed[month_key(month)] = moved
            before = now_figures
    first = first_of_month(last_day)
    summary = close_summary(obligations, first, recorded=last_day)
    row = RevenueClose(period=period, last_day=last_day, recorded_at=now, recorded_by=actor,
                       summary={"period": period, "months": [month_key(m) for m in months],
                                "currencies": summary})
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="revenue.period_closed", entity_type="period",
                 entity_id=period, to_state="closed", at=now,
                 reason=f"revenue recorded through {period}", **row.summary)
    outbox.post_to_channel(session, channel="ar", template="revenue_close",
                           context=row.summary, dedupe_key=f"revenue-close:{period}")
    webhooks.emit(session, "revenue.period_closed", {"revenue_close": row.summary},
                  key=f"revenue.period_closed:{period}", at=now)
    return row


def close_summary(obligations: list[Obligation], first: date, *, recorded: date | None
                  ) -> dict[str, dict]:
    """Per currency: the month's recognised revenue by type, its closing deferred and
    unbilled balances, and the same for the month before (the change)."""
    before = previous_month(first)
    out = {}
    for cur, (prior, month) in sorted(
            (c, tuple(t)) for c, t in monthly(obligations, [before, first], recorded).items()):
        out[cur] = {
            "recognized": money.to_str(month.recognized_total, cur),
            "by_type": {k: money.to_str(v, cur) for k, v in month.recognized.items()},
            "deferred": money.to_str(month.deferred, cur),
            "unbilled": money.to_str(month.unbilled, cur),
            "previous": {"month": prior.month,
                         "recognized": money.to_str(prior.recognized_total, cur),
                         "deferred": money.to_str(prior.deferred, cur),
                         "unbilled": money.to_str(prior.unbilled, cur)},
        }
    return out


@dataclass(frozen=True)
class CloseResult:
    period: str
    closed_through: str  # the lock date's month (a later close may cover this one)
    created: bool  # this call closed the period (AR and revenue)
    recorded: RevenueClose | None  # the revenue this call recorded (None: done before)


def close_month(session: Session, *, period: str, actor: str, now: datetime) -> CloseResult:
    """The monthly revenue close (`o2c run revenue-close --period YYYY-MM`): close the month
    and every month before it (`periods.close_period`, which records their revenue), or, for
    a month closed before revenue was recorded, record it now. Idempotent: a closed month
    never changes."""
    row, created = periods.close_period(session, period=period, actor=actor, now=now,
                                        source="revenue")
    first = periods.parse_period(period)
    recorded = None
    if created:
        recorded = session.get(RevenueClose, periods.period_of(first))
    else:
        recorded = record_through(session, periods.last_day_of(first), actor=actor, now=now)
    return CloseResult(periods.period_of(first), row.period, created, recorded)


# -- answers --------------------------------------------------------------------------------------
def to_json(data: RevenueReport) -> dict:
    """The report as the API answers it (amounts as decimal strings per currency)."""
    def amount(minor: int, cur: str) -> str:
        return money.to_str(minor, cur)

    return {
        "from": month_key(data.first), "to": month_key(data.last),
        "as_of": data.as_of.isoformat(),
        "closed_through": periods.period_of(data.closed_through) if data.closed_through
        else None,
        "currencies": {cur: {
            "months": [{"month": m.month, "closed": m.closed,
                        "recognized": {"total": amount(m.recognized_total, cur),
                                       "by_type": {k: amount(v, cur)
                                                   for k, v in m.recognized.items()}},
                        "deferred": amount(m.deferred, cur),
                        "unbilled": amount(m.unbilled, cur)} for m in c.months],
            "deferred": amount(c.deferred, cur), "unbilled": amount(c.unbilled, cur),
            "waterfall": [{"month": month, "amount": amount(value, cur)}
                          for month, value in c.waterfall.items()],
        } for cur, c in data.currencies.items()},
    }


CSV_HEADER = ["currency", "month", "row", "closed", "recognized", *(f"recognized_{t}"
                                                                     for t in TYPES),
              "deferred", "unbilled", "waterfall"]


def to_rows(data: dict) -> list[list[str]]:
    """`to_json`'s answer as CSV rows: one per currency and month ("month"), then today's
    deferred balance by the month it will be recognised ("waterfall")."""
    rows = [CSV_HEADER]
    for cur, c in data["currencies"].items():
        for m in c["months"]:
            rows.append([cur, m["month"], "month", "true" if m["closed"] else "false",
                         m["recognized"]["total"],
                         *(m["recognized"]["by_type"].get(t, "0") for t in TYPES),
                         m["deferred"], m["unbilled"], ""])
        for w in c["waterfall"]:
            rows.append([cur, w["month"], "waterfall", "", "", *("" for _ in TYPES), "", "",
                         w["amount"]])
    return rows
