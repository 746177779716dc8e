"""Invoice numbers in remittance text, whatever format the payer typed them in.

Payers re-type invoice numbers: "INV-2026-000123" arrives as "inv 2026/123", "INV2026000123",
"Invoice no. 2026-000123" or with one digit wrong. The text is cut into letter and digit
groups; every run of up to five groups joined by short separators is a `Window`; a window
*spells* a number when the letters agree (or the number's prefix was left out) and the digits
agree up to padding and separators (`number_matches`). The database finds candidates by the
lossy `invoice_number_key` of each window (one indexed IN query); this module then checks
each candidate exactly. Dates ("2026-11-23") and money amounts ("1,234.56") are blanked first.

Purely numeric invoice numbers ("100994") come in lists ("INVOICES 100994/100996/100997"),
after a word for invoice ("INV100994", "RE 100994"), and next to other numbers that are not
invoices ("PO 4500012345", "CUST 100994"): a list of like numbers is read as several numbers,
an invoice word is no prefix of its own, and a number labelled as something else is not an
invoice reference.
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
_LIST_JOINERS = set(" \t/,;&+")  # between the numbers of a list: "100994/100996"
LIST_MIN_DIGITS = 5  # shorter like groups ("2026/0123") are parts of one number
# Words that only say "invoice" (or "number"): no prefix of a purely numeric invoice number.
INVOICE_WORDS = frozenset({
    "INV", "INVS", "INVOICE", "INVOICES", "INVNO", "INVNR", "NO", "NR", "NUM", "NUMBER", "RE",
    "REF", "BILL", "BILLS", "RECHNUNG", "RECHNUNGEN", "RG", "RGNR", "FACTURE", "FACTURES",
    "FACTURA", "FAKTURA", "FACT", "FATTURA", "DOC", "DOCS", "PAYMENT", "PMT", "FOR"})
# Labels of numbers that are not our invoice numbers, even when the digits happen to agree.
OTHER_LABELS = frozenset({
    "PO", "POS", "ORDER", "ORD", "CUST", "CUSTOMER", "ACCT", "ACCOUNT", "ACC", "ID", "TEL",
    "PHONE", "FAX", "ZIP", "VAT", "TAX", "CHECK", "CHK", "CHEQUE", "SO", "DN", "GRN", "BATCH",
    "TRN", "TRACE", "IBAN", "BIC", "SWIFT", "ABA", "RTN"})


@dataclass(frozen=True)
class Window:
    """A run of letter/digit groups that may spell one invoice number; `label` is the word
    just before a window of digits ("PO" in "PO 4500012345"), if any."""

    groups: tuple[str, ...]
    label: str | None = None

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


@lru_cache(maxsize=8192)
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
        label = None
        if i and found[i][0].isdigit():
            # "INV-2026-004322" must not yield a bare "004322": a window may start at a digit
            # group only at a word boundary (start of text, a space, a comma...), or as the
            # next number of a list of like numbers ("100994/100996").
            previous = found[i - 1][0]
            gap = folded[found[i - 1][2]:found[i][1]]
            listed = (previous.isdigit() and len(previous) == len(found[i][0])
                      >= LIST_MIN_DIGITS and gap and set(gap) <= _LIST_JOINERS)
            if (not gap or set(gap) <= _JOINERS - {" ", "\t"}) and not listed:
                continue
            if previous.isalpha() and len(gap) <= 3 and set(gap) <= _JOINERS:
                label = previous
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
                    out.append(Window(key, label if key[0].isdigit() else None))
    return tuple(out)


def reference_keys(text: str | None, *, min_len: int = 3) -> set[str]:
    """Blocking keys (`invoice_number_key`) of every window, for one indexed IN query."""
    return set(_reference_keys(text or "", min_len))


@lru_cache(maxsize=8192)
def _reference_keys(text: str, min_len: int) -> frozenset[str]:
    return frozenset(w.key for w in windows(text) if len(w.key) >= min_len)


@lru_cache(maxsize=65536)
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


def _digits_align(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    # (the same digit groups always align: each is its own piece)
    return a == b or _can_split("".join(b), a) or _can_split("".join(a), b)


def number_matches(window: Window, number: str) -> str | None:
    """Does the window spell `number`? "full" (with its prefix), "bare" (digits only, prefix
    left out) or None."""
    letters, digits, prefix_only = _split_number(number)
    if not digits or not window.digits:
        return None
    typed = window.letters
    if not letters and typed and set(typed) <= INVOICE_WORDS:
        typed = ()  # "INV100994" for the purely numeric 100994
    if not letters and not typed and window.label in OTHER_LABELS:
        return None  # "PO 100994": another document's number
    if typed:
        if typed != letters:
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
    return set(_typo_keys(text or "", min_digits))


@lru_cache(maxsize=4096)
def _typo_keys(text: str, min_digits: int) -> frozenset[str]:
    keys: set[str] = set()
    for w in _typo_windows(text, min_digits):
        joined = "".join(w.digits)
        for variant in _substitutions(joined):
            key = invoice_number_key(variant)
            if len(key) >= 3:
                keys.add(key)
    return frozenset(keys)


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
    if len(typed) < 6:
        return False
    if len(typed) == len(real):
        off = _one_off(typed, real)
    elif len(window.digits) == len(digits):  # "inv 2026/124" for INV-2026-000123
        differing = [(a.lstrip("0"), b.lstrip("0")) for a, b in zip(window.digits, digits,
                                                                     strict=True)
                     if a.lstrip("0") != b.lstrip("0")]
        off = len(differing) == 1 and _one_off(*differing[0])
    else:
        off = False
    # (one digit off, and not a spelling of the number itself: the cheap test first)
    return off and not number_matches(window, number)


def _one_off(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


# A customer's own kind of reference: a label and a number ("PO 4500012345", "CUST-88123").
_PATTERN_TOKEN = re.compile(r"\b([A-Z]{2,12})[ #:./-]{0,3}([0-9]{5,20})\b")
_NOT_PATTERNS = INVOICE_WORDS | frozenset({
    "ACH", "WIRE", "SEPA", "CCD", "PPD", "CTX", "TRN", "TRF", "XFER", "IBAN", "BIC", "SWIFT",
    "ABA", "RTN", "TEL", "PHONE", "FAX", "ZIP", "DATE", "DT", "JAN", "FEB", "MAR", "APR", "MAY",
    "JUN", "JUL", "AUG", "SEP", "SEPT", "OCT", "NOV", "DEC", "USD", "EUR", "GBP", "CHF", "JPY"})


def pattern_values(text: str | None) -> list[tuple[str, str]]:
    """The customer-specific references in a remittance text, as (pattern, as written):
    "PO 4500012345" -> ("PO:45:10", "PO 4500012345") — the label, the first two digits and
    how many there are. A person who applies such a payment teaches the pattern
    (`workflows.cash_rules`); it then points at that customer."""
    if not text:
        return []
    out: dict[str, str] = {}
    for match in _PATTERN_TOKEN.finditer(_fold(text)):
        label, digits = match.groups()
        if label in _NOT_PATTERNS:
            continue
        out.setdefault(f"{label}:{digits[:2]}:{len(digits)}", f"{label} {digits}")
    return list(out.items())


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


def _typo_windows(text: str | None, min_digits: int = 6) -> list[Window]:
    """Windows long enough to carry a one-digit typo of an invoice number, and not labelled
    as another kind of number ("PO 4500012345" is nobody's invoice, typed right or wrong)."""
    return [w for w in windows(text) if len("".join(w.digits)) >= min_digits
            and len(w.groups) <= 3 and w.label not in OTHER_LABELS
            and not set(w.letters) & OTHER_LABELS]


def find_typo_references(text: str | None, numbers: Iterable[str]) -> list[str]:
    wins = _typo_windows(text)
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
