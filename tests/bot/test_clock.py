"""bot.clock.Clock: the one clock — now in UTC, today in a person's (or the business) time zone
whatever Slack sends as the zone, and the sandbox's Time travel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot.clock import Clock

# 23:30 UTC on Sunday 22 November 2026: already Monday in Berlin (and Kiritimati), still Sunday
# in New York
LATE_SUNDAY = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)


@pytest.fixture
def late_sunday():
    with time_machine.travel(LATE_SUNDAY, tick=False):
        yield LATE_SUNDAY


def test_now_is_aware_utc(late_sunday: datetime) -> None:
    now = Clock().now()
    assert now == late_sunday and now.tzinfo == UTC


@pytest.mark.parametrize(("tz", "today"), [
    ("Europe/Berlin", date(2026, 11, 23)),
    ("Pacific/Kiritimati", date(2026, 11, 23)),  # UTC+14
    ("America/New_York", date(2026, 11, 22)),
    (None, date(2026, 11, 22)),
    ("", date(2026, 11, 22)),
    ("Nowhere/Atlantis", date(2026, 11, 22)),  # an unknown zone counts as UTC
    ("America", date(2026, 11, 22)),
    ("../../etc/passwd", date(2026, 11, 22)),  # so does a malformed one
    ("Europe/Berlin\x00", date(2026, 11, 22)),
    ("x" * 300, date(2026, 11, 22)),
])
def test_today_is_the_persons_date_and_survives_a_bad_slack_time_zone(
        late_sunday: datetime, tz: str | None, today: date) -> None:
    assert Clock().today(tz) == today


def test_now_in_a_zone_is_the_same_moment_there(late_sunday: datetime) -> None:
    there = Clock().now_in("Pacific/Kiritimati")
    assert there == late_sunday and there.tzinfo == ZoneInfo("Pacific/Kiritimati")


def test_business_today_uses_the_setting_unless_given_the_policy_zone(
        late_sunday: datetime) -> None:
    clock = Clock("Europe/Berlin")
    assert clock.business_today() == date(2026, 11, 23)
    assert clock.business_today("America/New_York") == date(2026, 11, 22)
    assert Clock(None).business_today() == date(2026, 11, 22)


def test_time_travel_moves_the_clock_and_time_keeps_flowing() -> None:
    with time_machine.travel(LATE_SUNDAY, tick=False) as traveller:
        clock = Clock()
        clock.travel_to(datetime(2027, 3, 1, 9, 0, tzinfo=ZoneInfo("Europe/London")))
        assert clock.travelled and clock.now() == datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
        traveller.shift(timedelta(minutes=5))
        assert clock.now() == datetime(2027, 3, 1, 9, 5, tzinfo=UTC)
        assert clock.today("America/Los_Angeles") == date(2027, 3, 1)
        clock.travel_to(None)
        assert not clock.travelled and clock.now() == LATE_SUNDAY + timedelta(minutes=5)
        with pytest.raises(ValueError, match="aware"):
            clock.travel_to(datetime(2027, 3, 1, 9, 0))
