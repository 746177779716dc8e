"""handlers.common.user_now / user_today: the user's clock from a Slack time zone, which may be
missing or unknown to our tz database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handlers.common import user_now, user_today


def test_a_known_zone_gives_the_time_there() -> None:
    now = user_now("Pacific/Kiritimati")  # UTC+14: a different date half the day
    assert now.tzinfo == ZoneInfo("Pacific/Kiritimati")
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert user_today("Pacific/Kiritimati") == datetime.now(ZoneInfo("Pacific/Kiritimati")).date()


@pytest.mark.parametrize("tz", [None, "", "Mars/Olympus_Mons", "America", "../../etc/passwd",
                                "Europe/Berlin\x00", "x" * 300])
def test_a_missing_or_unknown_zone_falls_back_to_utc(tz: str | None) -> None:
    assert user_now(tz).utcoffset() == timedelta(0)
    today = user_today(tz)
    assert type(today) is date and today == datetime.now(UTC).date()
