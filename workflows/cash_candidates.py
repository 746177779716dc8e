"""What the database knows about incoming payments, for the matching engine.

`OpenBook` is the engine's view of the open invoices for one run — one payment from the API,
or every line of a bank statement. It reads in batches: for a chunk of payments, one indexed
query finds every invoice whose number the remittance texts may spell
(`ix_invoices_number_key`), one the open invoices of every customer the payers may be
(`ix_invoices_open_aging`, oldest first, at most `MAX_OPEN_INVOICES` each), one the first
open invoices by id with exactly the amounts paid (`ix_invoices_open_amount`, `AMOUNT_READ`
per amount; more are read only when those do not hold the few shown). Then it answers each
payment from memory (`gather`) and keeps the balances current as the run applies payments
(`settle`), so the statement's next line sees what the previous one left, without re-reading.
Anything not read in advance is read when asked for, so a prefetch is only ever a shortcut.

Customer names are matched in memory against a `CustomerDirectory`. `CustomerNames` caches it
for one database: it is built by `bot.db.Database`, which also registers its flush listener,
and handed to the workflows; without it every run builds its own directory (correct, slower).
These reads use plain Core statements on the session's connection: at 10,000 payments the
ORM's per-statement overhead was a third of the time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from models import Customer, Invoice
from workflows import bulk, matching, payer_names, remittance
from workflows.matching import Evidence, Learned, OpenItem, PaymentFacts
from workflows.payer_names import CustomerDirectory, CustomerName

MAX_NAME_CUSTOMERS = 3  # customers considered from the payer name alone
NAME_CANDIDATES = 10  # customers a payer name is compared with, best first
# Every number in the text is looked up, even one whose key is a digit or two ("SI-0004009"
# -> "49"): a number that exists must be found as itself, or a one-digit "typo" of another
# invoice with the same amount could be taken for it. The key only blocks; every candidate is
# then checked exactly.
LOOKUP_KEY_MIN = 1
NAMED_CACHE = 20_000  # texts whose named invoices a run remembers
MAX_CUSTOMERS = 5  # customers whose open invoices are loaded
SAME_AMOUNT_SHOWN = 6  # invoices of anyone with exactly the amount, as suggestions
AMOUNT_READ = 32  # invoices with one amount read at a time (by id)

_INV = Invoice.__table__
# The three reads of the book run thousands of times per statement with hundreds of values
# each: they go to the driver's cursor as plain SQL (the same on SQLite and PostgreSQL) and
# come back as plain tuples, without SQLAlchemy's per-row and per-parameter processing, which
# was a third of a statement's time. Columns in `OpenItem` order.
_COLUMNS = ("id, number, customer_id, currency, balance_minor, total_minor, issue_date, "
            "payment_terms, number_key, order_id")
# (only constants and placeholders go into these strings; values are bound parameters). On
# PostgreSQL the list is one array parameter (`= ANY(%s)`): the statement text then never
# changes, so the driver parses and prepares it once; SQLite gets `IN (?, ?, ...)`.
_BY_KEYS = f"SELECT {_COLUMNS} FROM invoices WHERE number_key {{in_text}}"  # noqa: S608
# (every open invoice of these customers, oldest due first; cut to MAX_OPEN_INVOICES here:
# a window function doing it in SQL made the query half again as slow)
_OPEN_OF = (f"SELECT {_COLUMNS} FROM invoices WHERE customer_id {{in_int}} "  # noqa: S608
            "AND balance_minor > 0 ORDER BY customer_id, due_date, id")
# (the first `AMOUNT_READ` by id of each amount: a round amount may be open on thousands of
# invoices, and only the first few that fit are ever shown; `_with_amount` reads on, page by
# page, when those are not enough)
_SAME_AMOUNT = (f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS}, ROW_NUMBER() OVER "  # noqa: S608
                "(PARTITION BY balance_minor ORDER BY id) AS place FROM invoices WHERE "
                "currency = {p} AND balance_minor {in_big}) AS same WHERE place <= "
                f"{{p}} ORDER BY id")
_SAME_AMOUNT_AFTER = (f"SELECT {_COLUMNS} FROM invoices WHERE currency = {{p}} "  # noqa: S608
                      "AND balance_minor = {p} AND id > {p} ORDER BY id LIMIT {p}")


def _rows(session: Session, statement: sa.Select, params: dict | None = None) -> list:
    return session.connection().execute(statement, params or {}).all()


def _read(session: Session, sql: str, values: list, *before: object,
          days: dict[str, date] | None = None, after: tuple = ()) -> list[OpenItem]:
    """Rows of one of the reads above for `values` (the list), after `before` (other
    parameters, in order) and before `after`, as `OpenItem`s with dates as `date` (one object
    per day, from `days`: a quarter of a million invoices share a few hundred issue dates)."""
    conn = session.connection()
    listed = "{in_" in sql  # (a statement without a list takes `before` alone)
    if conn.dialect.paramstyle == "qmark":  # SQLite
        marks = f"IN ({', '.join(['?'] * len(values))})"
        text = sql.format(p="?", in_text=marks, in_int=marks, in_big=marks)
        params: tuple = (*before, *values, *after) if listed else (*before, *after)
    else:  # PostgreSQL (psycopg)
        text = sql.format(p="%s", in_text="= ANY(%s::text[])", in_int="= ANY(%s::int[])",
                          in_big="= ANY(%s::bigint[])")
        params = (*before, list(values), *after) if listed else (*before, *after)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(text, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return rows
    days = {} if days is None else days
    if type(rows[0][6]) is str:  # SQLite keeps dates as ISO text
        def day(text: str) -> date:
            found = days.get(text)
            if found is None:
                found = days[text] = date.fromisoformat(text)
            return found
    else:
        def day(value: date) -> date:
            return days.setdefault(value.isoformat(), value)
    new = tuple.__new__  # (an `OpenItem` made at once: `_make` checks the length again)
    return [new(OpenItem, (*r[:6], day(r[6]), *r[7:])) for r in rows]


# -- customer names, cached per database ---------------------------------------------------------
_CUST = Customer.__table__
_STAMP = sa.select(sa.func.count(_CUST.c.id), sa.func.max(_CUST.c.id),
                   sa.func.max(_CUST.c.updated_at))
# PostgreSQL stamps `updated_at` when a row is written, not when its transaction commits: a
# rename stamped before another customer's change but committed after it leaves the latest
# `updated_at` where it was. Each row version's `xmin` (the transaction that wrote it) moves
# with every committed write, whatever the order: their sum is part of the stamp there.
_STAMP_PG = _STAMP.add_columns(sa.func.sum(sa.literal_column("xmin::text::bigint")))
_NAMES = sa.select(_CUST.c.id, _CUST.c.name, _CUST.c.external_id, _CUST.c.currency)


def load_directory(session: Session) -> CustomerDirectory:
    """Every customer's name, read now."""
    return CustomerDirectory(CustomerName(*row) for row in _rows(session, _NAMES))


