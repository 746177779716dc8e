"""A line shipped in parts is billed exactly: its shipment invoices add up to the line's net
amount and tax, as one invoice for the whole line would (SPEC §3: rounded once per line;
`workflows.invoicing`, cumulative rounding)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from models import Customer, Invoice, InvoiceLine, Order, OrderLine, money
from tests.support import factories as f
from tests.support.examples import examples
from tests.support.timetravel import frozen_at
from workflows import fulfilment, invariants, orders, revenue, shipping
from workflows.inputs import OrderIn, OrderLineIn, ShipmentLineIn

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
SKUS = itertools.count(1)


def company(session: Session, *, tax_bp: int = 0) -> None:
    f.user(session, "USALES01", "sales")
    customer = f.customer(session, sales_rep="USALES01", credit_limit="100000000.00")
    customer.tax_rate_bp = tax_bp
    session.add(customer)


def order_of(session: Session, *, price: str, quantity: int, discount: str,
             on_hand: int | None = None) -> Order:
    sku = f"P-{next(SKUS)}"
    f.product(session, sku, price=price, on_hand=quantity if on_hand is None else on_hand,
              max_discount="100")
    return orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
        lines=[OrderLineIn(sku=sku, quantity=quantity, discount_pct=discount)]),
        actor="USALES01", now=NOW - timedelta(days=10))


def ship_in_parts(session: Session, order: Order, parts: list[int]) -> list[InvoiceLine]:
    [line] = session.exec(select(OrderLine).where(OrderLine.order_id == order.id)).all()
    for day, part in enumerate(parts, start=1):
        moment = NOW - timedelta(days=10 - day)
        shipping.ship_order(session, order_number=order.number, carrier="UPS",
                            tracking_number=f"1Z{day}", shipped_at=moment, actor="api",
                            now=moment, lines=[ShipmentLineIn(sku=line.sku, quantity=part)])
    return list(session.exec(select(InvoiceLine).join(Invoice).where(
        Invoice.order_id == order.id).order_by(Invoice.id)))


def test_a_line_shipped_one_unit_at_a_time_bills_its_net_to_the_cent(session) -> None:
    # given 3 x 10.05 at 15 % off: a line of 30.15 x 0.85 = 25.6275 -> 25.63
    company(session)
    order = order_of(session, price="10.05", quantity=3, discount="15")
    # when it ships one unit at a time
    billed = ship_in_parts(session, order, [1, 1, 1])
    # then the three invoices bill 25.63 (8.54 + 8.55 + 8.54), not 3 x 8.54 = 25.62
    assert [b.line_total_minor for b in billed] == [854, 855, 854]
    assert sum(b.line_total_minor for b in billed) == order.total_minor == 2_563
    # and each invoice's discount is what its units' gross loses to reach that net
    assert [b.quantity * b.unit_price_minor - b.line_total_minor for b in billed] == [
        151, 150, 151]
    # and revenue, which recognises 25.63, finds nothing unbilled
    [(_, figures)] = revenue.line_positions(session, date(2026, 3, 31)).values()
    assert (figures.recognized, figures.invoiced, figures.unbilled) == (2_563, 2_563, 0)
    assert invariants.validate_all(session) == []


def test_the_tax_of_a_line_shipped_in_parts_is_the_tax_of_the_whole_line(session) -> None:
    # given tax at 7.25 % on a line of 3 x 0.99 (2.97: tax 0.215... -> 0.22)
    company(session, tax_bp=725)
    order = order_of(session, price="0.99", quantity=3, discount="0")
    # when it ships one unit at a time (alone, each 0.99 would carry 0.07: 0.21 in all)
    billed = ship_in_parts(session, order, [1, 1, 1])
    # then the taxes add up to the line's 0.22
    assert sum(b.tax_minor for b in billed) == money.percent_of(297, 725, "USD") == 22
    invoices = session.exec(select(Invoice).where(Invoice.order_id == order.id)).all()
    assert sum(i.total_minor for i in invoices) == 297 + 22
    assert invariants.validate_all(session) == []


def tax_at(session: Session, tax_bp: int) -> None:
    """The company (once per Hypothesis run), its customer taxed at `tax_bp`."""
    if session.exec(select(Customer)).first() is None:
        company(session)
    customer = session.exec(select(Customer)).one()
    customer.tax_rate_bp = tax_bp
    session.add(customer)


@st.composite
def split_lines(draw):
    quantity = draw(st.integers(min_value=1, max_value=12))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=quantity - 1), max_size=5))
                  ) if quantity > 1 else []
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, quantity], strict=True)]
    price = draw(st.integers(min_value=1, max_value=10_000_00))
    discount = draw(st.integers(min_value=0, max_value=9_999))  # basis points
    tax_bp = draw(st.integers(min_value=0, max_value=2_500))
    return quantity, parts, price, discount, tax_bp


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=split_lines())
def test_any_split_of_a_line_over_shipments_bills_exactly_its_net_and_tax(session, case) -> None:
    quantity, parts, price, discount_bp, tax_bp = case
    # given an order line of any price, discount and tax rate
    tax_at(session, tax_bp)
    order = order_of(session, price=str(money.from_minor(price, "USD")), quantity=quantity,
                     discount=str(money.from_minor(discount_bp, "USD")))
    # when its quantity ships in any number of parts
    billed = ship_in_parts(session, order, parts)
    # then the parts bill exactly the line's net and its tax, each part nothing negative
    net = money.line_total(quantity, price, discount_bp, "USD")
    assert [b.quantity for b in billed] == parts
    assert sum(b.line_total_minor for b in billed) == net
    assert sum(b.tax_minor for b in billed) == money.percent_of(net, tax_bp, "USD")
    assert all(b.line_total_minor >= 0 and b.tax_minor >= 0 for b in billed)


def billed_of(session: Session, order: Order) -> list[tuple[int, int]]:
    """(net, tax) of each invoice of the order, in order."""
    return [(i.subtotal_minor - i.discount_minor, i.tax_minor) for i in session.exec(
        select(Invoice).where(Invoice.order_id == order.id).order_by(Invoice.id))]


def test_cancelling_part_of_a_line_between_its_shipments_still_bills_its_tax_exactly(
        session) -> None:
    # given 3 x 2.05 at 15 % off with 10 % tax (5.2275 -> 5.23), 2 in stock, 1 short
    company(session, tax_bp=1000)
    order = order_of(session, price="2.05", quantity=3, discount="15", on_hand=2)
    # when one ships, the short one is cancelled and the other one ships
    ship_in_parts(session, order, [1])
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                           reason="customer takes what is in stock")
    ship_in_parts(session, order, [1])
    # then the two invoices bill the 2 units' line, 4.10 x 0.85 = 3.485 -> 3.49, and its
    # tax 0.35 (not 0.17 + 0.17 = 0.34): exactly what the order says is still owed
    assert billed_of(session, order) == [(174, 17), (175, 18)]
    assert order.total_minor - order.cancelled_minor == 349 + 35
    assert invariants.validate_all(session) == []


def test_cancelling_the_short_rest_of_a_shipped_line_leaves_its_invoice_exact(session) -> None:
    # given 2 x 1.00 at 14.57 % off (1.7086 -> 1.71) with 10 % tax, 1 in stock, 1 short
    company(session, tax_bp=1000)
    order = order_of(session, price="1.00", quantity=2, discount="14.57", on_hand=1)
    # when the one in stock ships and the short one is cancelled
    ship_in_parts(session, order, [1])
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                           reason="customer takes what is in stock")
    # then the invoice bills the 1 unit's line, 0.8543 -> 0.85 (not half of 1.71 = 0.86),
    # tax 0.09: exactly what the order says is owed, and revenue finds nothing deferred
    assert order.status == "invoiced"
    assert billed_of(session, order) == [(85, 9)]
    assert order.total_minor - order.cancelled_minor == 85 + 9
    [(_, figures)] = revenue.line_positions(session, date(2026, 3, 31)).values()
    assert (figures.recognized, figures.invoiced) == (85, 85)
    assert invariants.validate_all(session) == []


@st.composite
def short_lines(draw):
    quantity = draw(st.integers(min_value=2, max_value=12))
    on_hand = draw(st.integers(min_value=1, max_value=quantity - 1))
    before = draw(st.integers(min_value=1, max_value=on_hand))  # shipped before the cancel
    price = draw(st.integers(min_value=1, max_value=10_000_00))
    discount = draw(st.integers(min_value=0, max_value=9_999))  # basis points
    tax_bp = draw(st.integers(min_value=0, max_value=2_500))
    return quantity, on_hand, before, price, discount, tax_bp


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=short_lines())
@example(case=(2, 1, 1, 100, 1457, 1000))  # 1 of 2 x 1.00 at 14.57 % off: 0.85, not 0.86
@example(case=(3, 2, 1, 205, 1500, 1000))  # 2 of 3 x 2.05 at 15 % off: tax 0.35, not 0.34
def test_a_line_whose_short_rest_is_cancelled_bills_exactly_what_the_order_still_owes(
        session, case) -> None:
    quantity, on_hand, before, price, discount_bp, tax_bp = case
    # given a line of any price, discount and tax rate, short of stock
    tax_at(session, tax_bp)
    order = order_of(session, price=str(money.from_minor(price, "USD")), quantity=quantity,
                     discount=str(money.from_minor(discount_bp, "USD")), on_hand=on_hand)
    # when part ships, the short rest is cancelled, and what is left in stock ships
    ship_in_parts(session, order, [before])
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="short")
    if on_hand > before:
        ship_in_parts(session, order, [on_hand - before])
    # then the invoices bill the line of the units taken, rounded once, and its tax: what
    # the order says is owed
    net = money.line_total(on_hand, price, discount_bp, "USD")
    billed = billed_of(session, order)
    assert sum(n for n, _ in billed) == net
    assert sum(t for _, t in billed) == money.percent_of(net, tax_bp, "USD")
    assert sum(n + t for n, t in billed) == order.total_minor - order.cancelled_minor
