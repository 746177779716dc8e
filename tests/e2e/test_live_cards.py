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
