"""The KPIs' window is made of business days in the books' time zone (policy
`business_timezone`), for the payments, approvals and disputes as for the invoices and
shipments: a payment received at 23:30 Los Angeles time on 30 November (07:30 UTC on
1 December) belongs to November's report — from the rollups and from the base rows alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from models import Approval
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, disputes, kpis, policy
from workflows.cash_application import record_payment
from workflows.inputs import DisputeOpenIn, PaymentIn

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
LA = ZoneInfo("America/Los_Angeles")  # UTC-8 in November and December
AS_OF = date(2026, 11, 30)  # window 09-02..11-30 (business days)


def la(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=LA).astimezone(UTC)


@pytest.fixture
def books(session: Session) -> Session:
    """The books kept in Los Angeles time; the window of 30 November is 09-02..11-30 there.

    | what        | when (Los Angeles)                   | UTC day | business day | in W? |
    | payment P1  | 11-30 23:30, matched automatically   | 12-01   | 11-30        | yes   |
    | payment P2  | 09-01 20:00, allocated by hand       | 09-02   | 09-01        | no    |
    | payment P3  | 10-15 12:00, allocated by hand       | 10-15   | 10-15        | yes   |
    | approval A1 | asked 11-30 20:00, decided 23:00     | 12-01   | 11-30        | yes   |
    | approval A2 | asked 09-01 20:00, decided 21:00     | 09-02   | 09-01        | no    |
    | dispute D1  | opened 11-30 10:00, rejected 22:00   | 12-01   | 11-30        | yes   |
    | dispute D2  | opened 08-31 20:00, rejected 09-01 20:00 | 09-02 | 09-01     | no    |

    As of 11-30: 2 payments received (P1, P3), 1 matched automatically: **50.00 %** by count
    and by amount; approval turnaround **3.00** h (A1); 1 dispute resolved in **0.50** days
    (D1). Read by UTC days it was P2 and P3 (0 % matched), A2 (1 h) and D2 (1 day)."""
    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UCOLL001", "collector")
    f.customer(session, credit_limit="100000.00")
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.product(session, "WID-1", price="100.00")
    for n in (1, 2, 3):
        f.invoice(session, f"INV-2026-00000{n}", total="100.00", issued=date(2026, 8, 1),
                  due=date(2026, 8, 31))
    f.invoice(session, "INV-2026-000009", total="5000.00", issued=date(2026, 8, 1),
              due=date(2026, 8, 31))
    auto, _ = record_payment(session, PaymentIn(
        amount="100.00", currency="USD", received_at=la(11, 30, 23, 30),
        reference="INV-2026-000001"), actor="test")
    assert auto.status == "applied"
    for number, received in (("INV-2026-000002", la(9, 1, 20)),
                             ("INV-2026-000003", la(10, 15, 12))):
        record_payment(session, PaymentIn(amount="100.00", currency="USD",
                                          received_at=received),
                       actor="test", apply_to=[number])
    asked = [(f.order(session, "C-NEW", now=at), decided)  # (both asked before either
             for at, decided in ((la(11, 30, 20), la(11, 30, 23)),  # is decided: the first
                                 (la(9, 1, 20), la(9, 1, 21)))]  # approval reviews Newco)
    for order, decided in asked:
        approval = session.exec(select(Approval).where(Approval.order_id == order.id,
                                                       Approval.kind == "credit")).one()
        approvals.decide(session=session, approval_id=approval.id, user_id="UCREDIT1",
                         approve=True, now=decided)
    for number, opened, resolved in (("INV-2026-000009", la(11, 30, 10), la(11, 30, 22)),
                                     ("INV-2026-000009", la(8, 31, 20), la(9, 1, 20))):
        dispute = disputes.open_dispute(session, number, DisputeOpenIn(
            reason="pricing", amount="10.00"), actor="UCOLL001", now=opened)
        disputes.resolve(session, dispute_id=dispute.id, outcome="rejected", by="UCOLL001",
                         now=resolved, note="checked")
    session.commit()
    return session


@pytest.mark.parametrize("how", ["rollups", "base rows", "known_at"])
def test_payments_approvals_and_disputes_count_on_their_business_day(books: Session,
                                                                     how: str) -> None:
    # when
    report = kpis.compute(books, AS_OF, rollups=how == "rollups",
                          known_at=NOW if how == "known_at" else None)
    # then
    assert report.payments_received == 2
    assert report.auto_match_rate == Decimal("50.00")
    assert report.auto_match_amount_rate == Decimal("50.00")
    assert report.approval_turnaround_hours == Decimal("3.00")
    assert report.disputes_resolved == 1
    assert report.days_to_resolve == Decimal("0.50")


@pytest.mark.parametrize("rollups", [True, False])
def test_the_day_after_counts_what_its_window_holds(books: Session, rollups: bool) -> None:
    # when: as of 12-01 (window 09-03..12-01) and 09-01 (window 06-04..09-01)
    december = kpis.compute(books, AS_OF + timedelta(days=1), rollups=rollups)
    september = kpis.compute(books, date(2026, 9, 1), rollups=rollups)
    # then: 12-01 holds the same as 11-30; 09-01 holds P2, A2 and D2 alone
    assert (december.payments_received, december.auto_match_rate) == (2, Decimal("50.00"))
    assert (september.payments_received, september.auto_match_rate) == (1, Decimal("0.00"))
    assert september.approval_turnaround_hours == Decimal("1.00")
    assert (september.disputes_resolved, september.days_to_resolve) == (1, Decimal("1.00"))


@pytest.mark.parametrize("window_days", [1, 2, 90])
def test_short_windows_read_from_the_rollups_equal_the_base_rows(books: Session,
                                                                 window_days: int) -> None:
    # when: windows of a day or two around each payment, from the rollups and the base rows
    for as_of in (date(2026, 9, 1), date(2026, 9, 2), date(2026, 10, 15), AS_OF,
                  AS_OF + timedelta(days=1)):
        fast, slow = (kpis.compute(books, as_of, window_days=window_days, rollups=rollups)
                      for rollups in (True, False))
        # then
        assert ((fast.payments_received, fast.auto_match_rate, fast.auto_match_amount_rate)
                == (slow.payments_received, slow.auto_match_rate,
                    slow.auto_match_amount_rate)), (as_of, window_days)
    # and a day's window holds that day's payments alone
    assert kpis.compute(books, AS_OF, window_days=1).payments_received == 1
