"""Receivables figures per customer and overall: open AR, overdue, aging buckets, exposure.

Aging buckets (SPEC §3) by days past due at `as_of`: `current` (not yet due), `1-30`, `31-60`,
`61-90`, `90+`. `bucket_edges(as_of)` is the one definition of the bucket edges: it turns them
into due dates, which are passed to SQL as parameters, so the same query runs on SQLite and
PostgreSQL and uses the `(due_date, balance)` index.

Open AR at the end of day `t` (UTC), per invoice:

    balance(t) = total − allocations − credit notes − write-offs recorded on or before t
                 for an invoice issued on or before t (0 for one issued later)

* `t` today or later: `balance(t)` is `invoices.balance_minor` (kept equal to total minus every
  settlement, see `workflows.invariants`) — the indexed fast path.
* `t` in the past: `balance(t) = balance_minor + settlements recorded after t`, which is the
  same number by that invariant and reads only open invoices plus what was settled since `t`,
  instead of every settlement ever made.

Either way the invoice is bucketed by its due date against `t`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import AGING_BUCKETS, Allocation, CreditNote, Customer, Invoice, Order, WriteOff
from models.orders import UNINVOICED_APPROVED

BUCKETS = AGING_BUCKETS
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


# The earliest time zone on Earth (UTC-12): a day that has not ended there has not ended for
# anyone, whatever their Slack time zone says is "today".
_EARLIEST_OFFSET = timedelta(hours=12)


def is_today_or_later(as_of: date, now: datetime | None) -> bool:
    """True when `as_of` has not ended yet anywhere at `now`, so today's balances are its
    balances (the indexed fast path). Without `now` the answer is False: the day is rebuilt
    from the settlements, which is right for any day, only slower."""
    return now is not None and as_of >= (now.astimezone(UTC) - _EARLIEST_OFFSET).date()


def _settled_after(cutoff: datetime) -> sa.Subquery:
    """Per invoice: what allocations, credit notes and write-offs took off after `cutoff`."""
    parts = [select(model.invoice_id.label("invoice_id"), model.amount_minor.label("amount"))
             .where(model.created_at >= cutoff) for model in (Allocation, CreditNote, WriteOff)]
    moves = sa.union_all(*parts).subquery()
    return (select(moves.c.invoice_id, sa.func.sum(moves.c.amount).label("amount"))
            .group_by(moves.c.invoice_id).subquery())


@dataclass
class Aging:
    currency: str | None
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))

    @property
    def total(self) -> int:
        return sum(self.buckets.values())

    @property
    def overdue(self) -> int:
        return self.total - self.buckets["current"]


def aging_by_currency(session: Session, as_of: date, *, customer_id: int | None = None,
                      now: datetime | None = None) -> dict[str, Aging]:
    """Open balances at the end of `as_of` per aging bucket, one `Aging` per currency (amounts
    never mix). A past `as_of` gets that day's balances (see the module docstring)."""
    bucket = bucket_case(Invoice.due_date, as_of).label("bucket")
    historical = not is_today_or_later(as_of, now)
    result: dict[str, Aging] = {}

    def add(rows: list) -> None:
        for currency, name, amount, count in rows:
            aging = result.setdefault(currency, Aging(currency))
            aging.buckets[name] += int(amount or 0)
            aging.counts[name] += int(count or 0)

    def scoped(query: sa.Select) -> sa.Select:
        if customer_id is not None:
            query = query.where(Invoice.customer_id == customer_id)
        if historical:
            query = query.where(Invoice.issue_date <= as_of)
        return query.group_by(Invoice.currency, bucket)

    # what is open today (for a past day: of the invoices issued by then)
    add(session.exec(scoped(
        select(Invoice.currency, bucket, sa.func.sum(Invoice.balance_minor), sa.func.count())
        .where(Invoice.balance_minor > 0))).all())
    if historical:
        # plus what was settled after that day; an invoice paid off since then counts again
        after = _settled_after(datetime.combine(as_of + timedelta(days=1), time.min,
                                                tzinfo=UTC))
        reopened = sa.func.sum(sa.case((Invoice.balance_minor == 0, 1), else_=0))
        add(session.exec(scoped(
            select(Invoice.currency, bucket, sa.func.sum(after.c.amount), reopened)
            .join(after, after.c.invoice_id == Invoice.id))).all())
    return result


def uninvoiced_approved_minor(session: Session, customer_id: int) -> int:
    """Approved orders' value not yet invoiced (counts towards credit exposure): what is
    still ordered (shipped or open; cancelled quantities left out) less what is invoiced."""
    order_total = session.exec(
        select(sa.func.coalesce(sa.func.sum(Order.total_minor - Order.cancelled_minor), 0))
        .where(Order.customer_id == customer_id, Order.status.in_(list(UNINVOICED_APPROVED)))
    ).one()
    invoiced = session.exec(
        select(sa.func.coalesce(sa.func.sum(Invoice.total_minor), 0))
        .join(Order, Order.id == Invoice.order_id)
        .where(Order.customer_id == customer_id, Order.status.in_(list(UNINVOICED_APPROVED)))
    ).one()
    return max(int(order_total) - int(invoiced), 0)


def open_balance_minor(session: Session, customer_id: int) -> int:
    return int(session.exec(
        select(sa.func.coalesce(sa.func.sum(Invoice.balance_minor), 0))
        .where(Invoice.customer_id == customer_id, Invoice.balance_minor > 0)
    ).one())


def credit_exposure(session: Session, customer_id: int, *, extra_minor: int = 0) -> int:
    """SPEC §3: open invoice balances + approved-but-uninvoiced orders + this order."""
    return (open_balance_minor(session, customer_id)
            + uninvoiced_approved_minor(session, customer_id) + extra_minor)


def oldest_days_past_due(session: Session, customer_id: int, as_of: date) -> int:
    oldest = session.exec(
        select(sa.func.min(Invoice.due_date))
        .where(Invoice.customer_id == customer_id, Invoice.balance_minor > 0)
    ).one()
    return max((as_of - oldest).days, 0) if oldest else 0


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
                      now: datetime | None = None) -> CustomerPosition:
    aging = aging_by_currency(session, as_of, customer_id=customer.id, now=now).get(
        customer.currency, Aging(customer.currency))
    uninvoiced = uninvoiced_approved_minor(session, customer.id)
    return CustomerPosition(
        customer=customer, aging=aging, exposure_minor=aging.total + uninvoiced,
        uninvoiced_minor=uninvoiced,
        oldest_days_past_due=oldest_days_past_due(session, customer.id, as_of),
    )


@dataclass
class CustomerBalance:
    customer_id: int
    name: str
    currency: str
    open_minor: int
    overdue_minor: int
    oldest_due: date | None


def top_balances(session: Session, as_of: date, *, limit: int = 10) -> list[CustomerBalance]:
    """Customers with the most overdue money, for `/o2c ar` without an argument."""
    overdue = sa.func.sum(sa.case((Invoice.due_date < as_of, Invoice.balance_minor), else_=0))
    query = (select(Customer.id, Customer.name, Customer.currency,
                    sa.func.sum(Invoice.balance_minor), overdue, sa.func.min(Invoice.due_date))
             .join(Invoice, Invoice.customer_id == Customer.id)
             .where(Invoice.balance_minor > 0)
             .group_by(Customer.id, Customer.name, Customer.currency)
             .order_by(overdue.desc(), sa.func.sum(Invoice.balance_minor).desc())
             .limit(limit))
    return [CustomerBalance(r[0], r[1], r[2], int(r[3]), int(r[4] or 0), r[5])
            for r in session.exec(query).all()]
