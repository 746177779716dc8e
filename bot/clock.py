"""The one clock (SPEC §5.10): every business "now" and "today" comes from here.

`Clock` is built once per process from the settings and carried on the dependencies
(`deps.clock`); listeners, API routes and jobs ask it for the moment, and pass that moment
(`now`) or day (`as_of`) down to the workflows, which never read the wall clock themselves.

* `now()` — an aware datetime in UTC.
* `today(tz)` — the date in a person's Slack time zone (an unknown or empty zone is UTC, never
  an error: Slack may send a zone this machine's tz database does not know).
* `business_today(tz=None)` — the date in the business time zone (the setting, or the policy
  value an admin set, when given), which jobs use unless SPEC says "the collector's".

The sandbox's Time travel moves the clock (`travel_to`), so every job and every screen runs as
of the chosen moment. Nothing else in the product reads `datetime.now`, `date.today` or
`time.time` for a business date (ruff's banned-api rule, `pyproject.toml`, enforces it; row
timestamps that only record when a row was written use `models.base.utcnow`). Monotonic timers
for latencies and timeouts are fine anywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from workflows.workcalendar import zone_or_utc


class Clock:
    def __init__(self, business_timezone: str | None = "UTC") -> None:
        self.business_timezone = business_timezone or "UTC"
        self._offset = timedelta(0)  # moved by the sandbox's Time travel only

    def now(self) -> datetime:
        """This moment, aware, in UTC."""
        return datetime.now(UTC) + self._offset

    def now_in(self, tz: str | tzinfo | None) -> datetime:
        """This moment in the time zone `tz` (a name or a tzinfo; unknown names are UTC)."""
        return self.now().astimezone(tz if isinstance(tz, tzinfo) else zone_or_utc(tz))

    def today(self, tz: str | tzinfo | None) -> date:
        """Today in the time zone `tz`: a person's Slack zone, a collector's, ..."""
        return self.now_in(tz).date()

    def business_today(self, tz: str | None = None) -> date:
        """Today in the business time zone (`tz` when given, e.g. the policy's value)."""
        return self.today(tz or self.business_timezone)

    # -- the sandbox's Time travel ---------------------------------------------------------------
    @property
    def travelled(self) -> bool:
        return self._offset != timedelta(0)

    def travel_to(self, moment: datetime | None) -> None:
        """Run as if it were `moment` from now on (time keeps flowing); None comes back."""
        if moment is None:
            self._offset = timedelta(0)
            return
        if moment.tzinfo is None:
            raise ValueError("travel_to needs an aware datetime")
        self._offset = moment - datetime.now(UTC)
