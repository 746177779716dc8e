"""Subscriptions billed by period (issue 15): each period invoiced once, in advance, as an
equal installment; cancelled from a period not invoiced yet; renewed once as a new order."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from bot.db import Database
from models import Approval, AuditEvent, Customer, Invoice, InvoiceLine, Order, OrderLine, money
from models.revenue import SubscriptionBilling
from tests.support import factories as f
from tests.support.examples import examples
from workflows import approvals, invariants, orders, revenue, shipping, subscriptions
from workflows.errors import Conflict, InvalidTransition, PermissionDenied, ValidationFailed
from workflows.inputs import OrderIn, OrderLineIn, ShipmentLineIn
from workflows.revenue_schedule import add_months, cumulative

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


@pytest.fixture
def cloud(session: Session) -> Order:
    """2 x CLOUD at 1200.00 a year (2400.00) for 2026, billed monthly: 12 x 200.00; and a
    widget on the same order."""
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    f.product(session, "WID", price="10.00")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=2, service_start="2026-01-01",
                          service_end="2026-12-31", billing="monthly"),
            OrderLineIn(sku="WID", quantity=1)]), actor="USALES01", now=at(2025, 12, 20))
    session.commit()
    return placed


def bill_all(session: Session, as_of: date) -> list[str]:
    numbers = []
    for due in subscriptions.due_periods(session, as_of):
        invoice = subscriptions.bill_period(session, order_line_id=due.order_line_id,
                                            period_start=due.period_start, as_of=as_of,
                                            now=datetime.combine(as_of, datetime.min.time(),
                                                                 tzinfo=UTC))
        if invoice is not None:
            numbers.append(invoice.number)
    session.commit()
    return numbers


def test_each_period_is_invoiced_once_in_advance(session: Session, cloud: Order) -> None:
    """On 10 March three periods have started (January to March): three invoices of 200.00,
    each one line naming its period, dated the day they are billed."""
    # when
    first = bill_all(session, date(2026, 3, 10))
    again = bill_all(session, date(2026, 3, 10))
    # then
    assert first == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"] and again == []
    lines = session.exec(select(InvoiceLine).order_by(InvoiceLine.id)).all()
    assert [(li.line_total_minor, li.service_start, li.service_end) for li in lines] == [
        (20000, date(2026, 1, 1), date(2026, 1, 31)),
        (20000, date(2026, 2, 1), date(2026, 2, 28)),
        (20000, date(2026, 3, 1), date(2026, 3, 31))]
    assert lines[0].description == "2 × Widget CLOUD, 2026-01-01 to 2026-01-31"
    assert {i.issue_date for i in session.exec(select(Invoice))} == {date(2026, 3, 10)}
    # the order waits for its widget and the other nine periods
    assert session.get(Order, cloud.id).status == "approved"
    assert invariants.validate_all(session) == []


def test_billing_ahead_of_recognition_is_deferred_behind_it_unbilled(
        session: Session, cloud: Order) -> None:
    """Recognised by day: January 2400.00 x 31/365 = 203.84 against 200.00 invoiced, 3.84
    unbilled; February 2400.00 x 28/365 = 184.11, 387.95 in all against 400.00: 12.05
    deferred."""
    # given: the job ran on each period's first day
    bill_all(session, date(2026, 1, 1))
    bill_all(session, date(2026, 2, 1))
    # when
    positions = {d: revenue.line_positions(session, d) for d in (date(2026, 1, 31),
                                                                  date(2026, 2, 28))}
    # then
    jan, feb = ([fig for ob, fig in p.values() if ob.sku == "CLOUD"][0]
                for p in positions.values())
    assert (jan.recognized, jan.invoiced, jan.unbilled, jan.deferred) == (20384, 20000, 384, 0)
    assert (feb.recognized, feb.invoiced, feb.deferred, feb.unbilled) == (38795, 40000, 1205, 0)


def test_a_subscription_billed_by_period_is_never_shipped(session: Session,
                                                         cloud: Order) -> None:
    with pytest.raises(ValidationFailed) as refused:
        shipping.ship_order(session, order_number=cloud.number, carrier="UPS",
                            tracking_number="1Z", shipped_at=NOW, actor="USALES01", now=NOW,
                            lines=[ShipmentLineIn(sku="CLOUD", quantity=2)])
    assert refused.value.errors[0].field == "lines[0].sku"
    # shipping everything ships the widget only; the order waits for its periods
    shipping.ship_order(session, order_number=cloud.number, carrier="UPS",
                        tracking_number="1Z", shipped_at=NOW, actor="USALES01", now=NOW)
    assert session.get(Order, cloud.id).status == "partially_shipped"


def test_cancelling_stops_billing_from_a_period_and_completes_the_order(
        session: Session, cloud: Order) -> None:
    """Cancelled from 1 July: January to June are billed (1200.00), the order's cancelled
    value is the 1200.00 that will not be; once June is billed (and the widget shipped) the
    order is invoiced. Revenue: 1200.00 over the 181 days to 30 June."""
    # given
    bill_all(session, date(2026, 3, 10))
    shipping.ship_order(session, order_number=cloud.number, carrier="UPS",
                        tracking_number="1Z", shipped_at=NOW, actor="USALES01", now=NOW)
    session.commit()
    # when
    line = subscriptions.cancel_subscription(
        session, order_number=cloud.number, line_no=1, effective="2026-07-01",
        reason="moving to another provider", actor="UADMIN01", now=NOW)
    session.commit()
    billed = bill_all(session, date(2026, 12, 1))
    # then
    assert line.cancelled_from == date(2026, 7, 1)
    assert session.get(Order, cloud.id).cancelled_minor == 120000
    assert len(billed) == 3  # April, May, June
    assert session.get(Order, cloud.id).status == "invoiced"
    [ob] = [ob for ob in revenue.load_obligations(session) if ob.sku == "CLOUD"]
    assert (ob.allocated_minor, ob.service_end) == (120000, date(2026, 6, 30))
    assert cumulative(ob.schedule, date(2026, 12, 31)) == 120000
    assert invariants.validate_all(session) == []


def test_only_a_period_not_invoiced_yet_can_start_the_cancellation(
        session: Session, cloud: Order) -> None:
    bill_all(session, date(2026, 3, 10))
    with pytest.raises(ValidationFailed) as refused:
        subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                          effective="2026-03-01", reason="x",
                                          actor="UADMIN01", now=NOW)
    assert refused.value.errors[0].field == "effective"
    assert "2026-04-01" in refused.value.errors[0].detail


def test_cancelling_without_a_day_stops_the_next_period_to_start_not_those_served(
        session: Session, cloud: Order) -> None:
    """January is invoiced, then the job does not run until 10 April; that day the customer
    cancels "from the next period". February, March and April were served: they are still
    invoiced (600.00), and billing stops from 1 May — the earliest period not invoiced
    (1 February) would have let three months served go unbilled without anyone asking."""
    # given
    bill_all(session, date(2026, 1, 1))
    # when
    line = subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                             reason="moving away", actor="UADMIN01",
                                             now=at(2026, 4, 10))
    session.commit()
    billed = bill_all(session, date(2026, 4, 10))
    later = bill_all(session, date(2026, 12, 1))
    # then
    assert line.cancelled_from == date(2026, 5, 1)
    assert len(billed) == 3 and later == []
    invoiced = session.exec(select(InvoiceLine).where(InvoiceLine.sku == "CLOUD")
                            .order_by(InvoiceLine.service_start)).all()
    assert [(li.service_start, li.line_total_minor) for li in invoiced] == [
        (date(2026, 1, 1), 20000), (date(2026, 2, 1), 20000), (date(2026, 3, 1), 20000),
        (date(2026, 4, 1), 20000)]
    assert session.get(Order, cloud.id).cancelled_minor == 160000  # May to December
    assert invariants.validate_all(session) == []


def test_cancelling_without_a_day_once_the_last_period_runs_is_refused(
        session: Session, cloud: Order) -> None:
    """On 10 December the last period (December) has started: nothing is left to stop, and
    December is still invoiced."""
    bill_all(session, date(2026, 11, 1))
    with pytest.raises(InvalidTransition, match="under way"):
        subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                          reason="moving away", actor="UADMIN01",
                                          now=at(2026, 12, 10))
    assert session.get(OrderLine, 1).cancelled_from is None
    assert len(bill_all(session, date(2026, 12, 10))) == 1


def test_cancelling_without_a_day_twice_changes_nothing_the_second_time(
        session: Session, cloud: Order) -> None:
    """A cancellation sent again without a day (a retry without an Idempotency-Key, a
    second person) finds the subscription stopped from the next period already: the same
    answer, one audit entry — not a 409 saying every period is invoiced."""
    # given
    bill_all(session, date(2026, 3, 1))
    first = subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                              reason="moving away", actor="UADMIN01",
                                              now=at(2026, 3, 10))
    session.commit()
    # when
    again = subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                              reason="moving away", actor="UADMIN01",
                                              now=at(2026, 3, 10, 13))
    session.commit()
    # then
    assert first.cancelled_from == again.cancelled_from == date(2026, 4, 1)
    assert session.get(Order, cloud.id).cancelled_minor == 180000
    assert len(session.exec(select(AuditEvent).where(
        AuditEvent.action == "subscription.cancelled")).all()) == 1


def test_a_cancellation_from_a_period_under_way_is_a_finance_decision(
        session: Session, cloud: Order) -> None:
    """January is invoiced, then the job does not run until 10 April. Cancelling from
    1 February forgoes February, March and April (3 x 200.00), served or being served and
    never invoiced: only a credit approver (or an admin), not the order's rep nor an
    integration without a name, may forgo them, and the audit says how much."""
    # given
    f.user(session, "USALES02", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    bill_all(session, date(2026, 1, 1))
    late = {"order_number": cloud.number, "line_no": 1, "effective": "2026-02-01",
            "reason": "never used it", "now": at(2026, 4, 10)}
    # when a sales rep asks, then it is refused, naming the amount, and nothing changes
    with pytest.raises(PermissionDenied) as refused:
        subscriptions.cancel_subscription(session, actor="USALES02", **late)
    assert "600.00" in refused.value.detail
    assert (refused.value.actor, refused.value.action) == ("USALES02",
                                                           "subscription.cancel_served")
    session.rollback()
    # when the API asks without naming who decides, then it is refused naming `by`
    with pytest.raises(ValidationFailed) as unnamed:
        subscriptions.cancel_subscription(session, actor="api", **late)
    assert unnamed.value.errors[0].field == "by"
    assert "600.00" in unnamed.value.errors[0].detail
    session.rollback()
    assert session.get(OrderLine, 1).cancelled_from is None
    # when a credit approver decides it
    line = subscriptions.cancel_subscription(session, actor="UCREDIT1", **late)
    session.commit()
    # then billing stops from February, and the audit records what was forgone
    assert line.cancelled_from == date(2026, 2, 1)
    assert bill_all(session, date(2026, 12, 1)) == []
    [event] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "subscription.cancelled")).all()
    assert (event.actor, event.reason) == ("UCREDIT1", "never used it")
    assert (event.data["forgone_minor"], event.data["currency"]) == (60000, "USD")
    assert event.data["forgone_periods"] == ["2026-02-01", "2026-03-01", "2026-04-01"]
    assert invariants.validate_all(session) == []


def test_a_cancellation_from_a_period_to_come_is_anyones_and_forgoes_nothing(
        session: Session, cloud: Order) -> None:
    """From 1 May, asked on 10 April: nothing served goes unbilled, the rep may ask."""
    bill_all(session, date(2026, 4, 10))
    line = subscriptions.cancel_subscription(
        session, order_number=cloud.number, line_no=1, effective="2026-05-01",
        reason="moving away", actor="USALES01", now=at(2026, 4, 10))
    session.commit()
    assert line.cancelled_from == date(2026, 5, 1)
    [event] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "subscription.cancelled")).all()
    assert "forgone_minor" not in event.data


def test_an_order_with_invoiced_periods_cannot_be_cancelled_whole(
        session: Session, cloud: Order) -> None:
    bill_all(session, date(2026, 1, 5))
    with pytest.raises(InvalidTransition):
        orders.cancel_order(session, session.get(Order, cloud.id), actor="USALES01",
                            reason="changed mind", now=NOW)


def test_cancelling_an_order_before_billing_cancels_its_subscription(
        session: Session, cloud: Order) -> None:
    # when
    orders.cancel_order(session, session.get(Order, cloud.id), actor="USALES01",
                        reason="changed mind", now=at(2025, 12, 22))
    session.commit()
    # then
    line = session.exec(select(OrderLine).where(OrderLine.sku == "CLOUD")).one()
    assert line.qty_cancelled == 2
    assert bill_all(session, date(2026, 3, 10)) == []
    assert invariants.validate_all(session) == []


def test_an_order_whose_subscription_has_begun_is_not_withdrawn_whole(
        session: Session, cloud: Order) -> None:
    """2026's subscription runs since 1 January; on 3 January the billing job has not
    invoiced January yet (it was down, or it is not its hour): withdrawing the whole order
    then left the days served unbilled for good. The subscription is cancelled instead (from
    its next period: January is invoiced), or from its first day, named (a decision)."""
    with pytest.raises(InvalidTransition, match="line 1.*served"):
        orders.cancel_order(session, session.get(Order, cloud.id), actor="USALES01",
                            reason="changed mind", now=at(2026, 1, 3))
    session.rollback()
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      reason="changed mind", actor="USALES01",
                                      now=at(2026, 1, 3))
    session.commit()
    assert bill_all(session, date(2026, 3, 10)) == ["INV-2026-000001"]  # January only
    assert invariants.validate_all(session) == []


def test_renewal_is_a_new_order_for_the_next_term_once(session: Session, cloud: Order) -> None:
    # when
    renewed = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                               actor="USALES01", now=at(2026, 11, 20))
    session.commit()
    # then
    line = orders.order_lines(session, renewed.id)[0]
    assert (line.service_start, line.service_end, line.billing, line.quantity) == (
        date(2027, 1, 1), date(2027, 12, 31), "monthly", 2)
    assert renewed.total_minor == 240000 and renewed.status == "approved"
    with pytest.raises(Conflict, match=renewed.number):
        subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                         actor="USALES01", now=at(2026, 11, 21))


def test_a_renewed_subscription_is_not_cancelled_while_its_renewal_stands(
        session: Session, cloud: Order) -> None:
    """2026 is renewed for 2027 (2400.00), then the customer cancels from July: cancelling
    only this term would leave a gap and still bill all of 2027 to a customer who left. The
    cancellation is refused, naming the renewal; once that order is withdrawn it goes
    through."""
    # given
    renewed = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                               actor="USALES01", now=at(2026, 3, 1))
    session.commit()
    # when
    with pytest.raises(Conflict, match=renewed.number):
        subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                          effective="2026-07-01", reason="leaving",
                                          actor="UADMIN01", now=at(2026, 3, 10))
    session.rollback()
    # then
    assert session.get(OrderLine, 1).cancelled_from is None
    orders.cancel_order(session, session.get(Order, renewed.id), actor="USALES01",
                        reason="the customer is leaving", now=at(2026, 3, 10))
    line = subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                             effective="2026-07-01", reason="leaving",
                                             actor="UADMIN01", now=at(2026, 3, 10))
    session.commit()
    assert line.cancelled_from == date(2026, 7, 1)
    assert session.get(Order, renewed.id).status == "cancelled"
    assert invariants.validate_all(session) == []


def test_two_processes_billing_the_same_period_invoice_it_once(db: Database,
                                                               cloud: Order) -> None:
    """Two transactions bill January at the same moment (without the job's lock): the order
    line's row lock makes the second wait and find the first's invoice; the primary key
    would refuse a second one anyway."""
    # given
    with db.read_session() as s:
        [due] = subscriptions.due_periods(s, date(2026, 1, 1))
    start = threading.Barrier(2)
    results: list[object] = []

    def bill() -> None:
        start.wait()
        try:
            with db.transaction() as s:
                invoice = subscriptions.bill_period(s, order_line_id=due.order_line_id,
                                                    period_start=due.period_start,
                                                    as_of=date(2026, 1, 1), now=NOW)
                results.append(invoice.number if invoice else None)
        except sa.exc.IntegrityError:
            results.append("refused")
    # when
    threads = [threading.Thread(target=bill) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # then
    assert sorted(results, key=str) == ["INV-2026-000001", None] or \
        sorted(results, key=str) == ["INV-2026-000001", "refused"]
    with db.read_session() as s:
        assert len(s.exec(select(SubscriptionBilling)).all()) == 1
        assert len(s.exec(select(Invoice)).all()) == 1


@pytest.mark.parametrize(("start", "end", "renewed"), [
    # a calendar year renewed into a leap year, and a leap year renewed
    ("2027-01-01", "2027-12-31", (date(2028, 1, 1), date(2028, 12, 31))),
    ("2028-01-01", "2028-12-31", (date(2029, 1, 1), date(2029, 12, 31))),
    # a month of 28 days renewed into one of 31
    ("2027-02-01", "2027-02-28", (date(2027, 3, 1), date(2027, 3, 31))),
    # not whole months: as many days again
    ("2027-01-10", "2027-02-18", (date(2027, 2, 19), date(2027, 3, 30))),
])
def test_a_subscription_invoiced_up_front_renews_for_as_many_months(
        session: Session, cloud: Order, start: str, end: str, renewed: tuple) -> None:
    """A subscription without a billing frequency (invoiced whole when delivered) over
    whole months renews for as many months (a year for a year, leap or not), not for as
    many days: 2027 (365 days) renewed by days would end on 30 December 2028, and February
    by days on 28 March; a term of other lengths renews for as many days."""
    # given
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=1, service_start=start, service_end=end)]),
        actor="USALES01", now=at(2026, 12, 1))
    session.commit()
    # when
    renewal = subscriptions.renew_subscription(session, order_number=placed.number,
                                               line_no=1, actor="USALES01",
                                               now=at(2026, 12, 2))
    # then
    line = orders.order_lines(session, renewal.id)[0]
    assert (line.service_start, line.service_end) == renewed
    assert line.billing is None and renewal.total_minor == 120000


def test_a_withdrawn_renewal_does_not_block_the_next(session: Session, cloud: Order) -> None:
    """The renewal of 2026 is withdrawn before it starts (the customer wanted to think it
    over): the line was not renewed, so a renewal asked again makes a new order for 2027;
    that one, running, blocks a third."""
    # given
    first = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                             actor="USALES01", now=at(2026, 11, 20))
    orders.cancel_order(session, first, actor="USALES01", reason="customer thinks it over",
                        now=at(2026, 11, 25))
    session.commit()
    # when
    second = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                              actor="USALES01", now=at(2026, 12, 1))
    session.commit()
    # then
    line = orders.order_lines(session, second.id)[0]
    assert (line.service_start, line.service_end, second.total_minor, second.status) == (
        date(2027, 1, 1), date(2027, 12, 31), 240000, "approved")
    assert orders.order_lines(session, first.id)[0].renewal_of_line_id is None
    with pytest.raises(Conflict, match=second.number):
        subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                         actor="USALES01", now=at(2026, 12, 2))
    assert invariants.validate_all(session) == []


def test_a_rejected_renewal_does_not_block_the_next(session: Session, cloud: Order) -> None:
    """The renewal of 2026 waits for credit (the limit was lowered) and is rejected: the line
    was not renewed, so a renewal asked again, once the limit is back, is the 2027 term."""
    # given
    customer = session.exec(select(Customer)).one()
    customer.credit_limit_minor = 100
    session.add(customer)
    f.user(session, "UCREDIT1", "credit_approver")
    first = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                             actor="USALES01", now=at(2026, 11, 20))
    [waiting] = session.exec(select(Approval).where(Approval.order_id == first.id)).all()
    approvals.decide(session=session, approval_id=waiting.id, user_id="UCREDIT1",
                     approve=False, note="over the limit", now=at(2026, 11, 23))
    customer.credit_limit_minor = 100_000_000
    session.add(customer)
    session.commit()
    assert session.get(Order, first.id).status == "rejected"
    # when
    second = subscriptions.renew_subscription(session, order_number=cloud.number, line_no=1,
                                              actor="USALES01", now=at(2026, 12, 1))
    session.commit()
    # then
    line = orders.order_lines(session, second.id)[0]
    assert (line.service_start, line.service_end, second.status) == (
        date(2027, 1, 1), date(2027, 12, 31), "approved")
    assert orders.order_lines(session, first.id)[0].renewal_of_line_id is None
    assert invariants.validate_all(session) == []


def test_a_subscriptions_periods_bill_exactly_its_tax(session: Session) -> None:
    """100.00 a quarter at 10 % tax, billed monthly: 33.33 + 33.34 + 33.33 net, and 10.00
    tax (as for the line in one invoice, SPEC §3: rounded once per line) — 3.33 + 3.34 + 3.33
    by cumulative rounding, not 3 x 3.33 = 9.99 (a cent of the order never billed)."""
    # given
    f.user(session, "USALES01", "sales")
    customer = f.customer(session, credit_limit="1000000.00")
    customer.tax_rate_bp = 1000
    session.add(customer)
    f.product(session, "SVC", price="100.00", revenue_type="subscription")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="SVC", quantity=1, service_start="2026-01-01",
                        service_end="2026-03-31", billing="monthly")]),
        actor="USALES01", now=at(2025, 12, 20))
    session.commit()
    # when its three periods are billed
    bill_all(session, date(2026, 3, 10))
    # then
    billed = session.exec(select(Invoice).where(Invoice.order_id == placed.id)
                          .order_by(Invoice.id)).all()
    assert [(i.subtotal_minor, i.tax_minor) for i in billed] == [
        (3333, 333), (3334, 334), (3333, 333)]
    assert sum(i.total_minor for i in billed) == placed.total_minor == 11000
    assert invariants.validate_all(session) == []


SKUS = iter(range(1, 10**6))


@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(price=st.integers(1, 10**7), quantity=st.integers(1, 20), tax_bp=st.integers(0, 3000),
       billing=st.sampled_from(["monthly", "quarterly"]), periods=st.integers(1, 12))
def test_any_subscriptions_periods_bill_exactly_its_net_and_tax(
        session: Session, price: int, quantity: int, tax_bp: int, billing: str,
        periods: int) -> None:
    # given a subscription line of any price, quantity, tax rate, term and billing
    if session.exec(select(Customer)).first() is None:
        f.user(session, "USALES01", "sales")
        f.customer(session, credit_limit="9999999999999.00")
    customer = session.exec(select(Customer)).one()
    customer.tax_rate_bp = tax_bp
    session.add(customer)
    sku = f"SVC-{next(SKUS)}"
    f.product(session, sku, price=str(money.from_minor(price, "USD")),
              revenue_type="subscription")
    months = periods * (3 if billing == "quarterly" else 1)
    end = add_months(date(2026, 1, 1), months) - timedelta(days=1)
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku=sku, quantity=quantity, service_start="2026-01-01",
                        service_end=end.isoformat(), billing=billing)]),
        actor="USALES01", now=at(2025, 12, 20))
    session.commit()
    # when every period is billed
    bill_all(session, end)
    # then the periods bill exactly the line's net and its tax, none of them negative
    [line] = orders.order_lines(session, placed.id)
    billed = session.exec(select(Invoice).where(Invoice.order_id == placed.id)).all()
    assert sum(i.subtotal_minor for i in billed) == line.line_total_minor
    assert sum(i.tax_minor for i in billed) == money.percent_of(line.line_total_minor, tax_bp,
                                                                "USD")
    assert all(i.tax_minor >= 0 for i in billed)


def test_a_subscription_cancelled_from_its_first_day_cancels_its_order(
        session: Session) -> None:
    """An order of one subscription billed monthly, cancelled from its first day before any
    period was invoiced: nothing was or will be billed, so the order is cancelled (its whole
    value), not shipped, invoiced and paid with no invoice at all."""
    # given
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-04-01",
                        service_end="2027-03-31", billing="monthly")]),
        actor="USALES01", now=at(2026, 3, 1))
    session.commit()
    assert placed.status == "approved"
    # when
    subscriptions.cancel_subscription(
        session, order_number=placed.number, line_no=1, effective="2026-04-01",
        reason="the customer changed their mind", actor="UADMIN01", now=NOW)
    session.commit()
    # then
    order = session.get(Order, placed.id)
    assert (order.status, order.cancelled_minor) == ("cancelled", 120000)
    assert bill_all(session, date(2026, 12, 1)) == []
    assert session.exec(select(Invoice)).all() == []
    assert [ob for ob in revenue.load_obligations(session) if ob.sku == "CLOUD"
            and ob.allocated_minor] == []
    assert invariants.validate_all(session) == []


def test_a_renewal_for_a_shorter_term_is_charged_for_that_term(
        session: Session, cloud: Order) -> None:
    """The term renewed is 2026 at 1200.00 a unit (2 units), billed monthly; a renewal asked
    to end on 30 June 2027 runs six months of twelve: half the price (1200.00, not 2400.00),
    six monthly periods of 200.00, no discount to approve (the list price for six months is
    half too), and its revenue is recognised over those six months only."""
    # when
    renewed = subscriptions.renew_subscription(
        session, order_number=cloud.number, line_no=1, actor="USALES01",
        now=at(2026, 11, 20), service_end="2027-06-30")
    session.commit()
    # then
    line = orders.order_lines(session, renewed.id)[0]
    assert (line.service_start, line.service_end, line.unit_price_minor,
            line.line_total_minor, renewed.total_minor - renewed.tax_minor) == (
        date(2027, 1, 1), date(2027, 6, 30), 60000, 120000, 120000)
    assert line.renewal_of_line_id is not None
    assert [amount for _, _, amount in orders.subscription_periods(line)] == [20000] * 6
    assert renewed.status == "approved"
    [ob] = [ob for ob in revenue.load_obligations(session) if ob.line_id == line.id]
    assert (ob.allocated_minor, ob.service_end) == (120000, date(2027, 6, 30))
    assert cumulative(ob.schedule, date(2027, 5, 31)) == 100110  # 151 of 181 days, by month
    assert cumulative(ob.schedule, date(2027, 6, 30)) == 120000
    assert invariants.validate_all(session) == []


@pytest.mark.parametrize(("start", "end", "service_end", "unit_price"), [
    # a year renewed for 1 January to 15 March 2028 (75 days of 2028, of 365): by days
    ("2027-01-01", "2027-12-31", "2028-03-15", 24658),
    # three months renewed for one: by whole months
    ("2027-01-01", "2027-03-31", "2027-04-30", 40000),
])
def test_a_renewal_invoiced_up_front_for_a_shorter_term_is_prorated(
        session: Session, cloud: Order, start: str, end: str, service_end: str,
        unit_price: int) -> None:
    """A subscription without a billing frequency at 1200.00 for its term: a shorter renewal
    is priced for its own term, by whole months when both run whole months, else by days."""
    # given
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=1, service_start=start, service_end=end)]),
        actor="USALES01", now=at(2026, 12, 1))
    session.commit()
    # when
    renewal = subscriptions.renew_subscription(
        session, order_number=placed.number, line_no=1, actor="USALES01",
        now=at(2026, 12, 2), service_end=service_end)
    # then
    line = orders.order_lines(session, renewal.id)[0]
    assert (line.service_end.isoformat(), line.unit_price_minor, line.line_total_minor,
            renewal.status) == (service_end, unit_price, unit_price, "approved")


def test_a_renewal_for_the_same_term_given_explicitly_keeps_the_price(
        session: Session, cloud: Order) -> None:
    renewed = subscriptions.renew_subscription(
        session, order_number=cloud.number, line_no=1, actor="USALES01",
        now=at(2026, 11, 20), service_end="2027-12-31")
    assert orders.order_lines(session, renewed.id)[0].unit_price_minor == 120000


def test_a_cancellation_after_a_close_leaves_the_closed_months_as_recorded(
        session: Session, cloud: Order) -> None:
    """January and February are invoiced and closed (recognised 203.84 and 184.11 of
    2400.00 by day); on 10 March the subscription is cancelled from April. The contract is
    now 600.00 over 1 January to 31 March: the closed months keep what they recorded, and
    March takes the rest (600.00 - 387.95 = 212.05), so at 31 March everything invoiced is
    recognised, nothing deferred or unbilled."""
    # given
    bill_all(session, date(2026, 2, 1))
    revenue.close_month(session, period="2026-02", actor="test", now=at(2026, 3, 2))
    session.commit()
    # when
    subscriptions.cancel_subscription(session, order_number=cloud.number, line_no=1,
                                      effective="2026-04-01", reason="budget cut",
                                      actor="UADMIN01", now=at(2026, 3, 10))
    session.commit()
    bill_all(session, date(2026, 3, 10))
    # then
    [ob] = [ob for ob in revenue.load_obligations(session) if ob.sku == "CLOUD"]
    assert {month: moved.recognized for month, moved in ob.closed.items()} == {
        "2026-01": 20384, "2026-02": 18411}
    positions = {d: [fig for o, fig in revenue.line_positions(session, d).values()
                     if o.sku == "CLOUD"][0] for d in (date(2026, 2, 28), date(2026, 3, 31))}
    feb, mar = positions[date(2026, 2, 28)], positions[date(2026, 3, 31)]
    assert (feb.recognized, feb.invoiced) == (38795, 40000)
    assert (mar.recognized - feb.recognized, mar.invoiced, mar.deferred, mar.unbilled) == (
        21205, 60000, 0, 0)
    assert cumulative(ob.schedule, date(2026, 12, 31)) == 60000
    assert invariants.validate_all(session) == []


def test_the_invariants_see_a_period_billed_wrong(session: Session, cloud: Order) -> None:
    """`validate_subscription_billings`: a billed period that is not one of the line's (other
    amount), or that starts after the day the line stops, is reported."""
    bill_all(session, date(2026, 3, 10))
    assert invariants.validate_subscription_billings(session) == []
    line = session.exec(select(OrderLine).where(OrderLine.billing.is_not(None))).one()
    # a period billed for another amount, and the line stopped before a billed period
    session.execute(sa.update(SubscriptionBilling).where(
        SubscriptionBilling.period_start == date(2026, 2, 1)).values(amount_minor=19_999))
    line.cancelled_from = date(2026, 3, 1)
    session.add(line)
    session.flush()
    assert invariants.validate_subscription_billings(session) == [
        f"subscription line {line.id}, period from 2026-02-01: billed 19999 to 2026-02-28, "
        "not one of the line's periods",
        f"subscription line {line.id}, period from 2026-03-01: billed though the line stops "
        "from 2026-03-01"]
    session.rollback()


def _cloud_on(session: Session, day: date) -> revenue.Figures:
    return next(fig for ob, fig in revenue.line_positions(session, day).values()
                if ob.sku == "CLOUD")


def test_a_day_inside_a_closed_month_shows_that_day_not_the_month_end(
        session: Session, cloud: Order) -> None:
    """January billed on 1 January, February on 20 February, both closed. The figures as of
    12 February are those of 12 February: January's 203.84 recognised (February's is
    recognised on its last day) against the 200.00 invoiced by then — 3.84 unbilled — not
    28 February's 387.95 against 400.00; as of 15 January nothing is recognised yet and the
    200.00 invoiced is deferred. The month end keeps what the close recorded."""
    # given
    bill_all(session, date(2026, 1, 1))
    bill_all(session, date(2026, 2, 20))
    revenue.close_month(session, period="2026-02", actor="test", now=at(2026, 3, 2))
    session.commit()
    # when
    jan15, feb12, feb19, feb28 = (_cloud_on(session, d) for d in (
        date(2026, 1, 15), date(2026, 2, 12), date(2026, 2, 19), date(2026, 2, 28)))
    # then
    assert (jan15.recognized, jan15.invoiced, jan15.deferred, jan15.unbilled) == (
        0, 20000, 20000, 0)
    assert (feb12.recognized, feb12.invoiced, feb12.deferred, feb12.unbilled) == (
        20384, 20000, 0, 384)
    assert feb19 == feb12
    assert (feb28.recognized, feb28.invoiced, feb28.deferred) == (38795, 40000, 1205)
    assert invariants.validate_all(session) == []


def test_a_change_dated_in_a_closed_month_stays_out_of_its_days(
        session: Session, cloud: Order) -> None:
    """February is closed; on 10 March the widget is recorded as shipped on 10 February.
    The closed February never shows it — not at its end, nor on 12 February — and March,
    the first open month, recognises its 10.00."""
    # given
    bill_all(session, date(2026, 1, 1))
    revenue.close_month(session, period="2026-02", actor="test", now=at(2026, 3, 2))
    session.commit()
    shipping.ship_order(session, order_number=cloud.number, carrier="UPS",
                        tracking_number="1Z", shipped_at=at(2026, 2, 10), actor="USALES01",
                        now=at(2026, 3, 10))
    session.commit()
    # when
    widget = {d: next(fig for ob, fig in revenue.line_positions(session, d).values()
                      if ob.sku == "WID")
              for d in (date(2026, 2, 12), date(2026, 2, 28), date(2026, 3, 31))}
    # then
    assert [widget[d].recognized for d in sorted(widget)] == [0, 0, 1000]
    data = revenue.report(session, first=date(2026, 2, 1), last=date(2026, 3, 1),
                          today=date(2026, 3, 10))
    assert [m.recognized["goods"] for m in data.currencies["USD"].months] == [0, 1000]
    assert invariants.validate_all(session) == []


def _one_subscription(session: Session) -> Order:
    """1 x CLOUD at 1200.00 a year for 2026, billed monthly (100.00 a period), alone on its
    order."""
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-01-01",
                        service_end="2026-12-31", billing="monthly")]),
        actor="USALES01", now=at(2025, 12, 20))
    session.commit()
    return placed


def test_an_order_on_hold_whose_subscription_is_cancelled_is_invoiced(
        session: Session) -> None:
    """January to March are invoiced (300.00), then finance puts the order on hold, and the
    subscription is cancelled from April: nothing is left to bill nor to hold, so the order
    is invoiced (as it would be had it not been held) — not left on hold, nor, once
    released, approved for ever with nothing the billing job would ever invoice."""
    # given
    placed = _one_subscription(session)
    bill_all(session, date(2026, 3, 10))
    order = session.get(Order, placed.id)
    orders.transition(session, order, "on_hold", actor="UADMIN01", reason="credit hold",
                      now=NOW)
    session.commit()
    # when
    subscriptions.cancel_subscription(
        session, order_number=placed.number, line_no=1, effective="2026-04-01",
        reason="the customer is leaving", actor="UADMIN01", now=NOW)
    session.commit()
    # then
    order = session.get(Order, placed.id)
    assert (order.status, order.cancelled_minor) == ("invoiced", 90000)
    assert bill_all(session, date(2026, 12, 1)) == []
    moves = session.exec(select(AuditEvent.from_state, AuditEvent.to_state).where(
        AuditEvent.entity_type == "order", AuditEvent.entity_id == placed.id,
        AuditEvent.action == "order.transition").order_by(AuditEvent.id)).all()
    assert [tuple(m) for m in moves][-3:] == [("approved", "on_hold"), ("on_hold", "shipped"),
                                             ("shipped", "invoiced")]
    assert invariants.validate_all(session) == []


def test_an_order_on_hold_whose_subscription_is_cancelled_before_billing_is_cancelled(
        session: Session) -> None:
    """Held before any period was invoiced, cancelled from its first day: nothing was or
    will be billed, so the order is cancelled."""
    # given
    placed = _one_subscription(session)
    orders.transition(session, session.get(Order, placed.id), "on_hold", actor="UADMIN01",
                      reason="credit hold", now=at(2025, 12, 21))
    session.commit()
    # when
    subscriptions.cancel_subscription(
        session, order_number=placed.number, line_no=1, effective="2026-01-01",
        reason="the customer is leaving", actor="UADMIN01", now=at(2025, 12, 22))
    session.commit()
    # then
    order = session.get(Order, placed.id)
    assert (order.status, order.cancelled_minor) == ("cancelled", 120000)
    assert session.exec(select(Invoice)).all() == []
    assert invariants.validate_all(session) == []
