"""O2C policy values (SPEC §3 defaults), overridable by settings and by admins at run time.

Three layers, the last one set wins: the defaults of `Policy` below (the one place they are
written down), the settings (`O2C_MAX_DISCOUNT_PCT`, ...: `bot.settings.Settings.policy()`),
and admins' overrides in the `policies` table (`/o2c policy set`). The settings travel with the
database sessions: `bot.db.Database` puts them in each session's `info` (`DEFAULTS_KEY`), so
no module holds them. Workflows read `current(session)`, so a change applies to the next
decision.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, select

from models import Policy as PolicyRow
from models import limits
from workflows.workcalendar import zone_or_utc


@dataclass(frozen=True)
class Policy:
    max_discount_pct: Decimal = Decimal("15")  # above it a line needs a discount approval
    overdue_hold_days: int = 30  # an invoice this far past due triggers a credit approval
    approval_reminder_hours: int = 4  # working hours before a pending request is re-nudged
    working_hours: str = "09:00-17:00"
    business_timezone: str = "UTC"
    holidays: str = ""  # O2C_HOLIDAYS: days closed besides weekends, e.g. US or DE-BY,2026-12-24
    dunning_levels: str = "-3,1,7,14,30"  # days relative to the due date
    cashapp_confidence: Decimal = Decimal("0.90")  # below it a payment waits for a human
    bank_fee_pct: Decimal = Decimal("0.5")  # short-pay tolerance, percent of the invoice ...
    bank_fee_max: Decimal = Decimal("5.00")  # ... or this many major units, whichever is less
    # back office (SPEC §3 "Back office")
    dispute_reminder_days: int = 2  # working days before the owner of an open dispute is nudged
    dispute_escalation_days: int = 5  # ... and before it is escalated to the alerts channel
    disputes_channel: str = ""  # O2C_DISPUTES_CHANNEL: where dispute cards go ("" = the rep)
    small_balance_write_off: Decimal = Decimal("1.00")  # at or under it (invoice currency)
    fee_waiver_approval: Decimal = Decimal("50.00")  # a fee waived above it needs approval
    approval_tiers: str = ""  # O2C_APPROVAL_TIERS, e.g. credit_note:5000:admin (tiers.py)
    late_fees: str = ""  # O2C_LATE_FEES, e.g. 7:fee=25.00,30:rate=8 (late_fees.py)
    home_currency: str = "USD"  # the currency tier and waiver amounts are stated in

    @property
    def max_discount_bp(self) -> int:
        return int(self.max_discount_pct * 100)

    @property
    def dunning_offsets(self) -> list[int]:
        return sorted(int(v) for v in self.dunning_levels.split(","))


# The largest values an admin may set (`/o2c policy set`): a number of days or hours, and an
# amount or percentage (the largest amount the books hold, in major units).
LONGEST = 3660
LARGEST = Decimal(limits.MAX_AMOUNT_MINOR) / 100

# Where a session carries the policy of the settings (`Session(info={DEFAULTS_KEY: policy})`);
# a session without it (a test's, a script's) has the defaults of `Policy`.
DEFAULTS_KEY = "o2c.policy"
_TYPES = {f.name: f.type for f in fields(Policy)}


def current(session: Session) -> Policy:
    """The policy in force: the session's defaults (the settings) with admins' overrides. An
    override that is not valid (stored by a version that did not check values on set) is
    not in force: the value under it stays (`invalid_overrides` names it, `/o2c policy`
    shows it), instead of every decision that reads the policy failing."""
    defaults = session.info.get(DEFAULTS_KEY) or Policy()
    overrides: dict[str, object] = {}
    for row in session.exec(select(PolicyRow)).all():
        value = stored_value(row.key, row.value)
        if value is not None:
            overrides[row.key] = value
    return replace(defaults, **overrides) if overrides else defaults


def stored_value(key: str, value: str) -> Decimal | int | str | None:
    """An admin's stored override of `key` as the policy's type, or None when it is not in
    force (an unknown key, or a value that is not valid)."""
    if key not in _TYPES or _why_invalid(key, value) is not None:
        return None
    kind = str(_TYPES[key])
    return Decimal(value) if "Decimal" in kind else int(value) if kind == "int" else value


def invalid_overrides(session: Session) -> list[tuple[str, str, str]]:
    """Stored overrides that are not in force because they are not valid: (key, value,
    why), by key."""
    rows = session.exec(select(PolicyRow).order_by(PolicyRow.key)).all()
    return [(row.key, row.value, why) for row in rows if row.key in _TYPES
            and (why := _why_invalid(row.key, row.value)) is not None]


def _why_invalid(key: str, value: str) -> str | None:
    """Why a stored value of `key` cannot be in force, or None. `late_fees` is always taken
    as stored: each dunning run holds back only the levels it cannot read, and audits why
    (`late_fees.invalid`)."""
    from workflows.errors import ValidationFailed

    if key == "late_fees":
        return None
    try:
        checked_value(key, value)
    except ValidationFailed as exc:
        return exc.errors[0].detail if exc.errors else exc.detail
    return None


def business_date(session: Session, moment: datetime) -> date:
    """The date of `moment` in the business time zone: the day an order is dated, an invoice
    issued, a credit note numbered. (People see dates in their own zone; the books keep one.)"""
    return moment.astimezone(business_zone(session)).date()


def business_zone(session: Session) -> tzinfo:
    """The books' time zone (policy `business_timezone`; unknown or empty is UTC)."""
    return zone_or_utc(current(session).business_timezone)


