"""The cash-application engine's write path: payments recorded, matched and applied in batches.

A `CashRun` is one transaction's worth of payments — one from the REST API, or every credit of
a bank statement or CSV file. Each payment goes through the same steps as ever (SPEC §3; see
`workflows.cash_application`): validated, matched (`workflows.matching` on evidence from
`workflows.cash_candidates.OpenBook`), then applied — allocations, bank-fee and discount
write-offs, deductions — or sent to review with its suggestions (`PaymentSuggestion` rows)
and a card in the AR channel, every step audited.

What makes 10,000 payments take seconds instead of a minute is *when* it talks to the database:

* **Reads in batches.** For a chunk of payments the book reads every candidate invoice in a
  few queries, then decides each payment in memory, keeping the balances it changes.
* **Writes in batches.** A chunk's payments are inserted with one statement (ids returned in
  order), then its allocations, write-offs, deductions, suggestions, cards and audit events,
  one executemany each.
* **Balances move by conditional UPDATEs only** (`balance = balance - x WHERE balance = what
  the decision saw`), all of a chunk in one executemany. If another transaction changed one
  of those invoices meanwhile (possible on PostgreSQL; SQLite has one writer at a time), the
  row count says so: the chunk's savepoint is rolled back, the book forgets what it read, and
  the chunk is decided again on fresh data. A payment is never applied on a stale balance.

A chunk is all or nothing inside the caller's transaction; the caller commits once (a file is
one transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    Allocation,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentStatus,
    PaymentSuggestion,
    WriteOff,
    money,
)
from models import Policy as PolicyRow
from models.base import UTCDateTime
from workflows import audit, bulk, cash_rules, exposure, matching, periods
from workflows import policy as policies
from workflows import validation as v
from workflows.cash_candidates import CustomerNames, LearnedRules, OpenBook, load_directory
from workflows.errors import Conflict, DomainError, FieldError, ValidationFailed
from workflows.inputs import PaymentIn  # what a run takes (re-exported)

ENGINE = "cashapp-1"
CHUNK = 500  # payments decided and written together
RETRIES = 3  # chunks decided again after another transaction changed their invoices
BOOK_ITEMS = 60_000  # invoices a run keeps in memory between chunks

_PAY = Payment.__table__
_INV = Invoice.__table__
_LEFT = _INV.c.balance_minor - sa.bindparam("amount")
# What stays in dispute when the balance goes down: never more than the balance (as
# `invoicing.reduce_balance`; `invariants.validate_disputes`).
_STILL_DISPUTED = sa.case((_INV.c.disputed_minor > _LEFT, _LEFT), else_=_INV.c.disputed_minor)
# Lower the balance only if it is still what the decision saw; stamp paid_at when it closes.
_REDUCE = (
    sa.update(_INV)
    .where(_INV.c.id == sa.bindparam("invoice"),
           _INV.c.balance_minor == sa.bindparam("expected"))
    .values(balance_minor=_LEFT,
            disputed_minor=_STILL_DISPUTED,
            disputed=_STILL_DISPUTED > 0,
            paid_at=sa.case((sa.and_(_LEFT == 0, _INV.c.paid_at.is_(None)),
                             sa.bindparam("settled_at", type_=UTCDateTime)),
                            else_=_INV.c.paid_at)))
_EXISTING = sa.select(_PAY.c.id, _PAY.c.external_id, _PAY.c.amount_minor, _PAY.c.currency,
                      _PAY.c.received_at).where(
    _PAY.c.external_id.in_(sa.bindparam("ids", expanding=True)))
_CUSTOMERS = sa.select(Customer.__table__.c.external_id, Customer.__table__.c.id,
                       Customer.__table__.c.name, Customer.__table__.c.currency).where(
    Customer.__table__.c.external_id.in_(sa.bindparam("ids", expanding=True)))


def value_date_of(received_at: datetime) -> date:
    """The calendar day a payment was received on, as its sender stated it: the date of
    `received_at` in the offset it came with. An ERP that sends 2026-06-15T00:00:00+02:00, a
    CSV's 2026-06-15 (midnight UTC) and the payment modal's noon in the collector's zone all
    mean 15 June; converting to UTC or to our own zone first would move some of them a day."""
    return received_at.date()


def day_of(data: PaymentIn) -> date:
    """The day a payment counts on (its `value_date`): the source's value date, else
    `value_date_of(received_at)`. The engine judges the terms' early-payment discount by it
    (`facts_of`), the day its write-off is dated by: 17:00 in Los Angeles on 11 Nov
    (`2026-11-11T17:00:00-08:00`, 12 Nov in UTC) pays within a window ending on 11 Nov."""
    return data.value_date or value_date_of(data.received_at)


def checked(data: PaymentIn) -> tuple[int, str]:
    """(amount in minor units, currency), or ValidationFailed naming the field."""
    currency = v.currency("currency", data.currency)
    amount = v.amount_minor("amount", data.amount, currency, positive=True)
    if data.received_at.tzinfo is None:
        raise ValidationFailed.of("received_at", "needs a time zone, e.g. 2026-11-23T10:00:00Z")
    v.in_years("received_at", data.received_at)  # before it is converted to UTC
    for name in ("payer_name", "reference", "customer", "method", "external_id"):
        v.text(name, getattr(data, name))
    return amount, currency


def same_money(existing_id: int, external_id: str, recorded: tuple[int, str, datetime],
               amount_minor: int, currency: str, received_at: datetime) -> None:
    """A payment re-sent under its external_id is the same one if the money is the same
    (amount, currency, time received); otherwise Conflict naming each field that differs (the
    payer name, reference, customer and method only describe a payment)."""
    old_amount, old_currency, old_received = recorded
    differ = []
    if money.from_minor(old_amount, old_currency) != money.from_minor(amount_minor, currency):
        differ.append(FieldError("amount", f"recorded as "
                                 f"{money.to_str(old_amount, old_currency)}, "
                                 f"this one says {money.to_str(amount_minor, currency)}"))
    if old_currency != currency:
        differ.append(FieldError("currency", f"recorded in {old_currency}, this one says "
                                 f"{currency}"))
    if old_received != received_at:
        differ.append(FieldError("received_at", "recorded as received at "
                                 f"{old_received.astimezone(UTC).isoformat()}, this "
                                 f"one says {received_at.astimezone(UTC).isoformat()}"))
    if differ:
        raise Conflict(f"payment {external_id} was already recorded (#{existing_id}) "
                       f"with another {', '.join(e.field for e in differ)}; nothing was "
                       "changed. A different payment needs its own external_id.",
                       errors=differ)


_POLICY = PolicyRow.__table__
_MATCHING_POLICY = sa.select(_POLICY.c.key, _POLICY.c.value).where(_POLICY.c.key.in_(
    ("cashapp_confidence", "bank_fee_pct", "bank_fee_max")))


def rules_for(session: Session) -> matching.Rules:
    """The policy's matching rules (`workflows.policy`: the settings' defaults the session
    carries, or what an admin set), read once per run — a statement of thousands of lines
    asks once, a policy change applies to the next run — with one small query (an API
    payment is a run of its own)."""
    base = session.info.get(policies.DEFAULTS_KEY) or policies.Policy()
    set_ = dict(session.connection().execute(_MATCHING_POLICY).all())

    def value(key: str) -> Decimal:
        stored = policies.stored_value(key, set_[key]) if key in set_ else None
        return getattr(base, key) if stored is None else stored

    return matching.Rules(threshold=value("cashapp_confidence"),
                          fee_bp=money.pct_to_bp(value("bank_fee_pct")),
                          fee_max=value("bank_fee_max"))


def facts_of(payment: Payment, customer_id: int | None = None) -> matching.PaymentFacts:
    return matching.PaymentFacts(
        amount_minor=payment.amount_minor, currency=payment.currency,
        received_on=payment.value_date,
        payer_name=payment.payer_name, reference=payment.reference,
        customer_id=customer_id if customer_id is not None else payment.customer_id)


# -- what a plan means -------------------------------------------------------------------------
def lines_of(plan: matching.Plan) -> list[dict]:
    """A plan as the rows Apply allocates (stored with each suggestion)."""
    return line_rows(plan.lines)


def line_rows(lines: Iterable[matching.Line]) -> list[dict]:
    """Plan lines as the rows `cash_application` allocates, writes off and flags."""
    return [{"invoice_id": line.item.id, "number": line.item.number,
             "allocate_minor": line.allocate_minor,
             "write_offs": [[amount, reason] for amount, reason in line.write_offs],
             "deduction_minor": line.deduction_minor} for line in lines]


def learned_ids(plan: matching.Plan, evidence: matching.Evidence) -> list[int]:
    """The learned rules that spoke for this plan's customer."""
    used = {s.name for s in plan.signals if s.name.startswith("learned_") and s.weight > 0}
    return [r.rule_id for r in evidence.learned.get(plan.customer_id, [])
            if f"learned_{r.kind}" in used]


