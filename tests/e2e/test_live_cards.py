"""Cards stay true after the fact (issue 13, point 1): an approval card shows the exposure
when the approver decides, warns when it moved since the card was posted, and a requester
gets one DM per decision — through signed requests to the real server and the stand-in."""

from __future__ import annotations

from tests.e2e.test_approvals import WAIT, card, current, order_status, submit, updates_of
from tests.support import factories as f


def test_a_waiting_card_and_its_decision_show_the_exposure_as_it_moved(server, slack,
                                                                       standin) -> None:
    api = standin.api
    # given a new customer (limit USD 5,000) with two orders waiting for credit approval
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-NEW", "Newco", reviewed=False, credit_limit="5000.00")
        f.product(s, "WID-1", price="100.00")
    first = submit(server, qty=20)   # USD 2,000.00
    second = submit(server, qty=45)  # USD 4,500.00
    first_card, second_card = card(standin.api, first), card(standin.api, second)
    assert "USD 4,500.00 / USD 5,000.00 (90% of limit)" in current(api, second_card)
    # when the first order is approved
    slack.click("UCREDIT1", first_card, "approval_approve")
    # then the second card, still waiting, is updated in place with today's exposure
    api.wait_for(lambda: updates_of(api, second_card) or None, WAIT, "the refreshed card")
    waiting = current(api, second_card)
    assert "USD 6,500.00 / USD 5,000.00 (130% of limit)" in waiting
    assert "Moved since posted" in waiting and "(now)" in waiting
    assert "approval_approve" in waiting  # still decidable
    # when the approver decides the second one
    slack.click("UCREDIT1", second_card, "approval_approve")
    api.wait_for(lambda: order_status(server, second) == "approved" or None, WAIT, "approval")
    api.wait_for(lambda: "at decision" in current(api, second_card) or None, WAIT,
                 "the decided card")
    decided = current(api, second_card)
    # then the decided card shows the exposure at the decision and what it was when posted
    assert "USD 6,500.00 / USD 5,000.00 (130% of limit) :warning: (at decision)" in decided
    assert "was USD 4,500.00 / USD 5,000.00 (90% of limit)" in decided
    assert "*Approved* by <@UCREDIT1>" in decided and "approval_approve" not in decided


def test_the_requester_gets_one_dm_per_approval(server, slack, standin) -> None:
    api = standin.api
    # given an order of a new customer waiting for credit approval
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-NEW", "Newco", reviewed=False, credit_limit="5000.00")
        f.product(s, "WID-1", price="100.00")
    number = submit(server, qty=2)
    posted = card(api, number)
    # when it is approved
    slack.click("UCREDIT1", posted, "approval_approve")
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                          if "request for" in m["text"]] or None, WAIT, "the DM")
    server.worker.drain()  # whatever else the decision queued is delivered too
    # then the rep got one message about the decision, saying the order is approved
    about = [m for m in api.dm_messages("USALES01")
             if number in m["text"] and "needs approval" not in m["text"]]
    assert len(about) == 1, [m["text"] for m in about]
    assert "is now approved" in current(api, about[0])


def test_a_backorder_notice_shows_the_choice_and_only_the_buttons_that_still_act(
        server, slack, standin) -> None:
    api = standin.api
    # given an order of 10 widgets with 6 in stock: the rep's DM offers three choices
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=6)
        number = f.order(s, lines=[("WID-1", 10)]).number
    server.deps.notify_outbox()
    dm = api.wait_for(lambda: next((m for m in api.dm_messages("USALES01")
                                    if m["text"] == f"Order {number} is short of stock"),
                                   None), WAIT, "the backorder DM")
    # when the rep chooses Wait
    slack.click("USALES01", dm, "backorder_wait")
    # then the same message says so, and Wait is gone; Ship partial and Cancel still act
    api.wait_for(lambda: "chose to *wait*" in current(api, dm) or None, WAIT, "the update")
    shown = current(api, dm)
    assert "backorder_wait" not in shown
    assert "backorder_ship_partial" in shown and "backorder_cancel_line" in shown
    # when the rep then chooses Ship partial
    slack.click("USALES01", dm, "backorder_ship_partial")
    api.wait_for(lambda: "chose *ship partial*" in current(api, dm) or None, WAIT, "update")
    # then only the short line's Cancel is left
    shown = current(api, dm)
    assert "backorder_wait" not in shown and "backorder_ship_partial" not in shown
    assert "4 of 10 backordered" in shown and "backorder_cancel_line" in shown
    # when the rep cancels the short line, the notice shows it and no button is left
    slack.click("USALES01", dm, "backorder_cancel_line", block_id="backorder_line:1")
    api.wait_for(lambda: "cancelled the short quantity" in current(api, dm) or None, WAIT,
                 "the last update")
    assert "backorder_" not in current(api, dm)
