"""Money: integer minor units plus an ISO-4217 code in storage, `Decimal` in arithmetic.

Never a float: binary floating point cannot represent 0.10, and an accounting system that
rounds differently on each run cannot be reconciled. Every helper here takes and returns either
`int` minor units or `Decimal`; `D()` builds a Decimal from a string or int and refuses floats.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from models import limits

# ISO 4217 minor-unit exponents that differ from 2. Unknown but well-formed codes default to 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}
# Currencies the bot accepts. A closed list catches typos like "UDS" at the edge.
CURRENCIES = frozenset(
    "AED AUD BRL CAD CHF CLP CNY CZK DKK EUR GBP HKD HUF IDR ILS INR ISK JPY KRW KWD MXN MYR NOK "
    "NZD PHP PLN RON SAR SEK SGD THB TRY TWD USD ZAR BHD JOD OMR TND".split()
)
# An amount as people and integrations send it: ASCII digits, at most one dot, no sign, no
# exponent, no thousands separators (a `\d` would also match "１２３").
AMOUNT_TEXT = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
HUNDRED = Decimal(100)
BASIS_POINTS = Decimal(10000)


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def D(value: str | int | Decimal) -> Decimal:
    """Build a Decimal; floats are refused because they are already inexact."""
    if isinstance(value, float):
        raise MoneyError("floats are not accepted for money; pass a string")
    if isinstance(value, bool):
        raise MoneyError("not an amount")
    if isinstance(value, str) and (not value.isascii() or "_" in value):
        raise MoneyError(f"not a decimal number: {value!r}")  # Decimal takes "１２３", "1_0"
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise MoneyError(f"not a decimal number: {value!r}") from None
    if not result.is_finite():
        raise MoneyError(f"not a finite number: {value!r}")
    return result


def check_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        raise MoneyError(f"unknown currency code {code!r}")
    return code


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_half_up(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half away from zero (SPEC §3)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: str | int | Decimal, currency: str, *, exact: bool = True) -> int:
    """Decimal major units -> integer minor units.

    With `exact` (the default for input from users and integrations) an amount with more
    decimals than the currency has is refused instead of silently rounded.
    """
    value = D(amount)
    rounded = round_half_up(value, currency)
    if exact and rounded != value:
        raise MoneyError(
            f"{amount} has more than {exponent(currency)} decimal places for {currency}"
        )
    return int(rounded.scaleb(exponent(currency)))


def parse_amount(text: str, currency: str) -> int:
    """An amount typed by a person or sent by an integration ("1250.00") -> minor units.

    Strict, and integer arithmetic only: ASCII digits with an optional dot and at most as many
    decimals as the currency has (no exponent, sign, NaN or Infinity), within
    `limits.MAX_AMOUNT_MINOR`. Raises MoneyError saying what is wrong."""
    if not isinstance(text, str):
        raise MoneyError("send amounts as decimal strings, e.g. \"1250.00\"")
    text = text.strip()
    places = exponent(currency)
    if not AMOUNT_TEXT.match(text):
        raise MoneyError("must be a decimal amount like 1250.00 (digits 0-9 and a dot; no "
                         "sign, exponent, spaces or thousands separators)")
    whole, _, fraction = text.partition(".")
    if len(fraction) > places:
        raise MoneyError(f"{currency} amounts have no decimals" if places == 0 else
                         f"{currency} amounts have at most {places} decimals")
    whole = whole.lstrip("0") or "0"
    minor = (int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
             if len(whole) <= limits.MAX_AMOUNT_DIGITS  # never build a huge int
             else limits.MAX_AMOUNT_MINOR + 1)
    if minor > limits.MAX_AMOUNT_MINOR:
        raise MoneyError(f"must be at most {to_str(limits.MAX_AMOUNT_MINOR, currency)}")
    return minor


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units -> Decimal major units with the currency's number of places."""
    return Decimal(int(minor)).scaleb(-exponent(currency)).quantize(quantum(currency))


def to_str(minor: int, currency: str) -> str:
    """Minor units -> the API's decimal string, e.g. 125000 USD -> "1250.00"."""
    return str(from_minor(minor, currency))


def format_money(minor: int, currency: str) -> str:
    """Human format for Slack: `USD 1,250.00`, negatives as `-USD 12.00`."""
    value = from_minor(abs(minor), currency)
    places = exponent(currency)
    text = f"{value:,.{places}f}"
    return f"{'-' if minor < 0 else ''}{currency} {text}"


def pct_to_bp(pct: str | int | Decimal) -> int:
    """A percentage (e.g. "12.5") -> integer basis points (1250); at most 2 decimals."""
    value = D(pct)
    bp = value * 100
    if bp != bp.to_integral_value():
        raise MoneyError(f"{pct} has more than 2 decimal places")
    return int(bp)


def bp_to_pct(bp: int) -> Decimal:
    return (Decimal(bp) / 100).quantize(Decimal("0.01"))


def line_total(quantity: int, unit_price_minor: int, discount_bp: int, currency: str) -> int:
    """One order/invoice line: quantity x unit price x (1 - discount), rounded half-up once.

    Computed in Decimal on major units so the rounding happens at the minor unit, per line, as
    SPEC §3 says; the result is integer minor units.
    """
    gross = Decimal(quantity) * from_minor(unit_price_minor, currency)
    net = gross * (BASIS_POINTS - Decimal(discount_bp)) / BASIS_POINTS
    return to_minor(round_half_up(net, currency), currency)


def percent_of(minor: int, bp: int, currency: str) -> int:
    """`bp` basis points of an amount, rounded half-up to the minor unit (taxes, fees)."""
    value = from_minor(minor, currency) * Decimal(bp) / BASIS_POINTS
    return to_minor(round_half_up(value, currency), currency)
