"""Backorders through signed requests to the real server and the Slack stand-in (SPEC §3
"Fulfilment"): the rep's DM carries Ship partial · Wait · Cancel short line, billing is told,
roles are re-checked on the server, and restocking through the REST API moves the order on."""

from __future__ import annotations

import json
import threading

import pytest
from sqlmodel import select

from models import AuditEvent, Order, OrderLine, OutboxMessage
from sandbox.driver import FORM
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ephemeral_texts, prepared_click, text_of

WAIT = 10.0


@pytest.fixture
def shop(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "USALES02", "sales")
        f.customer(s, "C-GLOBEX", "Globex <!channel> Corp", sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=6)
    return server


def short_order(server, qty: int = 10) -> str:
    with server.db.transaction() as s:
        order = f.order(s, lines=[("WID-1", qty)])
    server.deps.notify_outbox()
    return order.number


def notice(api, number: str) -> dict:
    """The backorder notice in the rep's DM."""
    return api.wait_for(lambda: next((m for m in api.dm_messages("USALES01")
                                      if m["text"] == f"Order {number} is short of stock"),
                                     None), WAIT, "the backorder DM")


def in_ar(api, words: str) -> dict:
    return api.wait_for(lambda: next((m for m in api.messages("CAR000001")
                                      if words in text_of(m)), None), WAIT, f"'{words}' in #ar")


def answers(api, user: str, count: int) -> list[str]:
    api.wait_for(lambda: len(api.ephemerals(user)) >= count, WAIT, f"{count} answer(s)")
    return ephemeral_texts(api, user)


def order_and_line(server, number: str) -> tuple[Order, OrderLine]:
    with server.db.read_session() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        return order, s.exec(select(OrderLine).where(OrderLine.order_id == order.id)).one()


