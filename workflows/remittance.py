"""Invoice numbers in remittance text, whatever format the payer typed them in.

Payers re-type invoice numbers: "INV-2026-000123" arrives as "inv 2026/123", "INV2026000123",
"Invoice no. 2026-000123" or with one digit wrong. The text is cut into letter and digit
groups; every run of up to five groups joined by short separators is a `Window`; a window
*spells* a number when the letters agree (or the number's prefix was left out) and the digits
agree up to padding and separators (`number_matches`). The database finds candidates by the
lossy `invoice_number_key` of each window (one indexed IN query); this module then checks
each candidate exactly. Dates ("2026-11-23") and money amounts ("1,234.56") are blanked first.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from models.invoices import invoice_number_key

MAX_WINDOW_GROUPS = 5

_DATE = re.compile(r"\b(?:(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])|"
                   r"(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)\d\d)\b")
_MONEY = re.compile(r"\b\d{1,3}(?:[,.' ]\d{3})*[.,]\d\d\b")
_GROUP = re.compile(r"[A-Z]+|[0-9]+")
_JOINERS = set(" \t-/._#:")


@dataclass(frozen=True)
class Window:
    """A run of letter/digit groups that may spell one invoice number."""

    groups: tuple[str, ...]

    @cached_property
    def letters(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g.isalpha())

    @cached_property
    def digits(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g.isdigit())

    @cached_property
    def key(self) -> str:
        return invoice_number_key("".join(self.digits))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()


def windows(text: str | None) -> list[Window]:
    return list(_windows(text or ""))


@lru_cache(maxsize=1024)
def _windows(text: str) -> tuple[Window, ...]:
    """Every window of up to five letter/digit groups that ends in digits, joined only by
    short separators (`-`, `/`, `.`, space, `#`...). Dates and money amounts are blanked
    first, so "2026-11-23" or "1,234.56" never look like invoice numbers."""
    if not text:
        return ()
    folded = _fold(text)
    folded = _DATE.sub(" , ", folded)
    folded = _MONEY.sub(" , ", folded)
    found: list[tuple[str, int, int]] = [(m.group(), m.start(), m.end())
                                         for m in _GROUP.finditer(folded)]
    out: list[Window] = []
    seen: set[tuple[str, ...]] = set()
    for i in range(len(found)):
        if i and found[i][0].isdigit():
            # "INV-2026-004322" must not yield a bare "004322": a window may start at a digit
            # group only at a word boundary (start of text, a space, a comma...).
            gap = folded[found[i - 1][2]:found[i][1]]
            if not gap or set(gap) <= _JOINERS - {" ", "\t"}:
                continue
        run = [found[i][0]]
        for j in range(i, min(i + MAX_WINDOW_GROUPS, len(found))):
            if j > i:
                gap = folded[found[j - 1][2]:found[j][1]]
                if len(gap) > 3 or not set(gap) <= _JOINERS:
                    break
                run.append(found[j][0])
            if run[-1].isdigit():
                key = tuple(run)
                if key not in seen:
                    seen.add(key)
                    out.append(Window(key))
    return tuple(out)


def reference_keys(text: str | None, *, min_len: int = 3) -> set[str]:
    """Blocking keys (`invoice_number_key`) of every window, for one indexed IN query."""
    return {w.key for w in windows(text) if len(w.key) >= min_len}


def _split_number(number: str) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    groups = tuple(_GROUP.findall(_fold(number)))
    letters = tuple(g for g in groups if g.isalpha())
    digits = tuple(g for g in groups if g.isdigit())
    # The prefix may be left out ("2026-000123") only when every letter comes before the digits.
    first_digit = next((i for i, g in enumerate(groups) if g.isdigit()), len(groups))
    prefix_only = all(g.isdigit() for g in groups[first_digit:])
    return letters, digits, prefix_only


def _can_split(text: str, groups: Sequence[str]) -> bool:
    """Can `text` be cut into len(groups) consecutive pieces equal to the groups up to
    leading zeros? ("2026000123", ["2026", "123"]) -> True."""
    targets = [g.lstrip("0") for g in groups]

    def rec(pos: int, index: int) -> bool:
        if index == len(targets):
            return pos == len(text)
        remaining = len(targets) - index - 1
        for end in range(pos + 1, len(text) - remaining + 1):
            piece = text[pos:end].lstrip("0")
            if len(piece) > len(targets[index]):
                break
            if piece == targets[index] and rec(end, index + 1):
                return True
        return False

    return rec(0, 0)


def _digits_align(a: Sequence[str], b: Sequence[str]) -> bool:
    return _can_split("".join(b), a) or _can_split("".join(a), b)


def number_matches(window: Window, number: str) -> str | None:
    """Does the window spell `number`? "full" (with its prefix), "bare" (digits only, prefix
    left out) or None."""
    letters, digits, prefix_only = _split_number(number)
    if not digits or not window.digits:
        return None
    if window.letters:
        if window.letters != letters:
            return None
        kind = "full"
    elif letters:
        if not prefix_only:
            return None
        kind = "bare"
    else:
        kind = "full"
    return kind if _digits_align(window.digits, digits) else None


def typo_keys(text: str | None, *, min_digits: int = 6) -> set[str]:
    """Blocking keys of every one-digit substitution of the longer windows (typo search)."""
    keys: set[str] = set()
    for w in windows(text):
        joined = "".join(w.digits)
        if len(joined) < min_digits or len(w.groups) > 3:
            continue
        for variant in _substitutions(joined):
            key = invoice_number_key(variant)
            if len(key) >= 3:
                keys.add(key)
    return keys


def _substitutions(digits: str) -> Iterable[str]:
    for i, ch in enumerate(digits):
        for d in "0123456789":
            if d != ch:
                yield digits[:i] + d + digits[i + 1:]


def typo_matches(window: Window, number: str) -> bool:
    """The window spells `number` except for exactly one wrong digit (same length once
    padding is set aside)."""
    letters, digits, prefix_only = _split_number(number)
    if window.letters and window.letters != letters:
        return False
    if not window.letters and letters and not prefix_only:
        return False
    typed, real = "".join(window.digits), "".join(digits)
    if len(typed) < 6 or number_matches(window, number):
        return False
    if len(typed) == len(real):
        return _one_off(typed, real)
    if len(window.digits) == len(digits):  # "inv 2026/124" for INV-2026-000123
        differing = [(a.lstrip("0"), b.lstrip("0")) for a, b in zip(window.digits, digits,
                                                                     strict=True)
                     if a.lstrip("0") != b.lstrip("0")]
        return len(differing) == 1 and _one_off(*differing[0])
    return False


def _one_off(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def find_references(text: str | None, numbers: Iterable[str],
                    keys: Iterable[str] | None = None) -> dict[str, str]:
    """Which of `numbers` the text names, in text order: number -> "full" | "bare".
    `keys` are the numbers' `invoice_number_key`s when the caller already has them."""
    found: dict[str, str] = {}
    wins = windows(text)
    if not wins:
        return found
    numbers = list(numbers)
    by_key: dict[str, list[str]] = defaultdict(list)
    for number, key in zip(numbers, keys if keys is not None
                           else map(invoice_number_key, numbers), strict=True):
        by_key[key].append(number)
    for w in wins:
        for number in by_key.get(w.key, ()):
            kind = number_matches(w, number)
            if kind and (found.get(number) != "full"):
                found[number] = kind
    return found


def find_typo_references(text: str | None, numbers: Iterable[str]) -> list[str]:
    wins = [w for w in windows(text) if len("".join(w.digits)) >= 6 and len(w.groups) <= 3]
    return [n for n in numbers if any(typo_matches(w, n) for w in wins)]


def partial_references(text: str | None, numbers: dict[int, str]) -> set[int]:
    """Invoices (id -> number) whose serial (the last digit group, without padding) appears
    on its own, e.g. "invoice 123" for INV-2026-000123. Weak: used only next to other
    signals."""
    singles = {w.digits[0].lstrip("0") for w in windows(text)
               if len(w.groups) <= 2 and len(w.digits) == 1}
    singles.discard("")
    out = set()
    for invoice_id, number in numbers.items():
        _, digits, _ = _split_number(number)
        if len(digits) >= 2 and len(digits[-1].lstrip("0")) >= 2 \
                and digits[-1].lstrip("0") in singles:
            out.add(invoice_id)
    return out
