"""Days are the books' days (policy `business_timezone`), not UTC's: a payment made at 17:00 in
Los Angeles on its due date (01:00 UTC the day after) is on time in the late-payment history
of approval cards and in the collectors' ranking; a dispute opened at 23:30 Los Angeles time
is a day old the next morning there; a chargeback's evidence deadline is shown in the books'
zone. Across the daylight-saving changes of 2026 (8 March, 1 November), on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlmodel import Session, select

from models import Invoice, OutboxMessage
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from tests.support.timetravel import frozen_at
from workflows import collections, credit, disputes, dunning, policy, stripe_events
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

LA = ZoneInfo("America/Los_Angeles")  # UTC-7 from 8 March to 1 November 2026, else UTC-8


def la(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=LA).astimezone(UTC)


NOW = la(11, 24, 12)  # 20:00 UTC
TODAY = date(2026, 11, 24)
frozen_time = frozen_at(NOW)


def in_los_angeles(session: Session) -> None:
    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")


@pytest.fixture
def paid_book(session: Session) -> Session:
    """Globex's year, kept in Los Angeles time:

    | invoice | due   | paid (Los Angeles) | UTC day | business day | days late |
    | 000001  | 03-08 | 03-08 23:30 (PDT)  | 03-09   | 03-08        | 0         |
    | 000002  | 07-15 | 07-15 17:00 (PDT)  | 07-16   | 07-15        | 0         |
    | 000003  | 11-01 | 11-01 23:30 (PST)  | 11-02   | 11-01        | 0         |
    | 000004  | 11-20 | 11-21 00:30 (PST)  | 11-21   | 11-21        | 1         |
    | 000005  | 07-15 | 07-18 23:30 (PDT)  | 07-19   | 07-18        | 3         |
    | 000006  | 11-10 | open               |         |              |           |

    2 of 5 paid late, 2.0 days on average; by UTC days it was 5 of 5, 1.6 days."""
    in_los_angeles(session)
    f.user(session, "UCOLL001", "collector")
    f.customer(session, collector="UCOLL001")
    for n, (due, paid) in enumerate(((date(2026, 3, 8), la(3, 8, 23, 30)),
                                     (date(2026, 7, 15), la(7, 15, 17)),
                                     (date(2026, 11, 1), la(11, 1, 23, 30)),
                                     (date(2026, 11, 20), la(11, 21, 0, 30)),
                                     (date(2026, 7, 15), la(7, 18, 23, 30))), 1):
        number = f"INV-2026-00000{n}"
        f.invoice(session, number, total=f"{n}00.00", due=due, issued=due - timedelta(days=30))
        payment, _ = record_payment(session, PaymentIn(
            amount=f"{n}00.00", currency="USD", received_at=paid, reference=number),
            actor="test")
        assert payment.status == "applied"
    f.invoice(session, "INV-2026-000006", total="50.00", due=date(2026, 11, 10))
    session.commit()
    return session


def test_late_payments_are_counted_by_the_books_dates(paid_book: Session) -> None:
    customer_id = paid_book.exec(select(Invoice.customer_id)).first()
    assert credit.payment_history(paid_book, customer_id, TODAY) == {
        "paid": 5, "paid_late": 2, "avg_days_late": "2.0", "days": 365}
    assert collections.account(paid_book, customer_id, TODAY).late_paid == 2
    [worklist] = collections.build_worklists(paid_book, TODAY,
                                             collector_ids=["UCOLL001"]).values()
    assert [a.late_paid for a in worklist.accounts] == [2]


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Europe/Berlin", "Pacific/Auckland",
                                  "Asia/Kolkata", "Australia/Lord_Howe", "UTC"])
def test_the_sql_business_date_is_the_python_one(paid_book: Session, zone: str) -> None:
    """`policy.business_date_sql` says what `business_date` says of each row, in any zone (a
    half-hour offset, a half-hour daylight saving, the southern hemisphere, none)."""
    where = ZoneInfo(zone)
    moments = [la(3, 8, 23, 30) + timedelta(hours=h) for h in range(0, 24 * 260, 7)]
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    sql = policy.business_date_sql(Invoice.paid_at, where, since, until)
    invoice = paid_book.exec(select(Invoice).where(Invoice.number == "INV-2026-000006")).one()
    seen = []
    for moment in moments[::9]:
        invoice.paid_at = moment
        paid_book.add(invoice)
        paid_book.flush()
        seen.append(paid_book.exec(select(sql).where(Invoice.id == invoice.id)).one())
    assert [_as_date(d) for d in seen] == [m.astimezone(where).date() for m in moments[::9]]
    paid_book.rollback()


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def test_a_dispute_is_aged_in_the_books_days(session: Session) -> None:
    in_los_angeles(session)
    f.customer(session)
    f.invoice(session, "INV-2026-000001", total="100.00", due=date(2026, 12, 24))
    f.invoice(session, "INV-2026-000002", total="100.00", due=date(2026, 12, 24))
    # opened at 23:30 on 23 November in Los Angeles (07:30 UTC on the 24th) and at 08:00 on
    # the 24th there (16:00 UTC)
    f.dispute(session, "INV-2026-000001", now=la(11, 23, 23, 30))
    f.dispute(session, "INV-2026-000002", now=la(11, 24, 8))
    session.commit()
    # at noon in Los Angeles on the 24th (20:00 UTC): one is a day old, the other new
    rows, total = disputes.open_disputes(session, now=NOW)
    assert total == 2
    assert [(r.invoice.number, r.age_days) for r in rows] == [("INV-2026-000001", 1),
                                                              ("INV-2026-000002", 0)]
    # and at 17:30 there, 01:30 UTC on the 25th, they are still 1 and 0 days old
    rows, _ = disputes.open_disputes(session, now=la(11, 24, 17, 30))
    assert [r.age_days for r in rows] == [1, 0]


def test_a_chargeback_deadline_is_shown_in_the_books_zone(db) -> None:
    with db.transaction() as s:
        in_los_angeles(s)
        f.user(s, "UCOLL001", "collector")
        f.customer(s, collector="UCOLL001")
        number = f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 12, 24)).number
    chargeback = sp.dispute(payment_intent="pi_D1", charge_id="ch_D1", amount=10_000,
                            dispute_id="dp_1")
    # the evidence is due at 06:30 UTC on 20 March: 23:30 on the 19th in Los Angeles
    chargeback["evidence_details"]["due_by"] = int(datetime(2026, 3, 20, 6, 30,
                                                            tzinfo=UTC).timestamp())
    with db.transaction() as s:
        stripe_events.handle(s, sp.event("payment_intent.succeeded", sp.payment_intent(
            invoice=number, amount=10_000, pi_id="pi_D1")), now=NOW, fetch_fees=False)
    with db.transaction() as s:
        stripe_events.handle(s, sp.event("charge.dispute.created", chargeback), now=NOW,
                             fetch_fees=False)
    with db.read_session() as s:
        told = [m.payload["context"] for m in s.exec(select(OutboxMessage))
                if m.payload.get("template") == "provider_dispute"]
    assert told and {c["due_by"] for c in told} == {"2026-03-19 23:30 America/Los_Angeles"}


def test_an_account_promise_covers_what_fell_due_by_the_business_day_it_was_taken(
        session: Session) -> None:
    # given INV-1 due 11-20 and INV-2 due 11-24, and an account promise taken at 17:30 on
    # 23 November in Los Angeles (01:30 UTC on the 24th), to pay by 12-10
    in_los_angeles(session)
    f.user(session, "UCOLL001", "collector")
    customer = f.customer(session, collector="UCOLL001")
    covered = f.invoice(session, "INV-2026-000001", total="100.00", due=date(2026, 11, 20))
    later = f.invoice(session, "INV-2026-000002", total="100.00", due=date(2026, 11, 24))
    with time_machine.travel(la(11, 23, 17, 30)):
        collections.create_promise(session, customer_id=customer.id, actor="UCOLL001",
                                   amount="100.00", promised_date=date(2026, 12, 10),
                                   note=None, as_of=date(2026, 11, 23),
                                   now=la(11, 23, 17, 30))
    session.commit()
    # when the dunning looks on 11-25: INV-2 is one day past due
    due = dunning.due_invoices(session, date(2026, 11, 25), [customer.id])
    emailing = {invoice_id for level, _, _, invoice_id in due if level.kind != "escalation"}
    # then the promise holds INV-1's e-mails back, not INV-2's: it fell due the day after
    assert later.id in emailing and covered.id not in emailing
