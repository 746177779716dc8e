"""SPEC §5.10, one clock: nothing but `bot/clock.py` reads the wall clock for a business date.

`make lint` (ruff's banned-api rule, configured in pyproject.toml) refuses `datetime.now`,
`date.today`, `time.time` ... everywhere except the few modules listed there. This test keeps
that configuration honest, and checks what ruff cannot: the business layers (workflows,
handlers, api, blocks) never use the recording clock `models.base.utcnow` either — they take
`now`/`as_of` from their caller, who asked `deps.clock` — nor leave a business moment to a
model's recording-clock default (`BUSINESS_MOMENTS`).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSINESS_LAYERS = ("workflows", "handlers", "api", "blocks")
WALL_CLOCK = {"datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
              "datetime.date.today", "time.time", "time.time_ns"}
# Who may read the wall clock, and why (see the comment in pyproject.toml).
ALLOWED = {"bot/clock.py", "models/base.py",
           "sandbox/{driver,methods,elements,webapi,interactions,workspace}.py",
           "tests/support/{timetravel.py,child_clock/sitecustomize.py}", "bench/**"}


def _ruff() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]


def test_ruff_bans_the_wall_clock_everywhere_but_the_clock_modules() -> None:
    lint = _ruff()
    assert "TID251" in lint["select"]
    assert set(lint["flake8-tidy-imports"]["banned-api"]) >= WALL_CLOCK
    exempt = {pattern for pattern, rules in lint["per-file-ignores"].items()
              if "TID251" in rules}
    assert exempt == ALLOWED


def _uses_recording_clock(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "models.base" and any(
                alias.name == "utcnow" for alias in node.names):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports utcnow")
        elif isinstance(node, ast.Attribute) and node.attr == "utcnow":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls .utcnow")
    return found


def test_business_layers_take_the_time_from_their_caller() -> None:
    offenders = [hit for layer in BUSINESS_LAYERS
                 for path in sorted((ROOT / layer).rglob("*.py"))
                 for hit in _uses_recording_clock(path)]
    assert offenders == []


# Columns that date a business event but default to the recording clock (`ts_field(
# default_now=True)`): a business layer that builds the row without them dates the event by the
# real time, which `utcnow` above cannot see (the model calls it). Row timestamps that only
# record when a row was written (`created_at`, ...) are not listed: they may default.
BUSINESS_MOMENTS = {"CollectionActivity": "at"}  # the worklist's last contact, digest rows
# Builders known to leave the moment to the default, to fix (then remove from here).
KNOWN_UNDATED: set[str] = set()


def _undated(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        field = BUSINESS_MOMENTS.get(name)
        if field and not any(k.arg in (field, None) for k in node.keywords):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}() without {field}=")
    return found


def test_business_events_are_dated_by_the_caller_s_clock_not_the_row_default() -> None:
    offenders = [hit for layer in BUSINESS_LAYERS
                 for path in sorted((ROOT / layer).rglob("*.py"))
                 for hit in _undated(path)]
    assert [hit for hit in offenders if hit.split(":")[0] not in KNOWN_UNDATED] == []


def test_the_suite_travels_to_a_day_or_to_a_utc_moment_of_it() -> None:
    from datetime import UTC, datetime

    import pytest

    from tests.support.timetravel import session_destination

    assert session_destination("") is None
    day = session_destination("2028-02-29")
    assert (day.date().isoformat(), day.tzinfo) == ("2028-02-29", UTC)
    assert session_destination("2026-12-31T23:58") == datetime(2026, 12, 31, 23, 58, tzinfo=UTC)
    assert session_destination("2027-03-14T06:59:30+00:00") == datetime(2027, 3, 14, 6, 59, 30,
                                                                        tzinfo=UTC)
    for wrong in ("2026-02-30", "tomorrow", "2026-12-31T25:00", "2026-12-31T23:00+01:00"):
        with pytest.raises(ValueError, match="O2C_TEST_TODAY"):
            session_destination(wrong)
