"""Credit and discount approval requests, decided once on a Slack card."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field


class ApprovalKind(StrEnum):
    CREDIT = "credit"  # exposure, new customer, overdue invoices or credit hold
    DISCOUNT = "discount"  # a line discount above the product's maximum
    CREDIT_NOTE = "credit_note"  # a credit note request (subject: credit_note_requests)
    WRITE_OFF = "write_off"  # a bad-debt or deduction write-off (subject: write_off_requests)
    FEE_WAIVER = "fee_waiver"  # a late fee waived above the threshold (write_off_requests)
    CREDIT_REQUEST = "credit_request"  # a Workflow Builder step's request (credit_requests)


# Approvals of an order (order_id) and of a back-office request (subject_id)
ORDER_KINDS = (ApprovalKind.CREDIT, ApprovalKind.DISCOUNT)


class ApprovalStatus(StrEnum):
    PENDING = "pending"  # waiting for an approver (or, after a first approval above a tier,
    # for the second decision: `first_decided_by` is set)
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the order went away before anyone decided


class Approval(SQLModel, table=True):
    """A decision taken once on a Slack card: an order's credit or discount approval, or a
    back-office request's (`subject_id`: a credit-note or write-off request). Above an
    approval tier (`O2C_APPROVAL_TIERS`), the first approval is recorded in `first_*` and a
    second decision by `second_role` is still needed."""

    __tablename__ = "approvals"
    # One request of each kind per order: a resubmission reopens it rather than duplicating it.
    # One approval per back-office request.
    __table_args__ = (sa.UniqueConstraint("order_id", "kind"),
                      sa.UniqueConstraint("kind", "subject_id"))

    id: int | None = Field(default=None, primary_key=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    subject_id: int | None = None
    kind: str = Field(max_length=16)
    status: str = Field(default=ApprovalStatus.PENDING, index=True, max_length=16)
    requested_by: str = Field(foreign_key="users.slack_user_id", max_length=32)
    reasons: list = json_field(list)  # why approval is needed, machine-readable
    snapshot: dict = json_field()  # exposure, limit, aging ... at request time, for the card
    decided_by: str | None = Field(default=None, max_length=32)
    decided_at: datetime | None = ts_field()
    decision_note: str | None = Field(default=None, max_length=2000)
    card_outbox_id: int | None = None  # the outbox row that posted the card (channel/ts)
    last_reminded_at: datetime | None = ts_field()
    reminders_sent: int = 0
    created_at: datetime = ts_field(nullable=False, default_now=True)
    # what is decided, for tiers and lists (an order's: its total)
    amount_minor: int | None = big_field(default=None)
    currency: str | None = Field(default=None, max_length=3)
    # a tier's second decision: who must take it, and the first approval
    second_role: str | None = Field(default=None, max_length=32)
    first_decided_by: str | None = Field(default=None, max_length=32)
    first_decided_at: datetime | None = ts_field()
    first_note: str | None = Field(default=None, max_length=2000)
