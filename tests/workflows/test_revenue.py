"""Revenue recognition through the workflows (SPEC §3, issue 15), worked by hand to the cent:
orders, shipments, invoices and credit notes feed each line's schedule; the monthly close
records it once; a later change lands in the first open month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from models import AuditEvent, ClosedPeriod, Invoice, InvoiceLine, OutboxMessage
from models.revenue import RevenueClose, RevenueEntry
from tests.support import factories as f
from workflows import invariants, orders, periods, policy, revenue, shipping
from workflows.errors import ValidationFailed
from workflows.inputs import OrderIn, OrderLineIn, ShipmentLineIn
from workflows.invoicing import issue_credit_note


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def order(session: Session, lines: list[dict], *, now: datetime, rep: str = "USALES01"):
    return orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep=rep, currency="USD",
        lines=[OrderLineIn(**line) for line in lines]), actor=rep, now=now)


def ship(session: Session, number: str, when: datetime, lines: list[tuple[str, int]] | None
         = None, now: datetime | None = None) -> Invoice:
    shipment = shipping.ship_order(
        session, order_number=number, carrier="UPS", tracking_number="1Z1", shipped_at=when,
        lines=[ShipmentLineIn(sku=s, quantity=q) for s, q in lines] if lines else None,
        actor="USALES01", now=now or when)
    return session.exec(select(Invoice).where(Invoice.shipment_id == shipment.id)).one()


def figures(session: Session, day: date) -> dict[str, revenue.Figures]:
    return {ob.sku: fig for ob, fig in revenue.line_positions(session, day).values()}


@pytest.fixture
def book(session: Session) -> Session:
    """A reviewed customer with a generous limit, a sales rep, and products of each type."""
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "HW-1", price="450.00", ssp="500.00")
    f.product(session, "INST", price="300.00", ssp="400.00", revenue_type="service")
    f.product(session, "SUP", price="99.00", revenue_type="subscription")
    f.product(session, "WID", price="12.50")
    f.product(session, "SVC", price="1000.00", revenue_type="service")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    session.commit()
    return session


def test_a_mixed_bundle_is_allocated_by_standalone_selling_price(book: Session) -> None:
    """The bundle of `test_revenue_schedule`: 2 x HW-1 at 450.00 less 10 % (810.00, SSP
    2 x 500.00), an installation (300.00, SSP 400.00) and support without an ssp (99.00, its
    list price): N = 1209.00 allocated 806.53 + 322.62 + 79.85 (the cent of rounding taken
    off the hardware, the largest SSP)."""
    # given
    placed = order(book, [
        {"sku": "HW-1", "quantity": 2, "discount_pct": "10"},
        {"sku": "INST", "quantity": 1, "service_start": "2026-03-01",
         "service_end": "2026-03-31"},
        {"sku": "SUP", "quantity": 1, "service_start": "2026-03-01",
         "service_end": "2027-02-28"}], now=at(2026, 2, 20))
    book.commit()
    # when
    obligations = revenue.load_obligations(book)
    # then
    assert placed.status == "approved"
    assert {ob.sku: ob.allocated_minor for ob in obligations} == {
        "HW-1": 80653, "INST": 32262, "SUP": 7985}
    assert sum(ob.allocated_minor for ob in obligations) == placed.total_minor == 120900


def test_goods_are_recognised_on_their_business_date_shipment_by_shipment(book: Session) -> None:
    """8 x WID at 12.50 = 100.00, shipped 3, 4, then 1: 37.50, 50.00, 12.50. The business day
    is New York's: shipped 1 April 02:00 UTC is 31 March there, so March recognises 37.50."""
    # given
    policy.set_value(book, key="business_timezone", value="America/New_York", actor="test")
    placed = order(book, [{"sku": "WID", "quantity": 8}], now=at(2026, 3, 20))
    book.commit()
    # when
    ship(book, placed.number, at(2026, 4, 1, 2), [("WID", 3)])
    ship(book, placed.number, at(2026, 4, 10), [("WID", 4)])
    ship(book, placed.number, at(2026, 5, 4), [("WID", 1)])
    book.commit()
    # then
    march, april, may = (figures(book, d)["WID"] for d in (date(2026, 3, 31),
                                                          date(2026, 4, 30),
                                                          date(2026, 5, 31)))
    assert (march.recognized, april.recognized, may.recognized) == (3750, 8750, 10000)
    # each shipment is invoiced the day it ships: nothing deferred, nothing unbilled
    assert (march.invoiced, may.invoiced, may.deferred, may.unbilled) == (3750, 10000, 0, 0)
    assert figures(book, date(2026, 3, 30))["WID"].recognized == 0


