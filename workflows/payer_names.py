"""Payer names as banks deliver them, matched to customer names.

Bank payer fields are upper-cased, cut at 18-35 characters, carry legal suffixes in any
spelling ("INC.", "Incorporated", none at all) and typos. `name_form` normalises a name into
its full form, its core (legal suffixes removed) and its canonical suffix; `name_similarity`
scores 0..100 allowing for truncation (unless the payer name ends in a legal form, which a
cut name would not); `CustomerDirectory` finds the few customers a payer may be among
thousands: one C-speed rapidfuzz scan for typos, a prefix index for truncations and a
first-word bucket for suffix changes, then the exact score.

Banks also wrap the name in their own wording: "PAYMENT FROM GLOBEX CORP", "ACH CREDIT
GLOBEX CORP CCD", "WIRE TRANSFER GLOBEX CORPORATION", or leave the payer field empty and put
"PAYMENT FROM GLOBEX CORP" in the remittance line. `payer_forms` gives every reading of a
payer line — as written, without the bank's words, or taken from the remittance text when the
payer field is empty — and a customer is scored against the best of them. Keeping the reading
"as written" means a customer whose name starts like bank wording ("Credit Suisse", "Wire
Systems Ltd") is still recognised.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz, process

_SUFFIX = {"incorporated": "inc", "inc": "inc", "corporation": "corp", "corp": "corp",
           "company": "co", "co": "co", "limited": "ltd", "ltd": "ltd", "llc": "llc",
           "llp": "llp", "lp": "lp", "gmbh": "gmbh", "ag": "ag", "sa": "sa", "sas": "sas",
           "sarl": "sarl", "bv": "bv", "nv": "nv", "plc": "plc", "pty": "pty", "srl": "srl",
           "spa": "spa", "oy": "oy", "ab": "ab", "as": "as", "kk": "kk", "kg": "kg"}


_DOTTED = re.compile(r"\b(?:[a-z]\.){2,}")
# Long legal forms a bank may cut at its field length: "GLOBEX CORPORATIO" ends in one.
_LONG_SUFFIXES = {"corporation": "corp", "incorporated": "inc", "limited": "ltd",
                  "company": "co"}
TRUNCATED_SUFFIX_MIN = 5  # "corpo", "incor", "limit", "compa": shorter cuts say too little


def _cut_suffix(word: str) -> str | None:
    if len(word) < TRUNCATED_SUFFIX_MIN:
        return None
    return next((short for long, short in _LONG_SUFFIXES.items()
                 if long.startswith(word) and word != long), None)


@dataclass(frozen=True)
class NameForm:
    full: str  # "globex corporation"
    core: str  # "globex" (legal-form suffixes removed)
    suffix: str  # "corp" (canonical), or ""


def name_form(name: str | None) -> NameForm:
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ")
    text = _DOTTED.sub(lambda d: d.group().replace(".", "") + " ", text)  # "s.a." -> "sa"
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    if words and words[0] == "the":
        words = words[1:]
    core = list(words)
    suffixes: list[str] = []
    if len(core) > 1 and core[-1] not in _SUFFIX and _cut_suffix(core[-1]):
        suffixes.insert(0, _cut_suffix(core.pop()))  # cut short by the bank
        words = [*core, suffixes[0]]
    while len(core) > 1 and core[-1] in _SUFFIX:
        suffixes.insert(0, _SUFFIX[core.pop()])
    return NameForm(" ".join(words), " ".join(core), " ".join(suffixes))


# -- the bank's own words around a payer name --------------------------------------------------
# Phrases banks put before or after the name (compared word by word, upper case, punctuation
# dropped). Longest first, so "ACH CREDIT" goes before "ACH".
_BANK_PHRASES = sorted({
    tuple(p.split()) for p in (
        "PAYMENT FROM", "PAYMENT RECEIVED FROM", "PAYMENT", "PMT FROM", "PMT", "PYMT",
        "RECEIVED FROM",
        "ACH CREDIT", "ACH CR", "ACH DEPOSIT", "ACH DEP", "ACH PMT", "ACH PAYMENT", "ACH", "CCD",
        "PPD", "CTX", "CORP PMT", "WEB PMT",
        "INCOMING WIRE TRANSFER", "INCOMING WIRE", "WIRE TRANSFER FROM", "WIRE TRANSFER",
        "WIRE FROM", "WIRE IN", "WIRE CREDIT", "WIRE", "FEDWIRE CREDIT", "FEDWIRE", "INTL WIRE",
        "BOOK TRANSFER CREDIT", "BOOK TRANSFER", "ONLINE TRANSFER FROM", "ONLINE TRANSFER",
        "TRANSFER FROM", "TRANSFER", "TRF FROM", "TRF", "XFER FROM", "XFER",
        "SEPA CREDIT TRANSFER", "SEPA CT", "SEPA", "CREDIT TRANSFER", "DIRECT DEPOSIT",
        "DIRECT CREDIT", "DEPOSIT FROM", "DEPOSIT", "REMITTANCE FROM", "REMITTANCE",
        "BY ORDER OF", "B O", "ORIG CO NAME", "ORIG NAME", "ORIGINATOR", "ORIG", "FROM",
        "ORDERING CUSTOMER", "ORDERING PARTY", "GUTSCHRIFT", "UEBERWEISUNG", "VIREMENT DE",
        "VIREMENT", "CREDIT", "CR", "REF", "ID")}, key=len, reverse=True)
# "PAYMENT FROM <NAME>" inside remittance text: the name runs up to a word that starts
# something else (an invoice, a reference) or a number.
_FROM_NAME = re.compile(
    r"\b(?:PAYMENT FROM|PMT FROM|RECEIVED FROM|TRANSFER FROM|TRF FROM|WIRE FROM|XFER FROM|"
    r"BY ORDER OF|B/O|ORIG CO NAME|ORIGINATOR|FROM)\s*:?\s+"
    r"(?P<name>[A-Z][A-Z&'.,\- ]{1,60}?)"
    r"(?=\s+(?:INV\w*|INVOICE\w*|REF\w*|RE|PO|FOR|ORDER|CUST\w*|ACCT|ID|DATE|RG|NR|NO)\b|"
    r"\s*[0-9#:/]|\s*$)")


def _strip_bank_words(words: list[str]) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        for phrase in _PHRASES_BY_FIRST.get(words[0], ()):
            n = len(phrase)
            if len(words) > n and tuple(words[:n]) == phrase:
                words, changed = words[n:], True
                break
        if changed:
            continue
        for phrase in _PHRASES_BY_LAST.get(words[-1], ()):
            n = len(phrase)
            if len(words) > n and tuple(words[-n:]) == phrase:
                words, changed = words[:-n], True
                break
    return words


@lru_cache(maxsize=4096)
def payer_forms(payer_name: str | None, reference: str | None = None) -> tuple[NameForm, ...]:
    """Every reading of a bank's payer line, most literal first: the name as written, the
    name without the bank's words around it ("ACH CREDIT GLOBEX CORP CCD" -> "GLOBEX CORP"),
    or — when the payer field is empty — the name in "PAYMENT FROM <NAME>" of the remittance
    text. Empty when there is no name at all (only bank words, or nothing)."""
    forms: list[NameForm] = []
    text = _fold_upper(payer_name)
    if text:
        words = re.sub(r"[^A-Z0-9&]+", " ", text).split()
        stripped = _strip_bank_words(list(words))
        if stripped != words or len(words) <= 1:
            if stripped and not all(w in _BANK_WORDS for w in stripped):
                forms.append(name_form(" ".join(stripped)))
            if not all(w in _BANK_WORDS for w in words):
                forms.insert(0, name_form(payer_name))
        else:
            forms.append(name_form(payer_name))
    else:
        found = _FROM_NAME.search(_fold_upper(reference))
        if found:
            words = _strip_bank_words(re.sub(r"[^A-Z0-9&]+", " ", found["name"]).split())
            if words and not all(w in _BANK_WORDS for w in words):
                forms.append(name_form(" ".join(words)))
    out: list[NameForm] = []
    for form in forms:
        if form.core and form not in out:
            out.append(form)
    return tuple(out)


_BANK_WORDS = frozenset(w for phrase in _BANK_PHRASES for w in phrase)
_PHRASES_BY_FIRST: dict[str, list[tuple[str, ...]]] = defaultdict(list)
_PHRASES_BY_LAST: dict[str, list[tuple[str, ...]]] = defaultdict(list)
for _phrase in _BANK_PHRASES:  # (longest first, as sorted)
    _PHRASES_BY_FIRST[_phrase[0]].append(_phrase)
    _PHRASES_BY_LAST[_phrase[-1]].append(_phrase)


def _fold_upper(text: str | None) -> str:
    return unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().upper()


def _similar(a: str, b: str, *, truncated: bool = True) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 100.0
    score = max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b))
    if truncated and 5 <= len(a) < len(b):  # the bank cut the name short
        head = b[:len(a)]
        if head == a:
            score = max(score, 97.0 if len(a) >= len(b) / 2 else 88.0)
        else:
            cut = fuzz.ratio(a, head)
            if cut >= 88 and len(a) >= len(b) / 2:
                score = max(score, cut - 5)
    return float(score)


def name_similarity(payer: NameForm, customer: NameForm) -> float:
    """0..100: how well a bank's payer name fits a customer name. A payer name that ends in
    a legal form ("... LTD") was not cut short, so it is not read as a truncation."""
    whole = bool(payer.suffix)
    score = max(_similar(payer.core, customer.core, truncated=not whole),
                _similar(payer.full, customer.full, truncated=not whole))
    if payer.suffix and customer.suffix and payer.suffix != customer.suffix:
        score -= 3
    return max(0.0, min(100.0, score))


def alias_values(payer_name: str | None, reference: str | None = None) -> list[str]:
    """What a payer alias taught by a person is compared by: the core of every reading of the
    payer line ("ACH CREDIT GLBX HOLDINGS LLC CCD" -> "glbx holdings")."""
    forms = payer_forms(payer_name, None if payer_name else reference)
    return list(dict.fromkeys(f.core for f in forms if len(f.core) >= 3
                              and not f.core.replace(" ", "").isdigit()))


def payer_similarity(forms: Iterable[NameForm], customer: NameForm) -> float:
    """The best `name_similarity` over the readings of a payer line (`payer_forms`)."""
    return max((name_similarity(form, customer) for form in forms), default=0.0)


FIRST_WORD_SCORED = 12  # customers sharing a payer's first word that are scored in full
EXACT_ENOUGH = 97  # found this close by prefix or first word: no scan of every name for typos
MATCHES_KEPT = 10_000  # payer lines whose candidates a directory remembers
SCAN_MIN = 65  # `fuzz.ratio` from which a core name is a typo candidate
SCAN_KEPT = 10  # typo candidates per payer line
SCAN_BATCH = 64  # payer lines scanned together (64 x 25,000 scores: 12.8 MB)
SCAN_WORKERS = -1  # threads of one batch's scan (rapidfuzz, in C: -1 is one per CPU)


@dataclass(frozen=True)
class CustomerName:
    id: int
    name: str
    external_id: str
    currency: str


class CustomerDirectory:
    """Customer names prepared for fuzzy payer matching: a rapidfuzz prefilter over the
    normalised names plus a prefix index for bank truncations, then `name_similarity`."""

    def __init__(self, customers: Iterable[CustomerName]) -> None:
        self.customers = list(customers)
        self.by_id = {c.id: c for c in self.customers}
        self.forms = {c.id: name_form(c.name) for c in self.customers}
        self._ids = [c.id for c in self.customers]
        self._fulls = [self.forms[i].full for i in self._ids]
        self._cores = [self.forms[i].core for i in self._ids]
        self._sorted = sorted((f, i) for f, i in zip(self._fulls, self._ids, strict=True))
        self._first_word: dict[str, list[int]] = defaultdict(list)
        for i in self._ids:
            words = self.forms[i].core.split()
            if words:
                self._first_word[words[0]].append(i)
        self._cache: dict[tuple, list[tuple[int, float]]] = {}
        self._scans: dict[str, list[int]] = {}  # core -> `_scan`'s answer

    def __len__(self) -> int:
        return len(self.customers)

    def match(self, payer_name: str | None, currency: str | None = None,
              limit: int = 5, reference: str | None = None) -> list[tuple[int, float]]:
        """Customers the payer may be, best first, as (customer id, similarity): the payer
        line read every way `payer_forms` reads it (the remittance text only counts when the
        payer field is empty)."""
        forms = payer_forms(payer_name, None if payer_name else reference)
        if not forms:
            return []
        cache_key = (tuple(f.full for f in forms), currency or "")
        if cache_key in self._cache:
            return self._cache[cache_key][:limit]
        pool, scored = self._indexed(forms, currency)
        # typos: a scan of every core name, for the reading without the bank's words — unless
        # the indexes already found the name itself (the scan costs as much as all the rest,
        # with thousands of customers)
        if not scored or scored[0][1] < EXACT_ENOUGH:
            scored = self._with_scan(pool, scored, forms, currency)
        if len(self._cache) > MATCHES_KEPT:
            self._cache.clear()
        self._cache[cache_key] = scored
        return scored[:limit]

    def prepare(self, payers: Iterable[tuple[str | None, str | None, str | None]]) -> None:
        """Make `match` cheap for these (payer name, currency, reference) — a statement's
        chunk: the typo scans they need are done together, as one C-speed comparison of
        every such payer line with every core name (`rapidfuzz.process.cdist`), instead of
        one scan each. `match` answers exactly as without it."""
        if len(self._cache) > MATCHES_KEPT:
            self._cache.clear()
        waiting: dict[tuple, tuple[tuple[NameForm, ...], set[int], list[tuple[int, float]],
                                   str | None]] = {}
        for payer_name, currency, reference in payers:
            forms = payer_forms(payer_name, None if payer_name else reference)
            if not forms:
                continue
            cache_key = (tuple(f.full for f in forms), currency or "")
            if cache_key in self._cache or cache_key in waiting:
                continue
            pool, scored = self._indexed(forms, currency)
            if not scored or scored[0][1] < EXACT_ENOUGH:
                waiting[cache_key] = (forms, pool, scored, currency)
            else:
                self._cache[cache_key] = scored
        self._scan_many({forms[-1].core for forms, _, _, _ in waiting.values()})
        for cache_key, (forms, pool, scored, currency) in waiting.items():
            self._cache[cache_key] = self._with_scan(pool, scored, forms, currency)

    def _indexed(self, forms: tuple[NameForm, ...], currency: str | None
                 ) -> tuple[set[int], list[tuple[int, float]]]:
        """The customers the indexes find for these readings, and their scores."""
        pool: set[int] = set()
        # truncations and suffix changes: the prefix index and the first-word bucket, for
        # every reading of the payer line
        for payer in forms:
            start = bisect_left(self._sorted, (payer.full[:5], -1))
            for full, cid in self._sorted[start:start + 50]:
                if not full.startswith(payer.full[:5]):
                    break
                pool.add(cid)
            words = payer.core.split()
            bucket = self._first_word.get(words[0], []) if words else []
            if len(bucket) > FIRST_WORD_SCORED:  # a common first word: keep the likelier ones
                cores = [self.forms[cid].core for cid in bucket]
                bucket = [bucket[i] for _, _, i in process.extract(
                    payer.core, cores, scorer=fuzz.token_sort_ratio, limit=FIRST_WORD_SCORED,
                    processor=None)]
            pool.update(bucket)
        return pool, self._scored(pool, forms, currency)

    def _with_scan(self, pool: set[int], scored: list[tuple[int, float]],
                   forms: tuple[NameForm, ...], currency: str | None
                   ) -> list[tuple[int, float]]:
        """`_scored` of the pool and the typo scan's customers, the pool's scores reused
        (`scored` is `_scored(pool, ...)`): only the customers the scan adds are scored."""
        added = set(self._scan(forms[-1].core)) - pool
        if not added:
            return scored
        pool.update(added)
        return sorted([*scored, *self._scored(added, forms, currency)],
                      key=lambda pair: (-pair[1], pair[0]))

    def _scan(self, core: str) -> list[int]:
        """The `SCAN_KEPT` core names most like `core` (`fuzz.ratio` >= `SCAN_MIN`), best
        first (ties in directory order), as customer ids."""
        found = self._scans.get(core)
        if found is None:
            found = [self._ids[index] for _, _, index in process.extract(
                core, self._cores, scorer=fuzz.ratio, score_cutoff=SCAN_MIN, limit=SCAN_KEPT,
                processor=None)]
            self._keep_scan(core, found)
        return found

    def _scan_many(self, cores: set[str]) -> None:
        """`_scan` of many cores at once: the same answers (the scores are the same function,
        the order the same rule), computed `SCAN_BATCH` payer lines at a time."""
        todo = sorted(c for c in cores if c not in self._scans)
        if len(todo) < 2 or not self._cores:
            return  # (`_scan` does one alone)
        import numpy as np

        for start in range(0, len(todo), SCAN_BATCH):
            batch = todo[start:start + SCAN_BATCH]
            scores = process.cdist(batch, self._cores, scorer=fuzz.ratio,
                                   score_cutoff=SCAN_MIN, processor=None, dtype=np.float64,
                                   workers=SCAN_WORKERS)
            for core, row in zip(batch, scores, strict=True):
                hits = np.flatnonzero(row)  # (below the cutoff a score is 0)
                order = np.lexsort((hits, -row[hits]))[:SCAN_KEPT]
                self._keep_scan(core, [self._ids[i] for i in hits[order].tolist()])

    def _keep_scan(self, core: str, found: list[int]) -> None:
        if len(self._scans) > MATCHES_KEPT:
            self._scans.clear()
        self._scans[core] = found

    def _scored(self, pool: set[int], forms: tuple[NameForm, ...],
                currency: str | None) -> list[tuple[int, float]]:
        scored = []
        for cid in pool:
            if currency and self.by_id[cid].currency != currency:
                continue
            score = payer_similarity(forms, self.forms[cid])
            if score >= 60:
                scored.append((cid, round(score, 1)))
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored
