"""Revenue in Slack (issue 15), through signed requests: the `/o2c new` modal asks a
service's period (and a subscription's billing) once one is chosen, and refuses it missing
inline, before the ack; `/o2c revenue [YYYY-MM]` answers admins only."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from sqlmodel import select

from models import AuditEvent, Order, OrderLine
from sandbox.blockkit import validate_view
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at
from workflows import orders, shipping
from workflows.inputs import OrderIn, OrderLineIn

TODAY = date(2026, 7, 15)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)
WAIT = 10.0


def slack_order(server) -> Order | None:
    with server.db.read_session() as s:
        return s.exec(select(Order).where(Order.source == "slack")).one_or_none()


@pytest.fixture
def shop(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, credit_limit="1000000.00")
        f.product(s, "WID-1", price="100.00", name="Widget")
        f.product(s, "INST", price="300.00", name="Installation", revenue_type="service")
        f.product(s, "CLOUD", price="1200.00", name="Cloud", revenue_type="subscription")
    return server


def test_the_order_modal_asks_a_service_period_and_a_subscriptions_billing(
        shop, slack, standin) -> None:
    api = standin.api
    # given the modal, with a widget on the first line and a subscription on the second
    slack.slash("USALES01", "new")
    modal = api.wait_for(lambda: api.views_for("USALES01") or None, WAIT, "the modal")[0]
    slack.click("USALES01", modal, "order_product_select", selected="WID-1",
                block_id="order_line_0_product")
    api.wait_for(lambda: "median approved discount" in text_of(api.view(modal["id"])) or
                 "no approved sales" in text_of(api.view(modal["id"])), WAIT, "the hint")
    slack.click("USALES01", modal, "order_product_select", selected="CLOUD",
                block_id="order_line_1_product")
    # then the subscription's period and billing appear under it, not under the widget
    view = api.wait_for(lambda: (lambda v: v if any(
        b.get("block_id") == "order_line_1_billing" for b in v["blocks"]) else None)(
        api.view(modal["id"])), WAIT, "the service period inputs")
    blocks = {b.get("block_id") for b in view["blocks"]}
    assert {"order_line_1_start", "order_line_1_end", "order_line_1_billing"} <= blocks
    assert not {"order_line_0_start", "order_line_0_end"} & blocks
    assert validate_view(view) == []
    # when submitted without the period
    base = {"order_customer": {"order_customer_select": "C-GLOBEX"},
            "order_line_0_quantity": {"order_quantity_input": 2},
            "order_line_1_quantity": {"order_quantity_input": 1}}
    slack.submit_view("USALES01", modal, base, check_required=False)
    # then it is refused under the field
    errors = api.view_errors(modal["id"])
    assert set(errors) == {"order_line_1_start"}
    assert "first day of the period" in errors["order_line_1_start"]
    # when a period of months that are not whole billing periods, then under the end
    slack.submit_view("USALES01", modal, {
        **base, "order_line_1_start": {"order_service_start": date(2026, 8, 1)},
        "order_line_1_end": {"order_service_end": date(2027, 7, 15)},
        "order_line_1_billing": {"order_billing_select": "quarterly"}})
    assert "e.g. 2027-07-31" in api.view_errors(modal["id"])["order_line_1_end"]
    # when corrected
    slack.submit_view("USALES01", modal, {
        "order_line_1_end": {"order_service_end": date(2027, 7, 31)}})
    # then the modal closes, and the order (created after the ack) carries the period and
    # the billing
    assert api.views_for("USALES01") == []
    order = api.wait_for(lambda: slack_order(shop), WAIT, "the order")
    with shop.db.read_session() as s:
        lines = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)
                       .order_by(OrderLine.line_no)).all()
    assert [(li.sku, li.service_start, li.service_end, li.billing) for li in lines] == [
        ("WID-1", None, None, None),
        ("CLOUD", date(2026, 8, 1), date(2027, 7, 31), "quarterly")]


def test_o2c_revenue_answers_admins(shop, slack, standin) -> None:
    """An installation of 300.00 from 1 June to 31 August, delivered 1 June: June recognises
    97.83 (30/92), 202.17 stays deferred (101.09 for July, 101.08 for August)."""
    # given
    with shop.db.transaction() as s:
        placed = orders.create_order(s, OrderIn(
            customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
            lines=[OrderLineIn(sku="INST", quantity=1, service_start="2026-06-01",
                                 service_end="2026-08-31")]), actor="USALES01",
            now=datetime(2026, 5, 20, tzinfo=UTC))
        day = datetime(2026, 6, 1, 9, tzinfo=UTC)
        shipping.ship_order(s, order_number=placed.number, carrier="UPS", tracking_number="1Z",
                            shipped_at=day, actor="USALES01", now=day)
    # when
    june = text_of(ask(slack, standin.api, ADMIN, "revenue 2026-06"))
    default = text_of(ask(slack, standin.api, ADMIN, "revenue"))
    wrong = text_of(ask(slack, standin.api, ADMIN, "revenue june"))
    refused = text_of(ask(slack, standin.api, "USALES01", "revenue"))
    # then
    assert "Revenue 2026-06" in june and "USD 97.83" in june and "USD 202.17" in june
    assert "open (as the books stand now)" in june
    assert "2026-07: USD 101.09 · 2026-08: USD 101.08" in june
    assert default == june  # the last month that has ended
    assert "must be a month like 2026-06" in wrong
    assert "can do this" in refused and "97.83" not in refused
    with shop.db.read_session() as s:
        assert s.exec(select(AuditEvent.actor).where(
            AuditEvent.action == "refused.command.revenue")).all() == ["USALES01"]