def test_a_service_over_a_leap_february(book: Session) -> None:
    """1000.00 of service from 15 January to 14 March 2028, invoiced in full when delivered
    on 15 January: recognised 283.33 (January), 483.33 (February, 29 days), 233.34 (March);
    deferred 716.67 at the end of January, 233.34 at the end of February, then nothing."""
    # given
    placed = order(book, [{"sku": "SVC", "quantity": 1, "service_start": "2028-01-15",
                           "service_end": "2028-03-14"}], now=at(2028, 1, 10))
    book.commit()
    ship(book, placed.number, at(2028, 1, 15))
    book.commit()
    # when
    by_day = {d: figures(book, d)["SVC"] for d in (date(2028, 1, 14), date(2028, 1, 31),
                                                    date(2028, 2, 29), date(2028, 3, 31))}
    # then
    assert [(fig.recognized, fig.deferred) for fig in by_day.values()] == [
        (0, 0), (28333, 71667), (76666, 23334), (100000, 0)]


def test_a_credit_note_mid_period_reduces_the_months_left(book: Session) -> None:
    """3650.00 of service over 2026, invoiced on 1 January; a credit note of 100.00 on
    15 April. January to March keep 900.00; April recognises 289.09 of the 2650.00 left
    (see `test_revenue_schedule`): 1189.09 by the end of April, when 3650.00 invoiced less
    100.00 credited less 1189.09 leaves 2360.91 deferred; the year recognises 3550.00."""
    # given
    book.commit()
    f.product(book, "YEAR", price="3650.00", revenue_type="service")
    placed = order(book, [{"sku": "YEAR", "quantity": 1, "service_start": "2026-01-01",
                           "service_end": "2026-12-31"}], now=at(2025, 12, 20))
    book.commit()
    invoice = ship(book, placed.number, at(2026, 1, 1, 9))
    book.commit()
    # when
    issue_credit_note(book, invoice_number=invoice.number, amount="100.00",
                      reason="three days of outage", actor="UCREDIT1", now=at(2026, 4, 15))
    book.commit()
    # then
    march, april, december = (figures(book, d)["YEAR"] for d in (
        date(2026, 3, 31), date(2026, 4, 30), date(2026, 12, 31)))
    assert (march.recognized, march.credited) == (90000, 0)
    assert (april.recognized, april.credited, april.deferred) == (118909, 10000, 236091)
    assert (december.recognized, december.deferred, december.unbilled) == (355000, 0, 0)


def test_a_credit_note_is_spread_over_invoice_lines_net_of_tax(book: Session) -> None:
    """An invoice of 100.00 + 50.00 with 10 % tax (165.00); a credit of 33.00 is 30.00 of
    net (33.00 x 150/165), 20.00 off the first line and 10.00 off the second."""
    # given
    customer = f.customer(book)
    customer.tax_rate_bp = 1000  # 10 %
    book.add(customer)
    f.product(book, "A", price="100.00")
    f.product(book, "B", price="50.00")
    placed = order(book, [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}],
                   now=at(2026, 3, 2))
    invoice = ship(book, placed.number, at(2026, 3, 3))
    assert invoice.total_minor == 16500
    # when
    note = issue_credit_note(book, invoice_number=invoice.number, amount="33.00",
                             reason="goodwill", actor="UCREDIT1", now=at(2026, 3, 9))
    shares = revenue.credit_by_invoice_line(book, note)
    # then
    lines = {line.id: line.sku for line in book.exec(select(InvoiceLine).where(
        InvoiceLine.invoice_id == invoice.id))}
    assert {lines[k]: v for k, v in shares.items()} == {"A": 2000, "B": 1000}


