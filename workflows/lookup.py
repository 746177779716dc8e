"""Finding customers by what people type: an id, an external id, or a misspelt name.

rapidfuzz's WRatio on normalised names handles typos ("glbex" -> "Globex"), partial names and
word order. A match is *unique* when it is good and clearly ahead of the next candidate;
otherwise the caller shows the closest candidates instead of guessing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz, process, utils
from sqlmodel import Session, select

from models import Customer
from models.limits import record_id

GOOD = 80  # below this nothing is a confident match
CLOSE = 55  # below this a name is not worth suggesting ("zzzzzz" matches nothing)
MARGIN = 8  # the best must lead the runner-up by this much to be unambiguous
_SUFFIXES = re.compile(
    r"\b(inc|incorporated|corp|corporation|co|company|llc|ltd|limited|gmbh|ag|sa|sarl|bv|nv|"
    r"plc|pty|srl|spa|oy|ab|as|kk)\b\.?", re.IGNORECASE)


def normalise_name(name: str) -> str:
    """Lower case, accents folded, punctuation and legal-form suffixes removed:
    "Globex, Inc." -> "globex", "Krüger" -> "kruger"."""
    text = utils.default_process(fold_accents(name))
    text = _SUFFIXES.sub(" ", text)
    return " ".join(text.split())


def fold_accents(text: str) -> str:
    """"Krüger" -> "Kruger", "Société" -> "Societe": people type names without accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


ORDER_NUMBER = re.compile(r"(?i)^#?(?:so)?[-_ ]?0*(\d{1,12})$")


def order_number(text: str) -> str:
    """What people type for an order -> its number: "1125", "so1125", "SO 1125", "#1125" ->
    "SO-1125"; anything else is returned as typed (upper case)."""
    typed = " ".join((text or "").split())
    found = ORDER_NUMBER.match(typed)
    return f"SO-{found.group(1)}" if found else typed.upper()


@dataclass(frozen=True)
class Candidate:
    customer_id: int
    name: str
    external_id: str
    score: int  # 0..100, rounded: a similarity, not money


@dataclass(frozen=True)
class Match:
    customer: Customer | None  # the unique match, if there is one
    candidates: list[Candidate]  # closest names, best first (for "did you mean")


def find_customer(session: Session, query: str, *, limit: int = 5) -> Match:
    query = query.strip()
    if not query:
        return Match(None, [])
    exact = session.exec(select(Customer).where(Customer.external_id == query)).first()
    if exact is None and (customer_id := record_id(query)) is not None:
        exact = session.get(Customer, customer_id)
    if exact is None:
        exact = session.exec(select(Customer).where(Customer.name == query)).first()
    if exact is not None:
        return Match(exact, [Candidate(exact.id, exact.name, exact.external_id, 100)])
    rows = session.exec(select(Customer.id, Customer.name, Customer.external_id)).all()
    choices = {row[0]: normalise_name(row[1]) or row[1].lower() for row in rows}
    needle = normalise_name(query) or query.lower()
    scored = process.extract(needle, choices, scorer=fuzz.WRatio, limit=limit,
                             processor=None)
    by_id = {row[0]: row for row in rows}
    candidates = [Candidate(key, by_id[key][1], by_id[key][2], round(score))
                  for _, score, key in scored if score >= CLOSE]
    if not candidates or candidates[0].score < GOOD:
        return Match(None, candidates)
    if len(candidates) > 1 and candidates[1].score > candidates[0].score - MARGIN:
        return Match(None, candidates)
    return Match(session.get(Customer, candidates[0].customer_id), candidates)
