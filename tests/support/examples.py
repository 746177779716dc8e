"""How many examples a property-based test tries: its own number, or a share of it.

The SQLite run tries every example a test asks for. The PostgreSQL run (there for what SQLite
hides: type limits, locking, plans) tries half of them, and CI's extra runs on other dates
(`make test WITH_DATES=1`: a year ahead, a leap day; there to prove that nothing depends on
today's date) a quarter: they set `O2C_TEST_EXAMPLES_PCT` (Makefile), each property test then
tries that share of its examples (at least 5) — derandomised tests try the same first ones.
Above 100 it tries more: `O2C_TEST_EXAMPLES_PCT=1000 pytest tests/workflows/test_cash_invariants.py`
is a soak run by hand, ten times the examples, looking for what CI's share has not met yet."""

from __future__ import annotations

import os

PERCENT = int(os.environ.get("O2C_TEST_EXAMPLES_PCT", "100"))


def examples(wanted: int) -> int:
    if PERCENT == 100:
        return wanted
    return max(5, wanted * PERCENT // 100)
