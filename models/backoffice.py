"""The back office of SPEC §3: disputes, credit-note requests (and the lines of issued credit
notes), write-off requests. One state vocabulary per record, a comment per state.

Issued credit notes and executed write-offs are settlements and live in `models.invoices`
(`CreditNote`, `WriteOff`); the records here are the requests and cases that lead to them,
each decided once.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field


class DisputeReason(StrEnum):
    PRICING = "pricing"  # billed at the wrong price or discount
    QUANTITY = "quantity"  # billed for more than was delivered
    DAMAGED = "damaged"  # goods arrived damaged
    NOT_RECEIVED = "not_received"  # goods or service never arrived
    DUPLICATE = "duplicate"  # billed twice
    TAX = "tax"  # wrong tax
    OTHER = "other"


class DisputeStatus(StrEnum):
    OPEN = "open"  # the customer contests the amount; it is held out of dunning
    ACCEPTED = "accepted"  # we agree: a credit note of up to the amount was requested
    REJECTED = "rejected"  # we disagree (reason given): dunning resumes
    WITHDRAWN = "withdrawn"  # the customer dropped it


DISPUTE_RESOLUTIONS = (DisputeStatus.ACCEPTED, DisputeStatus.REJECTED, DisputeStatus.WITHDRAWN)


def _open_only(status: str) -> dict:
    where = sa.text(f"status = '{status}'")
    return {"sqlite_where": where, "postgresql_where": where}


class Dispute(SQLModel, table=True):
    """An invoice's amount the customer contests. While it is held (`held_minor`), that much
    of the invoice is left out of dunning, collector priority and the overdue figures
    (`invoices.disputed_minor` = min(Σ held, balance), kept by `workflows.disputes`)."""

    __tablename__ = "disputes"
    __table_args__ = (
        # one open dispute per invoice: a second one while the first is open is refused (409)
        sa.Index("ux_disputes_open_invoice", "invoice_id", unique=True,
                 **_open_only(DisputeStatus.OPEN)),
        sa.CheckConstraint("amount_minor > 0", name="ck_disputes_amount_positive"),
        sa.CheckConstraint("held_minor >= 0 AND held_minor <= amount_minor",
                           name="ck_disputes_held_within_amount"),
    )

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    currency: str = Field(max_length=3)
    amount_minor: int = big_field()
    # How much is held out of dunning now: the amount while open, the credit asked for while
    # its credit note awaits approval, else 0.
    held_minor: int = big_field(default=0)
    reason: str = Field(max_length=16)  # DisputeReason
    note: str | None = Field(default=None, max_length=2000)
    status: str = Field(default=DisputeStatus.OPEN, index=True, max_length=16)
    source: str = Field(default="slack", max_length=16)  # slack, api, deduction, chargeback
    # the provider's dispute behind a chargeback ("stripe:dp_..."), shared by its invoices
    external_id: str | None = Field(default=None, max_length=255, index=True)
    opened_by: str = Field(max_length=64)
    opened_at: datetime = ts_field(nullable=False)
    # who must act: the customer's sales rep, or the disputes channel when one is set
    owner_id: str | None = Field(default=None, max_length=32)
    owner_channel: str | None = Field(default=None, max_length=64)
    deduction_id: int | None = Field(default=None, foreign_key="deductions.id", index=True)
    resolved_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = ts_field()
    resolution_note: str | None = Field(default=None, max_length=2000)
    credit_amount_minor: int | None = big_field(default=None)  # asked for on acceptance
    released_at: datetime | None = ts_field()  # when nothing was held any more
    card_outbox_id: int | None = None
    reminders_sent: int = 0
    last_reminded_at: datetime | None = ts_field()
    escalated_at: datetime | None = ts_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)


class CreditNoteStatus(StrEnum):
    PENDING = "pending_approval"  # waiting for a credit approver (and a tier's second one)
    ISSUED = "issued"  # a CN-<year>-<n> document exists; immutable
    REJECTED = "rejected"  # an approver said no
    CANCELLED = "cancelled"  # could not be issued any more (e.g. the invoice was credited)


class CreditNoteRequest(SQLModel, table=True):
    """A credit note's life: requested (Slack, the API, an accepted dispute), approved, then
    issued as a `CreditNote`. An ERP's own credit note is recorded here as issued at once.
    `lines` (when it is by lines): [{"line_no", "invoice_line_id", "quantity", "net_minor",
    "tax_minor", "amount_minor"}]; `amount_minor` is the note's total, tax included."""

    __tablename__ = "credit_note_requests"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    currency: str = Field(max_length=3)
    amount_minor: int = big_field()
    lines: list = json_field(list)
    reason: str = Field(max_length=500)
    status: str = Field(default=CreditNoteStatus.PENDING, index=True, max_length=24)
    source: str = Field(default="slack", max_length=16)  # slack, api, erp, dispute
    # the sender's own id: posting it again returns the same credit note
    external_id: str | None = Field(default=None, unique=True, max_length=200)
    requested_by: str = Field(max_length=64)
    dispute_id: int | None = Field(default=None, foreign_key="disputes.id", index=True)
    approval_id: int | None = None
    issue_date: date | None = None  # an ERP's own issue date
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = ts_field()
    decision_note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class CreditNoteLine(SQLModel, table=True):
    """What an issued credit note takes off each invoice line (`workflows.credit_notes.
    credit_by_line`): its own lines, or an amount spread pro rata over the lines."""

    __tablename__ = "credit_note_lines"
    __table_args__ = (sa.UniqueConstraint("credit_note_id", "invoice_line_id"),)

    id: int | None = Field(default=None, primary_key=True)
    credit_note_id: int = Field(foreign_key="credit_notes.id", index=True)
    invoice_line_id: int = Field(foreign_key="invoice_lines.id", index=True)
    line_no: int
    quantity: int | None = big_field(default=None)  # when credited by quantity
    net_minor: int = big_field()  # before tax
    tax_minor: int = big_field(default=0)
    amount_minor: int = big_field()  # net + tax


class WriteOffRequestStatus(StrEnum):
    PENDING = "pending_approval"  # waiting for a credit approver (and a tier's second one)
    WRITTEN_OFF = "written_off"  # done: a WriteOff row exists
    REJECTED = "rejected"  # an approver said no
    NOTHING_LEFT = "nothing_left"  # approved, but the invoice was settled meanwhile


class WriteOffKind(StrEnum):
    BAD_DEBT = "bad_debt"  # an invoice balance we give up on
    DEDUCTION = "deduction"  # a short payment we accept
    FEE_WAIVER = "fee_waiver"  # a late fee a collector waives


class WriteOffRequest(SQLModel, table=True):
    """A write-off that needs an approval (bad debt, an accepted deduction, a large fee
    waiver); executed once as a `WriteOff` when approved."""

    __tablename__ = "write_off_requests"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    currency: str = Field(max_length=3)
    amount_minor: int = big_field()
    kind: str = Field(default=WriteOffKind.BAD_DEBT, max_length=16)
    reason: str = Field(max_length=500)
    status: str = Field(default=WriteOffRequestStatus.PENDING, index=True, max_length=24)
    requested_by: str = Field(max_length=64)
    deduction_id: int | None = Field(default=None, foreign_key="deductions.id", index=True)
    approval_id: int | None = None
    # the write-off that executed it: unique, so an approval is executed once
    write_off_id: int | None = Field(default=None, foreign_key="write_offs.id", unique=True)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = ts_field()
    decision_note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = ts_field(nullable=False, default_now=True)
