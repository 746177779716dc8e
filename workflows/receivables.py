"""Receivables figures per customer and overall: open AR, overdue, aging buckets, exposure.

Aging buckets (SPEC §3) by days past due at `as_of`: `current` (not yet due), `1-30`, `31-60`,
`61-90`, `90+`. `bucket_edges(as_of)` is the one definition of the bucket edges: it turns them
into due dates, which are passed to SQL as parameters, so the same query runs on SQLite and
PostgreSQL and uses the indexes.

**A day's AR is what the books say happened up to that day, whatever day it was typed in.**
Every settlement carries the economic date it counts on (`effective_date`: the payment's value
date, the credit note's issue date, the write-off's effective date — see `models.invoices`),
apart from when it was recorded (`created_at`). Open AR at the end of day `t`, per invoice:

    balance(t) = total − allocations − credit notes − write-offs dated (effective) on or
                 before t, for an invoice issued on or before t (0 for one issued later)

Dates are calendar dates as the books keep them: invoices' issue and due dates as issued,
settlements' dates as stated by their source (`workflows.cash_application`). There is no
"today" in it: the same day gives the same figures whenever it is asked, and a payment
recorded weeks after its value date changes the past days it belongs to — unless they are in
a closed month (`workflows.periods`), where it is booked on the first open day instead.

It is computed as `balance_minor + what was settled with an effective date after t`, which is
the same number by the AR invariant (`balance_minor` = total − every settlement, see
`workflows.invariants`) and reads only the open invoices plus the settlements dated after `t`
— found by a range scan of the `(effective_date, invoice_id, amount_minor)` indexes, so as of
today (nothing is dated later) it costs one empty index probe per settlement table.

**What the books said then** (an audit) is a separate, explicit question: with `known_at`, only
the invoices and settlements recorded (`created_at`) by that moment count:

    balance(t, known_at) = total − settlements dated on or before t AND recorded by known_at,
                           for an invoice issued on or before t and recorded by known_at

A settlement a correction took back after `known_at` (`workflows.cash_application._reverse`
deletes it and keeps it as a `ReversedSettlement`) was on the books then: it counts as known at
any moment from when it was recorded until it was reversed (`reversed_then`). Without
`known_at` it counts on no day (the correction undoes the money on every day) and is not read.

Either way the invoice is bucketed by its due date against `t`.

**In dispute** (SPEC §3): each bucket also says how much of it is held in dispute at the end of
`t` (`Aging.in_dispute`): per invoice, min(what its disputes held then, its balance then). A
dispute holds its amount from when it was opened until it was resolved, and an accepted one
the credit asked for until its credit note was issued or rejected (`workflows.disputes`). The
overdue figure leaves what is in dispute out; the buckets and the total (DSO) keep it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    AGING_BUCKETS,
    Allocation,
    CreditNote,
    Customer,
    Dispute,
    Invoice,
    Order,
    OrderLine,
    Payment,
    ReversedSettlement,
    WriteOff,
    WriteOffReason,
)
from models.orders import UNINVOICED_APPROVED

BUCKETS = AGING_BUCKETS
SETTLEMENTS = (Allocation, CreditNote, WriteOff)
# The most days past due that current, 1-30, 31-60 and 61-90 hold; 90+ holds the rest.
_BUCKET_MAX_DAYS = (0, 30, 60, 90)


def bucket_edges(as_of: date) -> list[tuple[str, date | None]]:
    """Each aging bucket with the earliest due date it holds at `as_of`, newest first.

    An invoice falls in the first bucket whose edge its due date is on or after; `90+` has no
    lower edge (None). At 2026-11-23: current >= 11-23, 1-30 >= 10-24, 31-60 >= 09-24,
    61-90 >= 08-25, 90+ before that.

    Note: `workflows.collections` (`weight`, `_edges`/`_account_query`) still writes the same
    edges out by hand; it should derive them from here."""
    edges = [as_of - timedelta(days=days) for days in _BUCKET_MAX_DAYS]
    return list(zip(BUCKETS, [*edges, None], strict=True))


def bucket_case(due: sa.ColumnElement, as_of: date) -> sa.Case:
    """SQL: the aging bucket name of a due-date column at `as_of`."""
    *bounded, (last, _) = bucket_edges(as_of)
    return sa.case(*((due >= edge, name) for name, edge in bounded), else_=last)


def invoices_known(as_of: date, known_at: datetime | None = None,
                   customer_id: int | None = None) -> list[sa.ColumnElement]:
    """SQL conditions: invoices issued by the end of `as_of` (and recorded by `known_at`)."""
    conditions = [Invoice.issue_date <= as_of]
    if customer_id is not None:
        conditions.append(Invoice.customer_id == customer_id)
    if known_at is not None:
        conditions.append(Invoice.created_at <= known_at)
    return conditions


def not_counted(model: type, as_of: date, known_at: datetime | None = None
                ) -> sa.ColumnElement:
    """SQL: a settlement row that does not count at the end of `as_of`: dated later (or, with
    `known_at`, recorded after that moment)."""
    later = model.effective_date > as_of
    return later if known_at is None else sa.or_(later, model.created_at > known_at)


def reversed_then(as_of: date | None, known_at: datetime) -> list[sa.ColumnElement]:
    """SQL conditions: a reversed settlement that counted at the end of `as_of` (any day when
    None) as the books knew it at `known_at`: recorded by then and reversed after."""
    reversed_ = ReversedSettlement
    conditions = [reversed_.created_at <= known_at, reversed_.reversed_at > known_at]
    if as_of is not None:
        conditions.append(reversed_.effective_date <= as_of)
    return conditions


def settled_later(session: Session, invoice_ids: list[int], as_of: date,
                  known_at: datetime | None) -> dict[int, int]:
    """Per invoice of `invoice_ids`, how much more its balance today is than at the end of
    `as_of` (as known at `known_at`): the settlements that do not count then (`not_counted`)
    less, with `known_at`, the reversed ones that did (`reversed_then`)."""
    later: dict[int, int] = {}
    for model in SETTLEMENTS:
        for invoice_id, settled in session.exec(
                select(model.invoice_id, sa.func.sum(model.amount_minor))
                .where(model.invoice_id.in_(invoice_ids), not_counted(model, as_of, known_at))
                .group_by(model.invoice_id)).all():
            later[invoice_id] = later.get(invoice_id, 0) + int(settled or 0)
    for invoice_id, taken_back in reversed_by_invoice(session, invoice_ids, as_of,
                                                      known_at).items():
        later[invoice_id] = later.get(invoice_id, 0) - taken_back
    return later


def reversed_by_invoice(session: Session, invoice_ids: list[int] | sa.Select, as_of: date,
                        known_at: datetime | None) -> dict[int, int]:
    """Per invoice of `invoice_ids` (ids or a statement selecting them), the reversed
    settlements that counted at the end of `as_of` as known at `known_at`; without `known_at`
    none, and nothing is read."""
    if known_at is None:
        return {}
    reversed_ = ReversedSettlement
    return {invoice_id: int(amount) for invoice_id, amount in session.exec(
        select(reversed_.invoice_id, sa.func.sum(reversed_.amount_minor))
        .where(reversed_.invoice_id.in_(invoice_ids), *reversed_then(as_of, known_at))
        .group_by(reversed_.invoice_id)).all()}


@dataclass
class Aging:
    currency: str | None
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    oldest_due: date | None = None  # the earliest due date of an invoice open at `as_of`
    # of each bucket, how much is held in dispute (module docstring)
    in_dispute: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    # `aging_by_currency(issued_by=...)`: per day asked for, the balance open now (today's
    # `balance_minor`) of the invoices issued on or before it, read in the aging's own pass
    # (a day absent: 0, as when the currency has nothing open now)
    open_issued_by: dict[date, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.buckets.values())

    @property
    def disputed(self) -> int:
        return sum(self.in_dispute.values())

    @property
    def overdue(self) -> int:
        """Past due and not in dispute."""
        return (self.total - self.buckets["current"]
                - (self.disputed - self.in_dispute["current"]))

    def days_past_due(self, as_of: date) -> int:
        """How late the oldest open invoice is at `as_of` (0 when none is late)."""
        return max((as_of - self.oldest_due).days, 0) if self.oldest_due else 0


def aging_by_currency(session: Session, as_of: date, *, customer_id: int | None = None,
                      known_at: datetime | None = None, issued_by: Sequence[date] = (),
                      now: datetime | None = None) -> dict[str, Aging]:
    """Open balances at the end of `as_of` per aging bucket, one `Aging` per currency (amounts
    never mix), by economic date; with `known_at`, as the books knew them at that moment (see
    the module docstring). `now` is not needed (a day's figures do not depend on when they
    are asked) and is accepted for callers that pass the clock.

    `issued_by` (days before `as_of`): also sums, in the same pass over the open invoices,
    each day's `Aging.open_issued_by` — the first part of `ar_total` of that day (the KPIs'
    AR the day before their window) without a pass of its own."""
    result: dict[str, Aging] = {}
    scope = invoices_known(as_of, known_at, customer_id)
    issued_by = list(dict.fromkeys(issued_by))  # each day once
    # with `known_at`, the (few) invoices a reversed settlement counted on then are summed
    # apart, one by one (`_add_reversed`): their count and due date depend on the balance then
    scanned = scope
    if known_at is not None:
        reversed_on = select(ReversedSettlement.invoice_id).where(
            *reversed_then(as_of, known_at))
        scanned = [*scope, Invoice.id.not_in(reversed_on)]

    def add(rows: list, days: Sequence[date] = ()) -> None:
        for currency, name, amount, count, oldest, *by_day in rows:
            aging = result.setdefault(currency, Aging(currency))
            aging.buckets[name] += int(amount or 0)
            aging.counts[name] += int(count or 0)
            if oldest is not None and (aging.oldest_due is None or oldest < aging.oldest_due):
                aging.oldest_due = oldest
            for day, open_minor in zip(days, by_day, strict=True):
                aging.open_issued_by[day] = (aging.open_issued_by.get(day, 0)
                                             + int(open_minor or 0))

    # what is open today, of the invoices issued by then
    bucket = bucket_case(Invoice.due_date, as_of).label("bucket")
    add(session.exec(
        select(Invoice.currency, bucket, sa.func.sum(Invoice.balance_minor), sa.func.count(),
               sa.func.min(Invoice.due_date),
               *(sa.func.sum(sa.case((Invoice.issue_date <= day, Invoice.balance_minor),
                                     else_=0)) for day in issued_by))
        .where(Invoice.balance_minor > 0, *scanned)
        .group_by(Invoice.currency, bucket)).all(), issued_by)
    # plus what was settled with a later date; an invoice paid off since counts again
    moves = sa.union_all(*(
        select(Invoice.id.label("invoice_id"), Invoice.currency.label("currency"),
               Invoice.due_date.label("due_date"), Invoice.balance_minor.label("balance"),
               model.amount_minor.label("amount"))
        .join(Invoice, Invoice.id == model.invoice_id)
        .where(not_counted(model, as_of, known_at), *scanned)
        for model in SETTLEMENTS)).subquery()
    bucket = bucket_case(moves.c.due_date, as_of).label("bucket")
    reopened = sa.func.count(sa.distinct(sa.case((moves.c.balance == 0, moves.c.invoice_id))))
    add(session.exec(
        select(moves.c.currency, bucket, sa.func.sum(moves.c.amount), reopened,
               sa.func.min(moves.c.due_date))
        .group_by(moves.c.currency, bucket)).all())
    if known_at is not None:
        _add_reversed(session, result, as_of, known_at, [*scope, Invoice.id.in_(reversed_on)],
                      issued_by)
    for currency, name, amount in _in_dispute(session, as_of, known_at, scope):
        aging = result.setdefault(currency, Aging(currency))
        aging.in_dispute[name] += amount
    return result


def _add_reversed(session: Session, result: dict[str, Aging], as_of: date, known_at: datetime,
                  scope: list[sa.ColumnElement], issued_by: Sequence[date]) -> None:
    """`aging_by_currency`'s part for the invoices of `scope` (those a reversed settlement
    counted on at `as_of` as known at `known_at`), each by its balance then."""
    rows = session.exec(select(Invoice.id, Invoice.currency, Invoice.due_date,
                               Invoice.issue_date, Invoice.balance_minor).where(*scope)).all()
    if not rows:
        return
    later = settled_later(session, [row[0] for row in rows], as_of, known_at)
    edges = bucket_edges(as_of)
    for invoice_id, currency, due, issued, balance in rows:
        then = int(balance) + later.get(invoice_id, 0)
        if balance <= 0 and then <= 0:
            continue
        aging = result.setdefault(currency, Aging(currency))
        for day in issued_by:  # (today's balance, as the scan sums it)
            if balance > 0 and issued <= day:
                aging.open_issued_by[day] = aging.open_issued_by.get(day, 0) + int(balance)
        if then <= 0:
            continue
        name = next(n for n, edge in edges if edge is None or due >= edge)
        aging.buckets[name] += then
        aging.counts[name] += 1
        if aging.oldest_due is None or due < aging.oldest_due:
            aging.oldest_due = due


def ar_total(session: Session, currency: str, as_of: date, *,
             known_at: datetime | None = None) -> int:
    """Open AR of one currency at the end of `as_of`: `aging_by_currency(...)[currency].total`
    (0 when absent) without the buckets and the disputes — what is open today of the
    invoices issued by then (the partial `ix_invoices_open_currency` index alone) plus what
    was settled with a later date (the settlements' `effective_date` indexes)."""
    return sum(int(session.exec(statement).one())
               for statement in ar_total_parts(currency, as_of, known_at=known_at))


def ar_total_parts(currency: str, as_of: date, *, known_at: datetime | None = None
                   ) -> list[sa.Select]:
    """`ar_total`'s independent sums: what is open today of the invoices issued by then (also
    `aging_by_currency(issued_by=[as_of])`), then each kind of settlement dated later and,
    with `known_at`, less the reversed settlements that counted then (a negative sum) —
    callers may run them at once (`workflows.snapshot_reads`)."""
    scope = [Invoice.currency == currency, *invoices_known(as_of, known_at)]
    parts = [select(sa.func.coalesce(sa.func.sum(Invoice.balance_minor), 0))
             .where(Invoice.balance_minor > 0, *scope),
             *(select(sa.func.coalesce(sa.func.sum(model.amount_minor), 0))
               .join(Invoice, Invoice.id == model.invoice_id)
               .where(not_counted(model, as_of, known_at), *scope) for model in SETTLEMENTS)]
    if known_at is not None:
        reversed_ = ReversedSettlement
        parts.append(select(-sa.func.coalesce(sa.func.sum(reversed_.amount_minor), 0))
                     .join(Invoice, Invoice.id == reversed_.invoice_id)
                     .where(*reversed_then(as_of, known_at), *scope))
    return parts


def held_at(as_of: date, known_at: datetime | None = None) -> tuple[sa.ColumnElement, list]:
    """SQL: what a dispute held at the end of `as_of` (as known at `known_at`), and the
    conditions for it to hold anything (module docstring)."""
    end = datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    if known_at is not None and known_at < end:
        end = known_at
    resolved = sa.and_(Dispute.resolved_at.is_not(None), Dispute.resolved_at <= end)
    amount = sa.case((resolved, sa.func.coalesce(Dispute.credit_amount_minor, 0)),
                     else_=Dispute.amount_minor)
    held = [Dispute.opened_at <= end,
            sa.or_(Dispute.released_at.is_(None), Dispute.released_at > end)]
    return amount, held


def _in_dispute(session: Session, as_of: date, known_at: datetime | None,
                scope: list[sa.ColumnElement]) -> list[tuple[str, str, int]]:
    """(currency, bucket, amount in dispute) at the end of `as_of`: reads the disputes that
    held something then and, for their invoices only, the settlements dated later."""
    amount, held = held_at(as_of, known_at)
    # the (few) disputes summed per invoice first, then their invoices probed by key
    holding = (select(Dispute.invoice_id.label("invoice_id"), sa.func.sum(amount).label("held"))
               .where(*held).group_by(Dispute.invoice_id).subquery())
    rows = session.exec(
        select(Invoice.id, Invoice.currency, Invoice.due_date, Invoice.balance_minor,
               holding.c.held)
        .join(holding, holding.c.invoice_id == Invoice.id)
        .where(*scope)).all()
    if not rows:
        return []
    later = settled_later(session, [row[0] for row in rows], as_of, known_at)
    out = []
    edges = bucket_edges(as_of)
    for invoice_id, currency, due, balance, holding in rows:
        open_then = int(balance) + later.get(invoice_id, 0)
        disputed = min(int(holding or 0), open_then)
        if disputed <= 0:
            continue
        name = next(n for n, edge in edges if edge is None or due >= edge)
        out.append((currency, name, disputed))
    return out


def uninvoiced_approved_minor(session: Session, customer_id: int) -> int:
    """Approved orders' value not yet invoiced (counts towards credit exposure): per line,
    what its invoices still to come will bill (`invoicing.rest_to_bill_minor`: its net not
    cancelled and not yet invoiced, taxed at the customer's rate today — the rate those
    invoices charge, not the entry rate the order's total keeps), less what an ERP invoiced
    against those orders."""
    from workflows.invoicing import rest_to_bill_minor
    from workflows.orders import billed_by_line

    customer = session.get(Customer, customer_id)
    rate = customer.tax_rate_bp if customer is not None else 0
    approved = [Order.customer_id == customer_id, Order.status.in_(list(UNINVOICED_APPROVED))]
    lines = session.exec(select(OrderLine, Order.currency)
                         .join(Order, Order.id == OrderLine.order_id).where(*approved)).all()
    if not lines:
        return 0
    # (an order's invoices are its customer's: found by index)
    ours = [Invoice.customer_id == customer_id, *approved]
    billed = billed_by_line(session, *ours)
    by_erp = session.exec(
        select(sa.func.coalesce(sa.func.sum(Invoice.total_minor), 0))
        .join(Order, Order.id == Invoice.order_id)
        .where(*ours, Invoice.source == "erp")).one()
    rest = sum(rest_to_bill_minor(line, billed.get(line.id, (0, 0))[0], rate, currency)
               for line, currency in lines)
    return max(rest - int(by_erp), 0)


def open_balance_minor(session: Session, customer_id: int) -> int:
    return int(session.exec(
        select(sa.func.coalesce(sa.func.sum(Invoice.balance_minor), 0))
        .where(Invoice.customer_id == customer_id, Invoice.balance_minor > 0)
    ).one())


def credit_exposure(session: Session, customer_id: int, *, extra_minor: int = 0) -> int:
    """SPEC §3: open invoice balances + approved-but-uninvoiced orders + this order."""
    return (open_balance_minor(session, customer_id)
            + uninvoiced_approved_minor(session, customer_id) + extra_minor)


@dataclass
class CustomerPosition:
    customer: Customer
    aging: Aging
    exposure_minor: int
    uninvoiced_minor: int
    oldest_days_past_due: int

    @property
    def available_credit_minor(self) -> int:
        return self.customer.credit_limit_minor - self.exposure_minor


def customer_position(session: Session, customer: Customer, as_of: date, *,
                      known_at: datetime | None = None,
                      now: datetime | None = None) -> CustomerPosition:
    """The customer's AR at the end of `as_of` by economic date (and, with `known_at`, as
    known then); approved orders not yet invoiced are today's (orders keep no history)."""
    aging = aging_by_currency(session, as_of, customer_id=customer.id,
                              known_at=known_at).get(customer.currency,
                                                     Aging(customer.currency))
    uninvoiced = uninvoiced_approved_minor(session, customer.id)
    return CustomerPosition(
        customer=customer, aging=aging, exposure_minor=aging.total + uninvoiced,
        uninvoiced_minor=uninvoiced, oldest_days_past_due=aging.days_past_due(as_of),
    )


@dataclass(frozen=True)
class Held:
    """What we hold for a customer in one currency, on no invoice: payments received and not
    applied (`Payment.unapplied_minor`), and the customer credit credit notes on paid
    invoices left (`workflows.credit_notes`: less what was refunded or applied since)."""

    currency: str
    unapplied_minor: int = 0
    customer_credit_minor: int = 0

    @property
    def total_minor(self) -> int:
        return self.unapplied_minor + self.customer_credit_minor


def held_for(session: Session, customer_id: int) -> list[Held]:
    """Today's unapplied cash of the customer per currency (currencies with none left out),
    by currency code. Three grouped sums over the customer's payments, notes and write-offs."""
    unapplied = session.exec(
        select(Payment.currency, sa.func.sum(Payment.unapplied_minor))
        .where(Payment.customer_id == customer_id, Payment.unapplied_minor > 0)
        .group_by(Payment.currency)).all()
    given = session.exec(
        select(Invoice.currency, sa.func.sum(CreditNote.customer_credit_minor))
        .join(Invoice, Invoice.id == CreditNote.invoice_id)
        .where(Invoice.customer_id == customer_id, CreditNote.customer_credit_minor != 0)
        .group_by(Invoice.currency)).all()
    used = session.exec(
        select(Invoice.currency, sa.func.sum(WriteOff.amount_minor))
        .join(Invoice, Invoice.id == WriteOff.invoice_id)
        .where(Invoice.customer_id == customer_id,
               WriteOff.reason == WriteOffReason.CUSTOMER_CREDIT)
        .group_by(Invoice.currency)).all()
    cash = {cur: int(minor) for cur, minor in unapplied}
    credit = {cur: int(minor) for cur, minor in given}
    for cur, minor in used:
        credit[cur] = credit.get(cur, 0) - int(minor)
    found = [Held(cur, cash.get(cur, 0), credit.get(cur, 0))
             for cur in sorted(set(cash) | set(credit))]
    return [h for h in found if h.unapplied_minor or h.customer_credit_minor]


@dataclass
class CustomerBalance:
    customer_id: int
    name: str
    currency: str
    open_minor: int
    overdue_minor: int
    oldest_due: date | None


def top_balances(session: Session, as_of: date, *, limit: int = 10) -> list[CustomerBalance]:
    """Customers with the most overdue money, for `/o2c ar` without an argument: the open
    invoices summed per customer from the partial `ix_invoices_open_aging` index alone, and
    only the top `limit` customers' rows read."""
    overdue = sa.func.sum(sa.case((Invoice.due_date < as_of, Invoice.balance_minor), else_=0))
    opened = sa.func.sum(Invoice.balance_minor)
    top = (select(Invoice.customer_id.label("customer_id"), opened.label("open"),
                  overdue.label("overdue"), sa.func.min(Invoice.due_date).label("oldest"))
           .where(Invoice.balance_minor > 0)
           .group_by(Invoice.customer_id)
           .having(overdue > 0)  # "most overdue" lists nobody with nothing overdue
           .order_by(overdue.desc(), opened.desc(), Invoice.customer_id)
           .limit(limit).subquery())
    query = (select(Customer.id, Customer.name, Customer.currency, top.c.open, top.c.overdue,
                    top.c.oldest)
             .join(top, top.c.customer_id == Customer.id)
             .order_by(top.c.overdue.desc(), top.c.open.desc(), Customer.id))
    return [CustomerBalance(r[0], r[1], r[2], int(r[3]), int(r[4] or 0), r[5])
            for r in session.exec(query).all()]