def test_the_close_records_each_line_once_and_a_closed_month_never_changes(
        book: Session) -> None:
    """Goods of 100.00 shipped 10 April; April closed on 2 May. A shipment dated 28 April
    but recorded on 3 May (the other 4 units, 50.00) does not change April: May, the first
    open month, recognises it, with its invoice."""
    # given
    placed = order(book, [{"sku": "WID", "quantity": 8}], now=at(2026, 4, 1))
    ship(book, placed.number, at(2026, 4, 10), [("WID", 4)])
    book.commit()
    result = revenue.close_month(book, period="2026-04", actor="UADMIN01", now=at(2026, 5, 2))
    book.commit()
    before = revenue.to_json(revenue.report(book, first=date(2026, 4, 1),
                                            last=date(2026, 4, 1), today=date(2026, 5, 3)))
    # when
    ship(book, placed.number, at(2026, 4, 28), [("WID", 4)], now=at(2026, 5, 3))
    book.commit()
    # then: April as closed; May takes the late shipment
    data = revenue.to_json(revenue.report(book, first=date(2026, 4, 1), last=date(2026, 5, 1),
                                          today=date(2026, 5, 3)))
    april, may = data["currencies"]["USD"]["months"]
    assert result.created and result.recorded is not None
    assert april == before["currencies"]["USD"]["months"][0]
    assert (april["closed"], april["recognized"]["total"], april["deferred"]) == (
        True, "50.00", "0.00")
    assert (may["closed"], may["recognized"]["by_type"]["goods"], may["deferred"]) == (
        False, "50.00", "0.00")
    # and the rows: one per line and month that moved, never changed again
    entries = book.exec(select(RevenueEntry)).all()
    assert [(e.period, e.recognized_minor, e.invoiced_minor) for e in entries] == [
        ("2026-04", 5000, 5000)]
    with pytest.raises(sa.exc.DatabaseError):
        book.execute(sa.text("UPDATE revenue_entries SET recognized_minor = 0"))
    book.rollback()


def test_closing_again_changes_nothing_and_posts_once(book: Session) -> None:
    # given
    placed = order(book, [{"sku": "WID", "quantity": 8}], now=at(2026, 4, 1))
    ship(book, placed.number, at(2026, 4, 10))
    book.commit()
    revenue.close_month(book, period="2026-04", actor="revenue-close", now=at(2026, 5, 1, 6))
    book.commit()
    # when
    again = revenue.close_month(book, period="2026-04", actor="revenue-close",
                                now=at(2026, 5, 1, 7))
    book.commit()
    # then
    assert (again.created, again.recorded) == (False, None)
    assert len(book.exec(select(RevenueClose)).all()) == 1
    posts = book.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == "revenue-close:2026-04")).all()
    assert len(posts) == 1
    summary = posts[0].payload["context"]
    assert summary["currencies"]["USD"]["recognized"] == "100.00"
    assert summary["currencies"]["USD"]["previous"] == {
        "month": "2026-03", "recognized": "0.00", "deferred": "0.00", "unbilled": "0.00"}
    events = book.exec(select(AuditEvent.action).where(
        AuditEvent.action.in_(["revenue.period_closed", "period.closed"]))).all()
    assert sorted(events) == ["period.closed", "revenue.period_closed"]


def test_the_ar_close_records_revenue_too(book: Session) -> None:
    """One lock date: `o2c close-period` (AR) closes the month for revenue as well."""
    # given
    placed = order(book, [{"sku": "WID", "quantity": 8}], now=at(2026, 4, 1))
    ship(book, placed.number, at(2026, 4, 10))
    book.commit()
    # when
    periods.close_period(book, period="2026-04", actor="UADMIN01", now=at(2026, 5, 4))
    book.commit()
    # then
    assert revenue.recorded_through(book) == date(2026, 4, 30)
    assert book.get(ClosedPeriod, "2026-04").source == "ar"
    # a credit note dated in April after the close counts from 1 May, for AR and revenue
    invoice = book.exec(select(Invoice)).one()
    note = issue_credit_note(book, invoice_number=invoice.number, amount="10.00",
                             reason="damaged", actor="UCREDIT1", now=at(2026, 5, 5),
                             issue_date=date(2026, 4, 29))
    book.commit()
    assert note.effective_date == date(2026, 5, 1)
    april, may = (figures(book, d)["WID"] for d in (date(2026, 4, 30), date(2026, 5, 31)))
    assert (april.recognized, april.credited) == (10000, 0)
    assert (may.recognized, may.credited, may.unbilled) == (9000, 1000, 0)
    assert invariants.validate_all(book) == []