def business_moment(session: Session, moment: datetime | None) -> str | None:
    """A moment for a customer's e-mail (a customer has no Slack zone of their own): ISO 8601
    in the books' time zone, so the `day` filter, which shows the date in the offset a moment
    carries, shows the books' day: a link expiring at 03:00 UTC on 4 Dec works until 3 Dec,
    goods shipped at 23:30 in Los Angeles on 19 Nov left on 19 Nov, for books there."""
    return moment.astimezone(business_zone(session)).isoformat() if moment else None


def business_date_sql(column: sa.ColumnElement, zone: tzinfo, since: datetime,
                      until: datetime) -> sa.ColumnElement:
    """SQL: `business_date` of a UTC timestamp column, in `zone`, for the moments from `since`
    to `until` (earlier ones take the offset `since` has, later ones the offset of `until`).
    The zone's UTC offsets in that span (daylight saving: two changes a year) are worked out
    here, in Python, and the SQL shifts the timestamp by the offset its moment has: the same
    answer on SQLite (no time zones) and PostgreSQL, and the same as `business_date` of each
    row read back. 17:00 in Los Angeles on 15 June (00:00 UTC on the 16th) is 15 June."""
    spans = _offsets(zone, since, until)
    if len(spans) == 1:
        seconds: sa.ColumnElement = sa.literal_column(str(spans[0][1]))
    else:
        from models.base import UTCDateTime

        seconds = sa.case(*[(column < sa.bindparam(None, start, type_=UTCDateTime),
                             sa.literal_column(str(offset)))
                            for (start, _), (_, offset) in zip(spans[1:], spans, strict=False)],
                          else_=sa.literal_column(str(spans[-1][1])))
    return _shifted_date(column, seconds)


