"""Hypothesis strategies for amounts and quantities up to the bounds of `models.limits`.

Plain `st.integers(1, 300_000)` never reaches the amounts that broke production (a payment of
USD 21,474,836.48 overflowed a 32-bit column; an IDR credit limit of 1,000,000,000.00 did too).
These lean on the edges: the smallest amounts, 32-bit boundaries, and the bound itself, so
property tests exercise them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from hypothesis import strategies as st

from models import limits, money

INT32_MAX = 2**31 - 1
# Currencies with 0, 2 and 3 decimals, and IDR (big numbers for small values).
CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "IDR"])
EDGES = (1, 2, 99, 100, INT32_MAX - 1, INT32_MAX, INT32_MAX + 1, 2**32,
         limits.MAX_AMOUNT_MINOR // 2, limits.MAX_AMOUNT_MINOR - 1, limits.MAX_AMOUNT_MINOR)


def minor_amounts(min_value: int = 1, max_value: int = limits.MAX_AMOUNT_MINOR
                  ) -> st.SearchStrategy[int]:
    """Minor units within [min_value, max_value], often at an edge."""
    edges = [e for e in EDGES if min_value <= e <= max_value] + [min_value, max_value]
    everyday = min(max_value, max(min_value, 10**7))
    return st.one_of(st.sampled_from(sorted(set(edges))),
                     st.integers(min_value, max_value),
                     st.integers(min_value, everyday))  # everyday amounts


def beyond_bound() -> st.SearchStrategy[int]:
    """Minor units just past the bound, up to past 64 bits."""
    return st.one_of(st.sampled_from([limits.MAX_AMOUNT_MINOR + 1, 2**63 - 1, 2**63, 2**64]),
                     st.integers(limits.MAX_AMOUNT_MINOR + 1, 10**25))


def amount_text(minor: int, currency: str) -> str:
    """The API's decimal string for minor units (never via float)."""
    return money.to_str(minor, currency)


@st.composite
def amounts(draw: st.DrawFn, currency: str | None = None, min_value: int = 1,
            max_value: int = limits.MAX_AMOUNT_MINOR) -> tuple[str, int, str]:
    """(decimal string, minor units, currency) for an amount within the bound."""
    code = currency or draw(CURRENCIES)
    minor = draw(minor_amounts(min_value, max_value))
    return amount_text(minor, code), minor, code


def quantities(max_value: int = limits.MAX_QUANTITY) -> st.SearchStrategy[int]:
    edges = [q for q in (1, 2, INT32_MAX, limits.MAX_QUANTITY) if q <= max_value]
    return st.one_of(st.sampled_from(edges), st.integers(1, max_value), st.integers(1, 1000))


# Text that must never be taken for an amount: other scripts' digits, exponents, signs,
# separators, specials.
NOT_AMOUNTS = st.one_of(
    st.sampled_from(["１２３.45", "١٢٣", "1e5", "1E+2", "-5.00", "+5.00", "NaN", "Infinity",
                     "1,000.00", "1 000", "1_000", "0x10", ".5", "5.", "", " "]),
    st.text(alphabet=st.characters(categories=["Nd"]).filter(lambda c: not c.isascii()),
            min_size=1, max_size=6),
)