@pytest.mark.parametrize(("line", "field", "says"), [
    ({"sku": "SVC", "quantity": 1}, "lines[0].service_start", "is a service"),
    ({"sku": "SVC", "quantity": 1, "service_start": "2026-03-01"}, "lines[0].service_end",
     "last day"),
    ({"sku": "SVC", "quantity": 1, "service_start": "2026-03-01",
      "service_end": "2026-02-28"}, "lines[0].service_end", "before service_start"),
    ({"sku": "WID", "quantity": 1, "service_start": "2026-03-01"}, "lines[0].service_start",
     "is goods"),
    ({"sku": "SVC", "quantity": 1, "service_start": "2026-03-01", "service_end": "2026-03-31",
      "billing": "monthly"}, "lines[0].billing", "only subscriptions"),
    ({"sku": "CLOUD", "quantity": 1, "service_start": "2026-01-15",
      "service_end": "2026-04-30", "billing": "monthly"}, "lines[0].service_end",
     "e.g. 2026-05-14"),
    ({"sku": "CLOUD", "quantity": 1, "service_start": "2026-01-01",
      "service_end": "2036-12-31"}, "lines[0].service_end", "at most 3660 days"),
])
def test_service_periods_are_checked_by_revenue_type(book: Session, line: dict, field: str,
                                                     says: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        order(book, [line], now=at(2026, 2, 1))
    assert [e.field for e in refused.value.errors] == [field]
    assert says in refused.value.errors[0].detail


def test_cancelling_a_contract_after_a_close_reverses_in_the_first_open_month(
        book: Session) -> None:
    """1000.00 of service over 2026, approved in December, not delivered yet: January
    recognises 1000.00 x 31/365 = 84.93, unbilled. January is closed on 2 February; on 10
    February the order is cancelled (nothing shipped or invoiced). January stays as closed
    (84.93 recognised and unbilled); February, the first open month, takes the reversal."""
    # given
    placed = order(book, [{"sku": "SVC", "quantity": 1, "service_start": "2026-01-01",
                           "service_end": "2026-12-31"}], now=at(2025, 12, 20))
    book.commit()
    revenue.close_month(book, period="2026-01", actor="UADMIN01", now=at(2026, 2, 2))
    book.commit()
    before = revenue.to_json(revenue.report(book, first=date(2026, 1, 1),
                                            last=date(2026, 1, 1), today=date(2026, 2, 3)))
    # when
    orders.cancel_order(book, placed, actor="USALES01", reason="customer withdrew",
                        now=at(2026, 2, 10))
    book.commit()
    # then
    data = revenue.to_json(revenue.report(book, first=date(2026, 1, 1), last=date(2026, 2, 1),
                                          today=date(2026, 2, 11)))
    january, february = data["currencies"]["USD"]["months"]
    assert january == before["currencies"]["USD"]["months"][0]
    assert (january["closed"], january["recognized"]["total"], january["unbilled"]) == (
        True, "84.93", "84.93")
    assert (february["closed"], february["recognized"]["by_type"]["service"],
            february["deferred"], february["unbilled"]) == (False, "-84.93", "0.00", "0.00")
    assert data["currencies"]["USD"]["unbilled"] == "0.00"


def test_a_cancelled_line_no_longer_makes_the_order_a_mixed_bundle(book: Session) -> None:
    """Goods out of stock (2 x 12.50, backordered) bundled with two services: Installation
    300.00 (SSP 400.00) and Service 1000.00 (list price), both over March. The customer
    cancels the backordered goods: what is left is services only, so each line keeps its own
    net amount (SPEC §3: one revenue type) — 300.00 and 1000.00, as invoiced — and not
    1300.00 spread by SSP (371.43 and 928.57), which left 71.43 unbilled on one line and
    71.43 deferred on the other for ever."""
    # given
    from workflows import fulfilment

    f.product(book, "GONE", price="12.50", on_hand=0)
    book.commit()
    period = {"service_start": "2026-03-01", "service_end": "2026-03-31"}
    placed = order(book, [{"sku": "GONE", "quantity": 2}, {"sku": "INST", "quantity": 1,
                                                            **period},
                          {"sku": "SVC", "quantity": 1, **period}], now=at(2026, 2, 20))
    book.commit()
    # when
    fulfilment.cancel_line(book, order=placed, line_no=1, actor="USALES01",
                           reason="customer cancelled", now=at(2026, 2, 21))
    book.commit()
    ship(book, placed.number, at(2026, 3, 1), [("INST", 1), ("SVC", 1)])
    book.commit()
    # then
    allocated = {ob.sku: ob.allocated_minor
                 for ob, _ in revenue.line_positions(book, date(2026, 3, 31)).values()}
    assert allocated == {"GONE": 0, "INST": 30000, "SVC": 100000}
    march = figures(book, date(2026, 3, 31))
    assert [(march[sku].invoiced, march[sku].recognized, march[sku].deferred,
             march[sku].unbilled) for sku in ("INST", "SVC")] == [
        (30000, 30000, 0, 0), (100000, 100000, 0, 0)]
