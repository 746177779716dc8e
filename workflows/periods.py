"""Closed periods: once a month is closed, its figures never change (SPEC §3 "Monthly close").

Closing a month works like an accounting lock date (Odoo's, or ERPNext's period closing):
closing 2026-06 closes June *and every month before it* — otherwise a settlement booked in an
earlier open month would still change June's closing AR. The AR close is explicit
(`o2c close-period 2026-06`, `POST /api/v1/periods/2026-06/close`); the revenue close of SPEC
§3 closes through the same `close_period` with `source="revenue"`, and every close records
the revenue of the months it closes (`workflows.revenue.record_through`): one lock date for
AR and revenue.

What is dated inside a closed month but recorded afterwards — a payment whose value date is
15 June, entered in July — is not refused (the money did move) and does not rewrite June:
it is *booked* on the first day of the first open month (`booking`). Its settlement row
keeps the original `value_date` beside the `effective_date` the reports use, and the answer
and the audit log say so (`Booking.note`).

Months are calendar months of the economic dates (calendar dates as their sources state them,
see `workflows.receivables`). A month can be closed once it has ended in the business time
zone (`policy.business_date`: the zone the books keep, as the revenue-close job and the
reports take it), not in UTC.

Concurrency: on PostgreSQL a close takes an exclusive advisory lock and every settlement takes
the shared one before it reads the lock date, so a close waits for the transactions that are
booking settlements and a settlement that starts after a close sees it — a settlement can never
slip into a month closed while it was being recorded. (Taken per settlement, not once per
transaction: a lock taken inside a savepoint that rolls back is released with it.) SQLite runs
one writer at a time, so there the lock date is read once per transaction.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import ClosedPeriod, limits
from workflows import audit, policy
from workflows.errors import ValidationFailed

MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")  # (ASCII digits: \d takes any script's)
SOURCES = ("ar", "revenue")
# pg_advisory_xact_lock key of the period close ("o2c" 0x6f3263, issue 21)
LOCK_KEY = 0x6F3263_0021
_CACHE = "periods.lock_date"


def parse_period(text: str, field: str = "period") -> date:
    """"2026-06" -> the first day of that month; anything else is refused naming `field`."""
    match = MONTH.match((text or "").strip())
    if not match:
        raise ValidationFailed.of(field, "must be a month like 2026-06")
    if not limits.MIN_YEAR <= int(match.group(1)) <= limits.MAX_YEAR:
        raise ValidationFailed.of(field, f"year must be between {limits.MIN_YEAR} and "
                                  f"{limits.MAX_YEAR}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def last_day_of(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def closed_through(session: Session) -> date | None:
    """The last day of the latest closed month (the lock date), or None if none is closed."""
    return session.exec(select(sa.func.max(ClosedPeriod.last_day))).one()


def lock_date(session: Session) -> date | None:
    """The lock date as a settlement being recorded — or undone — must see it: on PostgreSQL
    under the shared lock, so a close waits for this transaction (see the module docstring)."""
    return _lock_date_for_booking(session)


def _lock_date_for_booking(session: Session) -> date | None:
    if _is_postgres(session):
        session.execute(sa.select(sa.func.pg_advisory_xact_lock_shared(LOCK_KEY)))
        return closed_through(session)
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cached[1]
    lock = closed_through(session)
    session.info[_CACHE] = (session.get_transaction(), lock)
    return lock


@dataclass(frozen=True)
class Booking:
    """When a settlement counts: `value_date` as stated, `effective_date` as booked."""

    value_date: date
    effective_date: date
    closed_through: date | None = None  # set when the value date fell in a closed month

    @property
    def moved(self) -> bool:
        return self.closed_through is not None

    @property
    def note(self) -> str | None:
        if not self.moved:
            return None
        return (f"dated {self.value_date.isoformat()}, in a closed period (closed through "
                f"{period_of(self.closed_through)}): booked on "
                f"{self.effective_date.isoformat()}, the first day of the first open month")

    def as_dict(self) -> dict:
        data = {"value_date": self.value_date.isoformat(),
                "effective_date": self.effective_date.isoformat()}
        if self.moved:
            data["booked_in_open_period"] = True
            data["note"] = self.note
        return data


def booking(session: Session, value_date: date, *, not_before: date | None = None) -> Booking:
    """The dates a settlement valued on `value_date` is recorded with.

    `not_before` (the invoice's issue date) keeps a settlement from counting before its
    invoice exists — a prepayment applied to a later invoice settles it on its issue date.
    A day in a closed month moves to the first day after the lock date."""
    return _book(value_date, not_before, _lock_date_for_booking(session))


def booker(session: Session) -> Callable[..., Booking]:
    """`booking` for a batch of settlements written together (a chunk of a bank statement,
    `workflows.cash_runs`): the lock date is read once — on PostgreSQL under the shared lock,
    held to the end of the transaction like `booking`'s — and each settlement is then dated
    exactly as `booking` dates it: `book(value_date, not_before=...)`. Ask for a new one per
    write (a savepoint that rolls back releases the lock)."""
    lock = _lock_date_for_booking(session)

    def book(value_date: date, *, not_before: date | None = None) -> Booking:
        return _book(value_date, not_before, lock)
    return book


def _book(value_date: date, not_before: date | None, lock: date | None) -> Booking:
    day = max(value_date, not_before) if not_before else value_date
    if lock is not None and day <= lock:
        return Booking(value_date, lock + timedelta(days=1), closed_through=lock)
    return Booking(value_date, day)


def close_period(session: Session, *, period: str, actor: str, now: datetime,
                 source: str = "ar") -> tuple[ClosedPeriod, bool]:
    """Close `period` (and every month before it). Idempotent: closing a month that is
    already closed — itself or by a later close — changes nothing and returns the close that
    covers it with False. Returns (the close, created)."""
    first = parse_period(period)
    last = last_day_of(first)
    if source not in SOURCES:
        raise ValidationFailed.of("source", f"must be one of {', '.join(SOURCES)}")
    today = policy.business_date(session, now)
    if last >= today:
        raise ValidationFailed.of("period", f"{period_of(first)} has not ended yet (today is "
                                  f"{today.isoformat()}); a month is closed after its last day")
    if _is_postgres(session):
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
    covering = session.exec(select(ClosedPeriod).where(ClosedPeriod.last_day >= last)
                            .order_by(ClosedPeriod.last_day).limit(1)).first()
    if covering is not None:
        return covering, False
    row = ClosedPeriod(period=period_of(first), last_day=last, closed_at=now,
                       closed_by=actor, source=source)
    session.add(row)
    session.flush()
    session.info.pop(_CACHE, None)
    audit.record(session, actor=actor, action="period.closed", entity_type="period",
                 entity_id=row.period, to_state="closed", at=now,
                 reason=f"{row.period} and every month before it closed ({source} close)",
                 closed_through=last.isoformat(), source=source)
    # One lock date for AR and revenue (see `workflows.revenue`): every month closed has its
    # revenue recorded, in this transaction, whichever close closed it.
    from workflows import revenue

    revenue.record_through(session, last, actor=actor, now=now)
    return row, True


def closed_periods(session: Session) -> list[ClosedPeriod]:
    return list(session.exec(select(ClosedPeriod).order_by(ClosedPeriod.last_day)))

