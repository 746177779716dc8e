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


def test_a_waiting_card_shows_the_exposure_a_payment_moved_once(server, standin, api) -> None:
    std = standin.api
    # given a new customer (limit USD 5,000) owing USD 3,000 on an invoice, and an order of
    # USD 4,500 waiting for credit approval: exposure USD 7,500
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-NEW", "Newco", reviewed=False, credit_limit="5000.00")
        f.customer(s, "C-OTHER", "Otherco")
        f.product(s, "WID-1", price="100.00")
        f.invoice(s, "INV-LC-1", "C-NEW", total="3000.00")
        f.invoice(s, "INV-LC-2", "C-OTHER", total="800.00")
    number = submit(server, qty=45)
    posted = card(std, number)
    assert "USD 7,500.00 / USD 5,000.00 (150% of limit)" in current(std, posted)
    # when USD 2,000 is paid against the invoice through the REST API
    payment = {"amount": "2000.00", "currency": "USD", "received_at": "2026-11-20T09:00:00Z",
               "reference": "INV-LC-1", "customer": "C-NEW", "external_id": "BANK-LC-1"}
    answer = api.post("/payments", json=payment, headers={"Idempotency-Key": "lc-1"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "applied"
    # then the waiting card is updated in place with the exposure as it is now
    std.wait_for(lambda: updates_of(std, posted) or None, WAIT, "the refreshed card")
    shown = current(std, posted)
    assert "USD 5,500.00 / USD 5,000.00 (110% of limit)" in shown and "(now)" in shown
    assert "Moved since posted" in shown and "was USD 7,500.00" in shown
    assert "approval_approve" in shown  # still decidable
    # when the same request is retried, and another customer's invoice is paid
    again = api.post("/payments", json=payment, headers={"Idempotency-Key": "lc-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    other = api.post("/payments", json={**payment, "reference": "INV-LC-2", "amount": "800.00",
                                        "customer": "C-OTHER", "external_id": "BANK-LC-2"})
    assert other.status_code == 201, other.text
    server.worker.drain()
    # then the card was updated once: neither the retry nor another customer's money moved it
    assert len(updates_of(std, posted)) == 1
