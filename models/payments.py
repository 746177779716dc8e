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
    # the KPIs: the payments received in the hours at either end of a window of business
    # days (the UTC days in between come from `kpi_daily`)
    __table_args__ = (sa.Index("ix_payments_received", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # Re-importing the same bank line or API payment changes nothing: unique external id.
    external_id: str | None = Field(default=None, unique=True, max_length=200)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    amount_minor: int = big_field(gt=0)
    currency: str = Field(max_length=3)
    received_at: datetime = ts_field(nullable=False)
    # When the money moved: the bank's value date when a statement gives one, else the date
    # of `received_at` in the offset its sender gave (`cash_application.value_date_of`; a
    # Stripe payment, which has a moment and no offset: its business date). Its allocations
    # are dated by it (models.invoices docstring); the engine's early-payment discount too.
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
    # Kept by database triggers on `allocations` (migration 0023_kpi_rollups), never written
    # here: the sum of its allocations other than "manual" ones and how many "manual" ones it
    # has — what the KPIs' auto-match rate needs without reading the allocations
    # (`workflows.kpis`; `workflows.invariants.validate_kpi_rollups` checks them).
    auto_allocated_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    manual_allocations: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Allocation(SQLModel, table=True):
    __tablename__ = "allocations"
    # negative only for a refund's reversal (method "refund"): money given back reopens
    # the invoice from the refund's date, and the as-of reports see it on that day; or for
    # customer credit moved off its invoice (method "customer_credit",
    # `workflows.customer_credit`), which a positive one of the same payment puts on another
    __table_args__ = (sa.CheckConstraint("amount_minor <> 0", name="ck_allocations_nonzero"),
                      settlement_index("allocations"))

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount_minor: int = big_field()
    method: str = Field(default="reference", max_length=24)  # reference, amount, subset,
    # manual; "refund": a reversal (negative); "customer_credit": credit applied elsewhere
    value_date: date  # its payment's value date
    effective_date: date  # the day the books count it on (models.invoices docstring)
    created_by: str = Field(default="system", max_length=64)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class ReversedKind(StrEnum):
    ALLOCATION = "allocation"  # of a payment to an invoice (its `method` kept)
    WRITE_OFF = "write_off"  # a bank fee or discount of the payment (its `reason` kept)


class ReversedSettlement(SQLModel, table=True):
    """An allocation or write-off a correction took back (`workflows.cash_application.
    _reverse` deletes it and restores the invoice's balance), kept as it was, with when it was
    reversed: a report "as known at" a moment before the reversal still counts it
    (`workflows.receivables`). Append-only (the database refuses UPDATE and DELETE,
    migration 0029_reversed_settlements)."""

    __tablename__ = "reversed_settlements"
    __table_args__ = (sa.CheckConstraint("amount_minor > 0",
                                         name="ck_reversed_settlements_positive"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # a ReversedKind
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    amount_minor: int = big_field()
    method: str | None = Field(default=None, max_length=24)  # an allocation's
    reason: str | None = Field(default=None, max_length=32)  # a write-off's
    effective_date: date  # the day the books counted it on
    created_at: datetime = ts_field(nullable=False)  # when it was recorded (its own)
    # when the correction was recorded: the recording clock, as `created_at`
    reversed_at: datetime = ts_field(nullable=False, default_now=True)


class DeductionStatus(StrEnum):
    # flagged, nobody has acted yet (or a bill-back is waiting for the money, or a dispute's
    # credit note covered only part of it: open for the rest, `workflows.deductions.left_minor`)
    OPEN = "open"
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


class PaymentSuggestion(SQLModel, table=True):
    """What the engine offered a person for a payment it was not sure about: one row per
    candidate plan, ranked. A new round (after someone named the customer) adds rows; earlier
    rounds stay as the record of what was offered."""

    __tablename__ = "payment_suggestions"
    __table_args__ = (sa.UniqueConstraint("payment_id", "round", "rank",
                                          name="uq_payment_suggestions_rank"),)

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    round: int = 1
    rank: int
    customer_id: int | None = Field(default=None, foreign_key="customers.id")
    kind: str = Field(max_length=16)  # reference, amount, subset, global, name
    fit: str = Field(max_length=16)  # exact, discount, fee, short, over, none
    confidence_bp: int | None = None  # 0..10000 (unknown for rows migrated after a decision)
    write_off_minor: int = big_field(default=0, ge=0)
    deduction_minor: int = big_field(default=0, ge=0)
    unapplied_minor: int = big_field(default=0, ge=0)
    # [{"invoice_id", "number", "allocate_minor", "write_offs": [[minor, reason]],
    #   "deduction_minor"}]: exactly what Apply allocates
    lines: list = json_field(default_factory=list)
    reasons: list = json_field(default_factory=list)  # why, for the card ("payer name fits ...")
    concerns: list = json_field(default_factory=list)  # why not sure
    signals: list = json_field(default_factory=list)  # the engine's scores, for the record
    created_at: datetime = ts_field(nullable=False, default_now=True)


class CashRuleKind(StrEnum):
    PAYER_ALIAS = "payer_alias"  # this payer line is this customer ("GLBX HOLDINGS" = Globex)
    REMITTANCE_PATTERN = "remittance_pattern"  # this customer writes references like this


class CashRule(SQLModel, table=True):
    """What a person taught cash application by applying, identifying or correcting a payment
    (`workflows.cash_rules`). Never deleted: an admin removing one sets `active` false."""

    __tablename__ = "cash_rules"
    __table_args__ = (
        sa.Index("uq_cash_rules_active", "kind", "value", "customer_id", unique=True,
                 sqlite_where=sa.text("active"), postgresql_where=sa.text("active")),
        sa.Index("ix_cash_rules_customer", "customer_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id")
    kind: str = Field(max_length=24)
    value: str = Field(max_length=300)  # normalised: "glbx holdings", "PO:45:10"
    shown: str = Field(max_length=300)  # as the payer wrote it: "GLBX HOLDINGS", "PO 4500012345"
    source: str = Field(max_length=16)  # suggestion | customer | correction
    payment_id: int | None = Field(default=None, foreign_key="payments.id")
    seen_on: date  # when the payer paid that way (the payment's day)
    taught_by: str = Field(max_length=64)
    taught_at: datetime = ts_field(nullable=False)
    active: bool = True
    removed_by: str | None = Field(default=None, max_length=64)
    removed_at: datetime | None = ts_field()
    removed_reason: str | None = Field(default=None, max_length=300)
