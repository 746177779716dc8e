"""Revenue recognition (SPEC §3): what a month's close recorded, and subscription billing.

* `RevenueEntry` — one order line's movements in one closed month: revenue recognised,
  invoiced (net, before tax) and credited. Written once by the close (`workflows.revenue`),
  never updated or deleted (database triggers refuse it, as for the audit log): a closed
  month never changes. Only lines that moved in the month get a row.
* `RevenueClose` — one close: revenue is recorded for `period` and every month before it.
* `SubscriptionBilling` — one billed period of a subscription line; the primary key
  (order line, period start) makes "invoiced once per period" hold across processes.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field


class Billing(StrEnum):
    """How a subscription line is invoiced: in advance, on the first day of each period."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUAL = "annual"


BILLING_MONTHS = {Billing.MONTHLY: 1, Billing.QUARTERLY: 3, Billing.ANNUAL: 12}


class RevenueClose(SQLModel, table=True):
    __tablename__ = "revenue_closes"

    period: str = Field(primary_key=True, max_length=7)  # "YYYY-MM": recorded through it
    last_day: date = Field(index=True)
    recorded_at: datetime = ts_field(nullable=False)
    recorded_by: str = Field(max_length=64)
    # what the close recorded, per currency (the summary posted to the AR channel)
    summary: dict = json_field()


class RevenueEntry(SQLModel, table=True):
    __tablename__ = "revenue_entries"
    __table_args__ = (sa.UniqueConstraint("period", "order_line_id"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=7, index=True)  # "YYYY-MM"
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    currency: str = Field(max_length=3)
    revenue_type: str = Field(max_length=16)
    recognized_minor: int = big_field(default=0)
    invoiced_minor: int = big_field(default=0)
    credited_minor: int = big_field(default=0)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class SubscriptionBilling(SQLModel, table=True):
    __tablename__ = "subscription_billings"

    order_line_id: int = Field(foreign_key="order_lines.id", primary_key=True)
    period_start: date = Field(primary_key=True)
    period_end: date
    invoice_id: int = Field(foreign_key="invoices.id", unique=True)
    amount_minor: int = big_field(ge=0)  # net, before tax
    created_at: datetime = ts_field(nullable=False, default_now=True)
