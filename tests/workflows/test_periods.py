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


def test_a_month_has_ended_in_the_business_time_zone_not_in_utc(session: Session) -> None:
    """Books kept in Los Angeles: at 03:00 UTC on 1 July it is still 30 June there, so June
    has not ended; at 08:00 UTC (01:00 in Los Angeles) it has."""
    # given
    from workflows import policy

    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")
    session.commit()
    # when
    with pytest.raises(ValidationFailed) as refused:
        periods.close_period(session, period="2026-06", actor="api",
                             now=datetime(2026, 7, 1, 3, tzinfo=UTC))
    session.rollback()
    row, created = periods.close_period(session, period="2026-06", actor="api",
                                        now=datetime(2026, 7, 1, 8, tzinfo=UTC))
    # then
    assert "today is 2026-06-30" in refused.value.detail
    assert (row.period, created) == ("2026-06", True)


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


# -- invoices dated in a closed month -------------------------------------------------------------
# Ours are issued on the first open day (the document's own day kept where it is shown); an
# ERP's is refused naming its issue date (workflows.invoicing, "Closed periods").

JULY_6 = datetime(2026, 7, 6, 9, tzinfo=UTC)


def _order(session: Session, *lines, when: datetime):
    from workflows import orders
    from workflows.inputs import OrderIn

    f.user(session, "USALES01", "sales")
    return orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=list(lines)),
        actor="USALES01", now=when)


def test_a_shipment_dated_in_a_closed_month_is_invoiced_on_the_first_open_day(june) -> None:
    from workflows import revenue, shipping
    from workflows.inputs import OrderLineIn

    # given June closed, and an order of 100.00 entered on 10 June
    f.product(june, "WID-1", price="100.00")
    order = _order(june, OrderLineIn(sku="WID-1", quantity=1),
                   when=datetime(2026, 6, 10, 9, tzinfo=UTC))
    june.commit()
    closed = aging_total(june, JUNE_30)
    # when its shipment of 25 June is recorded on 6 July
    with time_machine.travel(JULY_6, tick=False):
        shipment = shipping.ship_order(june, order_number=order.number, carrier="UPS",
                                       tracking_number="1Z1", actor="api", now=JULY_6,
                                       shipped_at=datetime(2026, 6, 25, 12, tzinfo=UTC))
        june.commit()
    # then its invoice is issued on 1 July (due 30 days later), the ship date kept
    invoice = june.exec(select(Invoice).where(Invoice.shipment_id == shipment.id)).one()
    assert (invoice.issue_date, invoice.ship_date, invoice.due_date) == (
        JULY_1, date(2026, 6, 25), date(2026, 7, 31))
    # and June's closing AR did not change, July's did
    assert aging_total(june, JUNE_30) == closed == 150_000
    assert aging_total(june, JULY_1) == 160_000
    # and revenue recognises it in July too: nothing unbilled or deferred for the line
    report = revenue.report(june, first=date(2026, 6, 1), last=date(2026, 7, 1),
                            today=JULY_6.date())
    months = {m.month: m for m in report.currencies["USD"].months}
    assert [(m.recognized_total, m.deferred, m.unbilled) for m in months.values()] == [
        (0, 0, 0), (10_000, 0, 0)]
    # and the audit log says so
    event = june.exec(select(AuditEvent).where(AuditEvent.action == "invoice.issued",
                                               AuditEvent.entity_id == str(invoice.id))).one()
    assert event.data["dated"] == "2026-06-25" and event.data["booked_in_open_period"]
    assert invariants.validate_all(june) == []


def test_an_erp_invoice_dated_in_a_closed_month_is_refused_naming_its_date(june) -> None:
    from workflows.inputs import InvoiceIn
    from workflows.invoicing import ingest_erp_invoices

    # when the ERP sends an invoice of 250.00 dated 20 June after June is closed
    with pytest.raises(ValidationFailed) as refused:
        f.invoice(june, "INV-2026-000703", total="250.00", issued=date(2026, 6, 20),
                  due=date(2026, 7, 20))
    # then it is refused naming issue_date and the first open day, and nothing is stored
    assert [e.field for e in refused.value.errors] == ["issue_date"]
    assert "closed" in str(refused.value) and "2026-07-01" in str(refused.value)
    june.rollback()
    assert june.exec(select(Invoice).where(Invoice.number == "INV-2026-000703")).first() is None
    assert aging_total(june, JUNE_30) == 150_000
    # and in a file, that row is refused and the others stored
    sent = [InvoiceIn(number=n, customer="C-GLOBEX", currency="USD", issue_date=day,
                      due_date=date(2026, 7, 31), total="10.00")
            for n, day in (("ERP-1", date(2026, 6, 30)), ("ERP-2", JULY_1))]
    first, second = ingest_erp_invoices(june, sent, actor="import")
    assert isinstance(first, ValidationFailed) and first.errors[0].field == "issue_date"
    assert isinstance(second, int)
    june.commit()
    assert aging_total(june, JUNE_30) == 150_000
    assert invariants.validate_all(june) == []


def test_late_fee_and_subscription_invoices_of_a_closed_day_are_issued_on_the_first_open_day(
        june) -> None:
    from workflows import dunning, policy, subscriptions
    from workflows.inputs import OrderLineIn

    # given June closed, a late fee of 25.00 at +7, and a monthly subscription from 1 June
    f.user(june, "UCOLL001", "collector")
    policy.set_value(june, key="late_fees", value="7:fee=25.00", actor="test")
    f.product(june, "CLOUD", price="300.00", revenue_type="subscription")
    order = _order(june, OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-06-01",
                                     service_end="2026-08-31", billing="monthly"),
                   when=datetime(2026, 5, 20, 9, tzinfo=UTC))
    june.commit()
    closed = aging_total(june, JUNE_30)
    # when, on 6 July, dunning runs late for 26 June and subscription billing for 1 June
    with time_machine.travel(JULY_6, tick=False):
        dunning.run_dunning(june, date(2026, 6, 26))
        [line_id] = [p.order_line_id for p in subscriptions.due_periods(june, date(2026, 6, 1))]
        billed = subscriptions.bill_period(june, order_line_id=line_id,
                                           period_start=date(2026, 6, 1),
                                           as_of=date(2026, 6, 1), now=JULY_6)
        june.commit()
    # then both invoices are issued on 1 July: June's closing AR did not change
    [fee] = june.exec(select(Invoice).where(Invoice.source == "fee")).all()
    assert (fee.issue_date, fee.due_date, fee.total_minor) == (JULY_1, JULY_1, 2_500)
    assert (billed.issue_date, billed.order_id) == (JULY_1, order.id)
    assert aging_total(june, JUNE_30) == closed == 150_000
    assert aging_total(june, JULY_1) == 150_000 + 2_500 + billed.total_minor
    assert invariants.validate_all(june) == []
