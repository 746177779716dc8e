"""The bounds of everything the bot stores, in one place (README, "Bounds").

Every amount, quantity, date and text that comes in — REST API, CSV import, Slack modals — is
checked against these before any arithmetic or database write, and refused with an error naming
the field (a 422 in the API, "row N, column X" in a CSV report, an inline error in a modal):
`workflows.validation` turns the `OutOfBounds` raised here into that error, and the input
models every surface builds (`workflows.inputs`) use the same constants and checks.

* **Amounts**: 0 to `MAX_AMOUNT_MINOR` minor units, i.e. 15 digits: USD/EUR
  9,999,999,999,999.99, JPY 999,999,999,999,999, KWD 999,999,999,999.999. Columns are 64-bit
  (9.2 x 10^18), so with this bound a sum of 9,000 amounts at the bound (aging, exposure)
  still fits, and so does any amount derived from bounded ones: a line's quantity x unit price
  and an order's subtotal and total are checked against the same bound (422 naming the line),
  so every amount the bot stores can be paid, credited or re-sent through the API.
* **Quantities**: 1 to `MAX_QUANTITY` per line (orders, shipments, invoice lines); stock on
  hand 0 to `MAX_QUANTITY`.
* **Dates and times**: years `MIN_YEAR` to `MAX_YEAR`. Far-off dates are typos, and at the
  extremes (0001-01-01T00:00+14:00 in UTC, 9999-12-31 plus 30 days' terms) date arithmetic
  overflows.
* **Service periods**: at most `MAX_SERVICE_DAYS` days (a revenue schedule has a row per
  month of it).
* **Text**: no NUL character (PostgreSQL cannot store one in text or JSON).
"""

from __future__ import annotations

from datetime import date, datetime

MAX_AMOUNT_DIGITS = 15
MAX_AMOUNT_MINOR = 10**MAX_AMOUNT_DIGITS - 1
MAX_QUANTITY = 1_000_000_000
MIN_YEAR = 1900
MAX_YEAR = 2999
MAX_RECORD_ID = 2**31 - 1  # record ids are 32-bit serial columns (PostgreSQL INTEGER)
MAX_SERVICE_DAYS = 3660  # a service or subscription period: about ten years


def record_id(text: str) -> int | None:
    """`text` as a record id (ASCII digits, 1 to MAX_RECORD_ID), or None: "²" is a digit to
    `str.isdigit` but not to `int`, and a larger number fails in PostgreSQL, not here."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_RECORD_ID else None


class OutOfBounds(ValueError):
    """A value outside the bounds above; the message says what is allowed."""


def check_amount_minor(minor: int) -> int:
    if not -MAX_AMOUNT_MINOR <= minor <= MAX_AMOUNT_MINOR:
        raise OutOfBounds(f"must be at most {MAX_AMOUNT_DIGITS} digits in minor units "
                          f"(e.g. {MAX_AMOUNT_MINOR // 100:,}.99 in a currency with cents)")
    return minor


def check_quantity(quantity: int, *, allow_zero: bool = False) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise OutOfBounds("must be a whole number")
    low = 0 if allow_zero else 1
    if not low <= quantity <= MAX_QUANTITY:
        raise OutOfBounds(f"must be a whole number from {low} to {MAX_QUANTITY:,}")
    return quantity


def check_year(value: date | datetime) -> date | datetime:
    """A date or datetime within the supported years (checked on the value as given, before
    any conversion to UTC can overflow)."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise OutOfBounds(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


def check_text(text: str) -> str:
    if "\x00" in text:
        raise OutOfBounds("must not contain a NUL character")
    return text
