"""Column types shared by every table.

* `UTCDateTime`: timezone-aware datetimes, stored in UTC. SQLite has no time zone type, so the
  decorator converts on the way in (refusing naive values, which are a bug) and re-attaches UTC
  on the way out; PostgreSQL stores `timestamptz`.
* `JSONType`: JSON on both databases (JSONB on PostgreSQL).
* `BigInt`: money (integer minor units) and quantities. BIGINT on PostgreSQL, where INTEGER
  is 32-bit (USD 21,474,836.47); SQLite's INTEGER already holds 64 bits, so it stays INTEGER
  there and the SQLite schema needs no rebuild (migration 0006_money_bigint). Values are kept
  far below 2^63 by `models.limits`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field


class UTCDateTime(sa.types.TypeDecorator):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    """The *recording* clock: when a row was written (`created_at`, `updated_at`, an audit
    event's `at` when none is given) and the outbox's own retry schedule. Never a business date:
    workflows take `now`/`as_of` from their caller, who asked the one business clock
    (`bot.clock.Clock`, SPEC §5.10). The sandbox's Time travel moves that clock, not this one,
    so the audit trail always says when something was really recorded."""
    return datetime.now(UTC)


def ts_field(*, nullable: bool = True, index: bool = False, default_now: bool = False,
             on_update: bool = False) -> Any:
    """A UTC timestamp column; `default_now` stamps inserts and `on_update` every UPDATE of
    the row (ORM or Core) with the recording time, unless the statement sets it."""
    kwargs: dict[str, Any] = {}
    if default_now:
        kwargs["default_factory"] = utcnow
    else:
        kwargs["default"] = None
    if on_update:
        kwargs["sa_column_kwargs"] = {"onupdate": utcnow}
    return Field(sa_type=UTCDateTime, nullable=nullable, index=index, **kwargs)


def json_field(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSONType, nullable=False)


def big_field(**kwargs: Any) -> Any:
    """A 64-bit integer column: an amount in minor units or a quantity."""
    return Field(sa_type=BigInt, **kwargs)
