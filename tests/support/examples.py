"""How many examples a property-based test tries: its own number, or a share of it.

The main runs (SQLite, PostgreSQL) try every example a test asks for. CI's extra runs on other
dates (`make test WITH_DATES=1`: a year ahead, a leap day) are there to prove that nothing
depends on today's date; they set `O2C_TEST_EXAMPLES_PCT` (Makefile) so each property test
tries that share of its examples (at least 5) — derandomised tests try the same first ones."""

from __future__ import annotations

import os

PERCENT = int(os.environ.get("O2C_TEST_EXAMPLES_PCT", "100"))


def examples(wanted: int) -> int:
    if PERCENT >= 100:
        return wanted
    return max(5, wanted * PERCENT // 100)
