"""A won CRM deal becoming an order (`workflows.crm.import_deal`): what the deal's line items
say is checked like any other input, so a deal that cannot be an order is refused by name
(the connector then shows it in the AR channel and on the deal) instead of crashing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from models import CrmDeal, Order
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import crm
from workflows.errors import ValidationFailed

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def deal(quantity: str) -> crm.DealIn:
    return crm.DealIn(provider="hubspot", deal_id="5001", name="Globex renewal",
                      customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
                      lines=[crm.DealLine(sku="WID-1", quantity=quantity, price="100.00")])


@pytest.mark.parametrize("quantity", [
    "Infinity", "-Infinity", "sNaN", "NaN",  # not finite
    "\uff12", "\u0661\u0662", "1_0",  # digits Decimal() takes but our amounts refuse
    "2.5", "", "two",
])
def test_a_quantity_that_is_not_a_whole_number_is_refused_by_name(db, quantity) -> None:
    # given
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00")
    # when / then
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        crm.import_deal(s, deal(quantity), now=NOW)
    assert [e.field for e in refused.value.errors] == ["lines[0].quantity"]
    with db.read_session() as s:
        assert s.exec(select(Order)).all() == [] and s.exec(select(CrmDeal)).all() == []


@pytest.mark.parametrize(("quantity", "expected"), [("3", 3), ("3.0", 3), (" 4 ", 4)])
def test_a_whole_quantity_in_any_decimal_form_is_taken(db, quantity, expected) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00")
    with db.transaction() as s:
        link, created = crm.import_deal(s, deal(quantity), now=NOW)
    with db.read_session() as s:
        order = s.get(Order, link.order_id)
        assert created and order.total_minor == expected * 10_000


def _priced(s, *lines: crm.DealLine, currency: str = "USD") -> Order:
    link, _ = crm.import_deal(s, crm.DealIn(
        provider="hubspot", deal_id="5001", name="Globex renewal", customer="C-GLOBEX",
        sales_rep="USALES01", currency=currency, lines=list(lines)), now=NOW)
    return s.get(Order, link.order_id)


def _line_prices(s, order: Order) -> list[tuple[int, int, int]]:
    from models import OrderLine

    return [(li.unit_price_minor, li.discount_bp, li.line_total_minor) for li in s.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.line_no))]


@pytest.mark.parametrize(("line", "expected"), [
    # the deal sells above list: the order bills the deal's price, not the list price
    (crm.DealLine(sku="WID-1", quantity="2", price="120.00"), [(12_000, 0, 24_000)]),
    # below list *and* a percentage: both, as HubSpot computes the line (80.00 less 10 %)
    (crm.DealLine(sku="WID-1", quantity="1", price="80.00", discount_pct="10"),
     [(8_000, 1_000, 7_200)]),
    # a price a percentage can't express to the cent: the deal's own price, exactly
    (crm.DealLine(sku="WID-3", quantity="3", price="333.33"), [(33_333, 0, 99_999)]),
    # HubSpot's unit discount (an amount per unit) comes off the unit price
    (crm.DealLine(sku="WID-1", quantity="2", price="100.00", discount="12.50"),
     [(8_750, 0, 17_500)]),
    # numbers as HubSpot's JSON may write them
    (crm.DealLine(sku="WID-1", quantity="1", price="1e2"), [(10_000, 0, 10_000)]),
    (crm.DealLine(sku="WID-1", quantity="1", price="95.5"), [(9_550, 0, 9_550)]),
])
def test_a_deal_line_is_billed_at_the_deal_price_to_the_cent(db, line, expected) -> None:
    # given list prices of 100.00 and 999.99
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00", max_discount="50")
        f.product(s, "WID-3", price="999.99", max_discount="80")
    # when the won deal is imported
    with db.transaction() as s:
        order = _priced(s, line)
        # then its line is what the deal sold
        assert _line_prices(s, order) == expected


@pytest.mark.parametrize(("price", "discount", "field", "says"), [
    ("99.999", None, "unit_price", "decimal places"),  # more decimals than USD: not rounded
    ("NaN", None, "unit_price", "not"),
    ("Infinity", None, "unit_price", "not"),
    ("-5.00", None, "unit_price", "negative"),
    ("1e30", None, "unit_price", ""),
    ("100.00", "150.00", "discount", "more than"),  # a unit discount above the price
    ("100.00", "0.001", "discount", "decimal places"),
])
def test_a_deal_price_that_is_not_an_amount_is_refused_not_rounded(
        db, price, discount, field, says) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00")
    with pytest.raises(ValidationFailed) as refused, db.transaction() as s:
        _priced(s, crm.DealLine(sku="WID-1", quantity="1", price=price, discount=discount))
    [error] = refused.value.errors
    assert error.field == f"lines[0].{field}" and says in error.detail
    with db.read_session() as s:
        assert s.exec(select(Order)).all() == []


def test_a_deal_in_the_customers_currency_takes_a_product_listed_in_another(db) -> None:
    # given a EUR customer and a product listed in USD
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", currency="EUR")
        f.product(s, "WID-1", price="100.00", currency="USD")
    # when a EUR deal sells it at 90.00
    with db.transaction() as s:
        order = _priced(s, crm.DealLine(sku="WID-1", quantity="2", price="90.00"),
                        currency="EUR")
        # then the order bills the deal's EUR price
        assert (order.currency, order.total_minor) == ("EUR", 18_000)


def _ar_notes(s) -> list[str]:
    from models import OutboxMessage

    return [m.payload["context"]["text"] for m in s.exec(select(OutboxMessage))
            if m.transport == "slack" and m.payload.get("channel") == "ar"]


def test_a_deal_won_again_with_other_lines_is_reported_not_ignored(db) -> None:
    from models import AuditEvent

    # given a won deal imported as an order of 2 x WID-1 at 100.00
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00")
    with db.transaction() as s:
        first, _ = _priced(s, crm.DealLine(sku="WID-1", quantity="2", price="100.00")), None
    # when it is won again unchanged, then with 3 units at 90.00 (edited after it was won)
    with db.transaction() as s:
        link, created = crm.import_deal(s, deal("2"), now=NOW)
        assert not created and _ar_notes(s) == []
    changed = deal("3")
    changed.lines[0].price = "90.00"
    for _ in range(2):  # and that event delivered twice
        with db.transaction() as s:
            link, created = crm.import_deal(s, changed, now=NOW)
            assert not created and link.order_id == first.id
    # then the order stays as it was, and AR is told once what differs
    with db.transaction() as s:
        assert s.get(Order, first.id).total_minor == 20_000
        assert len(s.exec(select(Order)).all()) == 1
        [note] = _ar_notes(s)
        assert first.number in note and "5001" in note
        assert "WID-1" in note and "3" in note and "90.00" in note
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "crm.deal_changed")).all()
        assert event.entity_id == str(first.id)


def test_the_same_deal_imported_by_two_workers_at_once_makes_one_order(db) -> None:
    import threading

    from sqlalchemy.exc import IntegrityError

    # given a won deal, its import queued twice (two deliveries) and run by two workers
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, "WID-1", price="100.00")
    # PostgreSQL: both look for the deal's link before either has written it. SQLite: write
    # transactions queue on the database lock (a barrier would wait for ever).
    both_looked = threading.Barrier(2) if db.is_postgres else None
    outcomes, errors = [], []

    def work() -> None:
        try:
            with db.transaction() as s:
                if both_looked:
                    assert s.exec(select(CrmDeal)).all() == []
                    both_looked.wait(10)
                outcomes.append(crm.import_deal(s, deal("2"), now=NOW)[1])
        except IntegrityError:  # the twin's claim won (the connector answers "imported")
            outcomes.append("lost the race")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # then one order, one link: the database's unique key decided
    assert errors == []
    assert sorted(map(str, outcomes)) in (["True", "lost the race"], ["False", "True"])
    with db.read_session() as s:
        [order] = s.exec(select(Order)).all()
        [link] = s.exec(select(CrmDeal)).all()
        assert (link.order_id, link.status, order.total_minor) == (order.id, "imported", 20_000)