def suggestion_row(plan: matching.Plan, rank: int) -> dict:
    """A plan offered to a person, as its `PaymentSuggestion` row (minor units)."""
    return {"rank": rank, "customer_id": plan.customer_id, "kind": plan.kind, "fit": plan.fit,
            "confidence_bp": plan.confidence_bp, "write_off_minor": plan.write_off_minor,
            "deduction_minor": plan.deduction_minor, "unapplied_minor": plan.unapplied_minor,
            "lines": lines_of(plan),
            "reasons": [s.detail for s in plan.signals if s.detail and s.weight > 0],
            "concerns": [s.detail for s in plan.signals if s.detail and s.weight < 0],
            "signals": [s.as_dict() for s in plan.signals]}


def suggestion_json(row: dict, currency: str, customer: tuple[str, str] | None) -> dict:
    """A suggestion as the API answers it and the card shows it."""
    def amount(minor: int) -> str:
        return money.to_str(minor, currency)
    confidence = row.get("confidence_bp")
    return {
        "rank": row["rank"], "customer": customer[0] if customer else None,
        "customer_name": customer[1] if customer else None,
        "confidence": (str(Decimal(confidence).scaleb(-4).quantize(Decimal("0.01")))
                       if confidence is not None else None),
        "fit": row["fit"],
        "invoices": [{"invoice": line["number"], "amount": amount(line["allocate_minor"])}
                     for line in row["lines"]],
        "write_off": amount(row["write_off_minor"]),
        "unapplied_amount": amount(row["unapplied_minor"]),
        "reasons": list(row.get("reasons") or []), "concerns": list(row.get("concerns") or [])}


