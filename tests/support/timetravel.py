"""The suite's clock, and the clock of every process it starts (SPEC §5.10).

With `O2C_TEST_TODAY=YYYY-MM-DD`, `tests/conftest.py` travels the whole test session to that
day (at the real time of day, time flowing), so the suite proves it passes whatever the real
date is. Tests that need a particular moment travel further with `time_machine` themselves.

Child processes (`o2c serve`, `o2c run`, `o2c demo` ...) get `child_env(env)`: it puts
`tests/support/child_clock` first on PYTHONPATH, whose `sitecustomize` applies the test
process's current shift from the real clock before any product code runs. Only the tests read
these variables, never the product.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import time_machine

ROOT = Path(__file__).resolve().parents[2]
CHILD_CLOCK = Path(__file__).resolve().parent / "child_clock"
TODAY_VAR = "O2C_TEST_TODAY"
SHIFT_VAR = "O2C_TEST_CLOCK_SHIFT"


def session_destination(value: str | None = None) -> datetime | None:
    """Where `O2C_TEST_TODAY` sends the suite: that day at the real UTC time of day, or a
    moment of it in UTC (`2026-12-31T23:58`: the suite crosses midnight as it runs)."""
    value = value if value is not None else os.environ.get(TODAY_VAR)
    if not value:
        return None
    try:
        if "T" not in value:
            real = datetime.fromtimestamp(real_time(), UTC)
            return datetime.combine(date.fromisoformat(value), real.timetz())
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{TODAY_VAR} must be YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), "
                         f"not {value!r}") from None
    if moment.tzinfo is not None and moment.utcoffset():
        raise ValueError(f"{TODAY_VAR} is a UTC moment, not {value!r}")
    return moment.replace(tzinfo=UTC)


def real_time() -> float:
    """The real clock's POSIX time, whether or not this process travels."""
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.time.time()
    return time.time()


def shift_seconds() -> float:
    """This process's clock minus the real clock (0 when not travelling)."""
    if not time_machine.escape_hatch.is_travelling():
        return 0.0
    return datetime.now(UTC).timestamp() - time_machine.escape_hatch.time.time()


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a Python child that must share this clock."""
    env = dict(os.environ if env is None else env)
    env.pop(TODAY_VAR, None)
    shift = shift_seconds()
    if shift:
        env[SHIFT_VAR] = repr(shift)
    else:
        env.pop(SHIFT_VAR, None)
    paths = [str(CHILD_CLOCK), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths += [p for p in env["PYTHONPATH"].split(os.pathsep) if p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def frozen_at(moment: datetime, *, tick: bool = False):
    """An autouse fixture for a test module whose tests all happen at `moment`:
    `frozen_time = frozen_at(datetime(2026, 3, 2, 9, tzinfo=UTC))` at module level. The
    product's clock (`bot.clock.Clock`), the recording clock and every server thread then say
    `moment` (time stands still unless `tick`)."""
    import pytest

    @pytest.fixture(autouse=True, name="frozen_time")
    def _frozen():
        with time_machine.travel(moment, tick=tick):
            yield moment

    return _frozen


def run_at(moment: datetime, func, *args, **kwargs):
    """`func(*args, **kwargs)` with the clock stopped at `moment` (a job "run at 09:00")."""
    with time_machine.travel(moment, tick=False):
        return func(*args, **kwargs)
