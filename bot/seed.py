"""`o2c seed --demo`: a realistic demo company, built through the workflows.

Why through the workflows and not with inserts: the demo must obey the same rules as production
(numbering, credit and discount checks, stock reservations, invoice immutability, AR
invariants), so that everything shown in the sandbox is something the bot could really have
produced. Raw writes are limited to what no workflow does yet: deciding an approval, putting a
customer on credit hold, back-dating settlement timestamps (`_backdate`) and dropping the
history's notifications (below).

The company has about 200 days of history, replayed in date order from one event queue so
that every credit check sees exactly the history before it and document numbers follow dates:
orders are created, approved (or sent for approval and decided a few hours later), shipped and
invoiced, and paid on time, late or never, depending on the customer's payment habit; the ERP
pushes in invoices of its own; and a scripted "showcase" puts at least one order in every
reachable state. Open invoices end up in every aging bucket, and the last steps add the
payments the cash-application demo needs. A seeded `random.Random(42)` keeps it deterministic
for a given `today`.

Notifications about the back-dated history would flood the sandbox with months-old DMs and
e-mails, so the seed drops them and keeps only what a user should see now: cards of pending
approvals and messages about the recent showcase records.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from bot.db import Database
from models import (
    Allocation,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    CreditNote,
    CreditNoteRequest,
    CreditNoteStatus,
    Customer,
    Deduction,
    DeductionStatus,
    Dispute,
    DisputeStatus,
    Invoice,
    Order,
    OrderStatus,
    OutboxMessage,
    Payment,
    Product,
    User,
    money,
)
from workflows import (
    approvals,
    audit,
    cash_application,
    credit_notes,
    disputes,
    inputs,
    invariants,
    masterdata,
    orders,
    shipping,
    subscriptions,
    users,
)
from workflows.inputs import CreditNoteIn, DisputeOpenIn
from workflows.invoicing import Terms, ingest_erp_invoice, issue_credit_note
from workflows.receivables import aging_by_currency
from workflows.revenue_schedule import add_months, next_month


class SeedError(Exception):
    """The demo seed refused to run or could not finish; nothing was stored."""


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    name: str
    roles: tuple[str, ...]
    timezone: str


ADMIN, SALES_1, SALES_2 = "U0ADMIN01", "U0SALES01", "U0SALES02"
CREDIT, DISCOUNT = "U0CREDIT1", "U0DISC001"
COLLECTOR_US, COLLECTOR_EU = "U0COLL001", "U0COLL002"
DEMO_USERS = (
    DemoUser(ADMIN, "Ada Admin", ("admin",), "Europe/London"),
    DemoUser(SALES_1, "Sam Sales", ("sales",), "America/New_York"),
    DemoUser(SALES_2, "Sue Sales", ("sales",), "America/Chicago"),
    DemoUser(CREDIT, "Carl Credit", ("credit_approver",), "Europe/Berlin"),
    DemoUser(DISCOUNT, "Dana Discount", ("discount_approver",), "Europe/Paris"),
    DemoUser(COLLECTOR_US, "Cole Collector", ("collector",), "America/New_York"),
    DemoUser(COLLECTOR_EU, "Cora Collector", ("collector",), "Europe/London"),
)

# (external id, name, currency, credit limit, terms, habit); habits: prompt pays around the due
# date, slow pays weeks late or never, hold is slow and ends on credit hold, new is unreviewed.
CUSTOMERS = (
    ("C-1001", "Globex Corporation", "USD", "250000", "NET30", "prompt"),
    ("C-1002", "Initech", "USD", "15000", "NET30", "prompt"),
    ("C-1003", "Acme Corp", "USD", "150000", "2/10 NET30", "prompt"),
    ("C-1004", "Umbrella Corporation", "USD", "100000", "NET45", "hold"),
    ("C-1005", "Stark Industries", "USD", "500000", "NET30", "prompt"),
    ("C-1006", "Wayne Enterprises", "USD", "400000", "NET45", "prompt"),
    ("C-1007", "Soylent Corp", "USD", "80000", "NET30", "slow"),
    ("C-1008", "Hooli", "USD", "200000", "NET30", "prompt"),
    ("C-1009", "Cyberdyne Systems", "USD", "120000", "NET45", "slow"),
    ("C-1010", "Tyrell Corporation", "USD", "300000", "2/10 NET30", "prompt"),
    ("C-1011", "Massive Dynamic", "USD", "90000", "NET30", "slow"),
    ("C-1012", "Vandelay Industries", "USD", "40000", "DUE_ON_RECEIPT", "slow"),
    ("C-1013", "Dunder Mifflin", "USD", "60000", "NET30", "prompt"),
    ("C-1014", "Bluth Company", "USD", "50000", "NET45", "slow"),
    ("C-1015", "Aperture Science", "USD", "180000", "NET30", "prompt"),
    ("C-1016", "Wonka Industries", "USD", "70000", "2/10 NET30", "prompt"),
    ("C-1017", "Pied Piper", "USD", "25000", "NET30", "new"),
    ("C-1018", "Zorg Industries SA", "EUR", "150000", "NET45", "prompt"),
    ("C-1019", "Kruger Maschinenbau GmbH", "EUR", "90000", "NET30", "slow"),
    ("C-1020", "Wernham Hogg Ltd", "GBP", "60000", "NET30", "slow"),
)
# (sku, name, USD price, on hand, max discount %, revenue type)
PRODUCTS = (
    ("WID-100", "Standard Widget", "19.99", 100000, None, "goods"),
    ("WID-200", "Heavy-Duty Widget", "49.50", 60000, None, "goods"),
    ("GAD-300", "Gadget Pro", "249.00", 20000, "10", "goods"),
    ("GAD-310", "Gadget Mini", "89.00", 20000, None, "goods"),
    ("SPR-400", "Sprocket Assembly", "12.75", 100000, None, "goods"),
    ("GEAR-500", "Precision Gear Set", "399.00", 10000, None, "goods"),
    ("CBL-600", "Industrial Cable 50 m", "74.90", 30000, None, "goods"),
    ("SEN-700", "Sensor Kit", "159.00", 20000, "5", "goods"),
    ("ROB-800", "Assembly Robot Arm", "12500.00", 3, None, "goods"),  # low stock: backorders
    ("SVC-INST", "On-site Installation (per day)", "1200.00", 10000, None, "service"),
    ("SVC-TRAIN", "Operator Training Day", "950.00", 10000, None, "service"),
    ("SUB-CLOUD", "Cloud Monitoring, annual", "2400.00", 10000, None, "subscription"),
)
FX = {"EUR": Decimal("0.92"), "GBP": Decimal("0.79")}  # demo price lists from USD
CARRIERS = ("UPS", "FedEx", "DHL", "USPS")
METHODS = ("ach", "wire", "check", "card")
HISTORY_DAYS = 200


class Timeline:
    """Events replayed in date order, so each credit check sees the history before it."""

    def __init__(self) -> None:
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), action))

    def run(self) -> None:
        while self._queue:
            heapq.heappop(self._queue)[2]()


class DemoCompany:
    """The seeding steps over one session; `today` anchors every date."""

    def __init__(self, session: Session, today: date) -> None:
        self.s = session
        self.today = today
        self.rng = random.Random(42)
        self.timeline = Timeline()
        self.habit = {ext: habit for ext, *_, habit in CUSTOMERS}
        self.prices = {sku: price for sku, _, price, *_ in PRODUCTS}
        self.max_discount = {sku: cap for sku, _, _, _, cap, _ in PRODUCTS}
        self.kinds = {sku: kind for sku, *_, kind in PRODUCTS}
        self.payments = itertools.count(1)
        self.erp_numbers = itertools.count(1)
        self.cutoff = datetime.combine(today, time(0), tzinfo=UTC)  # history ends before today
        self.kept: list[tuple[int, int]] = []  # outbox id ranges the showcase steps wrote

    def day(self, days_ago: float, hour: int = 10) -> datetime:
        return (datetime.combine(self.today, time(hour), tzinfo=UTC)
                - timedelta(days=days_ago))

    # -- master data ------------------------------------------------------------------------------
    def master_data(self) -> None:
        for u in DEMO_USERS:
            users.upsert_user(self.s, user_id=u.user_id, name=u.name, roles=list(u.roles),
                              email=f"{u.name.split()[0].lower()}@example.com",
                              timezone=u.timezone, actor="seed")
        for i, (ext, name, currency, limit, terms, habit) in enumerate(CUSTOMERS):
            slug = name.split()[0].lower()
            masterdata.upsert_customer(self.s, inputs.CustomerIn(
                external_id=ext, name=name, currency=currency, credit_limit=limit,
                payment_terms=terms, credit_reviewed=habit != "new",
                billing_email=f"ap.{slug}@{'example.com' if i % 3 else 'example.org'}",
                billing_address=f"{100 + 7 * i} Commerce Way, Suite {i + 1}",
                shipping_address=f"Dock {i % 4 + 1}, {200 + 11 * i} Industrial Park",
                collector=COLLECTOR_US if currency == "USD" else COLLECTOR_EU,
                sales_rep=SALES_1 if i % 2 == 0 else SALES_2), actor="seed")
        for sku, name, price, on_hand, max_discount, revenue_type in PRODUCTS:
            masterdata.upsert_product(self.s, inputs.ProductIn(
                sku=sku, name=name, unit_price=price, currency="USD", on_hand=on_hand,
                max_discount_pct=max_discount, revenue_type=revenue_type,
                service_months=12 if revenue_type == "subscription" else None), actor="seed")
        self.s.flush()

    def customer(self, ext: str) -> Customer:
        return masterdata.customer_by_external_id(self.s, ext)

    # -- orders -----------------------------------------------------------------------------------
    def order(self, ext: str, lines: list[tuple[str, int, str | None]], when: datetime, *,
              billing: str | None = None, service_start: date | None = None) -> Order:
        """Create an order as its sales rep would; foreign-currency lines get a local price,
        services and subscriptions their service period (`service_period`)."""
        customer = self.customer(ext)
        data = inputs.OrderIn(
            customer=ext, sales_rep=customer.sales_rep_id, currency=customer.currency,
            lines=[inputs.OrderLineIn(sku=sku, quantity=qty, discount_pct=discount,
                                      unit_price=self.local_price(sku, customer.currency),
                                      **self.service_period(sku, when, billing, service_start))
                   for sku, qty, discount in lines])
        return orders.create_order(self.s, data, actor=customer.sales_rep_id, source="demo",
                                   now=when)

    def service_period(self, sku: str, when: datetime, billing: str | None,
                       start: date | None) -> dict:
        """A service runs three months from a week after the order; a subscription a year
        from the first of the next month (billed by period when `billing` is given)."""
        kind = self.kinds[sku]
        if kind == "goods":
            return {}
        if kind == "service":
            first = start or when.date() + timedelta(days=7)
            return {"service_start": first,
                    "service_end": add_months(first, 3) - timedelta(days=1)}
        first = start or next_month(when.date().replace(day=1))
        return {"service_start": first, "service_end": add_months(first, 12) - timedelta(days=1),
                "billing": billing}

    def local_price(self, sku: str, currency: str) -> str | None:
        """None (the list price) in USD; the demo price list's price in EUR and GBP."""
        if currency == "USD":
            return None
        return str(money.round_half_up(Decimal(self.prices[sku]) * FX[currency], currency))

    def random_lines(self, limit: Decimal) -> list[tuple[str, int, str | None]]:
        """1-3 lines worth a few percent of the customer's credit limit, discounts in policy."""
        skus = self.rng.sample([p[0] for p in PRODUCTS if p[0] != "ROB-800"],
                               self.rng.randint(1, 3))
        target = limit * Decimal(self.rng.randint(2, 9)) / 100 / len(skus)
        lines = []
        for sku in skus:
            qty = int(max(1, min(400, target / Decimal(self.prices[sku]))))
            cap = Decimal(self.max_discount[sku] or "15")
            discount = self.rng.choice([None, None, None, "5", "10"])
            lines.append((sku, qty, discount if discount and Decimal(discount) <= cap
                          else None))
        return lines

    def history(self) -> None:
        """Orders over the last HISTORY_DAYS days for every reviewed customer."""
        for ext, _, _, limit, _, habit in CUSTOMERS:
            if habit == "new":
                continue
            for _ in range(self.rng.randint(4, 8)):
                created = self.day(self.rng.randint(2, HISTORY_DAYS),
                                   hour=self.rng.randint(8, 17))
                lines = self.random_lines(Decimal(limit))
                self.timeline.at(created, lambda e=ext, li=lines, c=created:
                                 self._history_order(e, li, c))

    def _history_order(self, ext: str, lines: list, created: datetime) -> None:
        order = self.order(ext, lines, created)
        if order.status == OrderStatus.PENDING_APPROVAL:
            decided = created + timedelta(hours=self.rng.randint(2, 30))
            if decided < self.cutoff - timedelta(days=1):
                self.timeline.at(decided, lambda: self._decide_history(order, decided))
            return
        self._schedule_shipping(order, created)

    def _decide_history(self, order: Order, at: datetime) -> None:
        if self.rng.random() < 0.85:
            decide(self.s, order, approve=True, at=at, note="Good history overall; approved.")
            self._schedule_shipping(order, at)
        else:
            decide(self.s, order, approve=False, at=at,
                   note="Too much overdue; clear the old invoices first.")

    def _schedule_shipping(self, order: Order, after: datetime) -> None:
        first = after + timedelta(days=self.rng.randint(1, 5), hours=2)
        split = self.rng.random() < 0.2 and len(orders.order_lines(self.s, order.id)) > 1
        if first < self.cutoff:
            self.timeline.at(first, lambda: self.ship(order, first, only_first_line=split))
        if split:
            second = first + timedelta(days=self.rng.randint(4, 20))
            if second < self.cutoff:
                self.timeline.at(second, lambda: self.ship(order, second))

    def ship(self, order: Order, when: datetime, *, only_first_line: bool = False,
             paid_later: bool = True) -> Invoice:
        lines = None
        if only_first_line:
            first = orders.order_lines(self.s, order.id)[0]
            lines = [inputs.ShipmentLineIn(sku=first.sku, quantity=first.qty_open)]
        shipment = shipping.ship_order(
            self.s, order_number=order.number, carrier=self.rng.choice(CARRIERS),
            tracking_number=f"1Z{self.rng.randrange(10**10):010d}", shipped_at=when,
            lines=lines, actor=order.sales_rep_id, now=when)
        invoice = self.s.exec(select(Invoice).where(Invoice.shipment_id == shipment.id)).one()
        if paid_later:
            self._schedule_payment(invoice)
        return invoice

    def _schedule_payment(self, invoice: Invoice) -> None:
        """Prompt customers pay around the due date; slow ones weeks late, or not at all."""
        habit = self.habit[self.s.get(Customer, invoice.customer_id).external_id]
        if habit == "prompt":
            late = self.rng.randint(-12, 4)
        elif self.rng.random() < (0.6 if habit == "hold" else 0.35):
            return
        else:
            late = self.rng.randint(10, 75)
        paid = max(invoice.due_date + timedelta(days=late),
                   invoice.issue_date + timedelta(days=1))
        when = datetime.combine(paid, time(14), tzinfo=UTC)
        if when < self.cutoff:
            self.timeline.at(when, lambda: self.pay(invoice, when))

    # -- receivables ------------------------------------------------------------------------------
    def pay(self, invoice: Invoice, when: datetime, *, amount_minor: int | None = None,
            with_customer: bool | None = None) -> Payment:
        """A bank payment naming the invoice in its remittance text, so it applies at once."""
        customer = self.s.get(Customer, invoice.customer_id)
        self.s.refresh(invoice)
        amount = amount_minor if amount_minor is not None else invoice.balance_minor
        if with_customer is None:
            with_customer = self.rng.random() < 0.5
        payment, _ = cash_application.record_payment(self.s, inputs.PaymentIn(
            amount=money.to_str(amount, invoice.currency), currency=invoice.currency,
            received_at=when, payer_name=customer.name.upper(),
            reference=self.rng.choice(["{n}", "Remittance {n}", "Inv {n} thx"]
                                      ).format(n=invoice.number),
            customer=customer.external_id if with_customer else None,
            method=self.rng.choice(METHODS), external_id=f"DEMO-PAY-{next(self.payments):05d}"),
            actor=COLLECTOR_US if invoice.currency == "USD" else COLLECTOR_EU, source="demo")
        _backdate(self.s, payment)
        return payment

    def erp_invoices(self) -> None:
        """Invoices the ERP issues itself (say, for work billed outside the bot), pushed in on
        their issue date and left open: they put slow payers in every aging bucket."""
        plan = {"C-1004": (100, 140, 70), "C-1007": (45, 95, 20), "C-1009": (75, 35, -10),
                "C-1011": (120, 50, 5), "C-1012": (15, 65, 33), "C-1014": (92, 40, -20),
                "C-1019": (55, 10, -15), "C-1020": (80, 25, -5), "C-1018": (-25, 3)}
        for ext, offsets in plan.items():
            customer = self.customer(ext)
            for days_past_due in offsets:
                due = self.today - timedelta(days=days_past_due)
                issue = due - timedelta(days=Terms.parse(customer.payment_terms).net_days)
                total = money.to_str(self.rng.randint(80000, 900000), customer.currency)
                self.timeline.at(datetime.combine(issue, time(7), tzinfo=UTC),
                                 lambda c=customer, i=issue, d=due, t=total:
                                 self._erp_invoice(c, i, d, t))

    def _erp_invoice(self, customer: Customer, issue: date, due: date, total: str) -> None:
        ingest_erp_invoice(self.s, inputs.InvoiceIn(
            number=f"ERP-{issue.year}-{next(self.erp_numbers):05d}",
            customer=customer.external_id, currency=customer.currency, issue_date=issue,
            due_date=due, total=total), actor="seed")

    # -- showcase: every state, and the cash-application demo -------------------------------------
    def showcase(self) -> None:
        """At least one order in every reachable state, on the same timeline as the history
        (so numbers follow dates); what these steps notify is kept for the sandbox."""
        made: dict[str, Order] = {}
        invoices: dict[str, Invoice] = {}

        def new(key: str, ext: str, lines: list) -> Callable[[datetime], None]:
            return lambda at: made.__setitem__(key, self.order(ext, lines, at))

        steps: list[tuple[float, int, Callable[[datetime], object]]] = [
            (3, 8, self._put_umbrella_on_hold),
            # pending approval: new customer, over the limit, on credit hold, discount > max
            (1, 9, new("new_customer", "C-1017", [("GAD-310", 20, None)])),
            (1, 11, new("over_limit", "C-1002", [("GEAR-500", 50, None)])),
            (2, 15, new("credit_hold", "C-1004", [("WID-200", 120, None)])),
            (1, 14, new("discount", "C-1001", [("GAD-300", 40, "22"), ("WID-100", 200, None)])),
            # a discount request rejected by the approver, another withdrawn by the rep
            (6, 10, new("rejected", "C-1008", [("SEN-700", 100, "30")])),
            (5, 16, lambda at: self._close(made["rejected"], OrderStatus.REJECTED, DISCOUNT, at,
                                           "30% on sensor kits is below cost; offer 5%")),
            (8, 10, new("cancelled", "C-1013", [("WID-200", 300, "25")])),
            (7, 9, lambda at: self._close(made["cancelled"], OrderStatus.CANCELLED, SALES_1, at,
                                          "customer withdrew the order")),
            # held by finance, backordered, approved and waiting to ship
            (3, 10, new("on_hold", "C-1006", [("CBL-600", 150, None)])),
            (2, 9, lambda at: orders.transition(
                self.s, made["on_hold"], OrderStatus.ON_HOLD, actor=CREDIT, now=at,
                reason="pricing dispute on the last invoice; hold until resolved")),
            (3, 13, new("backordered", "C-1005", [("ROB-800", 5, None), ("SVC-INST", 3, None)])),
            (1, 10, new("approved", "C-1010", [("SUB-CLOUD", 2, None), ("SVC-TRAIN", 1, None)])),
            # partially shipped, invoiced (open), and paid early
            (12, 10, new("partial", "C-1003", [("WID-100", 300, "5"), ("GAD-310", 25, None)])),
            (10, 15, lambda at: self.ship(made["partial"], at, only_first_line=True,
                                          paid_later=False)),
            (7, 10, new("invoiced", "C-1015", [("GEAR-500", 12, None)])),
            (5, 11, lambda at: self.ship(made["invoiced"], at, paid_later=False)),
            (9, 10, new("paid", "C-1016", [("SPR-400", 200, None)])),
            (8, 10, lambda at: invoices.__setitem__("paid", self.ship(made["paid"], at,
                                                                      paid_later=False))),
            (2, 14, lambda at: self.pay(invoices["paid"], at, with_customer=True)),
        ]
        for days_ago, hour, step in steps:
            when = self.day(days_ago, hour)
            self.timeline.at(when, lambda step=step, when=when: self._kept(step, when))

    def revenue_demo(self) -> None:
        """A subscription billed monthly since four months ago (each period invoiced on its
        first day, paid by habit) and a three-month installation contract delivered and
        invoiced two and a half months ago: revenue recognised month by month, deferred and
        unbilled balances, and a waterfall for `/o2c revenue` and the revenue report."""
        start = add_months(self.today.replace(day=1), -4)
        when = datetime.combine(start - timedelta(days=6), time(10), tzinfo=UTC)
        self.timeline.at(when, lambda: self._subscription("C-1005", "SUB-CLOUD", 3, when, start))
        begins = self.today - timedelta(days=75)
        booked = datetime.combine(begins - timedelta(days=9), time(11), tzinfo=UTC)
        self.timeline.at(booked, lambda: self._service_contract("C-1006", "SVC-INST", 10,
                                                                booked, begins))

    def _approved(self, order: Order, when: datetime) -> Order:
        if order.status == OrderStatus.PENDING_APPROVAL:
            decide(self.s, order, approve=True, at=when, note="Strategic account; approved.")
        return order

    def _subscription(self, ext: str, sku: str, quantity: int, when: datetime,
                      start: date) -> None:
        order = self._approved(self.order(ext, [(sku, quantity, None)], when, billing="monthly",
                                          service_start=start), when)
        line = orders.order_lines(self.s, order.id)[0]
        for first, _, _ in orders.subscription_periods(line):
            billed_at = datetime.combine(first, time(6), tzinfo=UTC)
            if billed_at < self.cutoff:
                self.timeline.at(billed_at, lambda f=first, t=billed_at: self._bill(line, f, t))

    def _bill(self, line: object, first: date, when: datetime) -> None:
        invoice = subscriptions.bill_period(self.s, order_line_id=line.id, period_start=first,
                                            as_of=first, now=when)
        if invoice is not None:
            self._schedule_payment(invoice)

    def _service_contract(self, ext: str, sku: str, quantity: int, when: datetime,
                          begins: date) -> None:
        order = self._approved(self.order(ext, [(sku, quantity, None)], when,
                                          service_start=begins), when)
        delivered = datetime.combine(begins, time(9), tzinfo=UTC)
        self.timeline.at(delivered, lambda: self.ship(order, delivered))

    def _kept(self, step: Callable[[datetime], object], when: datetime) -> None:
        before = _last_outbox_id(self.s)
        step(when)
        self.kept.append((before, _last_outbox_id(self.s)))

    def _put_umbrella_on_hold(self, at: datetime) -> None:
        umbrella = self.customer("C-1004")
        umbrella.credit_hold = True
        umbrella.updated_at = at
        self.s.add(umbrella)
        audit.credit_hold(self.s, actor=CREDIT, customer_id=umbrella.id, on_hold=True,
                          reason="invoices more than 90 days past due")

    def _close(self, order: Order, to: str, by: str, at: datetime, why: str) -> None:
        """Reject (approver) or withdraw (rep) an order waiting for approval."""
        if to == OrderStatus.REJECTED:
            decide(self.s, order, approve=False, at=at, note=why)
        else:
            orders.cancel_order(self.s, order, actor=by, reason=why, now=at)

    def cash_application_demo(self) -> None:
        """A partial payment, an unmatchable one, and a credit note, for the AR demo."""
        partial = self._open_invoices("C-1009")[0]
        self.pay(partial, self.day(3, 14), amount_minor=partial.balance_minor * 2 // 5,
                 with_customer=True)
        target = self._open_invoices("C-1011")[0]
        cash_application.record_payment(self.s, inputs.PaymentIn(
            amount=money.to_str(target.balance_minor, target.currency), currency="USD",
            received_at=self.day(1, 15), payer_name="MASSIVE DYNAMC INC ACH CCD 0004471",
            reference="PAYMENT - THANK YOU", method="ach", external_id="DEMO-PAY-UNAPPLIED"),
            actor=COLLECTOR_US, source="demo")
        noted = self._open_invoices("C-1008") or self._open_invoices("C-1007")
        issue_credit_note(self.s, invoice_number=noted[0].number,
                          amount=money.to_str(noted[0].balance_minor // 10, noted[0].currency),
                          reason="2 units damaged in transit", actor=COLLECTOR_US,
                          now=self.day(2, 11))

    def back_office_demo(self) -> None:
        """What the back office shows in the sandbox (issue 14): a short payment whose
        deduction card waits in AR, an open dispute whose card waits for its owner (the rep),
        and a credit note waiting for the credit approver."""
        used: set[int] = set()

        def pick(*exts: str) -> Invoice:  # the first open USD invoice of these customers
            for ext in exts:
                for invoice in self._open_invoices(ext):
                    if invoice.id not in used and invoice.currency == "USD" and \
                            invoice.balance_minor >= 10_000 and not invoice.disputed_minor:
                        used.add(invoice.id)
                        return invoice
            raise SeedError(f"no open invoice for the back-office demo among {exts}")

        short = pick("C-1013", "C-1008", "C-1010", "C-1003", "C-1005", "C-1001")
        shortfall = max(short.balance_minor * 3 // 100, 2_500)
        self._kept(lambda at: self.pay(short, at, amount_minor=short.balance_minor - shortfall,
                                       with_customer=True), self.day(1, 11))
        contested = pick("C-1006", "C-1007", "C-1009", "C-1011", "C-1012", "C-1014")
        self._kept(lambda at: disputes.open_dispute(self.s, contested.number, DisputeOpenIn(
            reason="damaged",
            amount=money.to_str(contested.balance_minor // 4, contested.currency),
            note="Two pallets arrived crushed; photos sent to Sam."), actor=COLLECTOR_US,
            now=at), self.day(1, 16))
        credited = pick("C-1015", "C-1016", "C-1001", "C-1002", "C-1005", "C-1011")
        self._kept(lambda at: credit_notes.request_credit_note(self.s, CreditNoteIn(
            invoice=credited.number, reason="Price agreed at 5% below list was not applied",
            amount=money.to_str(credited.balance_minor // 20, credited.currency)),
            actor=SALES_1, now=at, via="slack"), self.day(0, 9))

    def _open_invoices(self, ext: str) -> list[Invoice]:
        return list(self.s.exec(select(Invoice).where(
            Invoice.customer_id == self.customer(ext).id, Invoice.balance_minor > 0)
            .order_by(Invoice.due_date, Invoice.id)))


def decide(session: Session, order: Order, *, approve: bool, at: datetime, note: str) -> None:
    """Decide an order's pending approvals through the approvals workflow, each by the demo
    approver of its kind (a rejection cancels the others)."""
    for approval in orders.pending_approvals(session, order.id):
        if order.status != OrderStatus.PENDING_APPROVAL:
            break
        approver = CREDIT if approval.kind == ApprovalKind.CREDIT else DISCOUNT
        approvals.decide(session=session, approval_id=approval.id, user_id=approver,
                         approve=approve, note=note, now=at)


def _backdate(session: Session, payment: Payment) -> None:
    """Allocations are recorded at the wall clock; the demo replays a history as if the bot
    had been running, so they are recorded when the money arrived (the as-of reports count
    them on the payment's value date either way; `?known_at=` reads this recording time)."""
    for allocation in session.exec(select(Allocation).where(
            Allocation.payment_id == payment.id)):
        allocation.created_at = payment.received_at
        session.add(allocation)
    session.flush()


def _last_outbox_id(session: Session) -> int:
    session.flush()
    return int(session.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0))).one())


def _drop_history_notifications(session: Session, kept: list[tuple[int, int]]) -> None:
    """Keep the cards of approvals still pending and what the showcase steps sent; drop the
    rest of the history's messages, and the cards of decided approvals (stale buttons)."""
    pending_cards = select(Approval.card_outbox_id).where(
        Approval.status == ApprovalStatus.PENDING, Approval.card_outbox_id.is_not(None))
    decided = session.exec(select(Approval).where(Approval.status != ApprovalStatus.PENDING,
                                                  Approval.card_outbox_id.is_not(None))).all()
    stale_cards = [a.card_outbox_id for a in decided]
    for approval in decided:
        approval.card_outbox_id = None
        session.add(approval)
    session.flush()
    keep = sa.or_(OutboxMessage.id.in_(pending_cards),
                  *(OutboxMessage.id.between(low + 1, high) for low, high in kept))
    doomed = list(session.exec(select(OutboxMessage.id).where(
        sa.or_(sa.not_(keep), OutboxMessage.id.in_(stale_cards or [-1])))))
    # an update of a dropped message (a decided card) goes with it, first (foreign key)
    session.execute(sa.delete(OutboxMessage).where(OutboxMessage.target_outbox_id.in_(doomed)))
    session.execute(sa.delete(OutboxMessage).where(OutboxMessage.id.in_(doomed)))


def seed_demo(db: Database, today: date) -> dict:
    """Build the demo company in one transaction; refuse if there are customers already."""
    with db.transaction() as session:
        if session.exec(select(Customer.id).limit(1)).first() is not None:
            raise SeedError("the database already has customers; the demo seed only fills an "
                            "empty database (point DATABASE_URL at a new one)")
        company = DemoCompany(session, today)
        company.master_data()
        company.history()
        company.erp_invoices()
        company.showcase()
        company.revenue_demo()
        company.timeline.run()
        company.cash_application_demo()
        company.back_office_demo()
        _drop_history_notifications(session, company.kept)
        session.flush()
        problems = invariants.validate_all(session)
        if problems:
            raise SeedError("the demo data breaks AR invariants: " + "; ".join(problems[:5]))
        return summary(session, today)


def summary(session: Session, today: date) -> dict:
    def count(model: type, *where: object) -> int:
        return int(session.exec(select(sa.func.count()).select_from(model).where(*where)).one())

    statuses = session.exec(select(Order.status, sa.func.count()).group_by(Order.status)).all()
    aging = aging_by_currency(session, today)
    return {
        "as_of": today.isoformat(),
        "users": count(User),
        "customers": count(Customer),
        "products": count(Product),
        "orders": count(Order),
        "orders_by_status": {status: int(n) for status, n in sorted(statuses)},
        "invoices": count(Invoice),
        "open_invoices": count(Invoice, Invoice.balance_minor > 0),
        "payments": count(Payment),
        "credit_notes": count(CreditNote),
        "pending_credit_notes": count(CreditNoteRequest,
                                      CreditNoteRequest.status == CreditNoteStatus.PENDING),
        "open_disputes": count(Dispute, Dispute.status == DisputeStatus.OPEN),
        "open_deductions": count(Deduction, Deduction.status == DeductionStatus.OPEN),
        "pending_approvals": count(Approval, Approval.status == ApprovalStatus.PENDING),
        "aging": {currency: {bucket: money.to_str(minor, currency)
                             for bucket, minor in a.buckets.items()}
                  for currency, a in sorted(aging.items())},
    }
