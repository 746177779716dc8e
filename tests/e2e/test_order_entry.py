"""`/o2c new`: the order-entry modal through signed requests (issue 3, acceptance 5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from models import AuditEvent, Order, UserRole
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)

WAIT = 10.0


@pytest.fixture
def shop(server):
    now = datetime.combine(TODAY, time(12), UTC)
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.customer(s, "C-INITECH", "Initech")
        f.product(s, "WID-1", price="100.00", name="Widget")
        f.product(s, "GADGET", price="12.50", name="Gadget")
        # approved sales of WID-1 in the last 90 days at 5 %, 10 % and 12 % ...
        for discount in ("5", "10", "12"):
            f.order(s, lines=[("WID-1", 1)], discount=discount, now=now - timedelta(days=10))
        # ... but not these: too old, and still waiting for a discount approval
        f.order(s, lines=[("WID-1", 1)], discount="14", now=now - timedelta(days=120))
        f.order(s, lines=[("WID-1", 1)], discount="40", now=now - timedelta(days=1))
    return server


def open_modal(slack, api, user: str = "USALES01") -> dict:
    response = slack.slash(user, "new")
    assert response.status_code == 200
    return api.wait_for(lambda: api.views_for(user) or None, WAIT, "the order modal")[0]


def slack_order(server) -> Order | None:
    with server.db.read_session() as s:
        return s.exec(select(Order).where(Order.source == "slack")).one_or_none()


def line(row: int, product: str | None = None, quantity: object = None,
         discount: object = None) -> dict:
    return {f"order_line_{row}_product": {"order_product_select": product},
            f"order_line_{row}_quantity": {"order_quantity_input": quantity},
            f"order_line_{row}_discount": {"order_discount_input": discount}}


def test_modal_searches_hints_and_rejects_bad_input_inline(shop, slack, standin) -> None:
    api = standin.api
    # when the rep types /o2c new
    modal = open_modal(slack, api)
    assert modal["callback_id"] == "order_entry_modal"
    # then the customer select searches fuzzily
    found = slack.block_suggestion("USALES01", modal, "order_customer_select", "glbex")
    assert [o["value"] for o in found.json()["options"]][0] == "C-GLOBEX"
    products = slack.block_suggestion("USALES01", modal, "order_product_select", "gadg")
    assert [o["value"] for o in products.json()["options"]] == ["GADGET"]
    # when a product is chosen, then its pricing hint appears (median of 5, 10, 12 = 10 %)
    slack.click("USALES01", modal, "order_product_select", selected="WID-1",
                block_id="order_line_0_product")
    api.wait_for(lambda: "median approved discount" in text_of(api.view(modal["id"])), WAIT,
                 "the pricing hint")
    hint = text_of(api.view(modal["id"]))
    assert "*10%* over 3 line(s)" in hint and "above 15% needs a discount approval" in hint
    # when the form is submitted with a missing customer, an unknown SKU, quantity 0 and a
    # 150 % discount
    values = {"order_customer": {"order_customer_select": None},
              **line(0, "NOPE-9", 0), **line(1, "WID-1", 2, "150")}
    slack.submit_view("USALES01", modal, values, check_required=False)
    # then each error shows under its field and the modal stays open
    errors = api.view_errors(modal["id"])
    assert set(errors) == {"order_customer", "order_line_0_product", "order_line_0_quantity",
                           "order_line_1_discount"}
    assert "Unknown SKU" in errors["order_line_0_product"]
    assert "above 0" in errors["order_line_0_quantity"]
    assert "between 0 and 100" in errors["order_line_1_discount"]
    assert [v["id"] for v in api.views_for("USALES01")] == [modal["id"]]
    # and a negative quantity is refused too
    slack.submit_view("USALES01", modal, {"order_customer": {
        "order_customer_select": "C-GLOBEX"}, **line(0, "WID-1", -3), **line(1)})
    assert set(api.view_errors(modal["id"])) == {"order_line_0_quantity"}
    with shop.db.read_session() as s:
        assert s.exec(select(Order).where(Order.source == "slack")).all() == []
    # when it is corrected
    slack.submit_view("USALES01", modal, {**line(0, "WID-1", 3, "10"), **line(2, "GADGET", 4)})
    # then the modal closes, the order is created from Slack (after the ack), and the rep is
    # told
    assert api.views_for("USALES01") == []
    order = api.wait_for(lambda: slack_order(shop), WAIT, "the order")
    assert (order.sales_rep_id, order.status) == ("USALES01", "approved")
    assert order.total_minor == 27000 + 5000  # 3 x 100.00 less 10 %, plus 4 x 12.50
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01") if order.number in m["text"]]
                 or None, WAIT, "the rep's DM")
    confirmation = api.wait_for(lambda: [e for e in api.ephemerals("USALES01")
                                         if order.number in text_of(e)] or None, WAIT,
                                "the confirmation")
    assert "approved" in text_of(confirmation[0])


def test_modal_order_above_the_discount_maximum_waits_for_approval(shop, slack,
                                                                   standin) -> None:
    api = standin.api
    modal = open_modal(slack, api)
    slack.submit_view("USALES01", modal, {"order_customer": {
        "order_customer_select": "C-INITECH"}, **line(0, "WID-1", 1, "30")})
    assert api.views_for("USALES01") == []
    card = api.wait_for(lambda: api.messages("CAPPROVAL") or None, WAIT, "the discount card")
    assert card[0]["text"].startswith("Discount approval")
    assert api.wait_for(lambda: api.messages("CALERTS01") or None, WAIT, "the alert")


def test_modals_selects_show_nothing_once_the_sales_role_is_gone(shop, slack, standin) -> None:
    api = standin.api
    # given a rep's order modal, whose selects find customers and products
    modal = open_modal(slack, api)
    found = slack.block_suggestion("USALES01", modal, "order_customer_select", "glbex")
    products = slack.block_suggestion("USALES01", modal, "order_product_select", "gadg")
    assert found.json()["options"][0]["value"] == "C-GLOBEX"
    assert [o["value"] for o in products.json()["options"]] == ["GADGET"]
    # when their role is taken away while the modal is still open
    with shop.db.transaction() as s:
        s.exec(sa.delete(UserRole).where(UserRole.user_id == "USALES01"))
    found = slack.block_suggestion("USALES01", modal, "order_customer_select", "glbex")
    products = slack.block_suggestion("USALES01", modal, "order_product_select", "gadg")
    # then the selects offer nothing more: no customers, no products or prices
    assert (found.status_code, found.json()) == (200, {"options": []})
    assert (products.status_code, products.json()) == (200, {"options": []})
    # and picking a product shows no pricing hint (median discounts) any more
    slack.click("USALES01", modal, "order_product_select", selected="WID-1",
                block_id="order_line_0_product")

    def refusals() -> list[AuditEvent]:
        with shop.db.read_session() as s:
            return s.exec(select(AuditEvent).where(AuditEvent.action.startswith("refused."))
                          .order_by(AuditEvent.id)).all()
    api.wait_for(lambda: len(refusals()) == 3 or None, WAIT, "the pick's refusal")
    assert api.calls_to("views.update") == []
    # and each refusal is audited, as the submission's own would be
    assert [(e.actor, e.action, e.entity_type, e.entity_id) for e in refusals()] == [
        ("USALES01", "refused.order.create", "order", "new")] * 3


def test_new_order_needs_the_sales_role(shop, slack, standin) -> None:
    # when someone without the sales role asks for the modal
    answer = ask(slack, standin.api, "UNOBODY1", "new")
    # then they are told why, and no modal opens
    assert "sales" in text_of(answer)
    assert standin.api.views_for("UNOBODY1") == []
    assert standin.api.calls_to("views.open") == []
