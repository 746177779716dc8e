"""Receivables figures per customer and overall: open AR, overdue, aging buckets, exposure.

Aging buckets (SPEC §3) by days past due: `current` (not yet due), `1-30`, `31-60`, `61-90`,
`90+`. Bucket edges are computed as dates in Python and passed as parameters, so the same SQL
runs on SQLite and PostgreSQL and uses the `(due_date, balance)` index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import AGING_BUCKETS, Customer, Invoice, Order
from models.orders import UNINVOICED_APPROVED

BUCKETS = AGING_BUCKETS


def bucket_for(days_past_due: int) -> str:
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "90+"


def _bucket_case(as_of: date) -> sa.Case:
    due = Invoice.due_date
    return sa.case(
        (due >= as_of, "current"),
        (due >= as_of - timedelta(days=30), "1-30"),
        (due >= as_of - timedelta(days=60), "31-60"),
        (due >= as_of - timedelta(days=90), "61-90"),
        else_="90+",
    )


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


def aging_by_currency(session: Session, as_of: date, *, customer_id: int | None = None
                      ) -> dict[str, Aging]:
    """Open balances per aging bucket, one `Aging` per currency (amounts never mix)."""
    bucket = _bucket_case(as_of).label("bucket")
    query = (select(Invoice.currency, bucket, sa.func.sum(Invoice.balance_minor),
                    sa.func.count())
             .where(Invoice.balance_minor > 0)
             .group_by(Invoice.currency, bucket))
    if customer_id is not None:
        query = query.where(Invoice.customer_id == customer_id)
    result: dict[str, Aging] = {}
    for currency, name, amount, count in session.exec(query).all():
        aging = result.setdefault(currency, Aging(currency))
        aging.buckets[name] += int(amount or 0)
        aging.counts[name] += int(count)
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


def customer_position(session: Session, customer: Customer, as_of: date) -> CustomerPosition:
    aging = aging_by_currency(session, as_of, customer_id=customer.id).get(
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
