"""Credit and discount approval requests, decided once on a Slack card."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import json_field, ts_field


class ApprovalKind(StrEnum):
    CREDIT = "credit"  # exposure, new customer, overdue invoices or credit hold
    DISCOUNT = "discount"  # a line discount above the product's maximum


class ApprovalStatus(StrEnum):
    PENDING = "pending"  # waiting for an approver
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the order went away before anyone decided


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    # One request of each kind per order: a resubmission reopens it rather than duplicating it.
    __table_args__ = (sa.UniqueConstraint("order_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
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
