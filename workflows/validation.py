"""Small input checks shared by the API, CSV import and Slack modals.

The bounds themselves live in `models.limits`; these turn a value outside them into a
`ValidationFailed` naming the field, which every surface shows in its own way (a 422 problem,
"row N, column X", an inline modal error)."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from email_validator import EmailNotValidError, validate_email

from models import limits, money
from workflows.errors import ValidationFailed

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
TERMS = re.compile(
    r"^(?:NET([0-9]{1,3})|([0-9]{1,2}(?:\.[0-9]{1,2})?)/([0-9]{1,3}) NET([0-9]{1,3})"
    r"|DUE_ON_RECEIPT)$")


def currency(field: str, value: str) -> str:
    try:
        return money.check_currency(value)
    except money.MoneyError as exc:
        raise ValidationFailed.of(field, str(exc)) from None


# thousands separators where they belong: 1,250 and 9,000,000.00 (not 1250,50 nor 12,5)
_GROUPED = re.compile(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")


def typed_amount(text: str | None) -> str:
    """An amount as a person types it, for `amount_minor`: commas dropped only where they
    group thousands ("1,250.50"); a decimal comma ("1250,50", "12,5") is left in, so it is
    refused by name instead of read as 125,050.00 or 125.00."""
    text = (text or "").strip()
    return text.replace(",", "") if _GROUPED.fullmatch(text) else text


def amount_minor(field: str, value: str | Decimal | int, currency_code: str, *,
                 positive: bool = False) -> int:
    """An amount in major units -> minor units within `limits.MAX_AMOUNT_MINOR`.

    Text (what people and integrations send) is parsed strictly (`money.parse_amount`); a
    Decimal or int from our own code must be exact in the currency. Floats are refused."""
    if isinstance(value, float):
        raise ValidationFailed.of(field, "send amounts as decimal strings, e.g. \"1250.00\"")
    try:
        if isinstance(value, str):
            minor = money.parse_amount(value, currency_code)
        else:
            minor = money.to_minor(value, currency_code)
            limits.check_amount_minor(minor)
    except (money.MoneyError, limits.OutOfBounds) as exc:
        raise ValidationFailed.of(field, str(exc)) from None
    if minor < 0 or (positive and minor == 0):
        raise ValidationFailed.of(field, "must be greater than zero" if positive
                                  else "must not be negative")
    return minor


PERCENT_TEXT = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,2})?$")


def percent_bp(field: str, value: str | Decimal | int) -> int:
    if isinstance(value, str) and not PERCENT_TEXT.match(value.strip()):
        raise ValidationFailed.of(field, "must be a percentage like 12.5 (digits 0-9, at most "
                                  "2 decimals)")
    try:
        bp = money.pct_to_bp(value)
    except money.MoneyError as exc:
        raise ValidationFailed.of(field, str(exc)) from None
    if not 0 <= bp <= 10000:
        raise ValidationFailed.of(field, "must be between 0 and 100")
    return bp


# An early-payment discount (`<d>/<n> NET<m>`) is taken without asking anyone when a payment
# comes within its days (`matching.discount_of`): bounded, as any amount at the edge.
MAX_EARLY_DISCOUNT_PCT = Decimal(10)


def setting_amount_ok(value: Decimal) -> bool:
    """An amount a setting states (an approval tier, a late fee), in major units: finite, at
    least 0, at most `MAX_AMOUNT_DIGITS` digits before the point and 3 after (the digits are
    checked first: quantizing a huge number raises InvalidOperation)."""
    return (value.is_finite() and value >= 0 and value.adjusted() < limits.MAX_AMOUNT_DIGITS
            and value == value.quantize(Decimal("0.001")))


def early_discount_ok(pct: Decimal, days: int, net_days: int) -> bool:
    """Terms whose early-payment discount the bot will take: at most
    `MAX_EARLY_DISCOUNT_PCT`, and its days within the net days."""
    return pct <= MAX_EARLY_DISCOUNT_PCT and days <= net_days


def payment_terms(field: str, value: str) -> str:
    text = " ".join((value or "").upper().split())
    match = TERMS.match(text)
    if not match:
        raise ValidationFailed.of(field, "use NET<n>, <d>/<n> NET<m> (e.g. 2/10 NET30) "
                                  "or DUE_ON_RECEIPT")
    _, pct, days, net = match.groups()
    if pct is not None and not early_discount_ok(Decimal(pct), int(days), int(net)):
        raise ValidationFailed.of(field, "an early-payment discount is at most "
                                  f"{MAX_EARLY_DISCOUNT_PCT} % and its days within the net "
                                  "days (e.g. 2/10 NET30)")
    return text


def within_amount_bound(field: str, minor: int, currency_code: str) -> int:
    """An amount computed from bounded inputs (quantity x price, an order total) must be
    within the bound too, so that whatever is stored can be paid or re-sent."""
    if abs(minor) > limits.MAX_AMOUNT_MINOR:
        raise ValidationFailed.of(field, "comes to more than the maximum amount of "
                                  f"{money.to_str(limits.MAX_AMOUNT_MINOR, currency_code)} "
                                  f"{currency_code}")
    return minor


def quantity(field: str, value: object, *, allow_zero: bool = False) -> int:
    try:
        return limits.check_quantity(value, allow_zero=allow_zero)  # type: ignore[arg-type]
    except limits.OutOfBounds as exc:
        raise ValidationFailed.of(field, str(exc)) from None


def in_years(field: str, value: date | datetime) -> date | datetime:
    try:
        return limits.check_year(value)
    except limits.OutOfBounds as exc:
        raise ValidationFailed.of(field, str(exc)) from None


def parse_date(field: str, value: str | date) -> date:
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValidationFailed.of(field, "must be a date like 2026-11-23") from None
    return in_years(field, value)


def text(field: str, value: str | None) -> str | None:
    """Free text: refused if it holds a NUL character (PostgreSQL cannot store one)."""
    if value is None:
        return None
    try:
        return limits.check_text(value)
    except limits.OutOfBounds as exc:
        raise ValidationFailed.of(field, str(exc)) from None


def email(field: str, value: str | None) -> str | None:
    """An e-mail address (syntax only, no DNS look-up), normalised; None or "" stays None."""
    if value is None or not value.strip():
        return None
    try:
        return check_email(value)
    except ValueError as exc:
        raise ValidationFailed.of(field, str(exc)) from None


def check_email(value: str) -> str:
    """A syntactically valid address (RFC 5321/5322 via `email-validator`: no CR/LF, no display
    name, one @, a domain with a dot), returned normalised; ValueError otherwise."""
    try:
        return validate_email(value.strip(), check_deliverability=False,
                              allow_display_name=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