class CustomerNames:
    """The customer names of one database as a `CustomerDirectory`, rebuilt only when the
    customers changed.

    Owned by the database object (`bot.db.Database` builds one and registers `on_flush` on
    its sessions). The cache is checked against a stamp of the customers table (count, highest
    id, latest update: one aggregate query) whenever this process wrote a customer since the
    last check, and at least every `stamp_every` seconds for changes made by other processes;
    it is rebuilt only when the stamp moved (on PostgreSQL also when any customer row was
    written by a transaction committed since, whatever order they committed in). A customer
    added or renamed elsewhere may thus go unrecognised by name for a few seconds (its
    payments wait for review), never the reverse."""

    def __init__(self, stamp_every: float = 5.0) -> None:
        self.stamp_every = stamp_every
        self._lock = threading.Lock()
        self._generation = 0  # bumped whenever a session of ours flushes a customer row
        self._cached: tuple[tuple, int, float, CustomerDirectory] | None = None

    def on_flush(self, session: Session, _context: object = None) -> None:
        """`after_flush` listener: a customer written here makes the cache check its stamp."""
        if any(isinstance(obj, Customer)
               for obj in (*session.new, *session.dirty, *session.deleted)):
            with self._lock:
                self._generation += 1

    def changed(self) -> None:
        """Customers were written outside the ORM (a bulk load): check the stamp next time."""
        with self._lock:
            self._generation += 1

    def directory(self, session: Session) -> CustomerDirectory:
        now = time.monotonic()
        with self._lock:
            cached, generation = self._cached, self._generation
        if cached is not None and cached[1] == generation and now - cached[2] < self.stamp_every:
            return cached[3]
        postgres = session.get_bind().dialect.name == "postgresql"
        stamp = tuple(_rows(session, _STAMP_PG if postgres else _STAMP)[0])
        if cached is not None and cached[0] == stamp:
            directory = cached[3]
        else:
            directory = load_directory(session)
        with self._lock:
            self._cached = (stamp, generation, now, directory)
        return directory


