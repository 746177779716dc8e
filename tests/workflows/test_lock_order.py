"""One global lock order, so two transactions never wait for each other in a circle
(PostgreSQL's "deadlock detected": a 503 for the API, an error in Slack, a retry).

Every path that changes a customer's orders, stock and approval cards takes its row locks in
this order (`orders.lock_order`): the customer, its orders, their lines, the products (in id
order), then the approval rows (the waiting cards refreshed when the transaction commits,
`approvals.refresh_waiting_cards`). Each test pauses two paths side by side just before the
step where, taking locks in another order, they waited for each other
(`meanwhile.side_by_side`, PostgreSQL); on SQLite, whose writers are serialised, they run
one after the other. Either way both must go through."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session, select

from bot.db import Database
from models import (
    Approval,
    ApprovalStatus,
    Invoice,
    Order,
    OrderLine,
    OrderStatus,
    Product,
)
from models.revenue import SubscriptionBilling
from tests.support import factories as f
from tests.support.meanwhile import second_writer, side_by_side
from tests.support.timetravel import frozen_at
from workflows import (
    approvals,
    fulfilment,
    invariants,
    invoicing,
    orders,
    shipping,
    subscriptions,
)
from workflows.errors import InvalidTransition
from workflows.inputs import OrderIn, OrderLineIn

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def company(s: Session) -> None:
    f.user(s, "USALES01", "sales")
    f.user(s, "UCREDIT1", "credit_approver")
    f.customer(s, credit_limit="1000.00", sales_rep="USALES01")
    f.customer(s, "C-OTHER", "Otherco", sales_rep="USALES01")


def credit_approval(s: Session, order: Order) -> int:
    assert order.status == OrderStatus.PENDING_APPROVAL
    return s.exec(select(Approval).where(Approval.order_id == order.id)).one().id


def approve(approval_id: int):
    def work(s: Session) -> str:
        decision = approvals.decide(session=s, now=NOW, approval_id=approval_id,
                                    user_id="UCREDIT1", approve=True)
        return decision.outcome
    return work


def stock(s: Session, sku: str) -> tuple[int, int]:
    product = s.exec(select(Product).where(Product.sku == sku)).one()
    return product.on_hand, product.reserved


def reserved(s: Session, number: str) -> list[tuple[int, int]]:
    order = orders.get_order(s, number)
    return [(line.qty_reserved, line.qty_backordered) for line in orders.order_lines(s, order.id)]


def cancel(number: str):
    def work(s: Session) -> str:
        order = orders.get_order(s, number)
        orders.cancel_order(s, order, actor="USALES01", reason="withdrawn", now=NOW)
        return order.status
    return work


def approved_and_waiting(db: Database) -> tuple[str, str, int]:
    """A limit of 1,000.00: order B (2 x 100.00) approved with 2 of the 11 units reserved,
    and order A (9 x 100.00) waiting for a credit approval (1,100.00 > 1,000.00). B's
    number, A's, A's approval id."""
    with db.transaction() as s:
        company(s)
        f.product(s, "WID-1", price="100.00", on_hand=11)
        b = f.order(s, lines=[("WID-1", 2)], now=NOW).number
        a = f.order(s, lines=[("WID-1", 9)], now=NOW)
        return b, a.number, credit_approval(s, a)


def test_an_order_shipped_while_the_customers_waiting_order_is_approved(db: Database) -> None:
    # given order B approved (2 of 11 reserved) and order A of the same customer waiting (9)
    b, a, approval_id = approved_and_waiting(db)

    def ship_b(s: Session) -> str:
        return shipping.ship_order(s, order_number=b, carrier="UPS", tracking_number="1Z1",
                                   shipped_at=NOW, actor="USALES01", now=NOW).carrier

    # when B ships (it has taken its stock, its invoice is next) while the credit approver
    # approves A (decided, its stock is next)
    outcomes = side_by_side(db, (ship_b, shipping, "invoice_shipment"),
                            (approve(approval_id), fulfilment, "reserve_stock"))
    # then both went through, one after the other: B is shipped and invoiced 200.00, A is
    # approved with its 9 units reserved
    assert outcomes == ["UPS", ApprovalStatus.APPROVED]
    with db.read_session() as s:
        assert orders.get_order(s, b).status == OrderStatus.INVOICED
        [invoice] = s.exec(select(Invoice).where(
            Invoice.order_id == orders.get_order(s, b).id)).all()
        assert invoice.total_minor == 20000
        assert orders.get_order(s, a).status == OrderStatus.APPROVED
        assert reserved(s, a) == [(9, 0)]
        assert stock(s, "WID-1") == (9, 9)
        assert invariants.validate_all(s) == []


def test_an_order_cancelled_while_the_customers_waiting_order_is_approved(db: Database) -> None:
    # given order B approved (2 of 11 reserved) and order A of the same customer waiting (9)
    b, a, approval_id = approved_and_waiting(db)
    # when B is cancelled (its stock released, its card refresh at commit still to come)
    # while the credit approver approves A (decided, its stock is next)
    outcomes = side_by_side(db, (cancel(b), fulfilment, "reserve_backorders"),
                            (approve(approval_id), fulfilment, "reserve_stock"))
    # then both went through: B cancelled with its 2 units back, A approved with its 9
    assert outcomes == [OrderStatus.CANCELLED, ApprovalStatus.APPROVED]
    with db.read_session() as s:
        assert orders.get_order(s, a).status == OrderStatus.APPROVED
        assert reserved(s, a) == [(9, 0)]
        assert reserved(s, b) == [(0, 0)]
        assert stock(s, "WID-1") == (11, 9)
        assert invariants.validate_all(s) == []


def test_stock_freed_for_a_backorder_while_its_customers_waiting_order_is_approved(
        db: Database) -> None:
    # given another customer's order E holding 2 WID-1 and 1 GADGET; order B of our customer
    # short of 2 WID-1 (3 reserved); and order A of our customer waiting for a credit
    # approval (over the limit) for 7 GADGETs
    with db.transaction() as s:
        company(s)
        f.product(s, "WID-1", price="10.00", on_hand=5)
        f.product(s, "GADGET", price="150.00", on_hand=100)
        e = f.order(s, "C-OTHER", lines=[("WID-1", 2), ("GADGET", 1)], now=NOW).number
        b = f.order(s, lines=[("WID-1", 5)], now=NOW)
        assert b.status == OrderStatus.BACKORDERED
        b = b.number
        a = f.order(s, lines=[("GADGET", 7)], now=NOW)
        a, approval_id = a.number, credit_approval(s, a)

    # when E is cancelled (its stock released, the backorders next) while the credit
    # approver approves A (decided, its GADGETs next)
    outcomes = side_by_side(db, (cancel(e), fulfilment, "reserve_backorders"),
                            (approve(approval_id), fulfilment, "reserve_stock"))
    # then both went through; A has its GADGETs. B gets the 2 freed WID-1 when the two run
    # one after the other (SQLite); held side by side (PostgreSQL), A's decision holds B's
    # customer at that moment, so B is left to the next restock instead of waited for
    assert outcomes == [OrderStatus.CANCELLED, ApprovalStatus.APPROVED]
    with db.read_session() as s:
        assert orders.get_order(s, a).status == OrderStatus.APPROVED
        assert reserved(s, a) == [(7, 0)]
        assert stock(s, "GADGET") == (100, 7)
        served = orders.get_order(s, b).status == OrderStatus.APPROVED
        assert served is not db.is_postgres
        assert reserved(s, b) == ([(5, 0)] if served else [(3, 2)])
        assert stock(s, "WID-1") == (5, 5 if served else 3)
        assert invariants.validate_all(s) == []
    if not served:  # the next restock (here: the same count sent again) serves it
        with db.transaction() as s:
            f.product(s, "WID-1", price="10.00", on_hand=5)
        with db.read_session() as s:
            assert reserved(s, b) == [(5, 0)]
            assert orders.get_order(s, b).status == OrderStatus.APPROVED


# -- subscriptions: a cancellation and a period's billing ----------------------------------------

def monthly_cloud(s: Session) -> Order:
    """2 x CLOUD at 1200.00 a year for 2026, billed monthly (12 x 200.00); a credit approver
    to cancel it from months past (`NOW` is in November: a finance decision)."""
    f.user(s, "USALES01", "sales")
    f.user(s, "UCREDIT1", "credit_approver")
    f.customer(s, credit_limit="1000000.00")
    f.product(s, "CLOUD", price="1200.00", revenue_type="subscription")
    return orders.create_order(s, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="CLOUD", quantity=2, service_start="2026-01-01",
                        service_end="2026-12-31", billing="monthly")]),
        actor="USALES01", now=datetime(2025, 12, 20, tzinfo=UTC))


def bill(line_id: int, first: date):
    def work(s: Session) -> str | None:
        invoice = subscriptions.bill_period(s, order_line_id=line_id, period_start=first,
                                            as_of=first, now=NOW)
        return invoice.number if invoice else None
    return work


def cancel_from(number: str, day: str):
    def work(s: Session) -> str:
        line = subscriptions.cancel_subscription(s, order_number=number, line_no=1,
                                                 effective=day, reason="moving away",
                                                 actor="UCREDIT1", now=NOW)
        return line.cancelled_from.isoformat()
    return work


def test_a_subscription_cancelled_while_a_period_is_billed(db: Database) -> None:
    # given a monthly subscription, January invoiced
    with db.transaction() as s:
        order = monthly_cloud(s)
        number, line_id = order.number, orders.order_lines(s, order.id)[0].id
    with db.transaction() as s:
        assert bill(line_id, date(2026, 1, 1))(s) == "INV-2026-000001"
    # when February is billed (the line read, its invoice next) while the subscription is
    # cancelled from March (the order read, the line's change next)
    outcomes = side_by_side(db, (bill(line_id, date(2026, 2, 1)), invoicing,
                                 "invoice_subscription_period"),
                            (cancel_from(number, "2026-03-01"), orders, "recompute_cancelled"))
    # then both went through: February invoiced once, the rest cancelled
    assert outcomes == ["INV-2026-000002", "2026-03-01"]
    with db.read_session() as s:
        billed = s.exec(select(SubscriptionBilling.period_start)
                        .order_by(SubscriptionBilling.period_start)).all()
        assert billed == [date(2026, 1, 1), date(2026, 2, 1)]
        assert s.get(OrderLine, line_id).cancelled_from == date(2026, 3, 1)
        assert s.get(Order, s.get(OrderLine, line_id).order_id).cancelled_minor == 200000
        assert invariants.validate_all(s) == []


@pytest.mark.parametrize("first", ["cancellation", "billing"])
def test_a_period_cancelled_is_not_billed_once_the_cancellation_commits(
        db: Database, first: str) -> None:
    # given a monthly subscription, January invoiced
    with db.transaction() as s:
        order = monthly_cloud(s)
        number, line_id = order.number, orders.order_lines(s, order.id)[0].id
        assert bill(line_id, date(2026, 1, 1))(s) == "INV-2026-000001"
    # when February's billing and a cancellation from February overlap, either first
    with db.session() as held:
        if first == "cancellation":
            assert cancel_from(number, "2026-02-01")(held) == "2026-02-01"
            late, waited = second_writer(db, held, bill(line_id, date(2026, 2, 1)))
        else:
            assert bill(line_id, date(2026, 2, 1))(held) == "INV-2026-000002"
            late, waited = second_writer(db, held, lambda s: _refused(
                cancel_from(number, "2026-02-01"), s))
    # then the second waited for the first and saw it: February is billed only if the
    # billing came first, and then it cannot be cancelled
    assert waited == db.is_postgres
    with db.read_session() as s:
        billed = s.exec(select(SubscriptionBilling.period_start)
                        .order_by(SubscriptionBilling.period_start)).all()
        if first == "cancellation":
            assert late is None
            assert billed == [date(2026, 1, 1)]
            assert s.get(OrderLine, line_id).cancelled_from == date(2026, 2, 1)
        else:
            assert late.startswith("must be the first day of a billing period")
            assert billed == [date(2026, 1, 1), date(2026, 2, 1)]
            assert s.get(OrderLine, line_id).cancelled_from is None
        assert invariants.validate_all(s) == []


def test_a_subscription_cancelled_while_it_is_renewed_is_not_renewed(db: Database) -> None:
    """A renewal read the line (not cancelled yet) while a cancellation from March was
    uncommitted: once the cancellation commits, the renewal — which waited for the
    customer's lock to submit its order — is refused, not a 2027 contract for a customer
    who stopped in February (no order beyond the first, nothing audited as renewed)."""
    # given
    with db.transaction() as s:
        order = monthly_cloud(s)
        number = order.number

    def renew(s: Session) -> str:
        try:
            return subscriptions.renew_subscription(s, order_number=number, line_no=1,
                                                    actor="USALES01", now=NOW).number
        except InvalidTransition as refused:
            s.rollback()
            return str(refused)
    # when
    with db.session() as held:
        assert cancel_from(number, "2026-03-01")(held) == "2026-03-01"
        outcome, waited = second_writer(db, held, renew)
    # then
    assert waited == db.is_postgres
    assert "is cancelled; it cannot be renewed" in outcome
    with db.read_session() as s:
        assert [o.number for o in s.exec(select(Order))] == [number]
        assert invariants.validate_all(s) == []


def _refused(work, s: Session) -> str:
    from workflows.errors import ValidationFailed

    try:
        work(s)
    except ValidationFailed as refused:
        return refused.errors[0].detail
    raise AssertionError("the cancellation was not refused")
