"""Cross-cutting tables: audit log, outbox, idempotency keys, event receipts, counters."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field


class AuditEvent(SQLModel, table=True):
    """Append-only: database triggers refuse UPDATE and DELETE (see the first migration)."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_entity", "entity_type", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = ts_field(nullable=False, default_now=True)
    actor: str = Field(max_length=64)  # Slack user id, "api", "system", "import"
    action: str = Field(index=True, max_length=64)
    entity_type: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=2000)
    data: dict = json_field()


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for delivery (possibly after next_attempt_at)
    SENDING = "sending"  # claimed by a worker; reclaimed if the claim goes stale
    SENT = "sent"  # delivered exactly once
    FAILED = "failed"  # gave up: permanent error or too many attempts; visible, never dropped
    # a customer e-mail no longer true when its turn came (a dunning e-mail whose invoices
    # were paid or put in dispute meanwhile: `workflows.dunning.due_now`); never sent
    WITHDRAWN = "withdrawn"


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    transport: str = Field(max_length=16)  # "slack" or "email"
    method: str = Field(max_length=64)  # chat.postMessage, chat.update, views.publish, email
    payload: dict = json_field()
    # A natural key for "send this once" (e.g. "dunning:42:7"); unique when present.
    dedupe_key: str | None = Field(default=None, unique=True, max_length=200)
    # For chat.update of a message this outbox posted earlier: channel/ts come from that row.
    target_outbox_id: int | None = Field(default=None, foreign_key="outbox.id")
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = ts_field(nullable=False, default_now=True)
    claimed_at: datetime | None = ts_field()
    claimed_by: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, max_length=2000)
    result: dict = json_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)
    sent_at: datetime | None = ts_field()
    # the request (Slack or API) whose work queued it, for following it in the logs
    request_id: str | None = Field(default=None, max_length=64)
    # the Slack workspace (and Grid org) it is for: its installation's bot token delivers it
    # (OAuth install into several workspaces); NULL: the default installation
    team_id: str | None = Field(default=None, max_length=32)
    enterprise_id: str | None = Field(default=None, max_length=32)


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=1000)  # "POST /api/v1/orders"
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    response_status: int
    response_body: dict = json_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)


class SlackEventReceipt(SQLModel, table=True):
    """Events API retries carry the same event_id: the primary key drops the duplicates."""

    __tablename__ = "slack_event_receipts"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = ts_field(nullable=False, default_now=True)


class InteractionReceipt(SQLModel, table=True):
    """A Slack interaction that created something, by its key: `view:<view id>` for a modal
    submission, a natural key for a click (e.g. `snooze:<customer>:<until>`). It is written in
    the same transaction as what the interaction created, so the primary key makes a replay, a
    retry or a concurrent duplicate (from any server process) a no-op (workflows/receipts.py).
    """

    __tablename__ = "interaction_receipts"

    key: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=64)  # what was created: "order", "promise", "call", ...
    actor: str = Field(max_length=64)  # the Slack user who submitted or clicked
    result: dict = json_field()  # what a replay may tell (e.g. the order number)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class Counter(SQLModel, table=True):
    """Document number sequences (SO-<n>, INV-<year>-<n>), incremented under a row lock."""

    __tablename__ = "counters"

    name: str = Field(primary_key=True, max_length=64)
    value: int = 0


class JobRun(SQLModel, table=True):
    """A scheduled job's run for one key (usually a date) happens once across processes."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job", "run_key"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=64)
    run_key: str = Field(max_length=64)
    started_at: datetime = ts_field(nullable=False, default_now=True)
    finished_at: datetime | None = ts_field()
    summary: dict = json_field()


class Policy(SQLModel, table=True):
    """Policy values admins may change at run time; absent keys fall back to settings."""

    __tablename__ = "policies"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=500)
    updated_by: str = Field(max_length=32)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class KpiSnapshot(SQLModel, table=True):
    """The latest KPIs of a day (`workflows.kpis.to_json`), served to admins' App Home instead
    of recomputing them on every opening; refreshed by the `kpi-report` job when the books
    changed (`audit_id`: the last audit event it saw; `in_flight`: see `books_marker`). One row
    per day, replaced in place."""

    __tablename__ = "kpi_snapshots"

    as_of: date = Field(primary_key=True)
    computed_at: datetime = ts_field(nullable=False)
    audit_id: int = big_field(default=0)  # max(audit_log.id) when computed
    # PostgreSQL: the writers in flight then (`pg_current_snapshot()`), whose audit ids may be
    # lower (`workflows.kpis.is_fresh`); NULL on SQLite
    in_flight: str | None = Field(default=None, sa_type=sa.Text)
    data: dict = json_field()


class KpiDaily(SQLModel, table=True):
    """Per currency and day, what the KPIs sum over days (`workflows.kpis`), kept by database
    triggers in the same statement as every write to invoices, allocations, credit notes,
    write-offs and payments (migrations 0023_kpi_rollups and, on PostgreSQL, 0024's statement
    triggers), never written by Python:

    * `sales_minor`: totals of the invoices issued that day (credit sales, late fees included);
      `invoices_issued`: how many of them are sales (not late-fee invoices); `fees_minor`:
      the totals of the late-fee invoices among them (not sales: credit sales are
      `sales_minor - fees_minor - credited_minor`; migration 0028_kpi_fee_sales);
    * `credited_minor`: the credit notes of sales invoices (not of late-fee invoices) dated
      that day (`effective_date`): what credit sales are net of (migration
      0031_kpi_net_sales_business_day);
    * `settled_minor`: allocations, credit notes and write-offs of the currency's invoices,
      each on the later of its effective date and its invoice's issue date — the first day on
      which it counts in AR, so AR(t) = Σ sales_minor − settled_minor over the days ≤ t;
    * `bad_debt_minor`: bad-debt write-offs by effective date;
    * `payments`, `received_minor`: payments by the UTC day of `received_at` (the KPIs read
      the UTC days wholly in their window of business days here, the hours at its ends from
      the payments: `workflows.kpis`);
      `payments_auto`, `auto_matched_minor`: those the engine matched with no manual
      allocation (applied or partially applied, `Payment.manual_allocations` = 0 and
      `Payment.auto_allocated_minor` ≠ 0) and what it allocated from them.

    A day's figures are the sum of its rows over `stripe`: on PostgreSQL each server process
    (connection) adds to a row of its own (`pg_backend_pid()`), so concurrent writers never
    wait on each other's row; the backfill and SQLite use stripe 0. The hourly
    `kpi-rollup-merge` job folds past days' stripes into stripe 0 (`workflows.kpi_rollups`).

    `workflows.invariants.validate_kpi_rollups` recomputes every day from the base tables."""

    __tablename__ = "kpi_daily"

    currency: str = Field(primary_key=True, max_length=3)
    day: date = Field(primary_key=True)
    stripe: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": "0"})
    sales_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    invoices_issued: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    settled_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    bad_debt_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    payments: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    payments_auto: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    received_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    auto_matched_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    fees_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    credited_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
