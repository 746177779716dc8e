"""Closed accounting periods (SPEC §3 "Monthly close": a closed month never changes)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from models.base import ts_field


class ClosedPeriod(SQLModel, table=True):
    """One close: `period` (a month, "2026-06") and every month before it are closed from
    `closed_at` on. What is dated inside a closed month but recorded afterwards is booked in
    the first open month (`workflows.periods`). Rows are only ever added."""

    __tablename__ = "closed_periods"

    period: str = Field(primary_key=True, max_length=7)  # "YYYY-MM"
    last_day: date = Field(index=True)  # the month's last day: closed up to and including it
    closed_at: datetime = ts_field(nullable=False)
    closed_by: str = Field(max_length=64)  # Slack user id, "api", "cli"
    source: str = Field(default="ar", max_length=32)  # "ar" (period close), "revenue" (close)