# -- learned rules, as the engine reads them -----------------------------------------------------
@dataclass(frozen=True)
class LearnedRule:
    id: int
    customer_id: int
    kind: str  # payer_alias | remittance_pattern
    value: str
    detail: str  # "Globex paid from 'GLBX HOLDINGS' on 12 Nov"


class LearnedRules:
    """The active rules people taught (`workflows.cash_rules`), indexed for lookups: a payer
    alias counts when exactly one customer holds it, a remittance pattern likewise."""

    def __init__(self, rules: Iterable[LearnedRule] = ()) -> None:
        self.by_value: dict[tuple[str, str], list[LearnedRule]] = defaultdict(list)
        for rule in rules:
            self.by_value[(rule.kind, rule.value)].append(rule)

    def __bool__(self) -> bool:
        return bool(self.by_value)

    def fitting(self, facts: PaymentFacts) -> list[Learned]:
        found: list[Learned] = []
        if not self.by_value:
            return found
        keys = [("payer_alias", v)
                for v in payer_names.alias_values(facts.payer_name, facts.reference)]
        keys += [("remittance_pattern", v)
                 for v, _ in remittance.pattern_values(facts.reference)]
        for key in keys:
            rules = self.by_value.get(key, [])
            if len({r.customer_id for r in rules}) == 1:
                rule = rules[0]
                found.append(Learned(rule.id, rule.customer_id, rule.kind, rule.detail))
        return found


