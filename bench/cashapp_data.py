"""A deterministic, labelled data set for cash application: customers, open invoices, and the
payments a bank would deliver for them, each with the answer a careful AR clerk would give.

Every case the issue names appears, in the shares of `CASES`:

* references: exact, in other formats ("inv 2026/123", "INV2026000123", "Invoice no.
  2026-000123", legacy ERP numbers "SI-0004512" as "si4512"...), with one-digit typos, buried
  in noise (PO numbers, dates, amounts), several invoices in one remittance;
* no reference: exact amount of one invoice, combinations of 2-4 invoices, a customer id given
  by the integration;
* differences: bank fees within tolerance, short payments beyond it, overpayments, early-
  payment discounts (2/10 NET30 paid within ten days at 98 %);
* payer names as banks deliver them: upper case, cut at 18-35 characters, legal suffixes
  changed or dropped, typos; look-alike customers ("Vandelay Industries Inc" / "Vandelay
  Industries Europe GmbH") where only the amount tells them apart;
* payer lines in the bank's own wording (`bank_line`): "PAYMENT FROM <NAME>", "ACH CREDIT
  <NAME> CCD", "WIRE TRANSFER <NAME>", the name only in the remittance field and an empty payer
  field, or no name at all ("ACH CREDIT", "WIRE") — for amount-only payments, combinations
  without a reference, and exact references with the exact amount;
* purely numeric invoice numbers ("104512", a third numbering scheme) in lists
  ("INVOICES 104512/104530/104577"), with a bank fee, or on a partial payment;
* payments no clerk could apply without asking (`auto_matchable=False`): an unknown payer, a
  name that fits two customers who both have an invoice of exactly that amount, a customer
  with two invoices of the same amount. These are labelled "review": the right outcome is no
  automatic allocation. The generator also demotes any intended case that turned out to be
  ambiguous in the data (another open invoice or combination with the same amount) to review,
  so the labels never ask for a guess.

Labels: `expected` = {invoice number: allocated minor units}, `write_offs` = {invoice number:
minor units}, `deduction` = {invoice number: minor units left short}, `unapplied` = minor
units left as credit. Money is integer minor units throughout.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import accumulate, combinations

TODAY = date(2026, 11, 24)
CASES = {  # share of payments per case (normalised to 1)
    "exact_ref": 0.13, "noisy_ref": 0.14, "typo_ref": 0.05, "multi_ref": 0.05,
    "amount_only": 0.13, "subset": 0.08, "customer_given": 0.05, "bank_fee": 0.07,
    "short_pay": 0.06, "overpay": 0.05, "discount": 0.07, "lookalike": 0.06,
    "unknown_payer": 0.03, "ambiguous_name": 0.015, "duplicate_amount": 0.015,
    # payer lines in the bank's wording, numeric invoice numbers (issue 20)
    "bank_wording": 0.06, "ref_any_payer": 0.03, "numeric_list": 0.03, "bank_subset": 0.04,
    "numeric_fee": 0.02, "numeric_partial": 0.02,
}
NUMERIC_CASES = {"numeric_list", "numeric_fee", "numeric_partial"}
# The bank's words around a payer name ({} is the name), and payer lines naming nobody.
BANK_LINES = ["PAYMENT FROM {}", "ACH CREDIT {} CCD", "{} ACH PMT", "WIRE TRANSFER {}",
              "INCOMING WIRE {}", "ORIG CO NAME:{}", "B/O {}", "SEPA CT {}", "{} WIRE"]
NAMELESS_PAYERS = ["ACH CREDIT", "WIRE", "INCOMING WIRE", "DEPOSIT", "FIRST NATIONAL BANK",
                   "J SMITH", "M KOWALSKI"]
REVIEW_CASES = {"unknown_payer", "ambiguous_name", "duplicate_amount"}

_FIRST = ["Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Acme",
          "Soylent", "Hooli", "Vandelay", "Wonka", "Cyberdyne", "Tyrell", "Aperture",
          "Massive", "Oscorp", "Gringotts", "Pied Piper", "Dunder Mifflin", "Sterling Cooper",
          "Prestige", "Monarch", "Blue Sun", "Virtucon", "Bluth", "Krusty", "Gekko", "Duff",
          "Nakatomi", "Zorg", "Rekall", "Ollivander", "Spacely", "Cogswell", "Wernham Hogg",
          "Los Pollos", "Mooby", "Big Kahuna", "Nuka"]
_SYLLABLES = ["ba", "ren", "to", "kal", "mi", "sor", "vet", "lin", "dra", "quo", "nex", "ar",
              "bel", "cor", "dex", "fin", "gal", "hor", "jen", "lum", "mor", "nor", "pel",
              "ros", "sal", "tan", "ul", "vor", "wen", "zel"]
_SECOND = ["Traders", "Industries", "Logistics", "Foods", "Systems", "Holdings", "Partners",
           "Manufacturing", "Labs", "Retail", "Energy", "Analytics", "Supply", "Textiles",
           "Pharma", "Robotics", "Media", "Construction", "Outfitters", "Brewing"]
_SUFFIX = ["Inc", "LLC", "Ltd", "GmbH", "Corp", "Corporation", "Co", "PLC", "Incorporated",
           "Limited", ""]
_SUFFIX_VARIANT = {"Inc": ["INC.", "Incorporated", ""], "Incorporated": ["INC", ""],
                   "Corp": ["Corporation", "CORP.", ""], "Corporation": ["CORP", ""],
                   "Ltd": ["Limited", "LTD.", ""], "Limited": ["LTD", ""], "LLC": ["L.L.C.", ""],
                   "GmbH": ["GMBH", ""], "Co": ["Company", ""], "PLC": ["P.L.C.", ""], "": [""]}
_REGIONS = ["Europe", "International", "Holdings", "Americas", "Services", "Group"]
_PRICES = [Decimal(p) for p in ("9.99", "19.90", "24.50", "45.00", "79.95", "120.00",
                                "149.99", "249.00", "399.00", "875.25", "1250.00", "2400.00")]
_TAX = [Decimal("0"), Decimal("0.075"), Decimal("0.19"), Decimal("0.20")]
_NOISE = ["PAYMENT", "THANK YOU", "REMITTANCE", "ACH CREDIT", "WIRE", "SEPA CT", "PMT",
          "TRANSFER", "AP RUN", "SETTLEMENT"]


@dataclass
class CustomerRow:
    external_id: str
    name: str
    currency: str
    terms: str
    lookalike_of: str | None = None


@dataclass
class InvoiceRow:
    number: str
    customer: str  # external id
    currency: str
    issue_date: date
    due_date: date
    total_minor: int
    terms: str


@dataclass
class PaymentCase:
    external_id: str
    case: str
    amount_minor: int
    currency: str
    received_at: datetime
    payer_name: str | None
    reference: str | None
    customer: str | None  # external id given by the integration
    expected: dict[str, int] = field(default_factory=dict)
    write_offs: dict[str, int] = field(default_factory=dict)
    deduction: dict[str, int] = field(default_factory=dict)
    unapplied: int = 0
    auto_matchable: bool = True
    note: str = ""
    payer_core: str | None = None  # the name inside a payer line in the bank's wording

    @property
    def amount(self) -> str:
        return str(Decimal(self.amount_minor).scaleb(-2).quantize(Decimal("0.01")))


@dataclass
class Dataset:
    customers: list[CustomerRow]
    invoices: list[InvoiceRow]
    payments: list[PaymentCase]
    seed: int

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.payments:
            out[p.case] = out.get(p.case, 0) + 1
        return out


def _minor(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


# The payer lines and references of the bank's own wording (issue 20), for tests that want
# only those.
BANK_WORDING_CASES = {"bank_wording": 0.3, "ref_any_payer": 0.15, "numeric_list": 0.15,
                      "bank_subset": 0.2, "numeric_fee": 0.1, "numeric_partial": 0.1}


class Generator:
    def __init__(self, seed: int, n_customers: int, n_invoices: int, n_payments: int,
                 cases: dict[str, float] | None = None) -> None:
        self.rng = random.Random(seed)
        self.cases = cases or CASES
        self.seed = seed
        self.n_customers, self.n_invoices, self.n_payments = n_customers, n_invoices, n_payments
        self.customers: list[CustomerRow] = []
        self.invoices: list[InvoiceRow] = []
        self.by_customer: dict[str, list[InvoiceRow]] = {}
        self.balance: dict[str, int] = {}
        self.targeted: set[str] = set()
        self.variant_used: dict[str, bool] = {}  # invoices whose number went into a reference

    # -- master data ---------------------------------------------------------------------------
    def make_customers(self) -> None:
        rng, names = self.rng, set()
        pairs = max(4, self.n_customers // 15)
        while len(self.customers) < self.n_customers:
            first = rng.choice(_FIRST) if rng.random() < 0.3 else _word(rng)
            second = rng.choice(_SECOND)
            base = f"{first} {second}"
            suffix = rng.choice(_SUFFIX)
            name = f"{base} {suffix}".strip()
            if base in names or name in names:
                continue
            names.add(base)
            names.add(name)
            currency = "EUR" if rng.random() < 0.15 else "USD"
            terms = "2/10 NET30" if rng.random() < 0.2 else rng.choice(["NET30", "NET30",
                                                                          "NET45", "NET60"])
            number = len(self.customers) + 1
            self.customers.append(CustomerRow(f"C{number:05d}", name, currency, terms))
            if pairs and len(self.customers) < self.n_customers:
                pairs -= 1
                twin = f"{base} {rng.choice(_REGIONS)} {rng.choice(['GmbH', 'Ltd', 'Inc'])}"
                names.add(twin)
                self.customers.append(CustomerRow(f"C{number + 1:05d}", twin, currency,
                                                  terms, lookalike_of=f"C{number:05d}"))

    def make_invoices(self) -> None:
        rng = self.rng
        weights = [rng.paretovariate(1.5) for _ in self.customers]
        cum_weights = list(accumulate(weights))  # (what `choices` computes each call)
        serial = {"INV": 0, "SI": 4000, "NUM": 100000}
        legacy = {c.external_id for c in self.customers if rng.random() < 0.2}
        self.numeric = {c.external_id for c in self.customers
                        if c.external_id not in legacy and rng.random() < 0.2}
        if not self.numeric:  # (small data sets: at least one customer numbers this way)
            self.numeric = {next(c.external_id for c in reversed(self.customers)
                                 if c.external_id not in legacy)}
        for _ in range(self.n_invoices):
            customer = rng.choices(self.customers, cum_weights=cum_weights)[0]
            issue = TODAY - timedelta(days=rng.randint(0, 75))
            if rng.random() < 0.12:  # a subscription: a round amount that recurs
                total = _minor(Decimal(rng.choice([250, 500, 750, 1000, 1500])))
            else:
                net = sum(Decimal(rng.randint(1, 40)) * rng.choice(_PRICES)
                          for _ in range(rng.randint(1, 4)))
                total = _minor(net * (1 + rng.choice(_TAX)))
            if customer.external_id in legacy:
                serial["SI"] += 1
                number = f"SI-{serial['SI']:07d}"
            elif customer.external_id in self.numeric:
                serial["NUM"] += rng.randint(1, 3)  # ERPs skip numbers (cancelled drafts)
                number = str(serial["NUM"])
            else:
                serial["INV"] += 1
                number = f"INV-2026-{serial['INV']:06d}"
            inv = InvoiceRow(number, customer.external_id, customer.currency, issue,
                             issue + timedelta(days=30), total, customer.terms)
            self.invoices.append(inv)
            self.by_customer.setdefault(customer.external_id, []).append(inv)
            self.balance[number] = total

    # -- how payers write things ---------------------------------------------------------------
    def payer_variant(self, name: str, *, truncate_ok: bool = True) -> str:
        rng = self.rng
        words = name.split()
        suffix = words[-1] if words[-1] in _SUFFIX_VARIANT else ""
        core = words[:-1] if suffix else words
        roll = rng.random()
        if roll < 0.25:
            return name
        if roll < 0.45:
            return name.upper()
        if roll < 0.6:
            alt = rng.choice(_SUFFIX_VARIANT.get(suffix, [""]))
            return " ".join(core + ([alt] if alt else [])).upper()
        if roll < 0.8 and truncate_ok:
            cut = rng.choice([18, 22, 24, 35])
            text = name.upper()
            return text[:max(cut, len(core[0]) + 6)].strip()
        # one typo in the longest word
        i = max(range(len(core)), key=lambda k: len(core[k]))
        word = core[i]
        if len(word) >= 5:
            pos = rng.randint(1, len(word) - 2)
            kind = rng.random()
            if kind < 0.4:
                word = word[:pos] + word[pos + 1:]
            elif kind < 0.7:
                word = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2:]
            else:
                word = word[:pos] + rng.choice("aeiou") + word[pos + 1:]
        core = core[:i] + [word] + core[i + 1:]
        return " ".join(core + ([suffix] if suffix else [])).upper()

    def bank_line(self, name: str) -> tuple[str | None, str | None, str]:
        """(payer field, remittance text, the name inside) as a bank's own wording wraps a
        payer: "PAYMENT FROM GLOBEX CORP", "ACH CREDIT GLOBEX CORP CCD" (cut at 35 characters
        like the rest of the line), or an empty payer field with "PAYMENT FROM ..." in the
        remittance text."""
        rng = self.rng
        inner = self.payer_variant(name, truncate_ok=False).upper()
        if rng.random() < 0.2:
            return None, f"PAYMENT FROM {inner}", inner
        line = rng.choice(BANK_LINES).format(inner)
        if len(line) > 35 and rng.random() < 0.5:
            line = line[:35].strip()
        return line, None, inner

    def number_variant(self, number: str) -> str:
        rng = self.rng
        if number.isdigit():
            return rng.choice([f"INV {number}", f"inv#{number}", f"Invoice {number}",
                               f"RE {number}", f"INV{number}", number, f"Rg. {number}"])
        if number.startswith("SI-"):
            digits = number[3:]
            return rng.choice([f"SI{int(digits)}", f"si {digits}", f"SI-{int(digits)}",
                               f"inv SI{digits}", f"SI/{digits}"])
        _, year, serial = number.split("-")
        short = str(int(serial))
        return rng.choice([f"inv {year}/{short}", f"INV{year}{serial}", f"Invoice no. {year}-"
                           f"{serial}", f"INV {year} {serial}", f"inv#{year}{serial}",
                           f"INV-{year}-{short}", f"{year}-{serial}", f"Rechnung INV/{year}/"
                           f"{serial}", number.lower()])

    def noise(self) -> str:
        rng = self.rng
        parts = [rng.choice(_NOISE)]
        if rng.random() < 0.3:
            parts.append(f"PO {rng.randint(4500000000, 4500999999)}")
        if rng.random() < 0.2:
            parts.append(f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2026")
        if rng.random() < 0.15:
            parts.append(f"CUST {rng.randint(10000, 99999)}")
        return " ".join(parts)

    def reference_for(self, numbers: list[str], *, exact: bool) -> str:
        rng = self.rng
        refs = [n if exact else self.number_variant(n) for n in numbers]
        self.variant_used.update(dict.fromkeys(numbers, True))
        joined = (", " if rng.random() < 0.5 else " ").join(refs)
        noise = self.noise() if rng.random() < 0.6 else ""
        return " ".join(p for p in ([noise, joined] if rng.random() < 0.5 else [joined, noise])
                        if p)

    def typo(self, number: str) -> str:
        rng = self.rng
        existing = set(self.balance)
        for _ in range(20):
            digits = [i for i, ch in enumerate(number) if ch.isdigit()]
            pos = rng.choice(digits[-4:])
            wrong = number[:pos] + rng.choice([d for d in "0123456789" if d != number[pos]]) \
                + number[pos + 1:]
            if wrong not in existing:
                return wrong
        for pos in reversed([i for i, ch in enumerate(number) if ch.isdigit()]):
            for d in "0123456789":
                wrong = number[:pos] + d + number[pos + 1:]
                if wrong != number and wrong not in existing:
                    return wrong
        raise RuntimeError(f"no typo of {number} is free")

    # -- payments ------------------------------------------------------------------------------
    def open_of(self, customer: str, at: date) -> list[InvoiceRow]:
        return [i for i in self.by_customer.get(customer, []) if self.balance[i.number] > 0
                and i.issue_date <= at]

    def available(self, customer: str | None = None) -> list[InvoiceRow]:
        pool = self.by_customer.get(customer, []) if customer else self.invoices
        return [i for i in pool if i.number not in self.targeted and self.balance[i.number] > 0]

    def discount_of(self, inv: InvoiceRow, at: date) -> int:
        if not inv.terms.startswith("2/10") or at > inv.issue_date + timedelta(days=10):
            return 0
        return _minor(Decimal(inv.total_minor) / 100 * Decimal("0.02"))

    # (cached lists of customers: at 100,000 payments, rebuilding them was most of the time)
    def _by_id(self) -> dict[str, CustomerRow]:
        if not hasattr(self, "_by_id_cache"):
            self._by_id_cache = {c.external_id: c for c in self.customers}
        return self._by_id_cache

    def _pool(self, name: str, keep: Callable[[CustomerRow], bool]) -> list[CustomerRow]:
        pools = self.__dict__.setdefault("_pools", {})
        if name not in pools:
            pools[name] = [c for c in self.customers if keep(c)]
        return pools[name]

    def _twins_of(self) -> dict[str, list[CustomerRow]]:
        if not hasattr(self, "_twins_cache"):
            self._twins_cache: dict[str, list[CustomerRow]] = {}
            for c in self.customers:
                if c.lookalike_of:
                    self._twins_cache.setdefault(c.lookalike_of, []).append(c)
        return self._twins_cache

    def pick(self, case: str) -> tuple[list[InvoiceRow], CustomerRow] | None:
        rng = self.rng
        by_id = self._by_id()
        for _ in range(200):
            if case in NUMERIC_CASES:
                pool = self._pool("numeric", lambda c: c.external_id in self.numeric)
                customer = rng.choice(pool)
                invs = self.available(customer.external_id)
            elif case == "discount":
                pool = self._pool("discount", lambda c: c.terms.startswith("2/10"))
                customer = rng.choice(pool)
                invs = [i for i in self.available(customer.external_id)
                        if i.issue_date >= TODAY - timedelta(days=10)]
            elif case in ("lookalike", "ambiguous_name"):
                twins = self._pool("twins", lambda c: bool(c.lookalike_of))
                twin = rng.choice(twins)
                customer = twin if rng.random() < 0.5 else by_id[twin.lookalike_of]
                invs = self.available(customer.external_id)
            else:
                customer = rng.choice(self.customers)
                invs = self.available(customer.external_id)
            size = {"subset": rng.randint(2, 4), "multi_ref": rng.randint(2, 3),
                    "bank_subset": rng.randint(2, 4), "numeric_list": rng.randint(2, 4)
                    }.get(case, 1)
            if len(invs) >= size:
                return rng.sample(invs, size), customer
        return None

    def build(self) -> Dataset:
        self.make_customers()
        self.make_invoices()
        rng = self.rng
        intents = []
        # scarce material first: recent invoices of 2/10 customers, look-alike customers
        names = ["discount", "lookalike", "ambiguous_name"] + [
            c for c in self.cases if c not in ("discount", "lookalike", "ambiguous_name")]
        names = [c for c in names if c in self.cases]
        scale = sum(self.cases.values())
        counts = {c: round(share / scale * self.n_payments) for c, share in self.cases.items()}
        while sum(counts.values()) < self.n_payments:
            counts["exact_ref" if "exact_ref" in counts else names[-1]] += 1
        for case in names:
            for _ in range(counts[case]):
                if case == "unknown_payer":
                    intents.append((case, [], None))
                    continue
                picked = self.pick(case) or self.pick("exact_ref")
                if picked is None:
                    raise RuntimeError("not enough open invoices for the payments asked for")
                invs, customer = picked
                self.targeted.update(i.number for i in invs)
                intents.append((case, invs, customer))
        dated = []  # payments arrive after the invoices they pay
        for case, invs, customer in intents:
            if invs:
                issued = max(i.issue_date for i in invs)
                days = rng.randint(0, 9) if case == "discount" else rng.randint(3, 45)
                at = min(issued + timedelta(days=days), TODAY)
                if case != "discount" and customer.terms.startswith("2/10"):
                    at = max(at, min(issued + timedelta(days=11), TODAY))
            else:
                at = TODAY - timedelta(days=rng.randint(0, 60))
            dated.append((at, rng.random(), case, invs, customer))
        dated.sort(key=lambda t: (t[0], t[1]))
        payments = []
        for n, (at, _, case, invs, customer) in enumerate(dated, start=1):
            payments.append(self.payment(n, at, case, invs, customer))
        return Dataset(self.customers, self.invoices, payments, self.seed)

    def payment(self, n: int, at: date, case: str, invs: list[InvoiceRow],
                customer: CustomerRow | None) -> PaymentCase:
        rng = self.rng
        received = datetime.combine(at, time(rng.randint(8, 17), rng.randint(0, 59)), UTC)
        ext = f"BENCH-{self.seed}-{n:06d}"
        if case == "unknown_payer" or customer is None:
            person = f"{rng.choice(['J', 'M', 'A', 'K'])} {_word(rng).upper()}"
            amount = _minor(Decimal(rng.randint(1500, 900000)) / 100)
            return PaymentCase(ext, "unknown_payer", amount, rng.choice(["USD", "EUR"]),
                               received, person, self.noise(), None, auto_matchable=False,
                               note="nobody we know; no invoice named")
        cur = customer.currency
        balances = [self.balance[i.number] for i in invs]
        numbers = [i.number for i in invs]
        total = sum(balances)
        payer = self.payer_variant(customer.name,
                                   truncate_ok=case not in ("lookalike", "amount_only"))
        p = PaymentCase(ext, case, total, cur, received, payer, None, None)
        p.expected = dict(zip(numbers, balances, strict=True))
        if case == "exact_ref":
            p.reference = self.reference_for(numbers, exact=True)
        elif case == "noisy_ref":
            p.reference = self.reference_for(numbers, exact=False)
        elif case == "multi_ref":
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.4)
        elif case == "typo_ref":
            p.reference = f"{self.noise()} {self.typo(numbers[0])}"
        elif case in ("amount_only", "lookalike", "ambiguous_name"):
            p.reference = self.noise() if rng.random() < 0.7 else None
        elif case == "subset":
            p.reference = self.noise()
        elif case == "customer_given":
            p.customer = customer.external_id
            p.payer_name = None if rng.random() < 0.5 else payer
            p.reference = self.noise()
        elif case == "bank_fee":
            tol = min(_minor(Decimal(total) / 100 * Decimal("0.005")), 500)
            fee = rng.randint(1, max(1, tol))
            p.amount_minor = total - fee
            p.expected = {numbers[0]: total - fee}
            p.write_offs = {numbers[0]: fee}
            p.reference = (self.reference_for(numbers, exact=rng.random() < 0.5)
                           if rng.random() < 0.6 else self.noise())
        elif case == "short_pay":
            tol = min(_minor(Decimal(total) / 100 * Decimal("0.005")), 500)
            paid = _minor(Decimal(total) / 100 * Decimal(rng.randint(30, 95)) / 100)
            paid = min(paid, total - tol - 100)
            p.amount_minor = paid
            p.expected = {numbers[0]: paid}
            p.deduction = {numbers[0]: total - paid}
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.5)
        elif case == "overpay":
            extra = _minor(Decimal(rng.randint(1000, 50000)) / 100)
            p.amount_minor = total + extra
            p.unapplied = extra
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.5)
        elif case == "discount":
            disc = self.discount_of(invs[0], at)
            p.amount_minor = total - disc
            p.expected = {numbers[0]: total - disc}
            p.write_offs = {numbers[0]: disc} if disc else {}
            p.reference = (self.reference_for(numbers, exact=rng.random() < 0.5)
                           if rng.random() < 0.5 else self.noise())
        elif case in ("bank_wording", "bank_subset"):
            p.payer_name, in_text, p.payer_core = self.bank_line(customer.name)
            p.reference = in_text or rng.choice([None, None, "ACH CREDIT", "WIRE", "PAYMENT",
                                                 self.noise()])
        elif case == "ref_any_payer":  # the invoice number and its amount; nobody named
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.6)
            p.payer_name = rng.choice(NAMELESS_PAYERS + [None])
        elif case == "numeric_list":
            sep = rng.choice(["/", "/", " / ", ", ", " "])
            head = rng.choice(["INVOICES ", "INV ", "Invoices: ", "RE ", "", "PMT INV "])
            p.reference = head + sep.join(numbers)
            self.variant_used.update(dict.fromkeys(numbers, True))
            if rng.random() < 0.5:
                p.payer_name, _, p.payer_core = self.bank_line(customer.name)
                p.payer_name = p.payer_name or payer
        elif case == "numeric_fee":
            tol = min(_minor(Decimal(total) / 100 * Decimal("0.005")), 500)
            fee = rng.randint(1, max(1, tol))
            p.amount_minor = total - fee
            p.expected = {numbers[0]: total - fee}
            p.write_offs = {numbers[0]: fee}
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.5)
            if rng.random() < 0.5:
                p.payer_name, _, p.payer_core = self.bank_line(customer.name)
                p.payer_name = p.payer_name or payer
        elif case == "numeric_partial":
            tol = min(_minor(Decimal(total) / 100 * Decimal("0.005")), 500)
            paid = _minor(Decimal(total) / 100 * Decimal(rng.randint(30, 95)) / 100)
            paid = min(paid, total - tol - 100)
            p.amount_minor = paid
            p.expected = {numbers[0]: paid}
            p.deduction = {numbers[0]: total - paid}
            p.reference = self.reference_for(numbers, exact=rng.random() < 0.5)
            if rng.random() < 0.5:
                p.payer_name, _, p.payer_core = self.bank_line(customer.name)
                p.payer_name = p.payer_name or payer
        elif case == "duplicate_amount":
            pass
        if case == "ambiguous_name":
            self.make_ambiguous_name(p, customer, invs[0], at)
        if case == "duplicate_amount":
            self.make_duplicate_amount(p, customer, invs[0], at)
        named = p.reference is not None and any(
            _names_an_invoice(p.reference, [n]) or self.variant_used.get(n) for n in numbers)
        if case in ("amount_only", "subset", "customer_given", "lookalike", "bank_fee",
                    "discount", "bank_wording", "bank_subset") and not named:
            self.demote_if_ambiguous(p, customer, invs, at)
        for number, amount in p.expected.items():
            self.balance[number] -= amount + p.write_offs.get(number, 0)
        return p

    def make_ambiguous_name(self, p: PaymentCase, customer: CustomerRow, inv: InvoiceRow,
                            at: date) -> None:
        """The payer name fits both look-alikes and both have an invoice of this amount."""
        twin_id = customer.lookalike_of or next(
            c.external_id for c in self.customers if c.lookalike_of == customer.external_id)
        twin = next(c for c in self.customers if c.external_id == twin_id)
        shared = " ".join(customer.name.split()[:2]).upper()
        twin_inv = InvoiceRow(f"INV-2026-{900000 + len(self.invoices):06d}", twin.external_id,
                              twin.currency, min(inv.issue_date, at), inv.due_date,
                              self.balance[inv.number], twin.terms)
        self.invoices.append(twin_inv)
        self.by_customer.setdefault(twin.external_id, []).append(twin_inv)
        self.balance[twin_inv.number] = twin_inv.total_minor
        self.targeted.add(twin_inv.number)
        p.payer_name, p.reference = shared, self.noise()
        self._review(p, "name fits two look-alike customers who both have this amount open")

    def make_duplicate_amount(self, p: PaymentCase, customer: CustomerRow, inv: InvoiceRow,
                              at: date) -> None:
        """Two open invoices of the customer with the same amount and no reference."""
        twin = InvoiceRow(f"INV-2026-{900000 + len(self.invoices):06d}", customer.external_id,
                          customer.currency, min(inv.issue_date, at), inv.due_date,
                          self.balance[inv.number], customer.terms)
        self.invoices.append(twin)
        self.by_customer[customer.external_id].append(twin)
        self.balance[twin.number] = twin.total_minor
        self.targeted.add(twin.number)
        p.reference = self.noise()
        self._review(p, "two open invoices with exactly this amount, none named")

    def demote_if_ambiguous(self, p: PaymentCase, customer: CustomerRow,
                            invs: list[InvoiceRow], at: date) -> None:
        """No guessing in the labels: if other open invoices of the customer (or, with the
        discount, their discounted amounts) also add up to the amount, it is for review."""
        chosen = {i.number for i in invs}
        others = self.open_of(customer.external_id, at)
        # (when the integration names the customer, a look-alike's invoices are no rivals)
        twins = [c for c in self._twins_of().get(customer.external_id, [])
                 if p.customer is None]
        for twin in twins:
            # The base customer's name is a prefix of its look-alike's ("Vandelay Industries"
            # / "Vandelay Industries Europe GmbH"): a bank could have cut either to it. If the
            # look-alike also has an open invoice of this amount, only a person can tell.
            payer = " ".join((p.payer_core or p.payer_name or "").upper().replace(".", "")
                             .split())
            if payer and twin.name.upper().startswith(payer) and any(
                    self.balance[i.number] == p.amount_minor
                    for i in self.open_of(twin.external_id, at)):
                self._review(p, "a look-alike customer has an open invoice of this amount")
                return
        values = []
        for i in others:
            values.append((i.number, self.balance[i.number]))
            d = self.discount_of(i, at) if self.balance[i.number] == i.total_minor else 0
            if d:
                values.append((i.number, self.balance[i.number] - d))
        target = p.amount_minor
        if p.case == "bank_fee":  # another invoice just as close to the amount?
            for i in others:
                short = self.balance[i.number] - target
                tol = min(_minor(Decimal(self.balance[i.number]) / 100 * Decimal("0.005")), 500)
                if i.number not in chosen and 0 <= short <= tol:
                    self._review(p, "another open invoice is within a bank fee of the amount")
                    return
            return
        # A clerk weighs answers of about the same size: one invoice against another one
        # or a pair, three against other threes or fours.
        if _other_combination(values, target, chosen, len(chosen) + 1):
            self._review(p, f"another set of open invoices adds up to {target}")

    @staticmethod
    def _review(p: PaymentCase, note: str) -> None:
        p.expected, p.write_offs, p.deduction, p.unapplied = {}, {}, {}, 0
        p.auto_matchable, p.note = False, note


def _other_combination(values: list[tuple[str, int]], target: int, chosen: set[str],
                       max_size: int) -> bool:
    """Is there a set of at most `max_size` open invoices, other than `chosen`, whose amounts
    add up to `target`? Exhaustive for pairs (hashing); triples for up to 80 values, fours
    and fives for up to 30 (beyond that the label stays optimistic: a miss, never a wrong)."""
    by_value: dict[int, set[str]] = {}
    for number, value in values:
        by_value.setdefault(value, set()).add(number)
    for number, value in values:  # singles and pairs
        if value == target and {number} != chosen:
            return True
        if max_size >= 2:
            for other in by_value.get(target - value, ()):
                if other != number and {number, other} != chosen:
                    return True
    for size in range(3, min(max_size, 5) + 1):
        if len(values) > (80 if size == 3 else 30):
            break
        if size == 3:  # a pair, then the third by its value (same answer, without 80^3)
            by_entry: dict[int, list[int]] = {}
            for k, (_, value) in enumerate(values):
                by_entry.setdefault(value, []).append(k)
            for i, j in combinations(range(len(values)), 2):
                (a, va), (b, vb) = values[i], values[j]
                if a == b:
                    continue
                for k in by_entry.get(target - va - vb, ()):
                    c = values[k][0]
                    if k > j and c not in (a, b) and {a, b, c} != chosen:
                        return True
            continue
        for combo in combinations(values, size):
            if sum(v for _, v in combo) != target:
                continue
            numbers = {n for n, _ in combo}
            if len(numbers) == size and numbers != chosen:
                return True
    return False


def _names_an_invoice(reference: str | None, numbers: list[str]) -> bool:
    if not reference:
        return False
    compact = "".join(ch for ch in reference.upper() if ch.isalnum())
    return any("".join(ch for ch in n if ch.isalnum()) in compact for n in numbers)


def generate(seed: int = 20261124, *, customers: int = 150, invoices: int = 2000,
             payments: int = 800, cases: dict[str, float] | None = None) -> Dataset:
    return Generator(seed, customers, invoices, payments, cases).build()


if __name__ == "__main__":
    data = generate()
    print(f"{len(data.customers)} customers, {len(data.invoices)} invoices, "
          f"{len(data.payments)} payments")
    for case, count in sorted(data.counts().items()):
        review = sum(1 for p in data.payments if p.case == case and not p.auto_matchable)
        print(f"  {case:16} {count:4}  (labelled review: {review})")
