"""Payer names as banks deliver them, matched to customer names.

Bank payer fields are upper-cased, cut at 18-35 characters, carry legal suffixes in any
spelling ("INC.", "Incorporated", none at all) and typos. `name_form` normalises a name into
its full form, its core (legal suffixes removed) and its canonical suffix; `name_similarity`
scores 0..100 allowing for truncation (unless the payer name ends in a legal form, which a
cut name would not); `CustomerDirectory` finds the few customers a payer may be among
thousands: one C-speed rapidfuzz scan for typos, a prefix index for truncations and a
first-word bucket for suffix changes, then the exact score.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process

_SUFFIX = {"incorporated": "inc", "inc": "inc", "corporation": "corp", "corp": "corp",
           "company": "co", "co": "co", "limited": "ltd", "ltd": "ltd", "llc": "llc",
           "llp": "llp", "lp": "lp", "gmbh": "gmbh", "ag": "ag", "sa": "sa", "sas": "sas",
           "sarl": "sarl", "bv": "bv", "nv": "nv", "plc": "plc", "pty": "pty", "srl": "srl",
           "spa": "spa", "oy": "oy", "ab": "ab", "as": "as", "kk": "kk", "kg": "kg"}


_DOTTED = re.compile(r"\b(?:[a-z]\.){2,}")


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
    while len(core) > 1 and core[-1] in _SUFFIX:
        suffixes.insert(0, _SUFFIX[core.pop()])
    return NameForm(" ".join(words), " ".join(core), " ".join(suffixes))


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
        self._cache: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def __len__(self) -> int:
        return len(self.customers)

    def match(self, payer_name: str | None, currency: str | None = None,
              limit: int = 5) -> list[tuple[int, float]]:
        """Customers the payer name may be, best first, as (customer id, similarity)."""
        payer = name_form(payer_name)
        if not payer.core:
            return []
        cache_key = (payer.full, currency or "")
        if cache_key in self._cache:
            return self._cache[cache_key][:limit]
        pool: set[int] = set()
        # typos: one C-speed scan of the core names; truncations and suffix changes: the
        # prefix index and the first-word bucket below
        for _, _, index in process.extract(payer.core, self._cores, scorer=fuzz.ratio,
                                           score_cutoff=65, limit=10, processor=None):
            pool.add(self._ids[index])
        start = bisect_left(self._sorted, (payer.full[:5], -1))
        for full, cid in self._sorted[start:start + 50]:
            if not full.startswith(payer.full[:5]):
                break
            pool.add(cid)
        words = payer.core.split()
        if words:
            pool.update(self._first_word.get(words[0], [])[:50])
        scored = []
        for cid in pool:
            if currency and self.by_id[cid].currency != currency:
                continue
            score = name_similarity(payer, self.forms[cid])
            if score >= 60:
                scored.append((cid, round(score, 1)))
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        if len(self._cache) > 20_000:
            self._cache.clear()
        self._cache[cache_key] = scored
        return scored[:limit]
