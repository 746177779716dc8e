"""KPIs and aging as of past dates, per-currency auto-match, approval turnaround."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import Session, select

from models import Allocation, Approval, CreditNote, Invoice, Payment, WriteOff
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, kpis
from workflows.cash_application import record_payment, write_off
from workflows.inputs import PaymentIn
from workflows.invoicing import issue_credit_note
from workflows.receivables import aging_by_currency, bucket_edges

T1, T2, T3 = date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)
LATER = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # "now" for these tests: all three days past
frozen_time = frozen_at(LATER)


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def pay(session: Session, amount: str, number: str, day: date, *, currency: str = "USD"
        ) -> Payment:
    """A payment received on `day` (recorded now: the reports date it by its value date)."""
    payment, _ = record_payment(session, PaymentIn(amount=amount, currency=currency,
                                                   received_at=at(day)),
                                actor="test", apply_to=[number])
    return payment


@pytest.fixture
def history(session: Session) -> Session:
    """Three USD invoices, paid, credited and written off on different days:

    | invoice | issued | due   | total  | settled                                          |
    | A       | 01-10  | 02-09 | 1000.00| 500.00 paid 02-20, 500.00 paid 04-05             |
    | B       | 02-15  | 03-17 | 600.00 | 100.00 credit note 03-01, 50.00 written off 04-10 |
    | C       | 03-20  | 04-19 | 400.00 | 200.00 paid 04-25                                |
    """
    f.customer(session)
    a = f.invoice(session, "INV-2026-000101", total="1000.00", issued=date(2026, 1, 10),
                  due=date(2026, 2, 9))
    b = f.invoice(session, "INV-2026-000102", total="600.00", issued=date(2026, 2, 15),
                  due=date(2026, 3, 17))
    c = f.invoice(session, "INV-2026-000103", total="400.00", issued=date(2026, 3, 20),
                  due=date(2026, 4, 19))
    pay(session, "500.00", a.number, date(2026, 2, 20))
    issue_credit_note(session, invoice_number=b.number, amount="100.00", reason="damaged",
                      actor="test", now=at(date(2026, 3, 1)))
    pay(session, "500.00", a.number, date(2026, 4, 5))
    write_off(session, invoice=b, amount_minor=5000, reason="bad_debt", actor="test",
              now=at(date(2026, 4, 10)))
    pay(session, "200.00", c.number, date(2026, 4, 25))
    session.commit()
    return session


def test_aging_as_of_past_days_uses_the_balances_of_that_day(history: Session) -> None:
    # when
    first, second, third = (aging_by_currency(history, day)["USD"]
                            for day in (T1, T2, T3))
    # then: 02-28: A 500 (19 days late), B 600 not yet due; C not issued
    assert first.buckets == {"current": 60000, "1-30": 50000, "31-60": 0, "61-90": 0,
                             "90+": 0}
    assert first.counts == {"current": 1, "1-30": 1, "31-60": 0, "61-90": 0, "90+": 0}
    # 03-31: A 500 (50 days), B 600 - 100 (14 days), C 400 not yet due
    assert second.buckets == {"current": 40000, "1-30": 50000, "31-60": 50000, "61-90": 0,
                              "90+": 0}
    # 04-30: A paid off, B 500 - 50 (44 days), C 400 - 200 (11 days)
    assert third.buckets == {"current": 0, "1-30": 20000, "31-60": 45000, "61-90": 0,
                             "90+": 0}
    assert third.counts == {"current": 0, "1-30": 1, "31-60": 1, "61-90": 0, "90+": 0}


def test_a_days_aging_does_not_depend_on_when_it_is_asked(history: Session) -> None:
    # when: 04-30 asked late on 04-30, and a month later
    with time_machine.travel(at(T3, 23), tick=False):
        that_day = aging_by_currency(history, T3)
    with time_machine.travel(at(date(2026, 6, 1)), tick=False):
        later = aging_by_currency(history, T3)
    # then: the same, and today's open balances (nothing is dated after 04-30)
    assert that_day == later
    open_now = history.exec(select(sa.func.sum(Invoice.balance_minor))).one()
    assert that_day["USD"].total == open_now == 65000


def test_aging_of_one_customer_as_of_a_past_day(history: Session) -> None:
    # given another customer's invoice
    globex = history.exec(select(Invoice.customer_id)).first()
    other = f.customer(history, "C-ACME", "Acme")
    f.invoice(history, "INV-2026-000201", "C-ACME", total="70.00", issued=date(2026, 2, 1),
              due=date(2026, 3, 3))
    # when
    mine = aging_by_currency(history, T2, customer_id=globex)
    theirs = aging_by_currency(history, T2, customer_id=other.id)
    # then
    assert mine["USD"].total == 140000
    assert theirs["USD"].buckets["1-30"] == 7000 and theirs["USD"].total == 7000


@pytest.mark.parametrize("as_of, expected", [
    # window 2025-12-01..02-28: sales A + B = 1600; AR 1100 (A 500 late, B 600 current);
    # AR before the window 0; count back: Feb 600 (28 d), then 500 of Jan's 1000 (15.5 d)
    (T1, {"ar": "1100.00", "current_ar": "600.00", "credit_sales": "1600.00",
          "dso": "61.88", "best_possible_dso": "33.75", "average_days_delinquent": "28.13",
          "cei_pct": "50.00", "count_back_dso": "43.50"}),
    # window 01-01..03-31: sales 2000 less B's credit note of 03-01 = 1900; AR 1400 (C 400
    # current); DSO 1400/1900 x 90; CEI (0 + 2000 billed - 1400) / (0 + 2000 - 400); count
    # back: Mar 400 - 100 (31 d), Feb 600 (28 d), then 500 of Jan's 1000 (15.5 d)
    (T2, {"ar": "1400.00", "current_ar": "400.00", "credit_sales": "1900.00",
          "dso": "66.32", "best_possible_dso": "18.95", "average_days_delinquent": "47.37",
          "cei_pct": "37.50", "count_back_dso": "74.50"}),
    # window 01-31..04-30: sales B + C less B's credit note = 900; AR 650, none current; AR
    # on 01-30 = A 1000; CEI (1000 + 1000 billed - 650) / (1000 + 1000 - 0); count back:
    # Apr 0 (30 d), Mar 400 - 100 (31 d), then 350 of Feb's 600 (28 d x 350/600 = 16.33 d)
    (T3, {"ar": "650.00", "current_ar": "0.00", "credit_sales": "900.00",
          "dso": "65.00", "best_possible_dso": "0.00", "average_days_delinquent": "65.00",
          "cei_pct": "67.50", "count_back_dso": "77.33"}),
])
def test_kpis_as_of_three_past_days(history: Session, as_of: date, expected: dict) -> None:
    # when
    data = kpis.to_json(kpis.compute(history, as_of))
    # then
    assert {key: data[key] for key in expected} == expected
    assert data["currency"] == "USD"


def test_past_kpis_do_not_read_todays_balances(history: Session) -> None:
    # given: today's open balance is 650.00
    today = LATER.date()
    assert aging_by_currency(history, today)["USD"].total == 65000
    # when: the KPIs as of 02-28
    report = kpis.compute(history, T1)
    # then: AR of that day
    assert report.ar_minor == 110000 and report.current_ar_minor == 60000


def test_historical_aging_matches_the_definition_on_the_demo_company(demo_db) -> None:
    """AR(t) per invoice = total − settlements dated (effective) by the end of t, for invoices
    issued by t; checked against a plain Python recount over the seeded demo company."""
    from tests.conftest import DEMO_DAY

    # given the demo company, seeded as of DEMO_DAY
    today = DEMO_DAY
    with demo_db.read_session() as session:
        invoices = session.exec(select(Invoice)).all()
        moves = [(row.invoice_id, row.amount_minor, row.effective_date)
                 for model in (Allocation, CreditNote, WriteOff)
                 for row in session.exec(select(model)).all()]
        for day in (today - timedelta(days=75), today - timedelta(days=20), today):
            # when
            aging = aging_by_currency(session, day)
            # then
            expected: dict[str, dict[str, int]] = {}
            for invoice in invoices:
                if invoice.issue_date > day:
                    continue
                balance = invoice.total_minor - sum(
                    amount for invoice_id, amount, when in moves
                    if invoice_id == invoice.id and when <= day)
                if balance > 0:
                    bucket = next(name for name, edge in bucket_edges(day)
                                  if edge is None or invoice.due_date >= edge)
                    cur = expected.setdefault(invoice.currency, {})
                    cur[bucket] = cur.get(bucket, 0) + balance
            got = {c: {b: v for b, v in a.buckets.items() if v} for c, a in aging.items()}
            assert got == expected, day


def test_bucket_edges_are_days_past_due() -> None:
    # when
    edges = dict(bucket_edges(date(2026, 11, 23)))
    # then: 1-30 days past due holds due dates 10-24 .. 11-22, and so on
    assert edges == {"current": date(2026, 11, 23), "1-30": date(2026, 10, 24),
                     "31-60": date(2026, 9, 24), "61-90": date(2026, 8, 25), "90+": None}


def test_auto_match_amount_rate_uses_the_home_currency_only(session: Session) -> None:
    # given: USD is the home currency (open AR); a yen payment is matched by the engine
    f.customer(session)
    f.customer(session, "C-KAITO", "Kaito KK", currency="JPY", credit_limit="5000000")
    today = LATER.date()
    f.invoice(session, "INV-2026-000301", total="1000.00", issued=today - timedelta(days=5))
    f.invoice(session, "INV-2026-000302", total="5000.00", issued=today - timedelta(days=5))
    f.invoice(session, "INV-2026-000303", "C-KAITO", total="1000000", currency="JPY",
              issued=today - timedelta(days=5))
    received = at(today - timedelta(days=1))
    auto_usd, _ = record_payment(session, PaymentIn(
        amount="1000.00", currency="USD", received_at=received,
        reference="INV-2026-000301"), actor="test")
    manual_usd = pay(session, "3000.00", "INV-2026-000302", today - timedelta(days=1))
    auto_jpy, _ = record_payment(session, PaymentIn(
        amount="1000000", currency="JPY", received_at=received,
        reference="INV-2026-000303"), actor="test")
    session.commit()
    assert (auto_usd.status, auto_jpy.status, manual_usd.status) == ("applied",) * 3
    # when
    report = kpis.compute(session, today)
    # then: by amount 1000.00 of the 4000.00 USD received; by count 2 of 3 payments
    assert report.currency == "USD"
    assert report.auto_match_amount_rate == Decimal("25.00")
    assert report.auto_match_rate == Decimal("66.67") and report.payments_received == 3
    assert kpis.to_json(report)["cash_application"]["amount_currency"] == "USD"


def test_approval_turnaround_ignores_cancelled_requests(session: Session) -> None:
    # given: an order needing credit and discount approval, rejected on discount after
    # 2 hours (which cancels the credit request), and one approved after 6 hours
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UDISC001", "discount_approver")
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.product(session, "WID-1", price="100.00")
    asked = at(date(2026, 3, 2), 9)
    both = f.order(session, "C-NEW", discount="20", now=asked)
    credit_only = f.order(session, "C-NEW", now=asked)

    def approval(order, kind: str) -> Approval:
        return session.exec(select(Approval).where(Approval.order_id == order.id,
                                                   Approval.kind == kind)).one()

    approvals.decide(session=session, approval_id=approval(both, "discount").id,
                     user_id="UDISC001", approve=False, note="too deep",
                     now=asked + timedelta(hours=2))
    approvals.decide(session=session, approval_id=approval(credit_only, "credit").id,
                     user_id="UCREDIT1", approve=True, now=asked + timedelta(hours=6))
    session.commit()
    cancelled = approval(both, "credit")
    assert cancelled.status == "cancelled" and cancelled.decided_at is not None
    # when
    report = kpis.compute(session, date(2026, 3, 31))
    # then: (2 h + 6 h) / 2, not (2 + 2 + 6) / 3
    assert report.approval_turnaround_hours == Decimal("4.00")


def test_with_all_ar_collected_the_home_currency_is_the_one_sold_in(session: Session) -> None:
    # given: 500.00 sold 03-02 and paid in full 03-10; nothing open on 03-31
    f.customer(session)
    f.invoice(session, "INV-2026-000401", total="500.00", issued=date(2026, 3, 2),
              due=date(2026, 4, 1))
    pay(session, "500.00", "INV-2026-000401", date(2026, 3, 10))
    session.commit()
    # when
    report = kpis.compute(session, T2)
    # then: DSO 0 days, not "no KPIs"
    assert report.currency == "USD" and report.credit_sales_minor == 50000
    assert report.dso == Decimal("0.00") and report.cei == Decimal("100.00")


def short_paid_on_04_01(session: Session):
    """1000.00 issued 03-01, short paid 950.00 on 04-01 (a 50.00 deduction), each recorded on
    its day; returns (pay on a day, the deductions outstanding as of a day)."""
    from tests.support.timetravel import run_at

    f.customer(session)
    run_at(at(date(2026, 3, 1)), f.invoice, session, "INV-2026-000301", total="1000.00",
           issued=date(2026, 3, 1), due=date(2026, 3, 31))
    run_at(at(date(2026, 4, 1)), record_payment, session, PaymentIn(
        amount="950.00", currency="USD", received_at=at(date(2026, 4, 1)),
        reference="INV-2026-000301"), actor="test")

    def paid(amount: str, day: date) -> None:
        run_at(at(day), pay, session, amount, "INV-2026-000301", day)

    def outstanding(as_of: date, **options) -> tuple[int, int]:
        report = kpis.compute(session, as_of, **options)
        return report.deductions_outstanding, report.deductions_outstanding_minor

    return paid, outstanding


def test_a_past_days_deductions_outstanding_do_not_read_todays_balances(session: Session
                                                                         ) -> None:
    # given: a 50.00 deduction of 04-01
    paid, outstanding = short_paid_on_04_01(session)
    assert outstanding(T3) == (1, 5000)
    # when the customer pays the 50.00 on 05-10
    paid("50.00", date(2026, 5, 10))
    # then on 04-30 the deduction was still outstanding (its invoice open then), however it
    # is asked; by 05-31 it is not
    assert outstanding(T3) == outstanding(T3, rollups=False) == (1, 5000)
    assert outstanding(T3, known_at=at(date(2026, 5, 31))) == (1, 5000)
    assert outstanding(date(2026, 5, 31)) == (0, 0)


def test_deductions_outstanding_count_at_most_what_their_invoice_had_open(session: Session
                                                                          ) -> None:
    # given: a 50.00 deduction of 04-01
    paid, outstanding = short_paid_on_04_01(session)
    # when the customer pays 20.00 of the 50.00 on 05-10
    paid("20.00", date(2026, 5, 10))
    # then from 05-10 the deduction is outstanding for the 30.00 still open, before for 50.00
    assert outstanding(T3) == outstanding(T3, rollups=False) == (1, 5000)
    assert outstanding(date(2026, 5, 31)) == outstanding(date(2026, 5, 31), rollups=False) == (
        1, 3000)
    assert outstanding(date(2026, 5, 31), known_at=at(date(2026, 5, 9))) == (1, 5000)


def test_a_past_days_invoice_accuracy_does_not_count_later_corrections(session: Session
                                                                        ) -> None:
    # given: two invoices issued in April; on 05-05 one gets a credit note
    f.customer(session)
    f.invoice(session, "INV-2026-000401", total="100.00", issued=date(2026, 4, 2),
              due=date(2026, 5, 2))
    f.invoice(session, "INV-2026-000402", total="100.00", issued=date(2026, 4, 3),
              due=date(2026, 5, 3))
    assert kpis.compute(session, T3).invoice_accuracy == Decimal("100.00")
    issue_credit_note(session, invoice_number="INV-2026-000402", amount="10.00",
                      reason="damaged", actor="test", now=at(date(2026, 5, 5)))
    # when the KPIs as of 04-30 are asked again, and as of 05-31
    # then on 04-30 both invoices were still uncorrected; by 05-31 one of two was corrected
    assert kpis.compute(session, T3).invoice_accuracy == Decimal("100.00")
    assert kpis.compute(session, T3, rollups=False).invoice_accuracy == Decimal("100.00")
    assert kpis.compute(session, date(2026, 5, 31)).invoice_accuracy == Decimal("50.00")
