"""Ids for records that arrive without one: a bank line without the bank's reference
(`bank_statements`), a payments CSV row without an `external_id` (`bot.imports`).

Such a record is known by what it says plus its **occurrence number** among the identical
records of its file: importing the same file again gives every record the same id, so
nothing is recorded twice, while two identical records of one file (two equal transfers on
one day) stay two records. Overlapping files are therefore safe; a record repeated
identically in two different files is taken for the same one (what each caller documents).
"""

from __future__ import annotations

import hashlib
from collections import Counter


class Occurrences:
    """How many times each content was seen in one file so far. Only a 12-byte digest of
    each content is kept, so counting 100,000 records takes little memory."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()

    def next(self, *parts: object) -> int:
        """The occurrence number (1, 2, ...) of a record made of `parts` in this file."""
        basis = "\x1f".join(str(part) for part in parts)
        digest = hashlib.blake2b(basis.encode(), digest_size=12).digest()
        self.seen[digest] += 1
        return self.seen[digest]


def digest_id(prefix: str, parts: list[str]) -> str:
    """A record's id from what it says: `prefix` and 48 hex digits of the SHA-256 of `parts`
    joined with "|" (its occurrence number among them)."""
    return prefix + hashlib.sha256("|".join(parts).encode()).hexdigest()[:48]