def _offsets(zone: tzinfo, since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """[(from when, UTC offset in seconds)] of `zone` from `since` to `until` (UTC moments),
    each change found to the second (a day's steps, then halving)."""
    def offset(moment: datetime) -> int:
        return int(moment.astimezone(zone).utcoffset().total_seconds())

    since, until = since.astimezone(UTC), max(until, since).astimezone(UTC)
    spans = [(since, offset(since))]
    moment = since
    while moment < until:
        step = min(moment + timedelta(days=1), until)
        if offset(step) != spans[-1][1]:
            lo, hi = moment, step  # the change is in (lo, hi]
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == spans[-1][1] else (lo, mid)
            hi = hi.replace(microsecond=0) if offset(hi.replace(microsecond=0)) == offset(hi) \
                else hi
            spans.append((hi, offset(hi)))
        moment = step
    return spans


class _shifted_date(FunctionElement):
    """SQL: the date of a UTC timestamp column moved by an offset in seconds (an expression)."""

    type = sa.Date()
    inherit_cache = True


@compiles(_shifted_date)
def _shifted_date_default(element, compiler, **kw) -> str:
    column, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"date({column}, CAST({seconds} AS TEXT) || ' seconds')"  # SQLite stores UTC, naive


@compiles(_shifted_date, "postgresql")
def _shifted_date_postgresql(element, compiler, **kw) -> str:
    column, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CAST(({column} AT TIME ZONE 'UTC') + ({seconds}) * INTERVAL '1 second' "
            "AS DATE)")


def set_value(session: Session, *, key: str, value: str, actor: str) -> None:
    """Admin override of one policy value, audited. A value that would not parse is refused
    (ValidationFailed naming the key) and nothing is stored: stored, it would break every
    later decision that reads it (a `late_fees` typo, every dunning run)."""
    from workflows import audit
    from workflows.errors import ValidationFailed

    if key not in {f.name for f in fields(Policy)}:
        raise ValidationFailed.of("key", f"unknown policy {key!r}")
    value = checked_value(key, value)
    row = session.get(PolicyRow, key)
    old = row.value if row else str(getattr(current(session), key))
    if row is None:
        row = PolicyRow(key=key, value=value, updated_by=actor)
    row.value, row.updated_by = value, actor
    session.add(row)
    # the state columns hold 32 characters: the values in full (tiers, late fees) in `data`
    audit.record(session, actor=actor, action="policy.changed", entity_type="policy",
                 entity_id=key, from_state=old[:32], to_state=value[:32], old=old, new=value)


def checked_value(key: str, value: str) -> str:
    """`value` for policy `key` as it is stored (numbers normalised), or ValidationFailed
    naming `key` and what is wrong."""
    from workflows.errors import ValidationFailed

    kind = str({f.name: f.type for f in fields(Policy)}[key])
    value = value.strip()
    if "Decimal" in kind:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValidationFailed.of(key, f"{key} must be a number") from None
        if not number.is_finite() or number < 0:
            raise ValidationFailed.of(key, f"{key} must be a number of at least 0")
        if number > LARGEST:  # (and a quantize below would overflow Decimal's precision)
            raise ValidationFailed.of(key, f"{key} must be at most {LARGEST:,}")
        if key == "max_discount_pct" and number > 100:
            raise ValidationFailed.of(key, "max_discount_pct must be at most 100")
        if key.endswith("_pct") and number != number.quantize(Decimal("0.01")):
            # percentages are used as basis points: 12.345 % would break every later check
            raise ValidationFailed.of(key, f"{key} takes at most 2 decimals")
        if key == "cashapp_confidence" and number > 1:
            raise ValidationFailed.of(key, "cashapp_confidence is between 0 and 1")
        return str(number)
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise ValidationFailed.of(key, f"{key} must be a whole number") from None
        if number < (1 if key == "approval_reminder_hours" else 0):
            raise ValidationFailed.of(key, f"{key} is too small")
        if number > LONGEST:  # days or hours: a date this far off overflows
            raise ValidationFailed.of(key, f"{key} must be at most {LONGEST}")
        return str(number)
    try:
        return _checked_text(key, value)
    except ValueError as exc:  # what the parsers say, under the key's name
        raise ValidationFailed.of(key, f"{key}: {exc}") from None


def _checked_text(key: str, value: str) -> str:
    from models import money
    from workflows.workcalendar import Holidays, parse_hours, zone

    if key == "working_hours":
        parse_hours(value)
    elif key == "business_timezone":
        zone(value)
    elif key == "holidays":
        value = Holidays.of(value).text  # as it is read: "de-by" is DE-BY
    elif key == "dunning_levels":
        try:
            offsets = [int(v) for v in value.split(",")]
        except ValueError:
            raise ValueError("use day offsets such as -3,1,7,14,30") from None
        if any(abs(offset) > LONGEST for offset in offsets):
            raise ValueError(f"day offsets are at most {LONGEST} days from the due date")
    elif key in ("approval_tiers", "late_fees"):
        from workflows.late_fees import parse_late_fees
        from workflows.tiers import parse_tiers

        (parse_tiers if key == "approval_tiers" else parse_late_fees)(value)
    elif key == "home_currency":
        try:
            value = money.check_currency(value)
        except money.MoneyError as exc:
            raise ValueError(str(exc)) from None
    elif key == "disputes_channel" and value.lower() in ("none", "off", "-"):
        value = ""  # back to the customer's sales rep
    return value
