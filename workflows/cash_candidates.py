"""What the database knows about one incoming payment, for the matching engine.

Every lookup is an indexed query, so the cost per payment does not grow with the number of
open invoices: invoice numbers named in the text through `invoices.number_key`
(`ix_invoices_number_key`), open invoices of a few candidate customers through
`ix_invoices_customer_open`, invoices with exactly the payment's amount through
`ix_invoices_open_amount`. Customer names are matched in memory against a
`CustomerDirectory` cached per database and rebuilt only when the customers table changes.
These reads use plain Core statements on the session's connection: at 10,000 payments the
ORM's per-statement overhead was a third of the time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm
from sqlmodel import Session

from models import Customer, Invoice
from workflows import matching, payer_names, remittance
from workflows.matching import Evidence, OpenItem, PaymentFacts
from workflows.payer_names import CustomerDirectory, CustomerName

MAX_NAME_CUSTOMERS = 3  # customers considered from the payer name alone
MAX_CUSTOMERS = 5  # customers whose open invoices are loaded
IN_CHUNK = 500


_INV = Invoice.__table__  # plain Core columns: these reads skip the ORM's per-call overhead
_ITEM_COLUMNS = (_INV.c.id, _INV.c.number, _INV.c.customer_id, _INV.c.currency,
                 _INV.c.balance_minor, _INV.c.total_minor, _INV.c.issue_date,
                 _INV.c.payment_terms, _INV.c.number_key)


def _rows(session: Session, statement: sa.Select, params: dict | None = None) -> list:
    return session.connection().execute(statement, params or {}).all()


# Built once: at thousands of payments, building statements cost more than running them.
_BY_KEYS = sa.select(*_ITEM_COLUMNS).where(
    _INV.c.number_key.in_(sa.bindparam("keys", expanding=True)))
_OPEN_OF = (sa.select(*_ITEM_COLUMNS)
            .where(_INV.c.customer_id == sa.bindparam("customer"), _INV.c.balance_minor > 0)
            .order_by(_INV.c.due_date, _INV.c.id)
            .limit(matching.MAX_OPEN_INVOICES + 1))
_SAME_AMOUNT = sa.select(*_ITEM_COLUMNS).where(
    _INV.c.currency == sa.bindparam("currency"), _INV.c.balance_minor == sa.bindparam("amount"),
    _INV.c.issue_date <= sa.bindparam("on")).limit(6)


# -- customer names, cached ------------------------------------------------------------------------
STAMP_EVERY = 5.0  # seconds between checks for customers changed by other processes
_CUST = Customer.__table__
_STAMP = sa.select(sa.func.count(_CUST.c.id), sa.func.max(_CUST.c.id),
                   sa.func.max(_CUST.c.updated_at))


@dataclass
class _Cached:
    stamp: tuple
    generation: int
    checked: float
    directory: CustomerDirectory


_directories: dict[tuple[int, str], _Cached] = {}
_lock = threading.Lock()
_generation = 0  # bumped whenever this process flushes a customer row


def _on_flush(session: Session, _context: object) -> None:
    global _generation
    if any(isinstance(obj, Customer)
           for obj in (*session.new, *session.dirty, *session.deleted)):
        _generation += 1


sa.event.listen(sa.orm.Session, "after_flush", _on_flush)


def customer_directory(session: Session) -> CustomerDirectory:
    """The customer names as a `CustomerDirectory`, cached per database.

    The cache is checked against a stamp of the customers table (count, highest id, latest
    update: one aggregate query) whenever this process has written a customer since the last
    check, and at least every `STAMP_EVERY` seconds for changes made by other processes; it
    is rebuilt only when the stamp moved. A customer added elsewhere may thus go unrecognised
    by name for a few seconds (its payments wait for review), never the reverse."""
    bind = session.get_bind()
    key = (id(bind), str(bind.url))
    now = time.monotonic()
    cached = _directories.get(key)
    generation = _generation
    if (cached is not None and cached.generation == generation
            and now - cached.checked < STAMP_EVERY):
        return cached.directory
    stamp = tuple(_rows(session, _STAMP)[0])
    if cached is not None and cached.stamp == stamp:
        cached.generation, cached.checked = generation, now
        return cached.directory
    rows = _rows(session, sa.select(_CUST.c.id, _CUST.c.name, _CUST.c.external_id,
                                    _CUST.c.currency))
    directory = CustomerDirectory(CustomerName(*row) for row in rows)
    with _lock:
        if len(_directories) > 32:
            _directories.clear()
        _directories[key] = _Cached(stamp, generation, now, directory)
    return directory


# -- gathering -------------------------------------------------------------------------------------
def _by_keys(session: Session, keys: set[str]) -> list[OpenItem]:
    """Invoices (open or paid) whose number has one of the blocking keys: indexed IN."""
    found: list[OpenItem] = []
    ordered = sorted(keys)
    for start in range(0, len(ordered), IN_CHUNK):
        chunk = ordered[start:start + IN_CHUNK]
        found.extend(OpenItem(*row) for row in _rows(session, _BY_KEYS, {"keys": chunk}))
    return found


def _named(texts: list[str], invoices: Iterable[OpenItem]) -> dict[str, str]:
    """Invoice numbers the texts name, in text order: number -> "full" | "bare"."""
    invoices = list(invoices)
    numbers = [inv.number for inv in invoices]
    keys = [inv.key for inv in invoices]
    named: dict[str, str] = {}
    for text in texts:
        for number, kind in remittance.find_references(text, numbers, keys).items():
            if named.get(number) != "full":
                named[number] = kind
    return named


def _settled_by_reference(facts: PaymentFacts, items: list[OpenItem],
                          rules: matching.Rules) -> bool:
    """Do the named open invoices alone account for the amount (exactly, after a discount,
    or but for a bank fee)? Then nothing else needs loading."""
    if not items:
        return False
    groups: dict[int, list[OpenItem]] = {}
    for item in items:
        groups.setdefault(item.customer_id, []).append(item)
    for group in [*groups.values(), items]:
        settled = matching.settle(group, facts.amount_minor, facts.received_on, rules,
                                  allow_partial=False)
        if settled:
            return True
    return False


def gather(session: Session, facts: PaymentFacts,
           rules: matching.Rules | None = None) -> Evidence:
    ev = Evidence()
    rules = rules or matching.Rules()
    # the reads below go straight to the connection (no autoflush): flush what they read
    if any(isinstance(obj, (Customer, Invoice)) for obj in (*session.new, *session.dirty)):
        session.flush()
    texts = [facts.reference or "", facts.payer_name or ""]

    # 1. invoice numbers named in the remittance text or the payer field (indexed key)
    keys = set().union(*(remittance.reference_keys(t) for t in texts))
    candidates = {inv.id: inv for inv in _by_keys(session, keys)} if keys else {}

    # 2. who paid: the given customer, the payer name, the customers of named invoices
    directory = customer_directory(session)
    if facts.payer_name:
        for cid, score in directory.match(facts.payer_name, facts.currency, limit=5):
            ev.name_scores[cid] = score
    wanted: list[int] = []
    if facts.customer_id is not None:
        wanted.append(facts.customer_id)
    first = {inv.number: inv for inv in candidates.values()}
    first_refs = [first[n] for n in _named(texts, candidates.values())
                  if first[n].balance_minor > 0 and first[n].currency == facts.currency]
    if _settled_by_reference(facts, first_refs, rules):
        wanted = []  # the named invoices settle the payment: no combinations to look for
    else:
        wanted += [inv.customer_id for inv in first_refs]
        wanted += [cid for cid, score in list(ev.name_scores.items())[:MAX_NAME_CUSTOMERS]
                   if score >= matching.NAME_CANDIDATE_MIN]
        wanted = list(dict.fromkeys(wanted))[:MAX_CUSTOMERS]

    # 3. their open invoices, oldest first (one indexed query each, plain rows)
    customer_open: dict[int, list[OpenItem]] = {}
    for cid in wanted:
        # (no currency predicate: a customer is billed in one currency, and with one SQLite
        # would pick ix_invoices_open_amount and scan every open invoice of that currency)
        rows = _rows(session, _OPEN_OF, {"customer": cid})
        items = [OpenItem(*row) for row in rows[:matching.MAX_OPEN_INVOICES]
                 if row.currency == facts.currency]
        customer_open[cid] = items
        if len(rows) > matching.MAX_OPEN_INVOICES:
            ev.truncated.add(cid)
        # an invoice issued after the money arrived is not what it paid
        ev.open_items[cid] = [i for i in items if i.issue_date <= facts.received_on]

    # 4. which of these the text names, in text order (short numbers such as "SI-0004400",
    #    whose key is too short to look up, are found among the candidates' open invoices)
    found: dict[int, OpenItem] = dict(candidates)
    spelled = set().union(*(remittance.reference_keys(t, min_len=1) for t in texts))
    for items in customer_open.values():
        for item in items:
            if item.key in spelled:  # only numbers whose key some window of the text has
                found.setdefault(item.id, item)
    by_number = {inv.number: inv for inv in found.values()}
    for number, kind in _named(texts, found.values()).items():
        inv = by_number[number]
        if inv.currency != facts.currency:
            continue
        if inv.balance_minor > 0:
            ev.refs.append(inv)
            if kind == "bare":
                ev.bare_refs.add(inv.id)
        else:
            ev.paid_refs.append(inv.number)

    # 5. nothing named exactly: one-digit typos (kept only if the amount confirms them)
    if not ev.refs:
        typo = set().union(*(remittance.typo_keys(t) for t in texts)) - keys
        if typo:
            open_found = [inv for inv in _by_keys(session, typo)
                          if inv.balance_minor > 0 and inv.currency == facts.currency]
            hits = set()
            for text in texts:
                hits.update(remittance.find_typo_references(text, [i.number for i in open_found]))
            ev.typo_refs = [inv for inv in open_found if inv.number in hits]

    # 6. any customer's invoice with exactly this amount (suggestions for unknown payers)
    if not ev.refs:
        ev.same_amount = [OpenItem(*row) for row in _rows(session, _SAME_AMOUNT, {
            "currency": facts.currency, "amount": facts.amount_minor,
            "on": facts.received_on})]

    payer = payer_names.name_form(facts.payer_name)
    plan_customers = {*wanted, *(i.customer_id for i in ev.refs + ev.typo_refs + ev.same_amount)}
    for cid in {*ev.name_scores, *plan_customers}:
        if cid in directory.by_id:
            ev.customers[cid] = directory.by_id[cid]
            if payer.core and cid not in ev.name_scores:  # e.g. the customer of a named invoice
                ev.name_scores[cid] = round(payer_names.name_similarity(
                    payer, directory.forms[cid]), 1)
    return ev
