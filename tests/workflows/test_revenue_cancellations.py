"""Revenue of subscriptions cancelled after months were closed (SPEC §3 "Monthly close":
a closed month never changes, a later change lands in the first open month; deferred =
invoiced - credited - recognised, negative it is unbilled).

The contract of every test: 2 x CLOUD at 1200.00 a year (2400.00) for 2026, billed monthly
in advance (12 x 200.00), recognised by day: 31 days 203.84, 30 days 197.26, February
184.11."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlmodel import Session, select

from bot.db import Database
from models import AuditEvent, Order
from models.revenue import RevenueClose, RevenueEntry
from tests.support import factories as f
from tests.workflows.test_subscriptions import at, bill_all
from workflows import invariants, orders, revenue, subscriptions
from workflows.errors import InvalidTransition
from workflows.inputs import OrderIn, OrderLineIn
from workflows.invoicing import issue_credit_note


def place(session: Session) -> Order:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=2, service_start="2026-01-01",
                        service_end="2026-12-31", billing="monthly")]),
        actor="USALES01", now=at(2025, 12, 20))
    session.commit()
    return placed


@pytest.fixture
def cloud(session: Session) -> Order:
    return place(session)


def books(session: Session, today: date, last: date = date(2026, 6, 1)) -> dict:
    """The report's months (recognised, deferred, unbilled, closed) and today's balances."""
    data = revenue.to_json(revenue.report(session, first=date(2026, 1, 1), last=last,
                                          today=today))
    usd = data["currencies"]["USD"]
    return {"months": {m["month"]: (m["recognized"]["total"], m["deferred"], m["unbilled"],
                                    m["closed"]) for m in usd["months"]},
            "today": (usd["deferred"], usd["unbilled"]), "waterfall": usd["waterfall"]}


def entries(session: Session) -> list[tuple[str, int, int, int]]:
    return [(e.period, e.recognized_minor, e.invoiced_minor, e.credited_minor)
            for e in session.exec(select(RevenueEntry).order_by(RevenueEntry.period))]


CLOSED_JAN_TO_MAR = {"2026-01": ("203.84", "0.00", "3.84", True),
                     "2026-02": ("184.11", "0.00", "187.95", True),
                     "2026-03": ("203.84", "0.00", "391.79", True)}


def test_a_cancellation_back_dated_into_closed_months_reverses_in_the_first_open_month(
        session: Session, cloud: Order) -> None:
    """January is invoiced; the job does not run again, so February and March are served,
    recognised and closed unbilled (a contract asset: 391.79 at 31 March). On 10 April a
    credit approver cancels from 1 February: the contract is now 200.00 for January. The
    closed months keep what they recorded; April, the first open month, reverses what was
    recognised beyond it (200.00 - 591.79 = -391.79) and nothing is unbilled any more: in
    all, 200.00 recognised = 200.00 invoiced."""
    # given
    assert len(bill_all(session, date(2026, 1, 1))) == 1
    revenue.close_month(session, period="2026-03", actor="test", now=at(2026, 4, 2))
    session.commit()
    before = books(session, date(2026, 4, 10))
    assert {m: before["months"][m] for m in CLOSED_JAN_TO_MAR} == CLOSED_JAN_TO_MAR
    assert before["months"]["2026-04"] == ("197.26", "0.00", "589.05", False)
    assert before["today"] == ("0.00", "391.79")
    recorded = entries(session)
    # when
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-02-01", reason="never used it",
                                      actor="UCREDIT1", now=at(2026, 4, 10))
    session.commit()
    # then
    after = books(session, date(2026, 4, 10))
    assert {m: after["months"][m] for m in CLOSED_JAN_TO_MAR} == CLOSED_JAN_TO_MAR
    assert after["months"]["2026-04"] == ("-391.79", "0.00", "0.00", False)
    assert after["months"]["2026-05"] == after["months"]["2026-06"] == (
        "0.00", "0.00", "0.00", False)
    assert (after["today"], after["waterfall"]) == (("0.00", "0.00"), [])
    assert entries(session) == recorded  # nothing recorded was touched
    assert bill_all(session, date(2026, 12, 1)) == []  # and nothing forgone is billed later
    assert session.get(Order, cloud.id).status == "invoiced"
    assert invariants.validate_all(session) == []
    # and the close of April records the reversal, once
    revenue.close_month(session, period="2026-04", actor="test", now=at(2026, 5, 4))
    session.commit()
    assert entries(session) == recorded + [("2026-04", -39179, 0, 0)]
    assert books(session, date(2026, 5, 4))["months"]["2026-04"] == (
        "-391.79", "0.00", "0.00", True)


def test_a_subscription_cancelled_from_its_first_day_after_a_close_reverses_it_all(
        session: Session, cloud: Order) -> None:
    """Nothing was ever invoiced (the job never ran); January to March are closed with
    591.79 recognised and unbilled. Cancelled on 10 April from 1 January: the order is
    cancelled (nothing is left on it), the closed months keep their figures, and April
    reverses all 591.79."""
    # given
    revenue.close_month(session, period="2026-03", actor="test", now=at(2026, 4, 2))
    session.commit()
    # when
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-01-01", reason="never used it",
                                      actor="UCREDIT1", now=at(2026, 4, 10))
    session.commit()
    # then
    assert session.get(Order, cloud.id).status == "cancelled"
    after = books(session, date(2026, 4, 10))
    assert [after["months"][m][0] for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [
        "203.84", "184.11", "203.84", "-591.79"]
    assert after["months"]["2026-03"][2] == "591.79"  # unbilled as closed
    assert after["months"]["2026-04"][1:] == ("0.00", "0.00", False)
    assert invariants.validate_all(session) == []


def test_a_cancellation_from_the_next_period_keeps_this_month_whole(
        session: Session, cloud: Order) -> None:
    """Invoiced on each period's first day, January and February closed; on 10 March the
    subscription is cancelled from 1 April. The contract is 600.00 over 1 January to
    31 March (90 days): March is served in full and takes what is left of it after the
    closed months (600.00 - 387.95 = 212.05: its 31 days and the change); at 31 March all
    600.00 invoiced is recognised, nothing deferred or unbilled; today (10 March) what is
    deferred is what March will still recognise."""
    # given
    for first in (date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)):
        bill_all(session, first)
    revenue.close_month(session, period="2026-02", actor="test", now=at(2026, 3, 2))
    session.commit()
    # when
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-04-01", reason="budget cut",
                                      actor="USALES01", now=at(2026, 3, 10))
    session.commit()
    # then
    after = books(session, date(2026, 3, 10))
    assert after["months"]["2026-01"] == ("203.84", "0.00", "3.84", True)
    assert after["months"]["2026-02"] == ("184.11", "12.05", "0.00", True)
    assert after["months"]["2026-03"] == ("212.05", "0.00", "0.00", False)
    assert after["months"]["2026-04"] == ("0.00", "0.00", "0.00", False)
    # today: the schedule has recognised 600.00 x 59/90 = 393.34 (the closed 387.95 and
    # March's change of 5.39); 206.66 deferred, all of it recognised in March
    assert after["today"] == ("206.66", "0.00")
    assert after["waterfall"] == [{"month": "2026-03", "amount": "206.66"}]
    assert bill_all(session, date(2026, 12, 1)) == []
    [event] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "subscription.cancelled")).all()
    assert "forgone_minor" not in event.data
    assert invariants.validate_all(session) == []


def test_a_credit_note_after_a_back_dated_cancellation_reduces_the_open_month(
        session: Session, cloud: Order) -> None:
    """After the cancellation from 1 February (January the only period billed, January to
    March closed), a credit note of 50.00 on January's invoice on 20 April: nothing is left
    to recognise, so it reduces April's revenue by 50.00 (SPEC §3: what closed months
    recognised is not rewritten): April -391.79 - 50.00 = -441.79; 150.00 recognised in all
    = 200.00 invoiced - 50.00 credited."""
    # given
    [invoice] = bill_all(session, date(2026, 1, 1))
    revenue.close_month(session, period="2026-03", actor="test", now=at(2026, 4, 2))
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-02-01", reason="never used it",
                                      actor="UCREDIT1", now=at(2026, 4, 10))
    session.commit()
    # when
    issue_credit_note(session, invoice_number=invoice, amount="50.00", reason="goodwill",
                      actor="UCREDIT1", now=at(2026, 4, 20))
    session.commit()
    # then
    after = books(session, date(2026, 4, 20))
    assert {m: after["months"][m] for m in CLOSED_JAN_TO_MAR} == CLOSED_JAN_TO_MAR
    assert after["months"]["2026-04"] == ("-441.79", "0.00", "0.00", False)
    [(ob, fig)] = revenue.line_positions(session, date(2026, 4, 30)).values()
    assert (fig.recognized, fig.invoiced, fig.credited) == (15000, 20000, 5000)
    assert invariants.validate_all(session) == []


def test_a_credit_note_dated_in_a_closed_month_after_a_cancellation_counts_in_the_open_one(
        session: Session, cloud: Order) -> None:
    """Cancelled on 10 March from 1 April (600.00 over January to March), January and
    February closed, a credit note of 60.00 on March's invoice dated 27 February (recorded
    on 10 March): it counts from 1 March, the first open day, and reduces what is left
    (March: 600.00 - 60.00 - 387.95 = 152.05); the closed months are untouched."""
    # given
    invoices = [n for first in (date(2026, 1, 1), date(2026, 2, 1)) for n in
                bill_all(session, first)]
    revenue.close_month(session, period="2026-02", actor="test", now=at(2026, 3, 2))
    invoices += bill_all(session, date(2026, 3, 1))
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-04-01", reason="budget cut",
                                      actor="USALES01", now=at(2026, 3, 10))
    session.commit()
    # when
    issue_credit_note(session, invoice_number=invoices[1], amount="60.00", reason="outage",
                      actor="UCREDIT1", now=at(2026, 3, 10), issue_date=date(2026, 2, 27))
    session.commit()
    # then
    after = books(session, date(2026, 3, 10))
    assert after["months"]["2026-02"] == ("184.11", "12.05", "0.00", True)
    assert after["months"]["2026-03"] == ("152.05", "0.00", "0.00", False)
    assert invariants.validate_all(session) == []


def test_a_withdrawn_renewal_lets_the_subscription_be_cancelled_and_recognises_nothing(
        session: Session, cloud: Order) -> None:
    """Renewed on 20 November for 2027 (a new order), the renewal withdrawn on 1 December
    (cancelled before it started, nothing billed): the subscription may then be cancelled
    from 1 December, and a cancelled line is not renewed again. 2027 recognises nothing;
    2026 recognises the 2200.00 invoiced for January to November."""
    # given
    bill_all(session, date(2026, 11, 1))
    renewal = subscriptions.renew_subscription(session, order_number=cloud.number,
                                               line_no=1, actor="USALES01",
                                               now=at(2026, 11, 20))
    session.commit()
    assert books(session, date(2026, 11, 20), date(2027, 1, 1))["months"]["2027-01"][0] == \
        "203.84"
    # when
    orders.cancel_order(session, renewal, actor="USALES01", reason="customer leaves",
                        now=at(2026, 12, 1, 8))
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-12-01", reason="customer leaves",
                                      actor="UCREDIT1", now=at(2026, 12, 1, 9))
    session.commit()
    # then
    with pytest.raises(InvalidTransition):
        subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                         actor="USALES01", now=at(2026, 12, 2))
    session.rollback()
    after = books(session, date(2026, 12, 2), date(2027, 2, 1))
    assert sum(int(after["months"][f"2026-{m:02d}"][0].replace(".", ""))
               for m in range(1, 13)) == 220000
    assert after["months"]["2026-11"][1:3] == ("0.00", "0.00")
    assert after["months"]["2027-01"][0] == after["months"]["2027-02"][0] == "0.00"
    assert invariants.validate_all(session) == []


def test_closes_at_once_after_a_back_dated_cancellation_record_april_once(
        db: Database) -> None:
    """January to March closed, the cancellation from 1 February on 10 April, then three
    closes of April at once (two processes of the job and an operator): April is recorded
    once (-391.79), January to March keep their rows, one close and one audit event."""
    # given
    with db.transaction() as s:
        placed = place(s)
        bill_all(s, date(2026, 1, 1))
        revenue.close_month(s, period="2026-03", actor="test", now=at(2026, 4, 2))
    with db.transaction() as s:
        subscriptions.cancel_subscription(s, order_number=placed.number, line_no=1,
                                          effective="2026-02-01", reason="never used it",
                                          actor="UCREDIT1", now=at(2026, 4, 10))
    with db.read_session() as s:
        recorded = entries(s)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            start.wait(10)
            with db.transaction() as s:
                revenue.close_month(s, period="2026-04", actor="revenue-close",
                                    now=at(2026, 5, 4, 10))
        except BaseException as error:  # reported below
            errors.append(error)

    # when
    threads = [threading.Thread(target=close) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then
    assert errors == []
    with db.read_session() as s:
        assert entries(s) == recorded + [("2026-04", -39179, 0, 0)]
        assert [c.period for c in s.exec(select(RevenueClose).order_by(
            RevenueClose.period))] == ["2026-03", "2026-04"]
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "revenue.period_closed",
            AuditEvent.entity_id == "2026-04")).all()) == 1
        report = books(s, date(2026, 5, 4))
    assert [report["months"][m][0] for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [
        "203.84", "184.11", "203.84", "-391.79"]

