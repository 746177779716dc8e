"""Cancelling the rest of a partly shipped order from Slack (`/o2c backorder <order>
cancel-rest <reason>`), through signed requests to the real server: the order's rep (or an
admin) may, another rep may not; the reserved stock is released and the order completes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from models import Order, OrderLine, OrderStatus, Product
from tests.e2e.test_refusals import said
from tests.support import factories as f
from tests.support.slack import ask
from tests.support.timetravel import frozen_at
from workflows import invariants, shipping
from workflows.inputs import ShipmentLineIn

NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)
frozen_time = frozen_at(NOW, tick=True)


def test_the_rep_cancels_the_reserved_rest_of_a_partly_shipped_order(server, slack,
                                                                     standin) -> None:
    api = standin.api
    # given an order of 10 widgets of which 4 shipped: 6 still reserved for it
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "USALES02", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=10)
        number = f.order(s, "C-GLOBEX", lines=[("WID-1", 10)]).number
        shipping.ship_order(s, order_number=number, carrier="UPS", tracking_number="1Z9",
                            shipped_at=NOW, actor="api", now=NOW,
                            lines=[ShipmentLineIn(sku="WID-1", quantity=4)])
    # when another rep tries to cancel the rest: refused, nothing changed
    refused = said(ask(slack, api, "USALES02", f"backorder {number} cancel-rest not wanted"))
    assert refused.startswith(":no_entry_sign:") and "Nothing was changed" in refused
    # when the order's rep does, with a reason
    done = said(ask(slack, api, "USALES01",
                    f"backorder {number} cancel-rest customer no longer wants the rest"))
    # then the 6 reserved widgets are cancelled and released, and the order is complete
    assert f"{number}: cancelled the rest (6 × WID-1); the order is invoiced" in done
    with server.db.read_session() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        line = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)).one()
        product = s.exec(select(Product).where(Product.sku == "WID-1")).one()
        assert order.status == OrderStatus.INVOICED and order.cancelled_minor == 60000
        assert (line.qty_shipped, line.qty_cancelled, line.qty_reserved) == (4, 6, 0)
        assert (product.on_hand, product.reserved) == (6, 0)
        assert invariants.validate_all(s) == []
