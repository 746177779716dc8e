"""The order modal's builder: a service's period inputs under its line, and entry errors under
the input they belong to (under the product while the view does not show that input yet)."""

from __future__ import annotations

from blocks.order_entry import field_errors, order_modal
from sandbox.blockkit import validate_view


def test_period_inputs_appear_under_services_and_billing_under_subscriptions() -> None:
    # when
    view = order_modal(channel="C1", services={1: "service", 3: "subscription"})
    # then
    blocks = [b.get("block_id") for b in view["blocks"]]
    assert {"order_line_1_start", "order_line_1_end", "order_line_3_start",
            "order_line_3_end", "order_line_3_billing"} <= set(blocks)
    assert "order_line_1_billing" not in blocks and "order_line_0_start" not in blocks
    assert blocks.index("order_line_1_end") < blocks.index("order_line_2_product")
    assert validate_view(view) == []


def test_an_error_goes_under_its_input_or_its_product_when_not_shown() -> None:
    # given a view showing the period of line 1 only
    shown = {b.get("block_id") for b in order_modal(channel=None,
                                                     services={1: "service"})["blocks"]}
    problems = [("lines[1].service_start", "give the first day"),
                ("lines[2].service_end", "give the last day"),
                ("lines[2].service_start", "give the first day"),
                ("total", "too large")]
    # when
    errors = field_errors(problems, shown)
    # then: line 2's period errors land on its product (first one wins), the rest on Customer
    assert errors == {"order_line_1_start": "Give the first day",
                      "order_line_2_product": "Give the last day",
                      "order_customer": "Too large"}