# -- the open invoices of one run ----------------------------------------------------------------
class OpenBook:
    """Invoices as one run of the engine sees them (see the module docstring)."""

    def __init__(self, session: Session, directory: CustomerDirectory,
                 learned: LearnedRules | None = None) -> None:
        self.session = session
        self.directory = directory
        self.learned = learned or LearnedRules()
        self.items: dict[int, OpenItem] = {}  # every invoice read, with its current balance
        self._key_ids: dict[str, list[int]] = {}  # number key -> invoices (as read)
        self._customers: dict[int, tuple[list[int], bool]] = {}  # oldest first, truncated
        self._amount_ids: dict[tuple[str, int], list[int]] = {}  # open with that amount (read)
        # ... and, while more may follow, the id of the last one read
        self._amount_more: dict[tuple[str, int], int | None] = {}
        self._moved: dict[tuple[str, int], set[int]] = defaultdict(set)  # ... since (the run)
        self._named_cache: dict[tuple[str, str], dict[str, str]] = {}
        self._static: dict[PaymentFacts, tuple] = {}  # `_who`'s text-only part, this chunk
        self._days: dict[str, date] = {}

    # -- reading ---------------------------------------------------------------------------------
    def _remember(self, rows: Iterable[OpenItem]) -> list[int]:
        """Ids of the rows, each kept as an `OpenItem` unless already known: what this run
        changed wins over what the database said before."""
        items, ids = self.items, []
        for row in rows:
            if row[0] not in items:
                items[row[0]] = row
            ids.append(row[0])
        return ids

    def _read_keys(self, keys: set[str]) -> None:
        wanted = {k for k in keys if k not in self._key_ids}
        for chunk in bulk.in_parts(wanted):
            for key in chunk:
                self._key_ids[key] = []
            rows = _read(self.session, _BY_KEYS, chunk, days=self._days)
            for item_id in self._remember(rows):
                self._key_ids[self.items[item_id].key].append(item_id)

    def _read_customers(self, customers: set[int]) -> None:
        wanted = customers - set(self._customers)
        for chunk in bulk.in_parts(wanted):
            found: dict[int, list[int]] = defaultdict(list)
            rows = _read(self.session, _OPEN_OF, chunk, days=self._days)
            for row, item_id in zip(rows, self._remember(rows), strict=True):
                found[row[2]].append(item_id)
            for cid in chunk:
                ids = found.get(cid, [])
                self._customers[cid] = (ids[:matching.MAX_OPEN_INVOICES],
                                        len(ids) > matching.MAX_OPEN_INVOICES)

    def _read_amounts(self, pairs: set[tuple[str, int]]) -> None:
        wanted = {p for p in pairs if p not in self._amount_ids}
        by_currency: dict[str, set[int]] = defaultdict(set)
        for currency, amount in wanted:
            by_currency[currency].add(amount)
            self._amount_ids[(currency, amount)] = []
        for currency, amounts in by_currency.items():
            for chunk in bulk.in_parts(amounts):
                rows = _read(self.session, _SAME_AMOUNT, chunk, currency, days=self._days,
                             after=(AMOUNT_READ,))
                for row, item_id in zip(rows, self._remember(rows), strict=True):
                    self._amount_ids[(currency, row[4])].append(item_id)
        for pair in wanted:  # (in id order: the last is the highest)
            ids = self._amount_ids[pair]
            self._amount_more[pair] = ids[-1] if len(ids) >= AMOUNT_READ else None

    def _read_amount_after(self, pair: tuple[str, int], last: int) -> None:
        """The next `AMOUNT_READ` invoices with this amount after the last one read."""
        rows = _read(self.session, _SAME_AMOUNT_AFTER, [], *pair, last, AMOUNT_READ,
                     days=self._days)
        self._amount_ids[pair].extend(self._remember(rows))
        self._amount_more[pair] = rows[-1][0] if len(rows) >= AMOUNT_READ else None

    def prefetch(self, payments: Sequence[PaymentFacts], rules: matching.Rules) -> None:
        """Read what `gather` will ask about these payments, in a few queries for all."""
        self._static.clear()
        # who paid: the payer lines' typo scans of every customer name, all at once
        self.directory.prepare((f.payer_name, f.currency, f.reference) for f in payments)
        keys: set[str] = set()
        for facts in payments:  # (one-digit typos are looked up only when nothing is named)
            for text in (facts.reference, facts.payer_name):
                keys |= remittance.reference_keys(text, min_len=LOOKUP_KEY_MIN)
        self._read_keys(keys)
        customers: set[int] = set()
        amounts: set[tuple[str, int]] = set()
        typos: set[str] = set()
        for facts in payments:
            who = self._who(facts, rules)
            customers |= set(who.wanted)
            if not who.candidates:  # (typos and same-amount invoices count only when nothing
                # is named)
                amounts.add((facts.currency, facts.amount_minor))
                for text in (facts.reference, facts.payer_name):
                    typos |= remittance.typo_keys(text)
        self._read_customers(customers)
        self._read_amounts(amounts)
        self._read_keys(typos)

    def _who(self, facts: PaymentFacts, rules: matching.Rules) -> _Who:
        """Who may have paid, and so whose open invoices to search (see `gather`, step 2).
        What depends only on the payment's texts is worked out once per chunk (prefetch and
        gather ask alike); what depends on balances, each time."""
        static = self._static.get(facts)
        if static is None:
            texts = (facts.reference or "", facts.payer_name or "")
            keys = self._keys_of(texts)
            candidate_ids = [inv.id for inv in self._by_keys(keys)] if keys else []
            scores = self._name_scores(facts)
            named, close = _by_name(scores)
            learned: dict[int, list[Learned]] = {}
            for rule in self.learned.fitting(facts):
                learned.setdefault(rule.customer_id, []).append(rule)
            numbers = list(self._named(texts, (self.items[i] for i in candidate_ids)))
            static = self._static[facts] = (keys, candidate_ids, scores, named, close,
                                            learned, numbers)
        keys, candidate_ids, scores, named, close, learned, numbers = static
        candidates = {i: self.items[i] for i in candidate_ids}
        wanted: list[int] = [facts.customer_id] if facts.customer_id is not None else []
        first = {inv.number: inv for inv in candidates.values()}
        first_refs = [first[n] for n in numbers
                      if first[n].balance_minor > 0 and first[n].currency == facts.currency]
        if _settled_by_reference(facts, first_refs, rules):
            wanted = []  # the named invoices settle the payment: no combinations to look for
        else:
            wanted += [inv.customer_id for inv in first_refs]
            wanted += list(learned)
            wanted += named
            wanted = list(dict.fromkeys(wanted))[:MAX_CUSTOMERS]
        return _Who(keys, candidates, scores, close, learned, wanted)

    def _keys_of(self, texts: tuple[str, str]) -> set[str]:
        return (remittance.reference_keys(texts[0], min_len=LOOKUP_KEY_MIN)
                | remittance.reference_keys(texts[1], min_len=LOOKUP_KEY_MIN))

    def _named(self, texts: tuple[str, str], invoices: Iterable[OpenItem]) -> dict[str, str]:
        """`_named`, remembered per text: the invoices a text may name (by key) never change
        within a run, only their balances."""
        found = self._named_cache.get(texts)
        if found is None:
            if len(self._named_cache) > NAMED_CACHE:
                self._named_cache.clear()
            found = self._named_cache[texts] = _named(list(texts), invoices)
        return found

    def _name_scores(self, facts: PaymentFacts) -> list[tuple[int, float]]:
        return self.directory.match(facts.payer_name, facts.currency,
                                    limit=NAME_CANDIDATES, reference=facts.reference)

    def _open_of(self, cid: int) -> tuple[list[OpenItem], bool]:
        if cid not in self._customers:
            self._read_customers({cid})
        ids, truncated = self._customers[cid]
        return [item for i in ids if (item := self.items[i]).balance_minor > 0], truncated

    def _by_keys(self, keys: set[str]) -> list[OpenItem]:
        self._read_keys(keys)
        return [self.items[i] for key in keys for i in self._key_ids.get(key, ())]

    def _with_amount(self, currency: str, amount: int, issued_by: date,
                     limit: int) -> list[OpenItem]:
        """The first `limit` open invoices (by id) whose balance is `amount` now, issued on or
        before `issued_by` (a round amount may be open on thousands: only these are looked
        at)."""
        pair = (currency, amount)
        self._read_amounts({pair})
        items = self.items
        while True:
            # Only what was read counts, up to the last invoice read when more may follow:
            # every invoice below it with this amount was read then (or reached this amount
            # in this run: `_moved`), so the first that fit are the first of all.
            last = self._amount_more[pair]
            found: list[OpenItem] = []
            for i in sorted({*self._amount_ids[pair], *self._moved.get(pair, ())}):
                if last is not None and i > last:
                    break
                item = items[i]
                if item.balance_minor == amount and item.issue_date <= issued_by:
                    found.append(item)
                    if len(found) == limit:
                        return found
            if last is None:
                return found
            self._read_amount_after(pair, last)

    # -- keeping it current ------------------------------------------------------------------
    def settle(self, item_id: int, balance_minor: int) -> None:
        """The run lowered this invoice's balance (it was read before)."""
        item = self.items[item_id]._replace(balance_minor=balance_minor)
        self.items[item_id] = item
        self._moved[(item.currency, balance_minor)].add(item_id)

    def forget(self) -> None:
        """Drop everything read (the database changed under the run, or the book grew past
        what a long statement should hold in memory): read again when asked."""
        self.__init__(self.session, self.directory, self.learned)

    # -- one payment -----------------------------------------------------------------------------
    def gather(self, facts: PaymentFacts, rules: matching.Rules) -> Evidence:
        ev = Evidence()
        texts = [facts.reference or "", facts.payer_name or ""]

        # 1. invoice numbers named in the remittance text or the payer field (indexed key)
        # 2. who paid: the given customer, what people taught, the payer name, the customers
        #    of named invoices
        who = self._who(facts, rules)
        keys, candidates, wanted = who.keys, who.candidates, who.wanted
        ev.name_scores = dict(who.scores)
        ev.learned = who.learned
        # a payer name fitting more customers than were searched: what was found there may
        # have a twin elsewhere
        ev.unsearched_names = {cid for cid in who.close if cid not in wanted}

        # 3. their open invoices, oldest first
        customer_open: dict[int, list[OpenItem]] = {}
        for cid in wanted:
            opened, truncated = self._open_of(cid)
            # (a customer is billed in one currency; an invoice in another is not this money)
            items = [i for i in opened if i.currency == facts.currency]
            customer_open[cid] = items
            if truncated:
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
        named_here = (self._named(tuple(texts), found.values()) if len(found) == len(candidates)
                      else _named(texts, found.values()))
        for number, kind in named_here.items():
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
                open_found = [inv for inv in self._by_keys(typo)
                              if inv.balance_minor > 0 and inv.currency == facts.currency]
                hits = set()
                for text in texts:
                    hits.update(remittance.find_typo_references(
                        text, [i.number for i in open_found]))
                ev.typo_refs = sorted((inv for inv in open_found if inv.number in hits),
                                      key=lambda inv: inv.id)

        # 6. any customer's invoice with exactly this amount (suggestions for unknown payers)
        if not ev.refs:
            ev.same_amount = self._with_amount(facts.currency, facts.amount_minor,
                                               facts.received_on, SAME_AMOUNT_SHOWN)

        forms = payer_names.payer_forms(facts.payer_name,
                                        None if facts.payer_name else facts.reference)
        directory = self.directory
        plan_customers = {*wanted, *ev.learned,
                          *(i.customer_id for i in ev.refs + ev.typo_refs + ev.same_amount)}
        for cid in {*ev.name_scores, *plan_customers}:
            if cid in directory.by_id:
                ev.customers[cid] = directory.by_id[cid]
                if forms and cid not in ev.name_scores:  # e.g. the customer of a named invoice
                    ev.name_scores[cid] = round(payer_names.payer_similarity(
                        forms, directory.forms[cid]), 1)
        return ev


