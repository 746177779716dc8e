"""People's own language and format: amounts, dates and numbers in a user's Slack locale
(`users.info` `locale`, e.g. "de-DE"; CLDR data through Babel), and texts translated when a
translation exists — else English.

Translations are gettext catalogs, one per language: `blocks/locales/<language>.po` (msgid:
the English text in the code, msgstr: the translation), read with Babel's own `.po` reader,
so adding a language is adding a file (no compile step). Shipped: German (`de`). A text with
no translation, or an unknown or missing locale, is shown in English; amounts and dates
without a locale keep the app's own formats (`USD 1,250.00`, `20 Nov 2026`).

Pure functions of their arguments (the catalogs are read once, they never change at run
time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

from blocks.text import fmt_date, fmt_money
from models import money

LOCALES = Path(__file__).parent / "locales"


@lru_cache(maxsize=256)
def parse_locale(tag: str | None) -> Locale | None:
    """Slack's "de-DE" (or "de_DE", "de") as a Babel locale; None when empty or unknown."""
    if not tag or not isinstance(tag, str) or len(tag) > 35:
        return None
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


@lru_cache(maxsize=16)
def _catalog(language: str) -> Catalog | None:
    path = LOCALES / f"{language}.po"
    if not language.isalpha() or not path.is_file():
        return None
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


def languages() -> list[str]:
    """The languages with a translation (besides English)."""
    return sorted(p.stem for p in LOCALES.glob("*.po"))


def t(text: str, locale: str | None) -> str:
    """`text` in the locale's language when translated, else as it is (English)."""
    parsed = parse_locale(locale)
    catalog = _catalog(parsed.language) if parsed is not None else None
    message = catalog.get(text) if catalog is not None else None
    return message.string if message is not None and message.string else text


def money_text(minor: int, currency: str, locale: str | None) -> str:
    """An amount in the locale's format ("1.234,56 €" for de-DE), else "EUR 1,234.56"."""
    parsed = parse_locale(locale)
    if parsed is None:
        return fmt_money(minor, currency)
    amount: Decimal = money.from_minor(minor, currency)
    return format_currency(amount, currency, locale=parsed)


def date_text(value: date | str | None, locale: str | None) -> str:
    parsed = parse_locale(locale)
    if parsed is None or value is None:
        return fmt_date(value)
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return format_date(value, format="medium", locale=parsed)


def number_text(value: int | Decimal, locale: str | None) -> str:
    parsed = parse_locale(locale)
    return format_decimal(value, locale=parsed) if parsed is not None else f"{value:,}"


@dataclass(frozen=True)
class Formats:
    """How amounts, dates and numbers are written for one reader: their Slack locale, or the
    app's own formats (`ENGLISH`: no locale). Builders of surfaces addressed to one person
    take one (`fmt=`) and stay pure; channel posts keep `ENGLISH` (the workspace default)."""

    locale: str | None = None

    def money(self, minor: int, currency: str) -> str:
        return money_text(minor, currency, self.locale)

    def date(self, value: date | str | None) -> str:
        return date_text(value, self.locale)

    def number(self, value: int | Decimal) -> str:
        return number_text(value, self.locale)


ENGLISH = Formats()


def formats(locale: str | None) -> Formats:
    """The formats of a reader with this Slack locale: the locale's own (CLDR), except for
    English, whose readers keep the app's formats ("USD 1,234.56", "31 Dec 2026"), as for no
    locale or an unknown one."""
    parsed = parse_locale(locale)
    return ENGLISH if parsed is None or parsed.language == "en" else Formats(locale)
