"""Incoming payments and how they were applied to invoices."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field
from models.invoices import settlement_index


class PaymentStatus(StrEnum):
    APPLIED = "applied"  # fully allocated to invoices (plus any write-off)
    PARTIALLY_APPLIED = "partially_applied"  # some allocated, the rest unapplied credit
    UNAPPLIED = "unapplied"  # nothing allocated and nothing to suggest
    NEEDS_REVIEW = "needs_review"  # candidates exist but confidence is below the threshold
    REFUNDED = "refunded"  # given back in full (workflows.refunds)


class Payment(SQLModel, table=True):
    __tablename__ = "payments"

    id: int | None = Field(default=None, primary_key=True)
    # Re-importing the same bank line or API payment changes nothing: unique external id.
    external_id: str | None = Field(default=None, unique=True, max_length=200)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    amount_minor: int = big_field(gt=0)
    currency: str = Field(max_length=3)
    received_at: datetime = ts_field(nullable=False)
    # When the money moved: the bank's value date when a statement gives one, else the date
    # of `received_at` in the offset its sender gave (`cash_application.value_date_of`). Its
    # allocations are dated by it (models.invoices docstring).
    value_date: date
    payer_name: str | None = Field(default=None, max_length=300)
    reference: str | None = Field(default=None, max_length=2000)
    method: str | None = Field(default=None, max_length=32)
    source: str = Field(default="api", max_length=16)
    status: str = Field(default=PaymentStatus.UNAPPLIED, index=True, max_length=24)
    unapplied_minor: int = big_field(default=0, ge=0)
    # given back to the payer (`models.integrations.Refund`): amount = allocations (net of
    # refund reversals) + unapplied + refunded
    refunded_minor: int = big_field(default=0, ge=0)
    confidence_bp: int | None = None  # 0..10000
    match_details: dict = json_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)


class Allocation(SQLModel, table=True):
    __tablename__ = "allocations"
    # negative only for a refund's reversal (method "refund"): money given back reopens
    # the invoice from the refund's date, and the as-of reports see it on that day
    __table_args__ = (sa.CheckConstraint("amount_minor <> 0", name="ck_allocations_nonzero"),
                      settlement_index("allocations"))

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount_minor: int = big_field()
    method: str = Field(default="reference", max_length=24)  # reference, amount, subset,
    # manual; "refund": a reversal (negative)
    value_date: date  # its payment's value date
    effective_date: date  # the day the books count it on (models.invoices docstring)
    created_by: str = Field(default="system", max_length=64)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class DeductionStatus(StrEnum):
    OPEN = "open"  # flagged, nobody has acted yet (or a bill-back is waiting for the money)
    DISPUTED = "disputed"  # a dispute was opened for it
    WRITE_OFF_PENDING = "write_off_pending"  # a write-off awaits approval
    RESOLVED = "resolved"  # credited, written off, or (resolution "paid") paid after all


class Deduction(SQLModel, table=True):
    """A short payment beyond tolerance: applied partially and flagged for follow-up (a card
    in the AR channel: Open dispute · Write off · Bill back, `workflows.deductions`)."""

    __tablename__ = "deductions"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount_minor: int = big_field(gt=0)
    status: str = Field(default=DeductionStatus.OPEN, max_length=24)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    resolution: str | None = Field(default=None, max_length=24)  # credited, written_off, paid
    resolved_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = ts_field()
    card_outbox_id: int | None = None
    billed_back_at: datetime | None = ts_field()
    bill_backs: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
