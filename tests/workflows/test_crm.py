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
