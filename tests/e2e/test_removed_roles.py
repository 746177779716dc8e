"""A person whose role was taken away acts no more (SPEC §5.7: roles are checked on the
server for every click), also where the bot asks them by name: the rep of record of an order
(the backorder notice in their DM) and the owner of a dispute (the dispute card in their DM).
Signed requests to the real server and the Slack stand-in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, CreditNoteRequest, Dispute, Order, OrderLine
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, ephemeral_texts, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 6, 16)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(10), UTC), tick=True)
WAIT = 10.0


@pytest.fixture
def books(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01",
                   collector="UCOLL001")
        f.product(s, "WID-1", price="100.00", on_hand=6)
        f.invoice(s, "INV-2026-000101", total="1000.00", due=TODAY - timedelta(days=10),
                  issued=TODAY - timedelta(days=40))
    return server


def audited(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def remove_sales_role(slack, api) -> None:
    answer = ask(slack, api, ADMIN, "role remove <@USALES01> sales")
    assert "no longer has `sales`" in text_of(answer)


def test_a_rep_whose_role_was_removed_cannot_choose_for_a_backorder(books, slack,
                                                                    standin) -> None:
    api = standin.api
    # given an order of 10 widgets with 6 in stock: its rep gets the backorder notice
    with books.db.transaction() as s:
        number = f.order(s, lines=[("WID-1", 10)]).number
    books.deps.notify_outbox()
    dm = api.wait_for(lambda: next((m for m in api.dm_messages("USALES01")
                                    if m["text"] == f"Order {number} is short of stock"),
                                   None), WAIT, "the backorder DM")
    # when an admin removes the rep's sales role, and they click Cancel short line anyway
    remove_sales_role(slack, api)
    slack.click("USALES01", dm, "backorder_cancel_line", block_id="backorder_line:1")
    # then the server refuses it, says so only to them, audits it, and nothing changes
    api.wait_for(lambda: len(api.ephemerals("USALES01")) >= 1, WAIT, "the answer")
    [answer] = ephemeral_texts(api, "USALES01")
    assert ":no_entry_sign:" in answer and "nothing was changed" in answer.lower()
    assert "Only a sales rep or an admin" in answer
    [refused] = audited(books, "refused.order.backorder_choice.cancel_line")
    assert refused.actor == "USALES01"
    with books.db.read_session() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        line = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)).one()
        assert (order.status, line.qty_cancelled) == ("backordered", 0)
    assert audited(books, "order.line_cancelled") == []
    # and the same holds for Ship partial
    slack.click("USALES01", dm, "backorder_ship_partial")
    api.wait_for(lambda: len(api.ephemerals("USALES01")) >= 2, WAIT, "the second answer")
    assert "Only a sales rep or an admin" in ephemeral_texts(api, "USALES01")[1]
    assert audited(books, "order.backorder_choice") == []


def test_a_dispute_owner_whose_role_was_removed_cannot_resolve_it(books, slack,
                                                                  standin) -> None:
    api = standin.api
    # given a dispute whose owner is the customer's rep: the card is in their DM
    with books.db.transaction() as s:
        f.dispute(s, "INV-2026-000101", amount="400.00", reason="damaged")
    books.deps.notify_outbox()
    card = api.wait_for(lambda: next((m for m in api.dm_messages("USALES01")
                                      if m["text"].startswith("Dispute #1")), None),
                        WAIT, "the dispute card")
    assert "backoffice_dispute_accept" in text_of(card)
    # when an admin removes the rep's sales role, and they click Accept anyway
    remove_sales_role(slack, api)
    slack.click("USALES01", card, "backoffice_dispute_accept")
    # then no modal opens: the refusal is told only to them and audited
    refusal = api.wait_for(lambda: next((t for t in ephemeral_texts(api, "USALES01")
                                         if "Nothing was changed" in t), None), WAIT,
                           "the refusal")
    assert ":no_entry_sign:" in refusal
    assert api.views_for("USALES01") == []
    assert [e.actor for e in audited(books, "refused.dispute.accepted")] == ["USALES01"]
    # and reassigning it away is refused too
    slack.click("USALES01", card, "backoffice_dispute_reassign")
    api.wait_for(lambda: len(audited(books, "refused.dispute.reassign")) == 1 or None, WAIT,
                 "the second refusal")
    assert api.views_for("USALES01") == []
    # and the dispute is still open, with no credit asked for
    with books.db.read_session() as s:
        assert s.exec(select(Dispute.status)).all() == ["open"]
        assert s.exec(select(CreditNoteRequest)).all() == []
    # while a collector (a resolver by role) still may
    slack.click("UCOLL001", card, "backoffice_dispute_accept")
    api.wait_for(lambda: api.views_for("UCOLL001") or None, WAIT, "the collector's modal")


def test_a_rep_whose_role_was_removed_no_longer_sees_their_requests(books, slack,
                                                                    standin) -> None:
    api = standin.api
    # given an order of the rep's that waits for a credit approval (a new customer)
    with books.db.transaction() as s:
        f.customer(s, "C-NEW", "Newco Secret Ltd", reviewed=False, sales_rep="USALES01")
        number = f.order(s, "C-NEW", lines=[("WID-1", 2)]).number
    shown = text_of(ask(slack, api, "USALES01", "approvals"))
    assert number in shown and "Newco Secret Ltd" in shown and "USD 200.00" in shown
    # when an admin removes the rep's sales role, and they ask again
    remove_sales_role(slack, api)
    answer = text_of(ask(slack, api, "USALES01", "approvals"))
    # then they are refused, see nothing of the order, and the refusal is audited
    assert ":no_entry_sign:" in answer
    assert number not in answer and "Newco" not in answer and "200.00" not in answer
    assert [e.actor for e in audited(books, "refused.command.approvals")] == ["USALES01"]