def payment_card(values: dict, payment_id: int, customer_name: str | None = None) -> dict:
    """The payment as the `cashapp_review` card shows it (a frozen snapshot)."""
    return {"id": payment_id, "amount_minor": values["amount_minor"],
            "currency": values["currency"], "payer_name": values.get("payer_name"),
            "reference": values.get("reference"), "external_id": values.get("external_id"),
            "received_at": values["received_at"].isoformat(), "source": values.get("source"),
            "customer_name": customer_name}


def card_context(payment: dict, status: str, suggestions: list[dict],
                 decision: dict | None = None, round_: int = 1) -> dict:
    return {"payment": payment, "status": status, "suggestions": suggestions,
            "decision": decision, "round": round_}


# -- one run -------------------------------------------------------------------------------------
@dataclass
class Ticket:
    """One payment handed to a run, and what became of it."""

    data: PaymentIn
    where: str | None = None  # "row 4", "Stmt 1, Ntry 3": where errors are reported
    amount_minor: int = 0
    currency: str = ""
    payment_id: int | None = None
    created: bool = False
    status: str | None = None
    error: DomainError | None = None
    same_as: Ticket | None = None  # the earlier line of this run with its external_id


@dataclass
class _Decision:
    ticket: Ticket
    values: dict  # the payment row (without id)
    customer_name: str | None
    reductions: list[dict] = field(default_factory=list)  # invoice, amount, expected, ...
    allocations: list[dict] = field(default_factory=list)
    write_offs: list[dict] = field(default_factory=list)
    deductions: list[dict] = field(default_factory=list)
    suggestions: list[dict] = field(default_factory=list)
    suggestion_customers: dict[int, tuple[str, str]] = field(default_factory=dict)
    events: list[tuple[str, dict]] = field(default_factory=list)  # (kind, audit fields)
    existing: Payment | None = None  # re-matching a stored payment (`rematch`)
    round: int = 1


class _Stale(Exception):
    """An invoice changed under the run (another transaction): decide the chunk again."""