def audited(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def test_rep_cancels_the_short_line_from_the_dm_and_billing_is_told(shop, slack, standin,
                                                                    api) -> None:
    sandbox = standin.api
    # given an order of 10 widgets with 6 in stock
    number = short_order(shop)
    # then the rep's DM lists the short line with the three choices
    dm = notice(sandbox, number)
    shown = text_of(dm)
    for expected in ("Line 1 `WID-1` — 4 of 10 backordered, 6 reserved",
                     "backorder_ship_partial", "backorder_wait", "backorder_cancel_line",
                     "Globex &lt;!channel&gt; Corp"):
        assert expected in shown, expected
    assert "<!channel>" not in shown
    # and billing is told in #ar, without buttons
    billing = in_ar(sandbox, "Billing: Order")
    assert "4 of 10 backordered" in text_of(billing)
    assert "backorder_" not in text_of(billing)
    # when another rep clicks Cancel short line (a forged or forwarded click)
    slack.click("USALES02", dm, "backorder_cancel_line", block_id="backorder_line:1")
    # then the server refuses it, says so only to them, audits it, and nothing changes
    assert "Only the sales rep of" in answers(sandbox, "USALES02", 1)[0]
    [refused] = audited(shop, "refused.order.backorder_choice.cancel_line")
    assert refused.actor == "USALES02"
    assert order_and_line(shop, number)[1].qty_cancelled == 0
    # when the rep clicks it (a second copy of the click is kept, as from another window)
    stale = prepared_click(slack, "USALES01", dm, "backorder_cancel_line",
                           block_id="backorder_line:1")
    slack.click("USALES01", dm, "backorder_cancel_line", block_id="backorder_line:1")
    # then the 4 short units are cancelled and the order is approved to ship the 6
    answer = answers(sandbox, "USALES01", 1)[0]
    assert "Cancelled 4 × WID-1 on line 1" in answer and "approved" in answer
    order, line = order_and_line(shop, number)
    assert (order.status, line.qty_cancelled, line.qty_reserved) == ("approved", 4, 6)
    [event] = audited(shop, "order.line_cancelled")
    assert (event.actor, event.data["quantity"]) == ("USALES01", 4)
    # and billing is told, and exposure counts only the 6 still ordered
    told = in_ar(sandbox, "cancelled the short quantity")
    assert "<@USALES01>" in text_of(told) and "*approved*" in text_of(told)
    balances = api.get("/customers/C-GLOBEX").json()["balances"]
    assert balances["uninvoiced_orders"] == "600.00"
    # and the notice no longer offers the button (issue 13); a click from an older copy of
    # it is told there is nothing short any more
    sandbox.wait_for(lambda: "backorder_cancel_line" not in json.dumps(
        sandbox.message(dm["channel"], dm["ts"])["blocks"]) or None, WAIT, "the update")
    slack.send(stale, FORM)
    assert "nothing on it is short" in answers(sandbox, "USALES01", 2)[1]
    assert len(audited(shop, "order.line_cancelled")) == 1


def test_wait_ship_partial_then_restock_through_the_api(shop, slack, standin, api) -> None:
    sandbox = standin.api
    number = short_order(shop)
    dm = notice(sandbox, number)
    # (clicks on Wait kept from this first copy of the notice: it loses the button later)
    admin_wait = prepared_click(slack, ADMIN, dm, "backorder_wait")
    late_wait = prepared_click(slack, "USALES01", dm, "backorder_wait")
    # when the rep chooses Wait
    slack.click("USALES01", dm, "backorder_wait")
    # then the choice is recorded and nothing changes
    assert "waits for stock" in answers(sandbox, "USALES01", 1)[0]
    # when the rep chooses Ship partial
    slack.click("USALES01", dm, "backorder_ship_partial")
    # then billing is told to ship the 6 reserved now
    assert "Billing was told to ship" in answers(sandbox, "USALES01", 2)[1]
    told = text_of(in_ar(sandbox, "chose *ship partial*"))
    assert "`WID-1` × 6" in told
    assert [e.data["choice"] for e in audited(shop, "order.backorder_choice")] == [
        "wait", "ship_partial"]
    assert order_and_line(shop, number)[0].status == "backordered"
    # when an admin (allowed too) chooses Wait, it is recorded as theirs
    slack.send(admin_wait, FORM)
    assert "waits for stock" in answers(sandbox, ADMIN, 1)[0]
    assert audited(shop, "order.backorder_choice")[-1].actor == ADMIN
    # when 4 more widgets arrive through the REST API
    restock = api.post("/products", json={"sku": "WID-1", "name": "Widget",
                                          "unit_price": "100.00", "currency": "USD",
                                          "on_hand": 10})
    assert restock.status_code in (200, 201), restock.text
    # then the order holds all 10 and is approved again, and the rep is told
    order, line = order_and_line(shop, number)
    assert (order.status, line.qty_reserved, line.qty_backordered) == ("approved", 10, 0)
    assert restock.json()["reserved"] == 10
    approved = sandbox.wait_for(lambda: next(
        (m for m in sandbox.dm_messages("USALES01") if "stock arrived" in text_of(m)), None),
        WAIT, "the restock DM")
    assert f"Order {number} is approved" == approved["text"]
    # and the choices are refused now that nothing is short
    slack.send(late_wait, FORM)
    assert "nothing on it is short" in answers(sandbox, "USALES01", 3)[2]
    # when the ERP ships the order, it is shipped and invoiced in full
    shipped = api.post("/shipments", json={"order": number, "carrier": "UPS",
                                           "tracking_number": "1Z999",
                                           "shipped_at": "2026-11-24T10:00:00Z"})
    assert shipped.status_code == 201, shipped.text
    assert api.get(f"/orders/{number}").json()["status"] == "invoiced"


def burst(slack, bodies: list[str]) -> list[int]:
    start = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(body: str) -> None:
        start.wait()
        statuses.append(slack.send(body, FORM).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


def billing_told(server, choice: str) -> int:
    with server.db.read_session() as s:
        rows = s.exec(select(OutboxMessage)).all()
    return sum(1 for r in rows if r.payload.get("template") == "backorder_notice"
               and r.payload["context"].get("choice") == choice
               and r.payload["context"].get("audience") == "billing")


def test_bursts_of_clicks_change_and_tell_once(shop, slack, standin) -> None:
    sandbox = standin.api
    number = short_order(shop)
    dm = notice(sandbox, number)
    # when three Ship partial clicks arrive at the same moment
    ship = prepared_click(slack, "USALES01", dm, "backorder_ship_partial")
    assert burst(slack, [ship] * 3) == [200] * 3
    answers(sandbox, "USALES01", 3)
    # then billing is told once
    assert billing_told(shop, "ship_partial") == 1
    assert len(audited(shop, "order.backorder_choice")) == 1
    # when three copies of one Cancel short line click arrive at the same moment (a replay)
    cancel = prepared_click(slack, "USALES01", dm, "backorder_cancel_line",
                            block_id="backorder_line:1")
    again = prepared_click(slack, "USALES01", dm, "backorder_cancel_line",
                           block_id="backorder_line:1")
    assert burst(slack, [cancel] * 3) == [200] * 3
    texts = answers(sandbox, "USALES01", 6)[3:]
    # then the short quantity is cancelled once, and every copy is told what the first was
    assert order_and_line(shop, number)[1].qty_cancelled == 4
    assert len(audited(shop, "order.line_cancelled")) == 1
    assert billing_told(shop, "cancel_line") == 1
    assert len(set(texts)) == 1 and "Cancelled 4" in texts[0]
    # when the button is clicked again (a new click, not a copy, from an older window: the
    # notice itself no longer offers it)
    slack.send(again, FORM)
    # then it is told nothing is short any more
    assert "nothing on it is short" in answers(sandbox, "USALES01", 7)[6]
