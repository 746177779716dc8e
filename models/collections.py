"""Collections: promises to pay, collector activity, dunning notices, digests."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, ts_field


class PromiseStatus(StrEnum):
    OPEN = "open"  # promised date not reached, or reached and being checked
    KEPT = "kept"  # the promised amount arrived by the date
    BROKEN = "broken"  # the day after the date came without the money
    CANCELLED = "cancelled"


class PromiseToPay(SQLModel, table=True):
    __tablename__ = "promises"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id", index=True)
    amount_minor: int = big_field(gt=0)
    currency: str = Field(max_length=3)
    promised_date: date = Field(index=True)
    note: str | None = Field(default=None, max_length=2000)
    status: str = Field(default=PromiseStatus.OPEN, index=True, max_length=16)
    created_by: str = Field(max_length=32)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    broken_at: datetime | None = ts_field()


class ActivityKind(StrEnum):
    CALL = "call"
    NOTE = "note"
    REMINDER = "reminder"
    SNOOZE = "snooze"
    PROMISE = "promise"
    ESCALATION = "escalation"


class CollectionActivity(SQLModel, table=True):
    __tablename__ = "collection_activities"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    kind: str = Field(max_length=16)
    note: str | None = Field(default=None, max_length=2000)
    user_id: str = Field(max_length=32)
    snooze_until: date | None = None
    at: datetime = ts_field(nullable=False, default_now=True)


class DunningNotice(SQLModel, table=True):
    """Each (invoice, level) is sent at most once, ever: the unique constraint is the guard."""

    __tablename__ = "dunning_notices"
    __table_args__ = (sa.UniqueConstraint("invoice_id", "level"),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    level: int  # days relative to the due date: -3, 1, 7, 14, 30
    as_of: date
    outbox_id: int | None = None
    # passed over because a later level was due at once (catch-up): never sent later
    skipped: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # the dunning run that claimed it (its AR-channel summary counts it); NULL before 0022
    run_id: int | None = Field(default=None, foreign_key="dunning_runs.id", index=True)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class DunningRunRecord(SQLModel, table=True):
    """One dunning run of one process (`workflows.dunning`), opened with its first write
    transaction. Its notices point at it and its counters grow in the same transactions, so a
    run killed between batches loses nothing: the next run summarises it from these rows.
    `finished` is set once (a conditional UPDATE), in the transaction that writes the run's
    one AR-channel summary (outbox dedupe key `dunning-summary:<day>:<first notice id>`)."""

    __tablename__ = "dunning_runs"

    id: int | None = Field(default=None, primary_key=True)
    as_of: date
    # recording clock: when it started, and when it last wrote (every UPDATE stamps it: a
    # run whose last write is old was killed, and the next run takes it over)
    started_at: datetime = ts_field(nullable=False, default_now=True)
    heartbeat_at: datetime = ts_field(nullable=False, default_now=True, on_update=True,
                                      index=True)
    finished: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    emails: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    late_fees: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    credit_holds: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    summary_outbox_id: int | None = None


class DunningConfirmation(SQLModel, table=True):
    """A dunning day whose run would send more e-mails than the threshold: nothing is sent
    that day until an admin confirms (`workflows.dunning.confirm`)."""

    __tablename__ = "dunning_confirmations"
    __table_args__ = (sa.UniqueConstraint("as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: date
    emails: int  # e-mails the run would have sent when it asked
    notices: int
    customers: int
    requested_at: datetime = ts_field(nullable=False, default_now=True)
    confirmed_by: str | None = Field(default=None, max_length=64)
    confirmed_at: datetime | None = ts_field()


class DigestRun(SQLModel, table=True):
    """At most one digest per collector per day."""

    __tablename__ = "digest_runs"
    __table_args__ = (sa.UniqueConstraint("collector_id", "run_date"),)

    id: int | None = Field(default=None, primary_key=True)
    collector_id: str = Field(max_length=32)
    run_date: date
    outbox_id: int | None = None
    created_at: datetime = ts_field(nullable=False, default_now=True)
