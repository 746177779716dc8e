"""Cash-application matching engine: pure functions, no database writes, no Slack.

It works the way a good AR clerk does. Given an incoming payment and what the database knows
(gathered by `workflows.cash_candidates`: open invoices whose numbers appear in the remittance
text, the customers the payer name may be, those customers' open invoices) it proposes *plans*
— "allocate these amounts to these invoices, write off this fee, keep this as credit" — and
scores each plan on every signal:

* **reference**: invoice numbers of open invoices found in the remittance text or payer field,
  in any format the payer typed them (`workflows.remittance`): punctuation, case, padding and
  separators are ignored; a one-digit typo counts only when the amount confirms it;
* **amount**: the payment equals the plan's open amount exactly, after early-payment
  discounts (`2/10 NET30` paid within the window at 98 %), or within the bank-fee tolerance;
  a short or over payment is accepted only behind a reference;
* **customer**: the customer given with the payment, or the payer name matched fuzzily to
  customer names (`workflows.payer_names`: bank truncations, legal-form suffixes, typos); a name
  close to two customers lowers the score, a name clearly pointing elsewhere lowers it more;
* **subset**: a combination of one customer's open invoices summing to the amount
  (`workflows.subsets`: bounded meet-in-the-middle search);
* **learned**: what people taught it (`workflows.cash_rules`): a payer line that is this
  customer's ("GLBX HOLDINGS" pays for Globex), a remittance habit (Globex always writes its
  PO number). Strong evidence of *who* paid, never of *which* invoice: it cannot outweigh an
  exact invoice reference.

An exact invoice reference with the exact open amount is decisive, whatever the payer line
says — unless the payer line (or the customer given with the payment) clearly names another
customer than the invoice's: then a person is asked.

Scores add up as log-odds (`Signal.weight`), so every plan carries a machine-readable
explanation of why it scored what it did. A plan's confidence is its share against every
other plan and against "none of these" (`_rank`): when two answers are plausible the payment
goes to a person. Precision over recall — a wrong application is far more expensive than a
suggestion a clerk accepts with one click.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from models import money
from models.invoices import invoice_number_key
from workflows.invoicing import Terms
from workflows.payer_names import CustomerName, payer_forms
from workflows.remittance import partial_references
from workflows.subsets import MAX_SUBSET_SIZE, chance_of_coincidence, subsets_summing_to
from workflows.validation import early_discount_ok

# -- weights (log-odds) ---------------------------------------------------------------------------
PRIOR = -2.0  # a payment and a random plan: unlikely until signals say otherwise
W_REF = 4.5  # the plan's invoices are exactly the ones the remittance names
W_REF_BARE = 3.0  # ... named without the number's prefix ("2026-000123" for INV-2026-000123)
W_REF_SOME = 2.0  # the plan's invoices are some of the ones named
W_REF_OVERLAP = 1.0  # some plan invoices are named, others are not
W_REF_OTHER = -1.5  # the remittance names open invoices this plan ignores
W_REF_TYPO = 2.5  # named with a one-digit typo, and the amount confirms it
W_REF_PARTIAL = 1.0  # only the serial part of the number appears ("inv 123")
W_REF_PAID = -2.0  # the remittance names an invoice that is already paid (duplicate?)
W_AMOUNT = 3.0  # the payment equals the plan's open amount (or its discounted amount)
W_FEE_REF = 2.5  # short by a bank fee within tolerance, behind a reference
W_SINGLE = 0.5  # one invoice with exactly this amount: the commonest payment of all
W_EXTRA_INVOICE = -0.2  # each further unreferenced invoice in a combination
W_FEE_GUESS = -0.3  # an amount near (not at) an invoice is a little less telling
CHANCE_SCALE = 50  # how hard a plausible coincidence counts against an amount match
W_CUSTOMER_GIVEN = 3.0  # the payment arrived with its customer
W_CUSTOMER_OTHER = -4.0  # ... and the plan is for somebody else
W_NAME = ((90, 2.0), (85, 1.4), (80, 0.8), (75, 0.3))  # payer-name similarity bands
W_NAME_UNLIKE = -2.0  # a payer name that resembles nothing on this plan's customer
W_NAME_ELSEWHERE = -1.0  # ... and clearly belongs to another customer
W_NAME_AMBIGUOUS = -1.0  # the payer name fits two customers about equally
W_INCOMPLETE = -1.0  # the combination search was cut short: uniqueness is not known
W_NAME_UNSEARCHED = -2.0  # the payer name fits more customers than were looked at
W_LEARNED = {"payer_alias": 2.5, "remittance_pattern": 1.5}  # taught by a person (cash_rules)
NAME_ONLY_CAP = -0.5  # a name without an amount is only ever a suggestion
DECISIVE_LOGIT = 7.0  # exact reference + exact open amount, nobody else named

NAME_CANDIDATE_MIN = 75  # payer-name similarity from which a customer is considered
NAME_AMBIGUITY_MARGIN = 8
MAX_OPEN_INVOICES = 400  # open invoices per customer the engine looks at (oldest first)
MAX_SUGGESTIONS = 3
FIT_EXACT, FIT_DISCOUNT, FIT_FEE, FIT_SHORT, FIT_OVER, FIT_NONE = (
    "exact", "discount", "fee", "short", "over", "none")
AMOUNT_FITS = (FIT_EXACT, FIT_DISCOUNT, FIT_FEE)


# -- data the engine reads -------------------------------------------------------------------------
class OpenItem(NamedTuple):
    """An open invoice as the engine sees it (a tuple: hundreds are read per payment)."""

    id: int
    number: str
    customer_id: int
    currency: str
    balance_minor: int
    total_minor: int
    issue_date: date
    payment_terms: str = "NET30"
    number_key: str | None = None  # `invoice_number_key(number)`, when read from the database
    order_id: int | None = None  # the order it bills (paid when all its invoices are)

    @property
    def key(self) -> str:
        return self.number_key if self.number_key is not None else invoice_number_key(
            self.number)


@dataclass(frozen=True)
class PaymentFacts:
    amount_minor: int
    currency: str
    received_on: date
    payer_name: str | None = None
    reference: str | None = None
    customer_id: int | None = None  # given with the payment (API / CSV / modal)


@dataclass(frozen=True)
class Learned:
    """A rule a person taught (`workflows.cash_rules`) that fits this payment."""

    rule_id: int
    customer_id: int
    kind: str  # payer_alias | remittance_pattern
    detail: str  # "Globex paid from 'GLBX HOLDINGS' on 12 Nov"


@dataclass(frozen=True)
class Rules:
    threshold: Decimal = Decimal("0.90")
    fee_bp: int = 50  # 0.5 %
    fee_max: Decimal = Decimal("5.00")  # major units of the invoice currency

    def fee_tolerance(self, expected_minor: int, currency: str) -> int:
        """Bank-fee tolerance: 0.5 % or 5.00, whichever is smaller (SPEC §3)."""
        return min(money.percent_of(expected_minor, self.fee_bp, currency),
                   money.to_minor(self.fee_max, currency, exact=False))


@dataclass
class Evidence:
    """What `workflows.cash_candidates.gather` found in the database for one payment."""

    refs: list[OpenItem] = field(default_factory=list)  # named in the text, in text order
    bare_refs: set[int] = field(default_factory=set)  # ids named only without their prefix
    typo_refs: list[OpenItem] = field(default_factory=list)
    paid_refs: list[str] = field(default_factory=list)  # numbers of paid invoices named
    customers: dict[int, CustomerName] = field(default_factory=dict)
    name_scores: dict[int, float] = field(default_factory=dict)  # customer id -> 0..100
    open_items: dict[int, list[OpenItem]] = field(default_factory=dict)  # per customer
    truncated: set[int] = field(default_factory=set)  # customers with more open invoices
    same_amount: list[OpenItem] = field(default_factory=list)  # any customer, = amount
    learned: dict[int, list[Learned]] = field(default_factory=dict)  # customer -> rules
    # customers the payer name fits as well as the best, whose invoices were not searched
    # (-1: maybe more beyond the candidates compared)
    unsearched_names: set[int] = field(default_factory=set)


# -- settling a plan -------------------------------------------------------------------------------
DISCOUNT_REASON, FEE_REASON = "early_payment_discount", "bank_fee"


@dataclass
class Line:
    """One invoice in a plan: what is allocated to it, written off on it, left as deduction."""

    item: OpenItem
    allocate_minor: int
    write_offs: list[tuple[int, str]] = field(default_factory=list)  # (amount, reason)
    deduction_minor: int = 0

    @property
    def write_off_minor(self) -> int:
        return sum(amount for amount, _ in self.write_offs)


@dataclass
class Signal:
    name: str
    weight: float
    detail: str = ""

    def as_dict(self) -> dict:
        return {"signal": self.name, "weight": round(self.weight, 2), "detail": self.detail}


@dataclass
class Plan:
    kind: str  # reference | amount | subset | global | name
    customer_id: int | None
    lines: list[Line]
    fit: str
    unapplied_minor: int
    signals: list[Signal] = field(default_factory=list)
    logit: float = 0.0
    confidence: float = 0.0
    chance: float = 0.0  # expected number of coincidental matches like this one (amount plans)
    unsure: bool = False  # rivals of this plan's size may exist beyond what was searched

    @property
    def invoice_ids(self) -> frozenset[int]:
        return frozenset(line.item.id for line in self.lines)

    @property
    def method(self) -> str:
        """The allocation method recorded when this plan is applied automatically."""
        return {"reference": "reference", "subset": "subset"}.get(self.kind, "amount")

    @property
    def confidence_bp(self) -> int:
        """Confidence in basis points (0..10000), the integer form stored on the payment."""
        return round(self.confidence * 10000)

    @property
    def confidence_text(self) -> str:
        """Confidence as the API shows it: "0.97"."""
        return str(Decimal(self.confidence_bp).scaleb(-4).quantize(Decimal("0.01")))

    @property
    def write_off_minor(self) -> int:
        return sum(line.write_off_minor for line in self.lines)

    @property
    def deduction_minor(self) -> int:
        return sum(line.deduction_minor for line in self.lines)

    def add(self, name: str, weight: float, detail: str = "") -> None:
        self.signals.append(Signal(name, weight, detail))


@lru_cache(maxsize=256)
def _terms(text: str) -> Terms | None:
    try:
        return Terms.parse(text)
    except ValueError:
        return None


def discount_of(item: OpenItem, received_on: date) -> int:
    """The early-payment discount this invoice allows if paid on `received_on` (0 if none):
    `d/n NETm` terms within bounds (terms stored before they were checked may not be),
    paid within n days of issue, invoice not yet part-paid."""
    terms = _terms(item.payment_terms or "")
    if terms is None or not terms.discount_pct or item.balance_minor != item.total_minor or (
            not early_discount_ok(terms.discount_pct, terms.discount_days, terms.net_days)):
        return 0
    if received_on > item.issue_date + timedelta(days=terms.discount_days):
        return 0
    return money.percent_of(item.total_minor, int(terms.discount_pct * 100), item.currency)


class EarlyOffer(NamedTuple):
    discount_minor: int
    last_day: date
    pct: Decimal  # as the terms say it (2 for 2/10 NET30)


def early_payment_offer(item: OpenItem) -> EarlyOffer | None:
    """(discount, last day, percent) the invoice document states for its `d/n NETm` terms: what
    `discount_of` takes off a payment received on the window's last day (issue + n days);
    None when the terms give none or it is no longer on offer (something already paid)."""
    terms = _terms(item.payment_terms or "")
    if terms is None or not terms.discount_pct:
        return None
    last_day = item.issue_date + timedelta(days=terms.discount_days)
    discount = discount_of(item, last_day)
    return EarlyOffer(discount, last_day, terms.discount_pct) if discount else None


def settle(items: Sequence[OpenItem], amount: int, received_on: date, rules: Rules, *,
           allow_partial: bool) -> tuple[str, list[Line], int] | None:
    """How `amount` settles `items`: (fit, lines, unapplied) or None when it does not fit.

    Exact, then exact after early-payment discounts, then short by a bank fee within
    tolerance (written off on the last invoice, closing it). With `allow_partial` (only
    behind a reference) a larger short payment is applied in order and the invoice left
    short is flagged as a deduction, and an overpayment leaves the rest as unapplied credit.
    """
    if not items:
        return None
    currency = items[0].currency
    full = sum(i.balance_minor for i in items)
    discounts = [discount_of(i, received_on) for i in items]
    discounted = full - sum(discounts)

    def full_lines() -> list[Line]:
        return [Line(i, i.balance_minor) for i in items]

    def discount_lines() -> list[Line]:
        return [Line(i, i.balance_minor - d, [(d, DISCOUNT_REASON)] if d else [])
                for i, d in zip(items, discounts, strict=True)]

    if amount == full:
        return FIT_EXACT, full_lines(), 0
    if any(discounts) and amount == discounted:
        return FIT_DISCOUNT, discount_lines(), 0
    bases = [(full, full_lines)] + ([(discounted, discount_lines)] if any(discounts) else [])
    for base, make in bases:
        short = base - amount
        if 0 < short <= rules.fee_tolerance(base, currency):
            lines = make()
            for line in reversed(lines):  # the fee closes the last invoice(s)
                take = min(short, line.allocate_minor)
                if take:
                    line.allocate_minor -= take
                    line.write_offs.append((take, FEE_REASON))
                    short -= take
                if not short:
                    break
            return FIT_FEE, lines, 0
    if not allow_partial:
        return None
    if amount > full:
        return FIT_OVER, full_lines(), amount - full
    lines, left = [], amount
    for item in items:
        if left <= 0:
            break
        take = min(left, item.balance_minor)
        lines.append(Line(item, take, deduction_minor=item.balance_minor - take))
        left -= take
    return FIT_SHORT, lines, 0


# -- the engine ------------------------------------------------------------------------------------
@dataclass
class MatchResult:
    plans: list[Plan]  # best first, with final confidences
    threshold: Decimal

    @property
    def best(self) -> Plan | None:
        return self.plans[0] if self.plans else None

    @property
    def auto(self) -> bool:
        best = self.best
        return (best is not None and best.kind != "name"
                and Decimal(str(best.confidence)) >= self.threshold)

    @property
    def suggestions(self) -> list[Plan]:
        return self.plans[:MAX_SUGGESTIONS]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def evaluate(payment: PaymentFacts, ev: Evidence, rules: Rules = Rules()) -> MatchResult:
    """All plausible plans for the payment, scored and ranked."""
    plans: list[Plan] = []
    amount, on = payment.amount_minor, payment.received_on
    refs = [r for r in ev.refs if r.currency == payment.currency]

    # 1. the invoices the remittance names (per customer, and all together)
    groups: dict[int, list[OpenItem]] = defaultdict(list)
    for item in refs:
        groups[item.customer_id].append(item)
    ref_sets = list(groups.values()) + ([refs] if len(groups) > 1 else [])
    for items in ref_sets:
        settled = settle(items, amount, on, rules, allow_partial=True)
        if settled:
            fit, lines, rest = settled
            cid = items[0].customer_id if len({i.customer_id for i in items}) == 1 else None
            plans.append(Plan("reference", cid, lines, fit, rest))
    strong = any(p.fit in AMOUNT_FITS for p in plans)

    # 2. one-digit typos, only where the amount confirms them
    for item in ev.typo_refs:
        if item.currency != payment.currency or item.id in {r.id for r in refs}:
            continue
        settled = settle([item], amount, on, rules, allow_partial=False)
        if settled:
            fit, lines, rest = settled
            plans.append(Plan("reference", item.customer_id, lines, fit, rest))
            strong = True

    # 3. amounts: one invoice or a combination of one customer's open invoices
    if not strong:
        for cid, items in ev.open_items.items():
            items = [i for i in items if i.currency == payment.currency][:MAX_OPEN_INVOICES]
            # Three or more invoices can only ever be applied for a customer that is given or
            # named unmistakably (see the weights); for others, triples are enough to suggest.
            deep = (cid == payment.customer_id or ev.name_scores.get(cid, 0.0) >= 90
                    or any(r.kind == "payer_alias" for r in ev.learned.get(cid, ())))
            found = _amount_plans(items, cid, amount, on, rules,
                                  max_size=MAX_SUBSET_SIZE if deep else 3)
            for plan in found:  # more open invoices than were loaded: rivals may be unseen
                plan.unsure = plan.unsure or cid in ev.truncated
            plans.extend(found)
        covered = {p.invoice_ids for p in plans}
        same = [i for i in ev.same_amount if i.currency == payment.currency]
        for item in same:
            if frozenset([item.id]) not in covered:
                plan = Plan("global", item.customer_id, [Line(item, item.balance_minor)],
                            FIT_EXACT, 0)
                plan.chance = max(len(same) - 1, 0) / CHANCE_SCALE * 3
                plans.append(plan)

    # 4. nothing adds up: the customer's oldest invoices, as a suggestion only
    if not any(p.fit != FIT_NONE for p in plans):
        plans.extend(_name_only_plans(payment, ev))

    plans = _dedupe(plans)
    for plan in plans:
        _score(plan, payment, ev, refs)
    return _rank(plans, rules)


def _amount_plans(items: list[OpenItem], cid: int, amount: int, on: date, rules: Rules, *,
                  max_size: int = MAX_SUBSET_SIZE) -> list[Plan]:
    """One customer's invoices that the amount pays: single invoices and combinations (exact,
    or exact after early-payment discounts), and single invoices short by a bank fee."""
    plans: list[Plan] = []
    complete = True
    if not items:
        return plans
    discounts = [discount_of(i, on) for i in items]
    views = [[i.balance_minor for i in items]]
    if any(discounts):
        views.append([i.balance_minor - d for i, d in zip(items, discounts, strict=True)])
    mean = sum(i.balance_minor for i in items) // len(items)  # minor units (an int)
    for values in views:
        search = subsets_summing_to(values, amount, max_size=max_size)
        complete = complete and search.complete
        # rivals of a k-invoice answer are the combinations of up to k + 1 invoices
        unsure = {k for k in range(1, MAX_SUBSET_SIZE + 1)
                  if k >= max_size or any(search.pools.get(j, len(items)) < len(items)
                                          for j in range(1, k + 2) if j in search.pools)}
        for combo in search.solutions:
            chosen = [items[k] for k in combo]
            settled = settle(chosen, amount, on, rules, allow_partial=False)
            if settled:
                fit, lines, rest = settled
                plan = Plan("subset" if len(chosen) > 1 else "amount", cid, lines, fit, rest)
                pool = search.pools.get(len(chosen), len(items))
                plan.chance = chance_of_coincidence(pool, len(chosen), mean) * len(views)
                plan.unsure = len(chosen) in unsure
                plans.append(plan)
    cap = money.to_minor(rules.fee_max, items[0].currency, exact=False)
    for item in items:  # one invoice short by a bank fee
        short = item.balance_minor - amount
        if not 0 < short <= cap:
            continue
        tolerance = rules.fee_tolerance(item.balance_minor, item.currency)
        if short <= tolerance:
            settled = settle([item], amount, on, rules, allow_partial=False)
            if settled:
                plan = Plan("amount", cid, settled[1], settled[0], settled[2])
                plan.chance = chance_of_coincidence(len(items), 1, mean, tolerance)
                plan.unsure = not complete and 1 in unsure
                plans.append(plan)
    return plans


def _name_only_plans(payment: PaymentFacts, ev: Evidence) -> list[Plan]:
    cid = payment.customer_id
    if cid is None:
        strong = {c for c, s in ev.name_scores.items() if s >= 85} | set(ev.learned)
        cid = next(iter(strong)) if len(strong) == 1 else None
    items = [i for i in ev.open_items.get(cid, []) if i.currency == payment.currency]
    if cid is None or not items:
        return []
    lines, left = [], payment.amount_minor
    for item in items:  # oldest first, as gathered
        if left <= 0:
            break
        take = min(left, item.balance_minor)
        lines.append(Line(item, take))
        left -= take
    return [Plan("name", cid, lines, FIT_NONE, left)]


def _dedupe(plans: list[Plan]) -> list[Plan]:
    order = {FIT_EXACT: 0, FIT_DISCOUNT: 1, FIT_FEE: 2, FIT_SHORT: 3, FIT_OVER: 4, FIT_NONE: 5}
    best: dict[frozenset[int], Plan] = {}
    for plan in plans:
        current = best.get(plan.invoice_ids)
        if current is None or order[plan.fit] < order[current.fit]:
            best[plan.invoice_ids] = plan
    return list(best.values())


def owners_of(plan: Plan) -> set[int]:
    return ({plan.customer_id} if plan.customer_id is not None
            else {line.item.customer_id for line in plan.lines})


def _band(score: float) -> float:
    return next((w for floor, w in W_NAME if score >= floor), 0.0)


def _score(plan: Plan, payment: PaymentFacts, ev: Evidence, refs: list[OpenItem]) -> None:
    plan.add("prior", PRIOR)
    ids = plan.invoice_ids
    ref_ids = {r.id for r in refs}
    typo_ids = {t.id for t in ev.typo_refs}
    numbers = ", ".join(line.item.number for line in plan.lines[:5])

    # reference
    named = ids & ref_ids
    if ref_ids:
        if ids == ref_ids or (plan.kind == "reference" and named == ids):
            bare = bool(ids & ev.bare_refs)
            weight = W_REF_BARE if bare else W_REF
            if ids != ref_ids:  # one customer's share of a remittance naming several
                weight = min(weight, W_REF_SOME + 1.0)
            plan.add("reference", weight,
                     f"remittance names {numbers}" + (" (without prefix)" if bare else ""))
        elif named == ids:
            plan.add("reference_some", W_REF_SOME, "remittance names these and others")
        elif named:
            plan.add("reference_overlap", W_REF_OVERLAP, "remittance names some of these")
        else:
            plan.add("reference_other", W_REF_OTHER, "remittance names other invoices")
    elif ids <= typo_ids and plan.fit in AMOUNT_FITS:
        plan.add("reference_typo", W_REF_TYPO,
                 f"remittance names {numbers} with one digit wrong; the amount confirms it")
    elif plan.fit != FIT_NONE:
        partial = partial_references(payment.reference,
                                     {line.item.id: line.item.number for line in plan.lines})
        if partial and partial == ids:
            plan.add("reference_partial", W_REF_PARTIAL, "remittance names the serial number")
    if ev.paid_refs:
        plan.add("reference_paid", W_REF_PAID,
                 f"remittance names already paid {', '.join(ev.paid_refs[:3])}")

    # amount
    referenced = plan.kind == "reference"
    coincidence = -math.log1p(CHANCE_SCALE * plan.chance)
    if plan.fit in (FIT_EXACT, FIT_DISCOUNT):
        plan.add("amount", W_AMOUNT, "amount equals the open balance" if plan.fit == FIT_EXACT
                 else "amount equals the balance less the early-payment discount")
        if len(ids) == 1 and not referenced:
            plan.add("single_invoice", W_SINGLE, "one invoice has exactly this amount")
    elif plan.fit == FIT_FEE:
        if referenced:
            plan.add("amount_fee", W_FEE_REF, "short by a bank fee within tolerance")
        else:
            plan.add("amount_fee", W_AMOUNT + W_FEE_GUESS,
                     "within a bank fee of one invoice's balance")
    elif plan.fit in (FIT_SHORT, FIT_OVER):
        plan.add(f"amount_{plan.fit}", 0.0, f"{plan.fit} payment")
    if not referenced and len(ids) > 1 and plan.kind != "name":
        plan.add("combination", W_EXTRA_INVOICE * (len(ids) - 1),
                 f"{len(ids)} invoices add up to the amount")
    if not referenced and coincidence < -0.01:
        plan.add("coincidence", coincidence,
                 f"about {plan.chance:.2g} such matches expected by chance")
    if plan.unsure and not referenced:
        plan.add("search_incomplete", W_INCOMPLETE, "not every combination was searched")

    # customer
    cid = plan.customer_id
    if payment.customer_id is not None:
        if cid == payment.customer_id:
            plan.add("customer_given", W_CUSTOMER_GIVEN, "the payment names this customer")
        else:
            plan.add("customer_other", W_CUSTOMER_OTHER, "the payment names another customer")
    elif payer_forms(payment.payer_name, payment.reference):
        plan_customers = ({cid} if cid is not None
                          else {line.item.customer_id for line in plan.lines})
        score = max((ev.name_scores.get(c, 0.0) for c in plan_customers), default=0.0)
        weight = _band(score)
        name = ev.customers.get(cid).name if cid in ev.customers else "several customers"
        taught = any(r.kind == "payer_alias" for c in plan_customers
                     for r in ev.learned.get(c, ()))
        if weight:
            plan.add("payer_name", weight, f"payer name fits {name} ({score:.0f})")
        elif score < 60 and not taught:  # third parties do pay for customers, but rarely
            plan.add("payer_name_unlike", W_NAME_UNLIKE, f"payer name does not fit {name}")
        others = [(c, s) for c, s in ev.name_scores.items() if c not in plan_customers]
        if any(s >= 85 and s >= score + 10 for _, s in others):
            plan.add("payer_name_elsewhere", W_NAME_ELSEWHERE,
                     "payer name fits another customer better")
        elif score >= NAME_CANDIDATE_MIN and any(
                s >= NAME_CANDIDATE_MIN and abs(s - score) < NAME_AMBIGUITY_MARGIN
                for _, s in others):
            plan.add("payer_name_ambiguous", W_NAME_AMBIGUOUS,
                     "payer name fits more than one customer")

    if (ev.unsearched_names and payment.customer_id is None and plan.kind != "reference"
            and not any(r.kind == "payer_alias" for c in owners_of(plan)
                        for r in ev.learned.get(c, ()))):
        plan.add("payer_name_unsearched", W_NAME_UNSEARCHED,
                 "the payer name fits more customers than were searched")

    # learned: what people taught about this customer's payments (one signal per kind)
    learned_here = ev.learned.get(cid, []) if cid is not None else []
    for kind in dict.fromkeys(r.kind for r in learned_here):
        rule = next(r for r in learned_here if r.kind == kind)
        plan.add(f"learned_{kind}", W_LEARNED[kind], f"matched because {rule.detail}")
    others = [c for c in ev.learned if c != cid]
    if others and cid is not None and not learned_here:
        plan.add("learned_elsewhere", -1.0, "a learned rule points at another customer")

    plan.logit = sum(s.weight for s in plan.signals)
    owners = {line.item.customer_id for line in plan.lines}
    if plan.kind == "name":
        plan.logit = min(plan.logit, NAME_ONLY_CAP)
    elif plan.kind == "reference" and any(_named_elsewhere(o, ev) for o in owners):
        # the invoices named are one customer's, the payer clearly another's: ask
        plan.add("payer_names_another", min(NAME_ONLY_CAP - plan.logit, 0.0),
                 "the payer is another customer than the invoices'")
        plan.logit = min(plan.logit, NAME_ONLY_CAP)
    elif learned_here and ref_ids and not (ids & ref_ids):
        # a learned rule never outweighs the invoices the remittance names
        plan.logit = min(plan.logit, NAME_ONLY_CAP)
    if _decisive(plan, payment, ev, refs):
        plan.add("decisive", max(DECISIVE_LOGIT - plan.logit, 0.0),
                 "the remittance names exactly these invoices and the amount is their "
                 "open balance")
        plan.logit = max(plan.logit, DECISIVE_LOGIT)


def _decisive(plan: Plan, payment: PaymentFacts, ev: Evidence, refs: list[OpenItem]) -> bool:
    """An exact invoice reference with the exact open amount: a clerk applies it whatever the
    payer line says — unless the payment names another customer than the invoices' (given
    with it, or a payer name clearly fitting someone else better): then ask."""
    if plan.kind != "reference" or plan.fit != FIT_EXACT or ev.paid_refs:
        return False
    if plan.invoice_ids != {r.id for r in refs}:
        return False
    owners = {line.item.customer_id for line in plan.lines}
    if len(owners) != 1:
        return False
    owner = owners.pop()
    if payment.customer_id is not None and payment.customer_id != owner:
        return False
    return not _named_elsewhere(owner, ev)


def _named_elsewhere(owner: int, ev: Evidence) -> bool:
    """The payer name clearly fits another customer than `owner` (by 10 points or more)."""
    own = ev.name_scores.get(owner, 0.0)
    return any(score >= 90 and score >= own + 10
               for c, score in ev.name_scores.items() if c != owner)


def _rank(plans: list[Plan], rules: Rules) -> MatchResult:
    """Confidence of each plan = its odds against every other plan and against "none of
    these" (softmax with a null plan of log-odds 0): two equally good answers can never be
    more than 50 % each, however strong each looks on its own."""
    if plans:
        top = max(p.logit for p in plans)
        total = math.exp(0.0 - top) + sum(math.exp(p.logit - top) for p in plans)
        for plan in plans:
            share = math.exp(plan.logit - top) / total
            plan.confidence = round(share, 4)
            alone = _sigmoid(plan.logit)
            if alone - share > 0.005:
                plan.add("competing_plans", math.log(max(share, 1e-9) / max(1 - share, 1e-9))
                         - plan.logit, "other plans are plausible too")
    plans.sort(key=lambda p: (-p.confidence, p.kind != "reference", sorted(p.invoice_ids)))
    return MatchResult(plans, rules.threshold)