@dataclass
class _Who:
    keys: set[str]
    candidates: dict[int, OpenItem]  # invoices whose key the texts have (open or paid)
    scores: list[tuple[int, float]]  # payer name -> customers, best first
    close: list[int]  # customers the name fits about as well as the best
    learned: dict[int, list[Learned]]
    wanted: list[int]  # customers whose open invoices to search


def _by_name(scores: list[tuple[int, float]]) -> tuple[list[int], list[int]]:
    """(customers to search because of the payer name, every customer it fits about as well
    as the best). Normally the best `MAX_NAME_CUSTOMERS`; when more fit equally well, up to
    `MAX_CUSTOMERS` of them."""
    if not scores:
        return [], []
    top = scores[0][1]
    close = [cid for cid, score in scores if score >= matching.NAME_CANDIDATE_MIN
             and score > top - matching.NAME_AMBIGUITY_MARGIN]
    if len(close) > MAX_NAME_CUSTOMERS:
        return close[:MAX_CUSTOMERS], close if len(close) < NAME_CANDIDATES else [*close, -1]
    return [cid for cid, score in scores[:MAX_NAME_CUSTOMERS]
            if score >= matching.NAME_CANDIDATE_MIN], close


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


def gather(session: Session, facts: PaymentFacts, rules: matching.Rules | None = None, *,
           names: CustomerNames | None = None, learned: LearnedRules | None = None
           ) -> Evidence:
    """The evidence for one payment, read now (a run of one)."""
    directory = names.directory(session) if names is not None else load_directory(session)
    return OpenBook(session, directory, learned).gather(facts, rules or matching.Rules())
