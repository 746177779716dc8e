"""The controller's book of issue 21, worked by hand: every KPI as of 30 June 2026, counted by
the day the money moved — and, asked explicitly with `known_at`, by what the books knew on
30 June (before the two payments were posted).

The book (customer Globex, NET30; each invoice recorded on its issue date):

| invoice | issued | due   | total    | settled                                                |
| A       | 03-16  | 04-15 | 2,000.00 | paid in full, value date 05-01, posted 07-10 (10 weeks) |
| B       | 04-10  | 05-10 | 4,000.00 | open                                                   |
| C       | 05-12  | 06-11 | 6,000.00 | paid in full, value date 06-15, posted 07-02 (across    |
|         |        |       |          | the June/July month end)                               |
| D       | 06-05  | 07-05 | 5,000.00 | open                                                   |
| E       | 06-20  | 07-20 | 4,000.00 | open                                                   |

As of 06-30 (`workflows/kpis.py`): the window W is the 90 days 04-02 .. 06-30.

* Credit sales in W = B + C + D + E = 4,000 + 6,000 + 5,000 + 4,000 = 19,000 (A, 03-16, is
  before W).
* AR(06-30) = B 4,000 + D 5,000 + E 4,000 = 13,000 (A paid 05-01, C paid 06-15).
  Aging: B is 51 days past due (31-60); D and E are not yet due (current) = 9,000.
* **DSO** = 13,000 / 19,000 × 90 = 61.5789… = **61.58** days.
* **Best possible DSO** = current AR / sales × 90 = 9,000 / 19,000 × 90 = 42.6315… = **42.63**.
* **Average days delinquent** = DSO − best possible = 61.58 − 42.63 = **18.95**.
* **CEI**: AR(04-01), the day before W, = A 2,000 (issued 03-16, paid only on 05-01).
  (2,000 + 19,000 − 13,000) / (2,000 + 19,000 − 9,000) × 100 = 8,000 / 12,000 = **66.67** %.
* **Count-back DSO**: June's sales (D + E = 9,000) cover 9,000 of the 13,000 AR: 30 days;
  the remaining 4,000 of May's 6,000 (C): 4,000 / 6,000 × 31 = 20.67 days; **50.67**.

What the books said on 30 June (`known_at` = end of 06-30: neither payment posted yet) —
the figures the report used to give by accident, counting A and C as open:

* AR = 21,000 (A and C too, both overdue: A 76 days, C 19 days), current 9,000.
* DSO = 21,000 / 19,000 × 90 = **99.47**; best possible **42.63**; ADD = **56.84**.
* CEI = (2,000 + 19,000 − 21,000) / 12,000 = **0.00** %.
* Count-back: June 9,000 (30 d), May 6,000 (31 d), April 4,000 (30 d), then the last 2,000
  of March's 2,000 (31 d × 1) = **122.00**.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
import time_machine
from sqlmodel import Session

from tests.support import factories as f
from workflows import kpis
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn
from workflows.receivables import aging_by_currency

AS_OF = date(2026, 6, 30)
END_OF_JUNE = datetime.combine(AS_OF, time.max, tzinfo=UTC)
BOOK = [  # number, issued, due, total
    ("INV-2026-000001", date(2026, 3, 16), date(2026, 4, 15), "2000.00"),
    ("INV-2026-000002", date(2026, 4, 10), date(2026, 5, 10), "4000.00"),
    ("INV-2026-000003", date(2026, 5, 12), date(2026, 6, 11), "6000.00"),
    ("INV-2026-000004", date(2026, 6, 5), date(2026, 7, 5), "5000.00"),
    ("INV-2026-000005", date(2026, 6, 20), date(2026, 7, 20), "4000.00"),
]
PAYMENTS = [  # invoice, amount, value date, posted at
    ("INV-2026-000003", "6000.00", datetime(2026, 6, 15, 11, tzinfo=UTC),
     datetime(2026, 7, 2, 9, 30, tzinfo=UTC)),
    ("INV-2026-000001", "2000.00", datetime(2026, 5, 1, 14, tzinfo=UTC),
     datetime(2026, 7, 10, 16, tzinfo=UTC)),
]


@pytest.fixture
def book(session: Session) -> Session:
    with time_machine.travel(datetime(2026, 3, 1, 9, tzinfo=UTC), tick=False):
        f.customer(session)
        session.commit()
    for number, issued, due, total in BOOK:
        with time_machine.travel(datetime.combine(issued, time(9), tzinfo=UTC), tick=False):
            f.invoice(session, number, total=total, issued=issued, due=due)
            session.commit()
    for number, amount, value, posted in PAYMENTS:
        with time_machine.travel(posted, tick=False):
            record_payment(session, PaymentIn(amount=amount, currency="USD",
                                              received_at=value, reference=number),
                           actor="api")
            session.commit()
    return session


def test_kpis_as_of_30_june_count_the_money_on_the_day_it_moved(book: Session) -> None:
    # when: asked long after, with both payments posted in July
    with time_machine.travel(datetime(2026, 8, 3, 9, tzinfo=UTC), tick=False):
        data = kpis.to_json(kpis.compute(book, AS_OF))
    # then: the figures of the docstring
    assert {k: data[k] for k in ("ar", "current_ar", "credit_sales")} == {
        "ar": "13000.00", "current_ar": "9000.00", "credit_sales": "19000.00"}
    assert (data["dso"], data["best_possible_dso"], data["average_days_delinquent"],
            data["cei_pct"], data["count_back_dso"]) == ("61.58", "42.63", "18.95", "66.67",
                                                          "50.67")
    assert data["aging"]["USD"] == {"current": "9000.00", "1-30": "0.00", "31-60": "4000.00",
                                    "61-90": "0.00", "90+": "0.00"}
    # and both payments were received in the window and matched by the engine
    assert data["cash_application"]["payments"] == 2
    assert data["cash_application"]["auto_match_rate_pct"] == "100.00"


def test_what_the_books_said_on_30_june_is_asked_explicitly(book: Session) -> None:
    # when: the same day as the books knew it at the end of 30 June
    data = kpis.to_json(kpis.compute(book, AS_OF, known_at=END_OF_JUNE))
    # then: both payments unknown yet (the docstring's second set of figures)
    assert (data["ar"], data["dso"], data["best_possible_dso"],
            data["average_days_delinquent"], data["cei_pct"],
            data["count_back_dso"]) == ("21000.00", "99.47", "42.63", "56.84", "0.00",
                                        "122.00")
    assert data["known_at"] == END_OF_JUNE.isoformat()
    assert data["cash_application"]["payments"] == 0  # received, but not yet posted
    # and between the two postings, only C's payment (posted 07-02) was known
    between = kpis.compute(book, AS_OF, known_at=datetime(2026, 7, 5, tzinfo=UTC))
    assert between.ar_minor == 1_500_000


def test_the_aging_of_each_month_end(book: Session) -> None:
    # when
    ends = {day: aging_by_currency(book, day)["USD"]
            for day in (date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31), AS_OF)}
    # then: 03-31 A 2,000 current (due 04-15); 04-30 A 15 days late, B current;
    # 05-31 A paid 05-01, B 21 days late, C current; 06-30 as in the docstring
    assert {day: {b: v for b, v in a.buckets.items() if v} for day, a in ends.items()} == {
        date(2026, 3, 31): {"current": 200_000},
        date(2026, 4, 30): {"current": 400_000, "1-30": 200_000},
        date(2026, 5, 31): {"current": 600_000, "1-30": 400_000},
        AS_OF: {"current": 900_000, "31-60": 400_000},
    }
    assert ends[AS_OF].days_past_due(AS_OF) == 51  # B, due 05-10
