"""Working time: how long something has waited in *business* hours (SPEC §3 "4 working hours").

The policy gives the working hours of a day (`working_hours`, e.g. "09:00-17:00") in the
business time zone (`business_timezone`); working days are Monday to Friday, but the public
holidays and company closures of `holidays` (`Holidays`, e.g. "US", "DE-BY,2026-12-24"). A
request made on Friday at 16:00 has waited one working hour by Monday 09:00, not 65 hours (and
by Tuesday 09:00 when that Monday is a holiday). Wall-clock time in the business zone is what
counts, so a daylight-saving switch (at night) changes nothing.

Public holidays come from the `holidays` library (country and subdivision codes of ISO 3166,
as it knows them); the dates it gives are the days the business is closed, whatever the
weekday.
"""

from __future__ import annotations

import re
from collections.abc import Container
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.errors import ValidationFailed

HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(?:([01]\d|2[0-3]):([0-5]\d)|24:00)$")
WORKING_DAYS = frozenset(range(5))  # Monday (0) .. Friday (4)


class Holidays(Container):
    """The days the business is closed besides weekends: a country's (and subdivision's)
    public holidays and dates of its own. `Holidays.of("DE-BY,2026-12-24")`; an empty text is
    no holiday at all (the default)."""

    def __init__(self, country: object | None = None, dates: frozenset[date] = frozenset(),
                 text: str = "") -> None:
        self.country, self.dates, self.text = country, dates, text

    @classmethod
    def of(cls, text: str | None) -> Holidays:
        """Parse "US", "DE-BY", "GB-ENG,2026-12-24,2026-12-31" or "2026-12-24": at most one
        country (optionally with a subdivision) and any ISO dates, comma-separated.
        ValidationFailed (field `holidays`) naming what is wrong."""
        import holidays as calendars

        country, dates = None, set()
        for item in (part.strip() for part in (text or "").split(",")):
            if not item:
                continue
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
                try:
                    dates.add(date.fromisoformat(item))
                except ValueError:
                    raise ValidationFailed.of("holidays", f"{item} is not a date") from None
                continue
            if country is not None:
                raise ValidationFailed.of("holidays", "name one country (with its subdivision, "
                                          "e.g. DE-BY) and any dates of your own")
            code, _, subdivision = item.upper().partition("-")
            known = calendars.list_supported_countries()
            if code not in known:
                raise ValidationFailed.of("holidays", f"unknown country {code!r}: use an ISO "
                                          "3166 code such as US, GB or DE-BY")
            if subdivision and subdivision not in known[code]:
                raise ValidationFailed.of("holidays", f"{code} has no subdivision "
                                          f"{subdivision!r}; one of "
                                          f"{', '.join(known[code][:40])}")
            country = calendars.country_holidays(code, subdiv=subdivision or None)
        return cls(country, frozenset(dates), ",".join(
            part.strip().upper() for part in (text or "").split(",") if part.strip()))

    def __contains__(self, day: object) -> bool:
        return day in self.dates or (self.country is not None and day in self.country)

    def __bool__(self) -> bool:
        return self.country is not None or bool(self.dates)


NO_HOLIDAYS = Holidays()


def is_working_day(day: date, holidays: Container[date] = NO_HOLIDAYS) -> bool:
    """Monday to Friday, and not a holiday."""
    return day.weekday() in WORKING_DAYS and day not in holidays


def parse_hours(text: str) -> tuple[time, time]:
    """"09:00-17:00" -> (09:00, 17:00). "24:00" (only as the end) means the end of the day and
    comes back as `time.max` ("00:00-24:00" is the whole day; see `within_hours`)."""
    match = HOURS.match((text or "").replace(" ", ""))
    if not match:
        raise ValidationFailed.of("working_hours", "use HH:MM-HH:MM, e.g. 09:00-17:00")
    start = time(int(match[1]), int(match[2]))
    end = time.max if match[3] is None else time(int(match[3]), int(match[4]))
    if end <= start:
        raise ValidationFailed.of("working_hours", "the day must end after it starts")
    return start, end


def within_hours(moment: time, hours: tuple[time, time]) -> bool:
    """Is the wall-clock `moment` inside `parse_hours`' (opens, closes)? Closing time excluded;
    a day that ends at 24:00 includes its last microsecond."""
    opens, closes = hours
    return opens <= moment and (moment < closes or closes == time.max)


def zone_or_utc(name: str | None) -> tzinfo:
    """A person's time zone as Slack sent it; unknown, malformed or empty means UTC (Slack may
    send a zone this machine's tz database does not know: never an error for the user)."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ValueError, LookupError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return UTC


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValidationFailed.of("business_timezone", f"unknown time zone {name!r}") from None


def working_time_between(start: datetime, end: datetime, *, hours: str, tz: str,
                         holidays: Container[date] = NO_HOLIDAYS) -> timedelta:
    """Working time elapsed from `start` to `end` (aware datetimes); zero if end <= start."""
    if end <= start:
        return timedelta(0)
    opens, closes = parse_hours(hours)
    where = zone(tz)
    local_start, local_end = start.astimezone(where), end.astimezone(where)
    total = timedelta(0)
    day = local_start.date()
    while day <= local_end.date():
        if is_working_day(day, holidays):
            day_open = datetime.combine(day, opens, tzinfo=where)
            day_close = (datetime.combine(day + timedelta(days=1), time.min, tzinfo=where)
                         if closes == time.max else datetime.combine(day, closes, tzinfo=where))
            overlap = min(day_close, local_end) - max(day_open, local_start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def end_of_working_day(day: date, *, hours: str, tz: str) -> datetime:
    """The close of business on `day` in the business zone, as a UTC datetime."""
    _, closes = parse_hours(hours)
    return datetime.combine(day, closes, tzinfo=zone(tz)).astimezone(UTC)


def evaluation_moment(as_of: date | datetime, *, now: datetime, hours: str, tz: str
                      ) -> datetime:
    """When a job run "as of" something is evaluated.

    * a datetime: that moment (naive means UTC);
    * today's date (what the scheduler passes): now;
    * any other date (`o2c run ... --as-of 2026-03-02`): that day's close of business in the
      business zone, so a re-run for a past or future day is deterministic.
    """
    if isinstance(as_of, datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    if as_of == now.astimezone(zone(tz)).date() or as_of == now.date():
        return now
    return end_of_working_day(as_of, hours=hours, tz=tz)


def first_working_day(day: date, holidays: Container[date] = NO_HOLIDAYS) -> date:
    """The first working day (Monday to Friday, not a holiday) of `day`'s month."""
    first = day.replace(day=1)
    while not is_working_day(first, holidays):
        first += timedelta(days=1)
    return first


def working_days_between(start: date, end: date,
                         holidays: Container[date] = NO_HOLIDAYS) -> int:
    """Working days (Monday to Friday, not holidays) after `start` up to and including
    `end`: a dispute opened on a Friday has waited one working day on Monday, two on
    Tuesday (one when Monday is a holiday)."""
    if end <= start:
        return 0
    whole_weeks, rest = divmod((end - start).days, 7)
    days = whole_weeks * 5
    for offset in range(1, rest + 1):
        if (start + timedelta(days=offset)).weekday() in WORKING_DAYS:
            days += 1
    if holidays:  # the weekdays of the span that are holidays
        days -= sum(1 for offset in range(1, (end - start).days + 1)
                    if (day := start + timedelta(days=offset)).weekday() in WORKING_DAYS
                    and day in holidays)
    return days
