"""Small input checks shared by the API, CSV import and Slack modals."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from models import money
from workflows.errors import ValidationFailed

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
TERMS = re.compile(
    r"^(?:NET(\d{1,3})|(\d{1,2}(?:\.\d{1,2})?)/(\d{1,3}) NET(\d{1,3})|DUE_ON_RECEIPT)$")


def currency(field: str, value: str) -> str:
    try:
        return money.check_currency(value)
    except money.MoneyError as exc:
        raise ValidationFailed.of(field, str(exc)) from None


def amount_minor(field: str, value: str | Decimal | int, currency_code: str, *,
                 positive: bool = False) -> int:
    """A decimal string in major units -> minor units, refusing floats and extra decimals."""
    if isinstance(value, float):
        raise ValidationFailed.of(field, "send amounts as decimal strings, e.g. \"1250.00\"")
    try:
        minor = money.to_minor(value, currency_code)
    except money.MoneyError as exc:
        raise ValidationFailed.of(field, str(exc)) from None
    if minor < 0 or (positive and minor == 0):
        raise ValidationFailed.of(field, "must be greater than zero" if positive
                                  else "must not be negative")
    return minor


def percent_bp(field: str, value: str | Decimal | int) -> int:
    try:
        bp = money.pct_to_bp(value)
    except money.MoneyError as exc:
        raise ValidationFailed.of(field, str(exc)) from None
    if not 0 <= bp <= 10000:
        raise ValidationFailed.of(field, "must be between 0 and 100")
    return bp


def payment_terms(field: str, value: str) -> str:
    text = " ".join((value or "").upper().split())
    if not TERMS.match(text):
        raise ValidationFailed.of(field, "use NET<n>, <d>/<n> NET<m> (e.g. 2/10 NET30) "
                                  "or DUE_ON_RECEIPT")
    return text


def parse_date(field: str, value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValidationFailed.of(field, "must be a date like 2026-11-23") from None
