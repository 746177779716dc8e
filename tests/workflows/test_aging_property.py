"""Property (issue 21): the aging as of any day equals a naive recomputation from the entries
dated up to that day — whatever order and day they were recorded in.

Hypothesis writes random books: invoices recorded days after their issue date, payments whose
value date is before or after the moment they are posted (in several time zones), credit
notes and write-offs dated back, and month closes. Every entry is recorded at a moment fixed
with time_machine. The test keeps its own ledger of what each entry should count on —

* an invoice counts from its issue date;
* a payment from its value date (the calendar day of `received_at` as sent), a credit note
  from its issue date, a write-off from its effective date — never before the invoice's
  issue date;
* and an entry recorded after a close, dated inside the closed months, from the day after
  them —

and recomputes, for many days, each invoice's balance from that ledger alone; the workflow
must agree, bucket by bucket, per currency, on both databases. The same holds for `known_at`
(only entries recorded by then), and a closed month's aging never changes afterwards.
(Invoices are never back-dated into a closed month here: the product moves settlements out of
closed months, not invoices — see README, "Closed periods".)
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

import time_machine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models import AGING_BUCKETS
from tests.support import factories as f
from tests.support.examples import examples
from workflows import invariants, periods
from workflows.cash_application import correct_application, record_payment, write_off
from workflows.errors import DomainError
from workflows.inputs import PaymentIn
from workflows.invoicing import get_invoice, issue_credit_note
from workflows.receivables import aging_by_currency, bucket_edges

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
CUSTOMERS = [("C-GLOBEX", "Globex Corporation", "USD"), ("C-KAITO", "Kaito GmbH", "EUR")]
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7)),
         timezone(timedelta(hours=9, minutes=30))]

cents = st.integers(min_value=1, max_value=200_000)
step = st.integers(min_value=0, max_value=9)  # days the clock moves before the entry
invoice_op = st.tuples(st.just("invoice"), step, st.integers(0, 1), cents,
                       st.integers(0, 20), st.integers(0, 45))
pay_op = st.tuples(st.just("pay"), step, st.integers(0, 30), cents,
                   st.integers(-3, 40), st.sampled_from(range(len(ZONES))),
                   st.integers(0, 23))
credit_op = st.tuples(st.just("credit"), step, st.integers(0, 30), cents, st.integers(0, 40))
write_off_op = st.tuples(st.just("write_off"), step, st.integers(0, 30), cents,
                         st.integers(0, 40))
close_op = st.tuples(st.just("close"), step, st.integers(1, 3))
operations = st.lists(st.one_of(invoice_op, invoice_op, pay_op, pay_op, credit_op,
                                write_off_op, close_op, close_op), min_size=1, max_size=14)
# a collector moves a payment to another invoice (`correct_application`): its allocation is
# reversed, and counts as known only from when it was recorded until then
correct_op = st.tuples(st.just("correct"), step, st.integers(0, 30), st.integers(0, 30))
with_corrections = st.lists(st.one_of(invoice_op, invoice_op, pay_op, pay_op, credit_op,
                                      write_off_op, close_op, correct_op, correct_op),
                            min_size=1, max_size=14)
# always tried: invoices of March, March closed on 11 April, then money of March posted and
# a credit note of late March issued (both booked on 1 April), and a write-off of April
CLOSED_MONTH = [("invoice", 0, 0, 100_000, 0, 30), ("invoice", 9, 1, 50_000, 0, 10),
                ("pay", 8, 0, 30_000, 1, 1, 23), ("close", 23, 1),
                ("pay", 1, 0, 20_000, 25, 2, 1), ("credit", 0, 1, 5_000, 15),
                ("write_off", 2, 1, 1_000, 3), ("pay", 0, 1, 80_000, 50, 0, 12)]
# always tried: a payment of the first invoice in full moved to the second, then back
CORRECTED = [("invoice", 0, 0, 100_000, 0, 30), ("invoice", 1, 0, 100_000, 0, 10),
             ("pay", 2, 0, 100_000, 0, 0, 9), ("correct", 3, 0, 1), ("correct", 2, 0, 0)]


@dataclass
class Entry:
    invoice: str
    amount: int
    day: date  # when the books count it
    recorded: datetime
    payment: int | None = None  # the payment it was allocated from
    reversed: datetime | None = None  # when a correction took it back

    def counts(self, known_at: datetime | None) -> bool:
        """Whether it is on the books (as known at `known_at`)."""
        if known_at is None:
            return self.reversed is None
        return self.recorded <= known_at and (self.reversed is None
                                              or self.reversed > known_at)


@dataclass
class Ledger:
    """What the test itself believes happened (never read back from the database)."""

    invoices: dict[str, dict] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    closed_through: date | None = None
    payments: dict[int, tuple[int, date]] = field(default_factory=dict)  # amount, value date

    def balance(self, number: str) -> int:
        return self.invoices[number]["total"] - sum(
            e.amount for e in self.entries if e.invoice == number and e.counts(None))

    def booked(self, number: str, dated: date) -> date:
        day = max(dated, self.invoices[number]["issued"])
        if self.closed_through is not None and day <= self.closed_through:
            return self.closed_through + timedelta(days=1)
        return day

    def aging(self, day: date, known_at: datetime | None = None) -> dict:
        """Per currency, per bucket: (amount, invoices) — recounted from the ledger."""
        result: dict[str, dict[str, tuple[int, int]]] = {}
        for number, invoice in self.invoices.items():
            if invoice["issued"] > day or (known_at and invoice["recorded"] > known_at):
                continue
            open_minor = invoice["total"] - sum(
                e.amount for e in self.entries if e.invoice == number and e.day <= day
                and e.counts(known_at))
            if open_minor <= 0:
                continue
            bucket = next(name for name, edge in bucket_edges(day)
                          if edge is None or invoice["due"] >= edge)
            amount, count = result.setdefault(invoice["currency"], {}).get(bucket, (0, 0))
            result[invoice["currency"]][bucket] = (amount + open_minor, count + 1)
        return result


def as_recorded(session, day: date, known_at: datetime | None = None) -> dict:
    return {currency: {b: (aging.buckets[b], aging.counts[b]) for b in AGING_BUCKETS
                       if aging.buckets[b] or aging.counts[b]}
            for currency, aging in aging_by_currency(session, day, known_at=known_at).items()
            if aging.total or any(aging.counts.values())}


def month_before(moment: datetime, months: int) -> tuple[str, date]:
    year, month = moment.year, moment.month - months
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}", date(year, month, calendar.monthrange(year, month)[1])


def run(session, ops: list[tuple]) -> tuple[Ledger, datetime, dict]:
    ledger = Ledger()
    now = START
    closed_snapshots: dict[date, dict] = {}
    with time_machine.travel(now, tick=False):
        f.user(session, "UCOLL001", "collector")
        for external_id, name, currency in CUSTOMERS:
            f.customer(session, external_id, name, currency=currency)
        session.commit()
    for op in ops:
        kind, days = op[0], op[1]
        now += timedelta(days=days, minutes=17)
        today = now.date()
        numbers = list(ledger.invoices)
        with time_machine.travel(now, tick=False):
            try:
                if kind == "invoice":
                    _, _, who, total, late, terms = op
                    number = f"INV-2026-{len(numbers) + 1:06d}"
                    issued = today - timedelta(days=late)
                    if ledger.closed_through and issued <= ledger.closed_through:
                        # (invoices are not moved out of closed months: not back-dated here)
                        issued = ledger.closed_through + timedelta(days=1)
                    customer, _, currency = CUSTOMERS[who]
                    f.invoice(session, number, customer, total=f"{total / 100:.2f}",
                              issued=issued, due=issued + timedelta(days=terms),
                              currency=currency)
                    ledger.invoices[number] = {"total": total, "issued": issued,
                                               "due": issued + timedelta(days=terms),
                                               "currency": currency, "recorded": now}
                elif kind == "pay" and numbers:
                    _, _, which, amount, lag, zone, hour = op
                    number = numbers[which % len(numbers)]
                    invoice = ledger.invoices[number]
                    received = datetime.combine(today - timedelta(days=lag), time(hour),
                                                tzinfo=ZONES[zone])
                    open_minor = ledger.balance(number)
                    payment, _ = record_payment(session, PaymentIn(
                        amount=f"{amount / 100:.2f}", currency=invoice["currency"],
                        received_at=received), actor="test", apply_to=[number])
                    ledger.payments[payment.id] = (amount, received.date())
                    ledger.entries.append(Entry(number, min(amount, open_minor),
                                                ledger.booked(number, received.date()), now,
                                                payment=payment.id))
                elif kind == "correct" and ledger.payments:
                    _, _, which, target = op
                    payment_id = sorted(ledger.payments)[which % len(ledger.payments)]
                    number = numbers[target % len(numbers)]
                    correct_application(session, payment_id=payment_id, invoices=[number],
                                        actor="UCOLL001", now=now)
                    for entry in ledger.entries:
                        if entry.payment == payment_id and entry.reversed is None:
                            entry.reversed = now
                    amount, value_date = ledger.payments[payment_id]
                    ledger.entries.append(Entry(number, min(amount, ledger.balance(number)),
                                                ledger.booked(number, value_date), now,
                                                payment=payment_id))
                elif kind in ("credit", "write_off") and numbers:
                    _, _, which, amount, back = op
                    number = numbers[which % len(numbers)]
                    invoice = ledger.invoices[number]
                    dated = max(today - timedelta(days=back), invoice["issued"])
                    if kind == "credit":
                        issue_credit_note(session, invoice_number=number,
                                          amount=f"{amount / 100:.2f}", reason="test",
                                          actor="test", now=now, issue_date=dated)
                    else:
                        write_off(session, invoice=get_invoice(session, number),
                                  amount_minor=amount, reason="bad_debt", actor="test",
                                  now=now, effective_date=dated)
                    ledger.entries.append(Entry(number, amount, ledger.booked(number, dated),
                                                now))
                elif kind == "close":
                    _, _, months = op
                    period, last = month_before(now, months)
                    periods.close_period(session, period=period, actor="test", now=now)
                    if ledger.closed_through is None or last > ledger.closed_through:
                        ledger.closed_through = last
                        session.flush()
                        closed_snapshots[last] = as_recorded(session, last)
                session.commit()
            except DomainError:  # refused (more than is open, already paid): nothing happened
                session.rollback()
                if kind != "invoice" and ledger.entries and ledger.entries[-1].recorded == now:
                    gone = ledger.entries.pop()
                    for entry in ledger.entries:  # (a correction: undone with it)
                        if entry.reversed == now:
                            entry.reversed = None
                    if kind == "pay":
                        ledger.payments.pop(gone.payment, None)
        assert invariants.validate_invoice_balances(session) == []
    return ledger, now, closed_snapshots


def days_to_check(ledger: Ledger, end: datetime) -> set[date]:
    days = {START.date() - timedelta(days=1), end.date(), end.date() + timedelta(days=60)}
    for invoice in ledger.invoices.values():
        days |= {invoice["issued"], invoice["issued"] - timedelta(days=1), invoice["due"],
                 invoice["due"] + timedelta(days=31)}
    for entry in ledger.entries:
        days |= {entry.day, entry.day - timedelta(days=1)}
    return days


@settings(max_examples=examples(50), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=with_corrections)
@example(ops=CLOSED_MONTH)
@example(ops=CORRECTED)
def test_aging_as_of_any_day_is_the_entries_dated_up_to_it(db_factory, ops) -> None:
    with db_factory.fresh() as database, database.session() as session:
        # given: a random book, recorded over time
        ledger, end, closed = run(session, ops)
        # then: every day's aging is the ledger's, by the day each entry counts on
        for day in sorted(days_to_check(ledger, end)):
            assert as_recorded(session, day) == ledger.aging(day), day
        # and as the books knew it at each recording moment
        reversals = sorted({e.reversed for e in ledger.entries if e.reversed})[:2]
        for moment in [*sorted({e.recorded for e in ledger.entries})[:4],
                       *(r - timedelta(seconds=1) for r in reversals)]:
            for day in (moment.date(), end.date()):
                assert as_recorded(session, day, moment) == ledger.aging(day, moment), (
                    day, moment)
        # and a closed month's last day reads as it did when it was closed
        for last, snapshot in closed.items():
            assert as_recorded(session, last) == snapshot, last