class CashRun:
    """Payments recorded and matched in one transaction (see the module docstring).

    `add` validates a payment at once (a refused one carries its error on the ticket and is
    not recorded); `flush` — called every `chunk` payments and once at the end — decides and
    writes what is pending. `names` is the database's name cache (`bot.db.Database`)."""

    def __init__(self, session: Session, *, actor: str, source: str,
                 names: CustomerNames | None = None, rules: matching.Rules | None = None,
                 chunk: int = CHUNK) -> None:
        self.session = session
        self.actor, self.source, self.chunk = actor, source, chunk
        self.names = names
        self.rules = rules or rules_for(session)
        directory = names.directory(session) if names is not None else load_directory(session)
        self.learned: LearnedRules = cash_rules.snapshot(session)
        self.book = OpenBook(session, directory, self.learned)
        self.pending: list[Ticket] = []
        self._seen: dict[str, Ticket] = {}  # external_id -> first ticket of this run
        self._customers: dict[str, tuple[int, str, str] | None] = {}

    # -- input -----------------------------------------------------------------------------------
    def add(self, data: PaymentIn, where: str | None = None) -> Ticket:
        ticket = Ticket(data, where)
        try:
            ticket.amount_minor, ticket.currency = checked(data)
        except DomainError as exc:
            ticket.error = exc
            return ticket
        self.pending.append(ticket)
        if len(self.pending) >= self.chunk:
            self.flush()
        return ticket

    def flush(self) -> None:
        tickets, self.pending = self.pending, []
        if not tickets:
            return
        if any(isinstance(o, (Customer, Invoice)) for o in (*self.session.new,
                                                            *self.session.dirty)):
            self.session.flush()  # the reads below go straight to the connection
        for attempt in range(RETRIES + 1):
            try:
                with self._savepoint():
                    decisions = self._decide(tickets)
                    self._write(decisions)
                break
            except (_Stale, IntegrityError) as exc:
                for t in tickets:  # (refused at `add`, a ticket never gets here)
                    t.payment_id, t.created, t.status, t.same_as = None, False, None, None
                    t.error = None
                self.book.forget()
                self._seen = {k: t for k, t in self._seen.items() if t not in tickets}
                if attempt == RETRIES:
                    raise Conflict("invoices or payments changed while these payments were "
                                   "being applied; nothing was recorded, try again") from exc
        self._expire(tickets, {r["invoice"] for d in decisions for r in d.reductions})
        # written: from now on the database knows these external ids (no tickets kept, so a
        # statement of 100,000 lines holds one chunk's worth), and the book may start afresh
        # when it holds much (memory flat over a long statement; what it forgets is re-read)
        self._seen.clear()
        if len(self.book.items) > BOOK_ITEMS:
            self.book.forget()

    def _savepoint(self) -> AbstractContextManager:
        # SQLite writes one transaction at a time (BEGIN IMMEDIATE, bot.db): nothing can
        # change under the run, and a savepoint per chunk would only cost statements.
        if self.session.get_bind().dialect.name == "sqlite":
            return nullcontext()
        return self.session.begin_nested()

    # -- deciding --------------------------------------------------------------------------------
    def _decide(self, tickets: list[Ticket]) -> list[_Decision]:
        live = [t for t in tickets if t.error is None]
        ids = {t.data.external_id for t in live if t.data.external_id}
        known: dict[str, tuple[int, int, str, datetime]] = {}
        for chunk in bulk.in_parts(ids):
            for pid, ext, amount, currency, received in self.session.connection().execute(
                    _EXISTING, {"ids": chunk}):
                known[ext] = (pid, amount, currency, received)
        wanted = {t.data.customer for t in live if t.data.customer} - set(self._customers)
        for chunk in bulk.in_parts(wanted):
            for ext, cid, name, currency in self.session.connection().execute(
                    _CUSTOMERS, {"ids": chunk}):
                self._customers[ext] = (cid, name, currency)
        for ext in wanted:
            self._customers.setdefault(ext, None)
        fresh = [t for t in live if not (t.data.external_id and (
            t.data.external_id in known or t.data.external_id in self._seen))]
        self.book.prefetch([self._facts(t) for t in fresh if self._customer_ok(t)],
                           self.rules)
        decisions = []
        for t in live:
            decision = self._decide_one(t, known)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _customer_ok(self, t: Ticket) -> bool:
        return not t.data.customer or self._customers.get(t.data.customer) is not None

    def _facts(self, t: Ticket) -> matching.PaymentFacts:
        given = self._customers.get(t.data.customer) if t.data.customer else None
        return matching.PaymentFacts(
            amount_minor=t.amount_minor, currency=t.currency,
            received_on=day_of(t.data),
            payer_name=t.data.payer_name, reference=t.data.reference,
            customer_id=given[0] if given else None)

    def _decide_one(self, t: Ticket, known: dict) -> _Decision | None:
        data = t.data
        try:
            ext = data.external_id
            if ext and ext in known:
                pid, amount, currency, received = known[ext]
                same_money(pid, ext, (amount, currency, received), t.amount_minor, t.currency,
                           data.received_at)
                t.payment_id, t.created = pid, False
                return None
            if ext and ext in self._seen:
                first = self._seen[ext]
                same_money(0, ext, (first.amount_minor, first.currency,
                                    first.data.received_at), t.amount_minor, t.currency,
                           data.received_at)
                t.same_as = first
                return None
            given = None
            if data.customer:
                given = self._customers.get(data.customer)
                if given is None:
                    raise ValidationFailed.of("customer", f"unknown customer {data.customer!r}")
                if given[2] != t.currency:
                    raise ValidationFailed.of("currency", f"{given[1]} is billed in "
                                              f"{given[2]}, not {t.currency}")
        except DomainError as exc:
            t.error = exc
            return None
        if ext:
            self._seen[ext] = t
        values = {"external_id": ext or None, "customer_id": given[0] if given else None,
                  "amount_minor": t.amount_minor, "currency": t.currency,
                  "received_at": data.received_at,
                  "value_date": day_of(data),
                  "payer_name": data.payer_name, "reference": data.reference,
                  "method": data.method, "source": self.source}
        decision = _Decision(t, values, given[1] if given else None)
        self._match(decision, self._facts(t))
        t.created, t.status = True, decision.values["status"]
        return decision

    def _match(self, d: _Decision, facts: matching.PaymentFacts) -> None:
        """Run the engine and turn its answer into rows: applied, or sent to review."""
        evidence = self.book.gather(facts, self.rules)
        result = matching.evaluate(facts, evidence, self.rules)
        best = result.best
        d.values["confidence_bp"] = best.confidence_bp if best else None
        d.events.append(("received", {}))
        if result.auto:
            self._apply_plan(d, best, evidence)
        else:
            self._to_review(d, result, evidence)

    def _apply_plan(self, d: _Decision, plan: matching.Plan,
                    evidence: matching.Evidence) -> None:
        values = d.values
        received = values["received_at"]
        applied = 0
        for line in plan.lines:
            item = self.book.items[line.item.id]
            balance = item.balance_minor
            if line.allocate_minor > 0:
                d.reductions.append({"invoice": item.id, "amount": line.allocate_minor,
                                     "expected": balance, "settled_at": received,
                                     "total": item.total_minor, "number": item.number,
                                     "customer": item.customer_id})
                balance -= line.allocate_minor
                d.allocations.append({"invoice_id": item.id, "amount_minor":
                                      line.allocate_minor, "method": plan.method,
                                      "number": item.number, "issued": item.issue_date})
                applied += line.allocate_minor
                if values["customer_id"] is None:
                    values["customer_id"] = item.customer_id
            for amount, reason in line.write_offs:
                d.reductions.append({"invoice": item.id, "amount": amount,
                                     "expected": balance, "settled_at": received,
                                     "total": item.total_minor, "number": item.number,
                                     "customer": item.customer_id})
                balance -= amount
                d.write_offs.append({"invoice_id": item.id, "amount_minor": amount,
                                     "reason": reason, "currency": item.currency,
                                     "issued": item.issue_date})
            if line.deduction_minor > 0:  # with what its card shows (`deductions.flag`)
                d.deductions.append({"invoice_id": item.id,
                                     "amount_minor": line.deduction_minor,
                                     "item": item, "balance_minor": balance})
            self.book.settle(item.id, balance)
        unapplied = values["amount_minor"] - applied
        values["unapplied_minor"] = unapplied
        values["status"] = (PaymentStatus.APPLIED if unapplied == 0
                            else PaymentStatus.PARTIALLY_APPLIED if unapplied < values[
                                "amount_minor"] else PaymentStatus.UNAPPLIED)
        details = {"engine": ENGINE, "outcome": "applied", "kind": plan.kind, "fit": plan.fit,
                   "signals": [s.as_dict() for s in plan.signals],
                   "write_off_minor": plan.write_off_minor,
                   "deduction_minor": plan.deduction_minor}
        used = learned_ids(plan, evidence)
        if used:
            details["learned"] = used
        values["match_details"] = details
        d.events.append(("matched", {"method": plan.method, "fit": plan.fit}))

    def _to_review(self, d: _Decision, result: matching.MatchResult,
                   evidence: matching.Evidence) -> None:
        values = d.values
        for rank, plan in enumerate(result.suggestions, start=1):
            d.suggestions.append(suggestion_row(plan, rank))
            customer = evidence.customers.get(plan.customer_id)
            if customer is not None:
                d.suggestion_customers[plan.customer_id] = (customer.external_id,
                                                            customer.name)
        values["unapplied_minor"] = values["amount_minor"]
        values["status"] = (PaymentStatus.NEEDS_REVIEW if d.suggestions
                            else PaymentStatus.UNAPPLIED)
        values["match_details"] = {"engine": ENGINE,
                                   "outcome": "review" if d.suggestions else "unmatched",
                                   "write_off_minor": 0}
        d.events.append(("review", {}))

    # -- re-matching a stored payment --------------------------------------------------------------
    def rematch(self, payment: Payment, *, customer: Customer, round_: int) -> _Decision:
        """Match a stored, untouched payment again now that a person named its customer, and
        write the outcome (see `cash_application.assign_customer`). The caller has claimed
        the payment."""
        values = {"customer_id": customer.id, "amount_minor": payment.amount_minor,
                  "currency": payment.currency, "received_at": payment.received_at,
                  "value_date": payment.value_date, "payer_name": payment.payer_name,
                  "reference": payment.reference, "external_id": payment.external_id,
                  "source": payment.source}
        ticket = Ticket(PaymentIn.model_construct(amount="0", currency=payment.currency,
                                                  received_at=payment.received_at), None,
                        payment.amount_minor, payment.currency, payment.id)
        decision = _Decision(ticket, values, customer.name, existing=payment, round=round_)
        with self._savepoint():
            self._match(decision, facts_of(payment, customer.id))
            decision.events = [e for e in decision.events if e[0] != "received"]
            self._write([decision])
        self._expire([ticket], {r["invoice"] for r in decision.reductions})
        return decision

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, decisions: list[_Decision]) -> None:
        if not decisions:
            return
        conn = self.session.connection()
        self._not_twice(decisions)
        new = [d for d in decisions if d.existing is None]
        if new:
            rows = [{**d.values, "unapplied_minor": d.values["unapplied_minor"]} for d in new]
            ids = bulk.insert_with_ids(self.session, _PAY, rows)
            for d, pid in zip(new, ids, strict=True):
                d.ticket.payment_id = pid
        for d in decisions:
            if d.existing is not None:
                self._update_existing(d)
        reductions = [r for d in decisions for r in d.reductions]
        if reductions:
            done = conn.execute(_REDUCE, reductions).rowcount
            if done != len(reductions):
                raise _Stale()
            for customer_id in {r["customer"] for r in reductions}:
                exposure.moved(self.session, customer_id)
            # the cards of deductions being worked on them show the balance now (one read
            # for the chunk; before `_flag`, so this chunk's own new cards are not touched)
            from workflows import deductions

            deductions.balance_lowered(self.session, {r["invoice"] for r in reductions})
        self._book(decisions)
        self._insert(Allocation, [{"payment_id": d.ticket.payment_id, "invoice_id":
                                   a["invoice_id"], "amount_minor": a["amount_minor"],
                                   "method": a["method"], "created_by": self.actor,
                                   "value_date": a["booking"].value_date,
                                   "effective_date": a["booking"].effective_date}
                                  for d in decisions for a in d.allocations])
        self._insert(WriteOff, [{"invoice_id": w["invoice_id"], "payment_id":
                                 d.ticket.payment_id, "amount_minor": w["amount_minor"],
                                 "reason": w["reason"], "created_by": self.actor,
                                 "value_date": w["booking"].value_date,
                                 "effective_date": w["booking"].effective_date}
                                for d in decisions for w in d.write_offs])
        self._flag(decisions)
        self._look_back(reductions)
        self._insert(PaymentSuggestion, [
            {"payment_id": d.ticket.payment_id, "round": d.round, **{
                k: s[k] for k in ("rank", "customer_id", "kind", "fit", "confidence_bp",
                                  "write_off_minor", "deduction_minor", "unapplied_minor",
                                  "lines", "reasons", "concerns", "signals")}}
            for d in decisions for s in d.suggestions])
        self._cards([d for d in decisions if d.existing is not None or d.values["status"] in (
            PaymentStatus.NEEDS_REVIEW, PaymentStatus.UNAPPLIED)])
        audit.record_rows(self.session, [row for d in decisions for row in self._events(d)])
        self._orders_paid(reductions)
        self._announce(decisions)

    def _not_twice(self, decisions: list[_Decision]) -> None:
        """A short payment on an invoice whose shortfall is already flagged — a deduction
        not resolved, stored or flagged by an earlier payment of this chunk — is applied and
        flags nothing (`deductions.being_worked`: it pays part of what that deduction is
        about); what the payment's details say was left as deduction follows. Read before the
        balances move: a deduction another transaction flags meanwhile came with a balance
        change, so the chunk is decided again (`_Stale`) and reads it then."""
        from workflows import deductions

        wanted = {x["invoice_id"] for d in decisions for x in d.deductions}
        if not wanted:
            return
        worked: set[int] = set()
        for part in bulk.in_parts(sorted(wanted)):
            worked |= deductions.being_worked(self.session, part)
        for d in decisions:
            if not d.deductions:
                continue
            kept = [x for x in d.deductions if x["invoice_id"] not in worked]
            worked |= {x["invoice_id"] for x in kept}
            if len(kept) != len(d.deductions):
                d.deductions = kept
                d.values["match_details"]["deduction_minor"] = sum(
                    x["amount_minor"] for x in kept)

    def _flag(self, decisions: list[_Decision]) -> None:
        """Each short payment beyond tolerance as one at a time flags it
        (`deductions.flag`: the row, its audit event, its card in the AR channel and
        `card_outbox_id`), the card showing the payment and the invoice as this payment left
        them (a later payment of the chunk may have lowered the invoice's balance since) —
        all of the chunk's with a few statements (`deductions.flag_many`)."""
        from workflows import deductions

        flags = []
        for d in decisions:
            if not d.deductions:
                continue
            v_ = d.values
            payment = SimpleNamespace(id=d.ticket.payment_id, amount_minor=v_["amount_minor"],
                                      currency=v_["currency"], payer_name=v_["payer_name"],
                                      reference=v_["reference"],
                                      received_at=v_["received_at"])
            for x in d.deductions:
                item = x["item"]
                invoice = SimpleNamespace(id=item.id, number=item.number,
                                          customer_id=item.customer_id,
                                          currency=item.currency, total_minor=item.total_minor,
                                          balance_minor=x["balance_minor"])
                flags.append((payment, invoice, x["amount_minor"]))
        deductions.flag_many(self.session, flags, actor=self.actor)

    def _announce(self, decisions: list[_Decision]) -> None:
        """What one at a time does after each balance change and payment, for each payment of
        the chunk in turn: a pay-now session open for an invoice's old balance is expired
        (`payment_links.balance_changed`), an invoice settled is `invoice.paid` (keyed by its
        id and paid_at, as `invoicing.reduce_balance` emits it), and a new payment is
        `payment.received` (and `payment.applied` when it is on invoices:
        `webhooks.payment_events`). A payment matched again (`rematch`) is announced by its
        caller. With no open session, no subscriber and no CRM deal nothing is read."""
        from workflows import payment_links, webhooks

        touched = list(dict.fromkeys(r["invoice"] for d in decisions for r in d.reductions))
        links = bool(touched) and payment_links.any_open(self.session)
        paid = bool(touched) and webhooks.wanted(self.session, "invoice.paid")
        events = webhooks.wanted(self.session, "payment.received", "payment.applied")
        if not (links or paid or events):
            return
        invoices: dict[int, Invoice] = {}
        for chunk in bulk.in_parts(touched):
            invoices.update((i.id, i) for i in self.session.exec(
                select(Invoice).where(Invoice.id.in_(chunk))
                .execution_options(populate_existing=True)))
        payments: dict[int, Payment] = {}
        if events:
            new = [d.ticket.payment_id for d in decisions if d.existing is None]
            for chunk in bulk.in_parts(new):
                payments.update((p.id, p) for p in self.session.exec(
                    select(Payment).where(Payment.id.in_(chunk))
                    .execution_options(populate_existing=True)))
        changed: set[int] = set()
        for d in decisions:
            for r in d.reductions:
                invoice = invoices[r["invoice"]]
                if links and invoice.id not in changed:  # (a session is expired once)
                    changed.add(invoice.id)
                    payment_links.balance_changed(self.session, invoice)
                if paid and r["expected"] == r["amount"] and invoice.paid_at is not None:
                    webhooks.emit(self.session, "invoice.paid",
                                  lambda i=invoice: webhooks.invoice_data(self.session, i),
                                  key=f"invoice.paid:{invoice.id}:"
                                      f"{invoice.paid_at.isoformat()}")
            if events and d.existing is None:
                webhooks.payment_events(self.session, payments[d.ticket.payment_id],
                                        created=True)

    def _book(self, decisions: list[_Decision]) -> None:
        """Date every allocation and fee or discount write-off as `cash_application.allocate`
        and `write_off` date one: by the payment's value date, never before the invoice's
        issue date, and in the first open month when that day is in a closed one
        (`workflows.periods`; the lock date is read once for the chunk, under the lock)."""
        settlements = [(d, x) for d in decisions for x in (*d.allocations, *d.write_offs)]
        if not settlements:
            return
        book = periods.booker(self.session)
        for d, x in settlements:
            x["booking"] = book(d.values["value_date"], not_before=x["issued"])

    def _insert(self, model: type, rows: list[dict]) -> None:
        bulk.insert_many(self.session, model.__table__, rows)

    def _update_existing(self, d: _Decision) -> None:
        values = d.values
        pay = _PAY
        claimed = self.session.connection().execute(
            sa.update(pay).where(pay.c.id == d.existing.id,
                                 pay.c.unapplied_minor == pay.c.amount_minor)
            .values(customer_id=values["customer_id"],
                    unapplied_minor=values["unapplied_minor"], status=values["status"],
                    confidence_bp=values["confidence_bp"],
                    match_details={**(d.existing.match_details or {}),
                                   **values["match_details"]}))
        if claimed.rowcount != 1:
            raise _Stale()

    def _look_back(self, reductions: list[dict]) -> None:
        """paid_at is the latest settlement of an invoice (see `invoicing.reduce_balance`):
        the CASE of `_REDUCE` stamped the one that closed it. Closed by several reductions of
        this write, it is the latest of them; reduced before this write too, the database
        says (`invoicing._last_settlement`)."""
        from workflows.invoicing import _last_settlement

        by_invoice: dict[int, list[dict]] = {}
        for r in reductions:
            by_invoice.setdefault(r["invoice"], []).append(r)
        conn = self.session.connection()
        for invoice_id, rows in by_invoice.items():
            closing = rows[-1]
            if closing["expected"] - closing["amount"] != 0:
                continue
            if rows[0]["expected"] == rows[0]["total"]:
                latest = max(r["settled_at"] for r in rows)
            else:
                latest = _last_settlement(self.session, invoice_id)
            if latest is not None and latest > closing["settled_at"]:
                conn.execute(sa.update(_INV).where(_INV.c.id == invoice_id)
                             .values(paid_at=latest))

    def _orders_paid(self, reductions: list[dict]) -> None:
        """An order whose invoices are all settled is paid (`invoicing`)."""
        from workflows.invoicing import _maybe_mark_order_paid

        closed = {r["invoice"] for r in reductions if r["expected"] - r["amount"] == 0
                  and self.book.items[r["invoice"]].order_id is not None}
        for invoice_id in sorted(closed):
            invoice = self.session.get(Invoice, invoice_id)
            self.session.refresh(invoice)
            _maybe_mark_order_paid(self.session, invoice)

    def _cards(self, decisions: list[_Decision]) -> None:
        fresh = [d for d in decisions if d.existing is None]
        rows = []
        for d in fresh:
            pid = d.ticket.payment_id
            rows.append({"transport": "slack", "method": "chat.postMessage",
                         "dedupe_key": f"cashapp-review:{pid}",
                         "payload": {"channel": "ar", "template": "cashapp_review",
                                     "context": self._card(d)}})
        self._insert(OutboxMessage, rows)
        for d in decisions:
            if d.existing is not None:
                from workflows import outbox
                target = card_of(self.session, d.existing.id)
                if target is not None:
                    outbox.update_message(
                        self.session, target_outbox_id=target, template="cashapp_review",
                        context=self._card(d),
                        dedupe_key=f"cashapp-identified:{d.existing.id}:{d.round}")

    def _card(self, d: _Decision) -> dict:
        currency = d.values["currency"]
        suggestions = [suggestion_json(s, currency, d.suggestion_customers.get(
            s["customer_id"])) for s in d.suggestions]
        return card_context(payment_card(d.values, d.ticket.payment_id, d.customer_name
                                         if d.existing is not None else None),
                            d.values["status"], suggestions, round_=d.round)

    def _events(self, d: _Decision) -> Iterable[dict]:
        pid, v_ = d.ticket.payment_id, d.values
        for kind, extra in d.events:
            if kind == "received":
                yield audit.row(actor=self.actor, action="payment.received",
                                entity_type="payment", entity_id=pid,
                                amount_minor=v_["amount_minor"], currency=v_["currency"],
                                external_id=v_["external_id"], source=self.source)
            elif kind == "matched":
                for a in d.allocations:
                    booked = a["booking"]
                    yield audit.row(actor=self.actor, action="payment.allocated",
                                    entity_type="payment", entity_id=pid, invoice=a["number"],
                                    amount_minor=a["amount_minor"], method=a["method"],
                                    reason=booked.note, **booked.as_dict())
                for w in d.write_offs:
                    yield audit.write_off_row(
                        actor=self.actor, invoice_id=w["invoice_id"],
                        amount_minor=w["amount_minor"], currency=w["currency"],
                        reason=w["reason"], payment_id=pid, booking=w["booking"])
                yield audit.row(actor=self.actor, action="payment.matched",
                                entity_type="payment", entity_id=pid, to_state=v_["status"],
                                confidence_bp=v_["confidence_bp"], **extra,
                                **({"learned": v_["match_details"]["learned"]}
                                   if "learned" in v_["match_details"] else {}))
            elif kind == "review":
                yield audit.row(actor="system", action="payment.review",
                                entity_type="payment", entity_id=pid, to_state=v_["status"],
                                confidence_bp=v_["confidence_bp"],
                                suggestions=len(d.suggestions))

    def _expire(self, tickets: list[Ticket], touched: Iterable[int] = ()) -> None:
        """Instances this session holds of rows the run changed with Core statements would
        show old values: expire them (the next access reads the database)."""
        for t in tickets:
            if t.same_as is not None:
                t.payment_id, t.created = t.same_as.payment_id, False
        identity = self.session.identity_map
        if not len(identity):
            return
        for t in tickets:
            if t.payment_id is not None:
                obj = identity.get(self.session.identity_key(Payment, t.payment_id))
                if obj is not None:
                    self.session.expire(obj)
        for item_id in touched:
            obj = identity.get(self.session.identity_key(Invoice, item_id))
            if obj is not None:
                self.session.expire(obj, ["balance_minor", "paid_at", "disputed_minor",
                                          "disputed"])


def card_of(session: Session, payment_id: int) -> int | None:
    """The outbox row that posted the payment's review card, if any."""
    return session.connection().execute(
        sa.select(OutboxMessage.__table__.c.id).where(
            OutboxMessage.__table__.c.dedupe_key == f"cashapp-review:{payment_id}")).scalar()


