"""Working hours: only Monday-Friday business hours in the business time zone count."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from workflows.errors import ValidationFailed
from workflows.workcalendar import (
    Holidays,
    end_of_working_day,
    evaluation_moment,
    first_working_day,
    parse_hours,
    within_hours,
    working_days_between,
    working_time_between,
)

NINE_TO_FIVE = {"hours": "09:00-17:00", "tz": "UTC"}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)  # 2 March 2026 is a Monday


@pytest.mark.parametrize(("start", "end", "hours"), [
    (at(2, 9), at(2, 13), 4),  # within one day
    (at(2, 7), at(2, 10), 1),  # before opening does not count
    (at(2, 16), at(3, 10), 2),  # overnight: 16-17 + 9-10
    (at(6, 15), at(9, 11), 4),  # Friday 15:00 -> Monday 11:00, weekend skipped
    (at(7, 10), at(8, 18), 0),  # all weekend
    (at(2, 18), at(2, 20), 0),  # evening
    (at(3, 12), at(2, 12), 0),  # end before start
])
def test_working_time_between(start: datetime, end: datetime, hours: int) -> None:
    assert working_time_between(start, end, **NINE_TO_FIVE) == timedelta(hours=hours)


def test_business_timezone_decides_the_day() -> None:
    # 13:00-22:00 UTC on a March Monday is 08:00-17:00 in New York (EST): 8 working hours
    assert working_time_between(at(2, 13), at(2, 22), hours="09:00-17:00",
                                tz="America/New_York") == timedelta(hours=8)


def test_bad_policy_values_are_refused() -> None:
    for text in ("9-5", "17:00-09:00", "25:00-26:00"):
        with pytest.raises(ValidationFailed):
            parse_hours(text)
    with pytest.raises(ValidationFailed):
        working_time_between(at(2, 9), at(2, 10), hours="09:00-17:00", tz="Mars/Olympus")


def test_what_an_as_of_run_evaluates() -> None:
    now = at(4, 10, 30)
    # the scheduler passes today's date: now
    assert evaluation_moment(date(2026, 3, 4), now=now, **NINE_TO_FIVE) == now
    # another day: that day's close of business, in the business zone
    assert evaluation_moment(date(2026, 3, 9), now=now, **NINE_TO_FIVE) == at(9, 17)
    assert end_of_working_day(date(2026, 3, 9), hours="09:00-17:00",
                              tz="Europe/Berlin") == at(9, 16)
    # a datetime: exactly then (naive = UTC)
    assert evaluation_moment(datetime(2026, 3, 5, 12, 0), now=now, **NINE_TO_FIVE) == at(5, 12)


def test_a_day_may_end_at_midnight_and_only_at_24_00() -> None:
    # given working hours that end at midnight
    opens, closes = parse_hours("00:00-24:00")
    # then every moment of the day is inside, the last microsecond too
    assert within_hours(time(0, 0), (opens, closes))
    assert within_hours(time(23, 59, 59, 999_999), (opens, closes))
    assert not within_hours(time(17, 0), parse_hours("09:00-17:00"))
    # and a full working day counts 24 hours
    assert working_time_between(at(2, 0), at(3, 0), hours="00:00-24:00",
                                tz="UTC") == timedelta(hours=24)
    assert working_time_between(at(2, 20), at(3, 2), hours="18:00-24:00",
                                tz="UTC") == timedelta(hours=4)
    # 24 is no hour to start at, and 24:30 is no time
    for text in ("24:00-24:00", "09:00-24:30", "09:00-24:01"):
        with pytest.raises(ValidationFailed):
            parse_hours(text)


# -- holidays -------------------------------------------------------------------------------------
def test_a_holiday_is_no_working_time() -> None:
    # given Good Friday 2026 (3 April) in England, and the week around it
    england = Holidays.of("GB-ENG")
    thursday = datetime(2026, 4, 2, 16, tzinfo=UTC)
    tuesday = datetime(2026, 4, 7, 10, tzinfo=UTC)
    # then Thursday 16-17 and Tuesday 9-10 count: Good Friday and Easter Monday do not (18
    # hours without holidays)
    assert working_time_between(thursday, tuesday, **NINE_TO_FIVE,
                                holidays=england) == timedelta(hours=2)
    assert working_time_between(thursday, tuesday, **NINE_TO_FIVE) == timedelta(hours=18)


def test_working_days_skip_public_holidays_and_the_companys_own_days() -> None:
    # given US holidays and the company closed on Christmas Eve 2026 (a Thursday)
    closed = Holidays.of("US,2026-12-24")
    # then from Wednesday 23 to Monday 28 December only the Monday is a working day
    assert working_days_between(date(2026, 12, 23), date(2026, 12, 28), closed) == 1
    assert working_days_between(date(2026, 12, 23), date(2026, 12, 28)) == 3
    # and a holiday on a weekend is not taken twice: 4 July 2027 is a Sunday, observed on
    # Monday 5 July (one working day fewer that week, not two)
    assert working_days_between(date(2027, 7, 2), date(2027, 7, 9), closed) == 4
    # New Year's Day 2027 is a Friday: January's first working day is Monday the 4th
    assert first_working_day(date(2027, 1, 20), closed) == date(2027, 1, 4)


@pytest.mark.parametrize(("text", "read"), [
    ("", ""), ("us", "US"), (" de-by , 2026-12-24 ", "DE-BY,2026-12-24"),
    ("2026-12-24,2026-12-31", "2026-12-24,2026-12-31")])
def test_holidays_are_read_as_written(text, read) -> None:
    assert Holidays.of(text).text == read
    assert bool(Holidays.of(text)) is bool(read)


@pytest.mark.parametrize(("text", "why"), [
    ("XX", "unknown country 'XX'"), ("DE-ZZ", "DE has no subdivision 'ZZ'"),
    ("US,GB", "name one country"), ("2026-02-30", "2026-02-30 is not a date")])
def test_holidays_that_cannot_be_read_are_refused_naming_why(text, why) -> None:
    with pytest.raises(ValidationFailed) as refused:
        Holidays.of(text)
    assert refused.value.errors[0].field == "holidays"
    assert why in refused.value.errors[0].detail
