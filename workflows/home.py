"""What each person's App Home shows of their own work (issue 13, point 7): a sales rep's
open orders, their orders waiting for approval and their customers' overdue; a collector's
promises to pay that are due; the trend of open receivables for admins.

Plain reads over a session, bounded (`limit`), as of a date the caller gives (the user's own
today); the blocks render them (`blocks.home`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import Customer, Invoice, Order, OrderStatus, PromiseStatus, PromiseToPay
from workflows.receivables import aging_by_currency

OPEN_ORDER = (OrderStatus.APPROVED, OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED,
              OrderStatus.SHIPPED, OrderStatus.ON_HOLD)


@dataclass
class RepHome:
    open_orders: list[dict] = field(default_factory=list)
    waiting: list[dict] = field(default_factory=list)
    overdue: list[dict] = field(default_factory=list)
    open_total: int = 0
    waiting_total: int = 0
    overdue_total: int = 0  # customers overdue, shown or not


def _order(order: Order, customer_name: str) -> dict:
    return {"number": order.number, "customer": customer_name, "status": order.status,
            "total_minor": order.total_minor - order.cancelled_minor,
            "currency": order.currency, "order_date": order.order_date.isoformat()}


def rep_home(session: Session, user_id: str, as_of: date, *, limit: int = 8) -> RepHome:
    """A rep's orders still moving (newest first), their orders waiting for a decision, and
    the overdue of the customers they look after (most overdue first)."""
    home = RepHome()

    def orders(statuses: tuple[str, ...]) -> tuple[list[dict], int]:
        where = (Order.sales_rep_id == user_id, Order.status.in_(list(statuses)))
        rows = session.exec(select(Order, Customer.name)
                            .join(Customer, Customer.id == Order.customer_id).where(*where)
                            .order_by(Order.order_date.desc(), Order.id.desc())
                            .limit(limit)).all()
        total = session.exec(select(sa.func.count()).select_from(Order).where(*where)).one()
        return [_order(o, name) for o, name in rows], int(total)

    home.open_orders, home.open_total = orders(OPEN_ORDER)
    home.waiting, home.waiting_total = orders((OrderStatus.PENDING_APPROVAL,))
    overdue = sa.func.sum(Invoice.balance_minor - Invoice.disputed_minor)
    late = (Customer.sales_rep_id == user_id, Invoice.balance_minor > Invoice.disputed_minor,
            Invoice.due_date < as_of)
    rows = session.exec(
        select(Customer.name, Customer.currency, overdue, sa.func.min(Invoice.due_date))
        .join(Invoice, Invoice.customer_id == Customer.id).where(*late)
        .group_by(Customer.id, Customer.name, Customer.currency)
        .order_by(overdue.desc()).limit(limit)).all()
    home.overdue = [{"customer": name, "currency": cur, "overdue_minor": int(amount),
                     "days_late": (as_of - oldest).days} for name, cur, amount, oldest in rows]
    home.overdue_total = len(home.overdue) if len(rows) < limit else int(session.exec(
        select(sa.func.count(sa.distinct(Customer.id)))
        .join(Invoice, Invoice.customer_id == Customer.id).where(*late)).one())
    return home


def promises_due(session: Session, collector_id: str, as_of: date, *, limit: int = 10
                 ) -> tuple[list[dict], int]:
    """Open promises to pay of the collector's customers due by tomorrow, earliest first:
    the ones to check today (at most `limit`), and how many there are in all."""
    due = (Customer.collector_id == collector_id, PromiseToPay.status == PromiseStatus.OPEN,
           PromiseToPay.promised_date <= as_of + timedelta(days=1))
    rows = session.exec(
        select(PromiseToPay, Customer.name).join(Customer, Customer.id == PromiseToPay.customer_id)
        .where(*due).order_by(PromiseToPay.promised_date, PromiseToPay.id).limit(limit)).all()
    total = len(rows) if len(rows) < limit else int(session.exec(
        select(sa.func.count()).select_from(PromiseToPay)
        .join(Customer, Customer.id == PromiseToPay.customer_id).where(*due)).one())
    return [{"customer": name, "amount_minor": p.amount_minor, "currency": p.currency,
             "date": p.promised_date.isoformat(), "late": p.promised_date < as_of}
            for p, name in rows], total


def open_ar_trend(session: Session, as_of: date, currency: str | None, *, weeks: int = 8
                  ) -> list[int]:
    """Open receivables in `currency` at the end of each of the last `weeks` weeks, oldest
    first (today last): the admins' trend line."""
    if not currency:
        return []
    trend = []
    for n in range(weeks - 1, -1, -1):
        aging = aging_by_currency(session, as_of - timedelta(weeks=n)).get(currency)
        trend.append(aging.total if aging else 0)
    return trend
