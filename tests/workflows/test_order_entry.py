"""The `/o2c new` form's workflow: errors point at modal rows; the pricing hint's median."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows.errors import PermissionDenied, ValidationFailed
from workflows.order_entry import Entry, EntryLine, create_from_entry, validate_entry
from workflows.pricing import median_approved_discount, pricing_hint, search_products

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def setup_company(session) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UNOBODY1")
    f.customer(session)
    f.product(session, "WID-1", price="100.00", name="Widget")
    f.product(session, "EU-1", price="10.00", currency="EUR", name="Euro thing")


def test_errors_name_the_modal_row_and_blank_rows_are_skipped(session) -> None:
    setup_company(session)
    entry = Entry(customer="C-GLOBEX", lines=[
        EntryLine(0, "WID-1", "2"), EntryLine(1), EntryLine(2, "NOPE", "1"),
        EntryLine(3, "WID-1", "1.5", "101"), EntryLine(4, "EU-1", "1")])
    with pytest.raises(ValidationFailed) as caught:
        create_from_entry(session, entry, rep="USALES01", now=NOW)
    assert [(e.field, e.detail.split(" ")[0]) for e in caught.value.errors] == [
        ("lines[2].sku", "unknown"), ("lines[3].quantity", "must"),
        ("lines[3].discount_pct", "must"), ("lines[4].sku", "priced")]


def test_missing_customer_and_empty_form(session) -> None:
    setup_company(session)
    with pytest.raises(ValidationFailed) as caught:
        create_from_entry(session, Entry(customer=None, lines=[EntryLine(0), EntryLine(1)]),
                          rep="USALES01", now=NOW)
    assert [e.field for e in caught.value.errors] == ["customer", "lines[0].sku"]


def test_a_good_form_creates_a_slack_order_and_needs_the_sales_role(session) -> None:
    setup_company(session)
    entry = Entry(customer="C-GLOBEX", lines=[EntryLine(0), EntryLine(1, "WID-1", " 3 ", "5")],
                  notes="rush")
    order = create_from_entry(session, entry, rep="USALES01", now=NOW)
    assert (order.source, order.sales_rep_id, order.notes) == ("slack", "USALES01", "rush")
    assert order.total_minor == 28500
    with pytest.raises(PermissionDenied):
        create_from_entry(session, entry, rep="UNOBODY1", now=NOW)


def test_service_periods_are_checked_before_the_ack_with_the_other_fields(session) -> None:
    # given a service and a subscription next to a widget
    setup_company(session)
    f.product(session, "INST", price="300.00", revenue_type="service")
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    entry = Entry(customer="C-GLOBEX", lines=[
        EntryLine(0, "WID-1", "0"),
        EntryLine(1, "INST", "1"),
        EntryLine(2, "CLOUD", "1", service_start="2026-08-01", service_end="2027-07-15",
                  billing="quarterly"),
        EntryLine(3, "WID-1", "1", service_start="2026-08-01")])
    # when checked as the modal's ack does (reads only)
    with pytest.raises(ValidationFailed) as caught:
        validate_entry(session, entry, rep="USALES01")
    # then every error at once, each on its row and field
    assert [(e.field, e.detail.split(" ")[0]) for e in caught.value.errors] == [
        ("lines[0].quantity", "must"), ("lines[1].service_start", "INST"),
        ("lines[2].service_end", "a"), ("lines[3].service_start", "WID-1")]
    # and a good period passes, carried to the order
    entry.lines = [EntryLine(2, "CLOUD", "1", service_start="2026-08-01",
                             service_end="2027-07-31", billing="quarterly")]
    data = validate_entry(session, entry, rep="USALES01")
    assert [(li.service_start, li.service_end, li.billing) for li in data.lines] == [
        (date(2026, 8, 1), date(2027, 7, 31), "quarterly")]  # parsed by inputs.OrderLineIn


def test_median_approved_discount_over_90_days(session) -> None:
    # given approved lines at 2 %, 4 %, 10 %, 12.5 % inside the window, and lines that do
    # not count: outside the window, and an order still waiting for its discount approval
    setup_company(session)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    for discount, days_ago in (("2", 1), ("4", 30), ("10", 60), ("12.5", 89), ("1", 91),
                               ("50", 2)):
        f.order(session, lines=[("WID-1", 1)], discount=discount,
                now=now - timedelta(days=days_ago))
    # when
    median, count = median_approved_discount(session, 1, as_of=now.date())
    # then: median of 2, 4, 10, 12.5 = 7 (Decimal, no float)
    assert (median, count) == (Decimal("7.00"), 4)
    hint = pricing_hint(session, sku="WID-1", as_of=now.date())
    assert hint.max_discount_pct == Decimal("15.00") and hint.sample_size == 4
    assert median_approved_discount(session, 1, as_of=date(2020, 1, 1)) == (None, 0)
    assert pricing_hint(session, sku="NOPE", as_of=now.date()) is None


def test_product_search(session) -> None:
    setup_company(session)
    assert [p.sku for p in search_products(session, "wid")] == ["WID-1"]
    assert [p.sku for p in search_products(session, "Widgte")] == ["WID-1"]  # typo
    assert {p.sku for p in search_products(session, "")} == {"WID-1", "EU-1"}


def test_quantities_and_discounts_beyond_the_bounds_are_refused_on_their_row(session) -> None:
    # given
    setup_company(session)
    entry = Entry(customer="C-GLOBEX", lines=[
        EntryLine(0, "WID-1", "１２３"), EntryLine(1, "WID-1", "1000000001"),
        EntryLine(2, "WID-1", "9" * 40), EntryLine(3, "WID-1", "1", "1e1")])
    # when
    with pytest.raises(ValidationFailed) as caught:
        create_from_entry(session, entry, rep="USALES01", now=NOW)
    # then
    assert [e.field for e in caught.value.errors] == [
        "lines[0].quantity", "lines[1].quantity", "lines[2].quantity", "lines[3].discount_pct"]
    assert "1,000,000,000" in caught.value.errors[1].detail


def test_a_line_worth_more_than_the_amount_bound_is_refused_on_its_row(session) -> None:
    # given 1,000,000,000 x USD 20,000.00 on the modal's third row
    setup_company(session)
    f.product(session, "TURBINE", price="20000.00")
    entry = Entry(customer="C-GLOBEX", lines=[EntryLine(0), EntryLine(1),
                                              EntryLine(2, "TURBINE", "1000000000")])
    # when
    with pytest.raises(ValidationFailed) as caught:
        create_from_entry(session, entry, rep="USALES01", now=NOW)
    # then
    assert [e.field for e in caught.value.errors] == ["lines[2].quantity"]
    assert "maximum amount" in caught.value.errors[0].detail
