"""The collections handlers' own helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from handlers.commands.collections import local_today

# 23:30 UTC on Sunday 22 November 2026: already Monday in Berlin, still Sunday in New York
LATE_SUNDAY = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(("tz", "today"), [
    ("Europe/Berlin", date(2026, 11, 23)),
    ("America/New_York", date(2026, 11, 22)),
    (None, date(2026, 11, 22)),
    ("", date(2026, 11, 22)),
    ("Nowhere/Atlantis", date(2026, 11, 22)),  # an unknown zone counts as UTC
    ("../../etc/passwd", date(2026, 11, 22)),  # so does a malformed one
])
def test_local_today_is_the_users_date_and_survives_a_bad_slack_time_zone(
        tz: str | None, today: date) -> None:
    assert local_today(tz, now=LATE_SUNDAY) == today
