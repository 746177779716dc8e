"""A closed month stays closed (issue 21, SPEC §3 "Monthly close"): a settlement dated inside
a closed month but recorded later is booked on the first day of the first open month, keeps
its value date, and says so; the month's reports do not change."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import Session, select

from bot.db import Database
from models import Allocation, AuditEvent, ClosedPeriod, CreditNote, Invoice
from tests.support import factories as f
from workflows import invariants, periods
from workflows.cash_application import record_payment, write_off
from workflows.errors import ValidationFailed
from workflows.inputs import PaymentIn
from workflows.invoicing import issue_credit_note
from workflows.receivables import aging_by_currency

JULY_5 = datetime(2026, 7, 5, 9, tzinfo=UTC)
JUNE_30, JULY_1 = date(2026, 6, 30), date(2026, 7, 1)


@pytest.fixture
def june(session: Session) -> Session:
    """Two invoices issued in May, 1000.00 and 500.00, open; June closed on 5 July."""
    f.customer(session)
    f.invoice(session, "INV-2026-000701", total="1000.00", issued=date(2026, 5, 20),
              due=date(2026, 6, 19))
    f.invoice(session, "INV-2026-000702", total="500.00", issued=date(2026, 5, 25),
              due=date(2026, 6, 24))
    session.commit()
    periods.close_period(session, period="2026-06", actor="UADMIN01", now=JULY_5)
    session.commit()
    return session


def aging_total(session: Session, day: date) -> int:
    return aging_by_currency(session, day)["USD"].total


def test_a_payment_dated_in_a_closed_month_is_booked_on_the_first_open_day(june) -> None:
    # given: June's closing AR
    closed = aging_total(june, JUNE_30)
    # when: money received 15 June is posted on 10 July
    with time_machine.travel(datetime(2026, 7, 10, 11, tzinfo=UTC), tick=False):
        record_payment(june, PaymentIn(amount="1000.00", currency="USD",
                                       received_at=datetime(2026, 6, 15, 10, tzinfo=UTC),
                                       reference="INV-2026-000701"), actor="api")
        june.commit()
    # then: it keeps its value date and counts from 1 July
    allocation = june.exec(select(Allocation)).one()
    assert (allocation.value_date, allocation.effective_date) == (date(2026, 6, 15), JULY_1)
    # and June's closing AR did not change; July's did
    assert aging_total(june, JUNE_30) == closed == 150_000
    assert aging_total(june, JULY_1) == 50_000
    # and the audit log says why
    event = june.exec(select(AuditEvent).where(AuditEvent.action == "payment.allocated")).one()
    assert event.data["value_date"] == "2026-06-15"
    assert event.data["effective_date"] == "2026-07-01"
    assert event.data["booked_in_open_period"] is True
    assert "closed period" in event.reason and "2026-07-01" in event.reason
    assert invariants.validate_all(june) == []


def test_credit_notes_and_write_offs_dated_in_a_closed_month_move_too(june) -> None:
    # when: a credit note issued 28 June and a write-off effective 30 June, recorded in July
    now = datetime(2026, 7, 8, 9, tzinfo=UTC)
    note = issue_credit_note(june, invoice_number="INV-2026-000701", amount="100.00",
                             reason="damaged", actor="api", now=now,
                             issue_date=date(2026, 6, 28))
    row = write_off(june, invoice=june.exec(select(Invoice).where(
        Invoice.number == "INV-2026-000702")).one(), amount_minor=50_000, reason="bad_debt",
        actor="UCREDIT1", now=now, effective_date=JUNE_30)
    june.commit()
    # then
    assert (note.value_date, note.effective_date) == (date(2026, 6, 28), JULY_1)
    assert (row.value_date, row.effective_date) == (JUNE_30, JULY_1)
    assert aging_total(june, JUNE_30) == 150_000
    assert aging_total(june, JULY_1) == 90_000
    reasons = [e.reason for e in june.exec(select(AuditEvent).where(
        AuditEvent.action.in_(["invoice.credit_note", "invoice.write_off"])))]
    assert len(reasons) == 2 and all("closed period" in r for r in reasons)


def test_a_settlement_dated_in_an_open_month_is_not_moved(june) -> None:
    # when: money of 2 July
    record_payment(june, PaymentIn(amount="500.00", currency="USD",
                                   received_at=datetime(2026, 7, 2, 10, tzinfo=UTC),
                                   reference="INV-2026-000702"), actor="api")
    june.commit()
    # then
    assert june.exec(select(Allocation.effective_date)).one() == date(2026, 7, 2)


def test_closing_a_month_closes_every_month_before_it(june) -> None:
    # when: money of 20 May (before the closed June) is posted in July
    record_payment(june, PaymentIn(amount="1000.00", currency="USD",
                                   received_at=datetime(2026, 5, 28, 10, tzinfo=UTC),
                                   reference="INV-2026-000701"), actor="api")
    june.commit()
    # then: booked in July too, so neither May's nor June's figures move
    assert june.exec(select(Allocation.effective_date)).one() == JULY_1
    assert aging_total(june, date(2026, 5, 31)) == 150_000


def test_closing_is_idempotent_and_audited_once(june) -> None:
    # when: June again, and May (already closed by June's close)
    again, created_again = periods.close_period(june, period="2026-06", actor="api",
                                                now=datetime(2026, 7, 6, tzinfo=UTC))
    may, created_may = periods.close_period(june, period="2026-05", actor="api",
                                            now=datetime(2026, 7, 6, tzinfo=UTC))
    june.commit()
    # then: nothing new; the first close stands
    assert (created_again, created_may) == (False, False)
    assert again.period == may.period == "2026-06"
    assert (again.closed_by, again.closed_at, again.last_day) == ("UADMIN01", JULY_5, JUNE_30)
    assert len(june.exec(select(ClosedPeriod)).all()) == 1
    [event] = june.exec(select(AuditEvent).where(AuditEvent.action == "period.closed")).all()
    assert (event.actor, event.entity_id, event.data["closed_through"]) == (
        "UADMIN01", "2026-06", "2026-06-30")


@pytest.mark.parametrize("period, says", [("2026-07", "has not ended yet"),
                                          ("2026-12", "has not ended yet"),
                                          ("June", "like 2026-06"), ("2026-13", "like 2026-06")])
def test_only_an_ended_month_can_be_closed(june, period: str, says: str) -> None:
    # when
    with pytest.raises(ValidationFailed) as refused:
        periods.close_period(june, period=period, actor="api", now=JULY_5)
    # then
    assert [e.field for e in refused.value.errors] == ["period"]
    assert says in refused.value.detail


def test_a_close_waits_for_settlements_being_recorded(db: Database) -> None:
    """A month cannot be closed under a settlement dated inside it that is being recorded:
    the close waits for it (PostgreSQL: the periods' advisory lock; SQLite: the write lock),
    and whatever is recorded after the close is booked in the next month."""
    # given: a payment of 20 June being recorded, its transaction still open
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000801", total="300.00", issued=date(2026, 6, 1),
                  due=date(2026, 7, 1))
    recording = db.session()
    record_payment(recording, PaymentIn(amount="100.00", currency="USD",
                                        received_at=datetime(2026, 6, 20, tzinfo=UTC),
                                        reference="INV-2026-000801"), actor="api")
    closed = threading.Event()

    def close() -> None:
        with db.transaction() as s:
            periods.close_period(s, period="2026-06", actor="api", now=JULY_5)
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    # when: the payment's transaction commits after a while
    time.sleep(0.5)
    waited = not closed.is_set()
    recording.commit()
    recording.close()
    closer.join(30)
    # then: the close waited, then went through
    assert waited and closed.is_set()
    # and a second payment of 20 June, recorded now, is booked in July
    with db.transaction() as s:
        record_payment(s, PaymentIn(amount="100.00", currency="USD",
                                    received_at=datetime(2026, 6, 20, 12, tzinfo=UTC),
                                    reference="INV-2026-000801"), actor="api")
    with db.read_session() as s:
        dates = sorted(s.exec(select(Allocation.effective_date)).all())
    assert dates == [date(2026, 6, 20), JULY_1]


def test_credit_notes_count_from_their_invoice_issue_date_at_the_earliest(june) -> None:
    # given: an invoice dated 10 July (an ERP's, issued ahead)
    f.invoice(june, "INV-2026-000703", total="200.00", issued=date(2026, 7, 10),
              due=date(2026, 8, 9))
    # when: credited on 8 July (recorded before its issue date)
    note = issue_credit_note(june, invoice_number="INV-2026-000703", amount="20.00",
                             reason="price", actor="api",
                             now=datetime(2026, 7, 8, tzinfo=UTC))
    june.commit()
    # then
    assert (note.value_date, note.effective_date) == (date(2026, 7, 8), date(2026, 7, 10))
    assert june.exec(select(CreditNote)).one().effective_date == date(2026, 7, 10)
