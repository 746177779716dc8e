"""A backorder is decided once, by whoever is first: the customer through their e-mail link or
the sales rep in Slack (the rep may still override the customer's choice deliberately, with a
reason: `/o2c backorder <order> <choice> <reason>`). Both take the order's row lock before
they look, so when the two decide at the same moment the second waits for the first
(PostgreSQL: FOR UPDATE; SQLite serialises writers) and then finds it decided: exactly one
decision is carried out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from bot.db import Database
from models import AuditEvent, CustomerLink, Order, OrderLine, OrderStatus
from tests.support import factories as f
from tests.support.meanwhile import second_writer
from tests.support.timetravel import frozen_at
from workflows import customer_links, fulfilment, invariants
from workflows.errors import ValidationFailed

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def backordered(db: Database) -> tuple[int, int]:
    """A committed order of 10 with 6 in stock (4 short), and its backorder link."""
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=6)
        order = f.order(s, lines=[("WID-1", 10)])
        link = customer_links.backorder_link(s, order=order, now=NOW)
        return order.id, link.id


def cancelled(db: Database, order_id: int) -> int:
    with db.read_session() as s:
        return s.exec(select(OrderLine).where(OrderLine.order_id == order_id)).one() \
            .qty_cancelled


def test_the_rep_cancelling_while_the_customer_asks_to_ship_now_decides_once(db) -> None:
    # given a backordered order; the rep cancels the missing 4 (not committed yet)
    order_id, link_id = backordered(db)
    with db.session() as held:
        order = held.get(Order, order_id)
        fulfilment.cancel_line(held, order=order, line_no=1, actor="USALES01",
                               reason="customer phoned", now=NOW)
        # when the customer confirms "ship now" through their link meanwhile
        answer, waited = second_writer(db, held, lambda s: customer_links.choose_backorder(
            s, link_id=link_id, choice="ship_now", now=NOW))
    # then the customer waited for the rep and found it decided: nothing of theirs happened
    assert waited == db.is_postgres
    assert answer == "decided"
    with db.read_session() as s:
        link = s.get(CustomerLink, link_id)
        assert (link.used_at, link.choice) == (None, None)
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "order.customer_choice")).all() == []
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.order.customer_choice")).all()) == 1
        assert s.get(Order, order_id).status == OrderStatus.APPROVED
        assert invariants.validate_all(s) == []
    assert cancelled(db, order_id) == 4


def test_the_customer_choosing_while_the_rep_cancels_decides_once(db) -> None:
    # given a backordered order; the customer asks to wait (not committed yet)
    order_id, link_id = backordered(db)
    with db.session() as held:
        assert customer_links.choose_backorder(held, link_id=link_id, choice="wait",
                                               now=NOW) == "ok"

        def rep_cancels(s: Session) -> str:
            try:
                fulfilment.cancel_line(s, order=s.get(Order, order_id), line_no=1,
                                       actor="USALES01", reason="customer phoned", now=NOW)
            except ValidationFailed as refused:
                return refused.errors[0].detail
            return "cancelled"

        # when the rep cancels the missing 4 in Slack meanwhile
        answer, waited = second_writer(db, held, rep_cancels)
    # then the rep waited for the customer and is told what the customer chose: changing it
    # is an override, which takes a reason (`/o2c backorder <order> <choice> <reason>`)
    assert waited == db.is_postgres
    assert "the customer chose to wait and ship everything together" in answer
    assert "/o2c backorder" in answer
    assert cancelled(db, order_id) == 0
    with db.read_session() as s:
        assert s.get(Order, order_id).status == OrderStatus.BACKORDERED
        assert s.get(CustomerLink, link_id).choice == "wait"


@pytest.mark.postgresql_only  # (two transactions really at once: SQLite runs them in turn)
def test_the_rep_and_the_customer_at_once_make_exactly_one_decision(db) -> None:
    from tests.support.meanwhile import at_once

    order_id, link_id = backordered(db)
    turn = iter(["rep", "customer"])

    def decide() -> str:
        who = next(turn)
        with db.transaction() as s:
            if who == "customer":
                state = customer_links.choose_backorder(s, link_id=link_id, choice="ship_now",
                                                        now=NOW)
                return f"customer:{state}"
            try:
                fulfilment.wait_for_stock(s, order=s.get(Order, order_id), actor="USALES01",
                                          now=NOW)
            except ValidationFailed:  # (an override needs a reason)
                return "rep:refused"
            return "rep:ok"

    answers = sorted(at_once(decide, 2))
    assert answers in (["customer:decided", "rep:ok"], ["customer:ok", "rep:refused"])
    with db.read_session() as s:
        decisions = s.exec(select(AuditEvent).where(
            AuditEvent.action == "order.backorder_choice")).all()
        assert len(decisions) == 1
