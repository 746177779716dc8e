"""Fulfilment and shipping (SPEC §3): repeated partial shipments, one shipment at a time per
order (even from two sessions at once), no cancelling what has shipped, and backorders —
the rep's choices (ship partial / wait / cancel line) and restocking, oldest order first."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    AuditEvent,
    Customer,
    Invoice,
    Order,
    OrderLine,
    OrderStatus,
    OutboxMessage,
    Product,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import fulfilment, invariants, orders, policy, shipping
from workflows.errors import InvalidTransition, PermissionDenied, ValidationFailed
from workflows.inputs import ShipmentLineIn
from workflows.receivables import credit_exposure, uninvoiced_approved_minor

SHIPPED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def setup_company(session: Session, *, on_hand: int = 10, tax_pct: int = 0) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "USALES02", "sales")
    f.user(session, "UADMIN01", "admin")
    customer = f.customer(session, sales_rep="USALES01")
    customer.tax_rate_bp = tax_pct * 100
    session.add(customer)
    f.product(session, "WID-1", price="100.00", on_hand=on_hand)
    f.product(session, "GADGET", price="10.00", on_hand=100)


def ship(session: Session, order: Order, *lines: tuple[str, int], tracking: str = "1Z1"
         ) -> None:
    shipping.ship_order(session, order_number=order.number, carrier="UPS",
                        tracking_number=tracking, shipped_at=SHIPPED_AT, actor="api", now=NOW,
                        lines=[ShipmentLineIn(sku=sku, quantity=qty) for sku, qty in lines] or None)


def stock(session: Session, sku: str = "WID-1") -> tuple[int, int]:
    product = session.exec(select(Product).where(Product.sku == sku)
                           .execution_options(populate_existing=True)).one()
    return product.on_hand, product.reserved


def line_of(session: Session, order: Order, line_no: int = 1) -> OrderLine:
    return session.exec(select(OrderLine).where(OrderLine.order_id == order.id,
                                                OrderLine.line_no == line_no)
                        .execution_options(populate_existing=True)).one()


def events(session: Session, order: Order, action: str) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(
        AuditEvent.entity_type == "order", AuditEvent.entity_id == str(order.id),
        AuditEvent.action == action).order_by(AuditEvent.id)))


def outbox(session: Session, template: str) -> list[dict]:
    return [m.payload for m in session.exec(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.payload.get("template") == template and m.method != "chat.update"]


# -- shipping -----------------------------------------------------------------------------------

def test_three_partial_shipments_then_shipped_and_invoiced(session) -> None:
    # given an approved order of 10
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)])
    # when it ships as 3, 3 and 4
    ship(session, order, ("WID-1", 3), tracking="1Z1")
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    ship(session, order, ("WID-1", 3), tracking="1Z2")
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    ship(session, order, ("WID-1", 4), tracking="1Z3")
    session.commit()
    # then it is shipped and invoiced, with one invoice per shipment
    assert order.status == OrderStatus.INVOICED
    invoices = session.exec(select(Invoice).where(Invoice.order_id == order.id)
                            .order_by(Invoice.id)).all()
    assert [i.total_minor for i in invoices] == [30000, 30000, 40000]
    # and the history shows every shipment, and each status change once
    shipments = events(session, order, "order.shipment")
    assert [e.data["lines"][0]["quantity"] for e in shipments] == [3, 3, 4]
    assert [e.reason for e in shipments] == ["UPS 1Z1", "UPS 1Z2", "UPS 1Z3"]
    assert all(e.data["shipment_id"] for e in shipments)
    moves = [e.to_state for e in events(session, order, "order.transition")]
    assert moves == ["draft", "approved", "partially_shipped", "shipped", "invoiced"]
    assert stock(session) == (0, 0)
    assert invariants.validate_all(session) == []


def test_a_shipment_dated_after_today_is_refused_and_nothing_is_invoiced(session) -> None:
    # given an approved order, today being 2026-11-20 (UTC business days)
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)])
    # when the ERP posts its shipment dated tomorrow (or a typo's year)
    for shipped_at in (datetime(2026, 11, 21, 0, 30, tzinfo=UTC),
                       datetime(2027, 11, 20, 10, 0, tzinfo=UTC)):
        with pytest.raises(ValidationFailed) as refused:
            shipping.ship_order(session, order_number=order.number, carrier="UPS",
                                tracking_number="1Z1", shipped_at=shipped_at, actor="api",
                                now=NOW)
        # then it is refused naming shipped_at: no invoice dated (and due) in the future
        assert refused.value.errors[0].field == "shipped_at"
        assert "is in the future (today is 2026-11-20)" in refused.value.errors[0].detail
    assert session.exec(select(Invoice)).all() == []
    assert line_of(session, order).qty_shipped == 0
    assert stock(session) == (10, 10)
    # and later the same day still ships
    ship(session, order)
    assert order.status == OrderStatus.INVOICED


def test_a_shipment_is_invoiced_on_the_day_it_was_checked_against(session,
                                                                      monkeypatch) -> None:
    """The business time zone is read once per shipment: its day is checked against today
    and dated on the invoice from that one read. (Before, the invoice read the policy again:
    a time-zone change committed in between — PostgreSQL's READ COMMITTED shows it — dated
    an invoice checked as 20 November on 21 November, a day not come yet.)"""
    # given an order, shipped at 23:30 UTC on 20 November, recorded at 23:45
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)])
    late = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    invoice_shipment = shipping.invoice_shipment

    def after_a_policy_change(*args, **kwargs):
        # an admin moves the books to UTC+14 between the check and the invoice
        policy.set_value(session, key="business_timezone", value="Pacific/Kiritimati",
                         actor="UADMIN01")
        return invoice_shipment(*args, **kwargs)

    monkeypatch.setattr(shipping, "invoice_shipment", after_a_policy_change)
    # when
    shipping.ship_order(session, order_number=order.number, carrier="UPS",
                        tracking_number="1Z1", shipped_at=late, actor="api",
                        now=late.replace(minute=45))
    # then the invoice is of the day that was checked
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert (invoice.ship_date, invoice.issue_date) == (date(2026, 11, 20), date(2026, 11, 20))


def test_an_invoice_is_numbered_in_the_year_of_its_business_day(session) -> None:
    # given a company in New York (UTC-5) and an order
    policy.set_value(session, key="business_timezone", value="America/New_York", actor="test")
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)], now=datetime(2026, 12, 30, 15, tzinfo=UTC))
    # when it ships at 23:30 on 31 December there (04:30 UTC on 1 January), recorded at once
    shipped = datetime(2027, 1, 1, 4, 30, tzinfo=UTC)
    shipping.ship_order(session, order_number=order.number, carrier="UPS",
                        tracking_number="1Z1", shipped_at=shipped, actor="api", now=shipped)
    # then its invoice is of 2026: numbered, issued and due from New York's 31 December
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert (invoice.number, invoice.issue_date) == ("INV-2026-000001", date(2026, 12, 31))
    assert invoice.due_date == date(2027, 1, 30)  # NET30


def test_a_sku_listed_twice_in_one_shipment_is_refused(session) -> None:
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)])
    with pytest.raises(ValidationFailed) as caught:
        ship(session, order, ("WID-1", 6), ("WID-1", 6))
    assert caught.value.errors[0].field == "lines[1].sku"


def test_a_sku_on_two_lines_ships_from_both_each_at_its_own_price(session) -> None:
    from workflows.inputs import OrderIn, OrderLineIn

    # given 6 x WID-1 at list (100.00) and 4 more at 10 % off (90.00), all reserved
    setup_company(session)
    order = orders.create_order(session, now=NOW, actor="USALES01", data=OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="WID-1", quantity=6),
            OrderLineIn(sku="WID-1", quantity=4, discount_pct="10")]))
    assert order.status == OrderStatus.APPROVED and stock(session) == (10, 10)
    # when the ERP ships 7 of the 10 units of WID-1 open on the order, then the other 3
    ship(session, order, ("WID-1", 7))
    first = (line_of(session, order, 1).qty_shipped, line_of(session, order, 2).qty_shipped)
    ship(session, order, ("WID-1", 3), tracking="1Z2")
    # then the first line ships first (6 x 100.00), the second takes the rest (1 x 90.00),
    # and the last shipment bills the 3 units left at 90.00
    assert first == (6, 1)
    totals = session.exec(select(Invoice.total_minor).where(Invoice.order_id == order.id)
                          .order_by(Invoice.id)).all()
    assert totals == [600_00 + 90_00, 3 * 90_00]
    assert sum(totals) == order.total_minor
    assert order.status == OrderStatus.INVOICED
    assert stock(session) == (0, 0)
    # and more than the SKU's open quantity is still refused, naming what is open
    other = orders.create_order(session, now=NOW, actor="USALES01", data=OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="GADGET", quantity=2), OrderLineIn(sku="GADGET", quantity=3)]))
    with pytest.raises(ValidationFailed) as caught:
        ship(session, other, ("GADGET", 6))
    assert (caught.value.errors[0].field, caught.value.errors[0].detail) == (
        "lines[0].quantity", "must be between 1 and 5 (open)")
    assert invariants.validate_all(session) == []


def test_shipping_a_sku_whose_line_is_cancelled_says_so(session) -> None:
    # given an order whose widgets were all short and cancelled; its gadgets still open
    setup_company(session, on_hand=0)
    order = f.order(session, lines=[("WID-1", 4), ("GADGET", 2)])
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    # when a shipment names the widgets
    with pytest.raises(ValidationFailed) as caught:
        ship(session, order, ("WID-1", 1))
    # then it is refused naming the line, saying nothing of it is left (not "1 and 0")
    assert (caught.value.errors[0].field, caught.value.errors[0].detail) == (
        "lines[0].quantity", f"nothing of 'WID-1' is left to ship on {order.number} (4 "
        "cancelled, 0 shipped)")
    assert session.exec(select(Invoice)).all() == []
    assert stock(session, "GADGET") == (100, 2)


def test_cancel_is_refused_once_anything_has_shipped(session) -> None:
    # given an order with 3 of 10 shipped, then put on hold by finance
    setup_company(session)
    order = f.order(session, lines=[("WID-1", 10)])
    ship(session, order, ("WID-1", 3))
    with pytest.raises(InvalidTransition):
        orders.cancel_order(session, order, actor="USALES01", reason="customer withdrew",
                            now=NOW)
    orders.transition(session, order, OrderStatus.ON_HOLD, actor="UADMIN01", reason="dispute")
    # when the rep tries to cancel it (on hold may be cancelled, but not after shipping)
    with pytest.raises(InvalidTransition) as caught:
        orders.cancel_order(session, order, actor="USALES01", reason="customer withdrew",
                            now=NOW)
    # then it is refused, clearly, and nothing moved
    assert "already shipped 3 unit(s)" in caught.value.detail
    assert order.status == OrderStatus.ON_HOLD
    assert stock(session) == (7, 7)
    assert invariants.validate_all(session) == []


def test_cancelling_an_order_cancels_its_quantities_and_frees_stock_for_backorders(
        session) -> None:
    # given an approved order holding 6 units, and a later one short of 3
    setup_company(session, on_hand=6)
    holder = f.order(session, lines=[("WID-1", 6)])
    waiting = f.order(session, lines=[("WID-1", 3)])
    assert waiting.status == OrderStatus.BACKORDERED
    # when the first is cancelled
    orders.cancel_order(session, holder, actor="USALES01", reason="customer withdrew",
                        now=NOW)
    session.commit()
    # then its quantities are cancelled and the freed stock goes to the waiting order
    assert line_of(session, holder).qty_cancelled == 6
    assert holder.cancelled_minor == holder.total_minor
    assert waiting.status == OrderStatus.APPROVED
    assert line_of(session, waiting).qty_reserved == 3
    assert stock(session) == (6, 3)
    assert invariants.validate_all(session) == []


# -- two sessions at once -----------------------------------------------------------------------

@pytest.mark.parametrize(("first", "second", "both_ship"), [(10, 10, False), (6, 6, False),
                                                             (4, 6, True)])
def test_concurrent_shipments_of_one_order_never_over_ship(db, monkeypatch, first, second,
                                                           both_ship) -> None:
    # given an approved order of 10 holding all 10 units in stock
    with db.transaction() as s:
        setup_company(s)
        number = f.order(s, lines=[("WID-1", 10)]).number
    # and two shipments that would both read the order before either writes, unless the
    # order is locked: each waits (up to 1.5 s) for the other at the invoicing step
    meet = threading.Barrier(2, timeout=1.5)
    invoice_shipment = shipping.invoice_shipment

    def slow_invoice(*args, **kwargs):
        # a broken barrier: the other shipment is (rightly) queued behind this one
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return invoice_shipment(*args, **kwargs)

    monkeypatch.setattr(shipping, "invoice_shipment", slow_invoice)
    outcomes: dict[int, str] = {}

    def post(qty: int, tracking: str) -> None:
        try:
            with db.transaction() as s:
                shipping.ship_order(s, order_number=number, carrier="UPS",
                                    tracking_number=tracking, shipped_at=SHIPPED_AT,
                                    actor="api", now=NOW,
                                    lines=[ShipmentLineIn(sku="WID-1", quantity=qty)])
            outcomes[qty if tracking == "A" else -qty] = "shipped"
        except (InvalidTransition, ValidationFailed) as refused:
            outcomes[qty if tracking == "A" else -qty] = f"refused: {refused.detail}"

    # when both are posted at the same moment, from two sessions
    threads = [threading.Thread(target=post, args=(first, "A")),
               threading.Thread(target=post, args=(second, "B"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then both answered, exactly one shipped (or both, for disjoint quantities)
    assert len(outcomes) == 2, outcomes
    shipped = [v for v in outcomes.values() if v == "shipped"]
    assert len(shipped) == (2 if both_ship else 1), outcomes
    with db.read_session() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        line = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)).one()
        invoices = s.exec(select(Invoice).where(Invoice.order_id == order.id)).all()
        # never over-shipped, never negative stock, one invoice per shipment
        assert line.qty_shipped == (first + second if both_ship else first)
        assert len(invoices) == len(shipped)
        on_hand, reserved = stock(s)
        assert (on_hand, reserved) == (10 - line.qty_shipped, 10 - line.qty_shipped)
        assert order.status == (OrderStatus.INVOICED if line.qty_shipped == 10
                                else OrderStatus.PARTIALLY_SHIPPED)
        assert invariants.validate_all(s) == []


def test_the_database_refuses_negative_or_over_promised_stock(db) -> None:
    with db.transaction() as s:
        f.product(s, "WID-1", on_hand=5)
    for statement in ("UPDATE products SET reserved = -1",
                      "UPDATE products SET reserved = on_hand + 1",
                      "UPDATE products SET on_hand = -1"):
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as s:
            s.exec(sa.text(statement))
    with db.read_session() as s:
        assert stock(s) == (5, 0)


# -- backorders ---------------------------------------------------------------------------------

def short_order(session: Session, *, on_hand: int = 6, qty: int = 10, tax_pct: int = 0
                ) -> Order:
    setup_company(session, on_hand=on_hand, tax_pct=tax_pct)
    order = f.order(session, lines=[("WID-1", qty), ("GADGET", 2)])
    assert order.status == OrderStatus.BACKORDERED
    return order


def test_a_short_line_is_backordered_and_the_rep_and_billing_are_told(session) -> None:
    # given / when
    order = short_order(session)
    # then
    line = line_of(session, order)
    assert (line.qty_reserved, line.qty_backordered) == (6, 4)
    [to_rep, to_billing] = outbox(session, "backorder_notice")
    assert to_rep["channel"] == "USALES01"
    assert to_rep["context"]["lines"] == [{"line_no": 1, "sku": "WID-1", "ordered": 10,
                                           "reserved": 6, "backordered": 4}]
    assert (to_billing["channel"], to_billing["context"]["audience"]) == ("ar", "billing")
    assert invariants.validate_all(session) == []


def test_cancel_line_drops_the_short_quantity_and_the_order_is_approved_again(session) -> None:
    # given an order of 10 + 2 gadgets (10 % tax), 4 widgets short
    order = short_order(session, tax_pct=10)
    assert order.total_minor == (100000 + 2000) * 110 // 100
    customer_id = order.customer_id
    assert uninvoiced_approved_minor(session, customer_id) == order.total_minor
    # when the rep cancels the short quantity
    done = fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                                  reason="customer takes what is in stock")
    session.commit()
    # then the 4 are cancelled, what is reserved stays, and the order is approved again
    assert done == {"line_no": 1, "sku": "WID-1", "quantity": 4, "reserved": 6,
                    "status": "approved", "status_before": "backordered"}
    line = line_of(session, order)
    assert (line.qty_cancelled, line.qty_backordered, line.qty_reserved, line.qty_open) == (
        4, 0, 6, 6)
    assert order.status == OrderStatus.APPROVED
    # and the totals still describe what was ordered; exposure counts only the rest
    assert order.total_minor == 112200
    assert order.cancelled_minor == 44000  # 4 x 100.00 + 10 % tax
    assert uninvoiced_approved_minor(session, customer_id) == 112200 - 44000
    [event] = events(session, order, "order.line_cancelled")
    assert (event.actor, event.data["quantity"], event.reason) == (
        "USALES01", 4, "customer takes what is in stock")
    billing = outbox(session, "backorder_notice")[-1]
    assert (billing["channel"], billing["context"]["choice"]) == ("ar", "cancel_line")
    assert invariants.validate_all(session) == []
    # when everything left ships, then it is invoiced for what was delivered and nothing is
    # left uninvoiced
    ship(session, order)
    assert order.status == OrderStatus.INVOICED
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert invoice.total_minor == 112200 - 44000
    assert uninvoiced_approved_minor(session, customer_id) == 0
    assert invariants.validate_all(session) == []


def test_exposure_counts_the_unshipped_rest_at_the_rate_it_will_be_invoiced(session) -> None:
    # given 10 x 100.00 taken at 10 % tax (1,100.00), 5 shipped and invoiced (550.00)
    setup_company(session, tax_pct=10)
    order = f.order(session, lines=[("WID-1", 10)])
    customer = session.get(Customer, order.customer_id)
    ship(session, order, ("WID-1", 5), tracking="1Z1")
    assert uninvoiced_approved_minor(session, customer.id) == 55000
    # when the customer's tax rate becomes 20 %
    customer.tax_rate_bp = 2000
    session.add(customer)
    session.flush()
    # then the unshipped half counts at what it will be invoiced: 500.00 + 100.00 tax, not
    # the 550.00 left of the order's total at its entry rate
    assert uninvoiced_approved_minor(session, customer.id) == 60000
    assert credit_exposure(session, customer.id) == 55000 + 60000
    # and so it is invoiced: nothing is left uninvoiced
    ship(session, order, ("WID-1", 5), tracking="1Z2")
    second = session.exec(select(Invoice).where(Invoice.order_id == order.id)
                          .order_by(Invoice.id.desc())).first()
    assert (second.tax_minor, second.total_minor) == (10000, 60000)
    assert uninvoiced_approved_minor(session, customer.id) == 0
    assert invariants.validate_all(session) == []


def test_exposure_after_a_rate_change_leaves_out_the_cancelled_short_rest(session) -> None:
    # given 10 x 100.00 + 2 x 10.00 at 10 % tax, 4 widgets short and cancelled
    order = short_order(session, tax_pct=10)
    customer = session.get(Customer, order.customer_id)
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    # when the rate becomes 20 %
    customer.tax_rate_bp = 2000
    session.add(customer)
    session.flush()
    # then what is left (6 x 100.00 + 2 x 10.00) counts at 20 %: 744.00
    assert uninvoiced_approved_minor(session, customer.id) == 74400
    ship(session, order)
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert invoice.total_minor == 74400
    assert uninvoiced_approved_minor(session, customer.id) == 0


def test_only_the_orders_rep_or_an_admin_may_choose(session) -> None:
    order = short_order(session)
    # another rep is refused, with what to audit
    for choose in (lambda: fulfilment.wait_for_stock(session, order=order, actor="USALES02"),
                   lambda: fulfilment.ship_partial(session, order=order, actor="USALES02"),
                   lambda: fulfilment.cancel_line(session, order=order, line_no=1,
                                                  actor="USALES02", reason="no")):
        with pytest.raises(PermissionDenied) as caught:
            choose()
        assert (caught.value.actor, caught.value.entity_id) == ("USALES02", order.id)
        assert caught.value.action.startswith("order.backorder_choice.")
    assert line_of(session, order).qty_cancelled == 0
    # an admin may, and then the rep is told
    fulfilment.cancel_line(session, order=order, line_no=1, actor="UADMIN01",
                           reason="discontinued")
    told = [p for p in outbox(session, "order_status") if p["channel"] == "USALES01"][-1]
    assert told["context"]["order"]["status"] == "approved"
    assert "an admin cancelled 4 × WID-1" in told["context"]["reasons"][0]


def test_cancel_line_needs_a_short_line_and_a_reason(session) -> None:
    order = short_order(session)
    with pytest.raises(InvalidTransition):
        fulfilment.cancel_line(session, order=order, line_no=2, actor="USALES01", reason="x")
    with pytest.raises(ValidationFailed):
        fulfilment.cancel_line(session, order=order, line_no=9, actor="USALES01", reason="x")
    with pytest.raises(ValidationFailed):
        fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason=" ")
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    with pytest.raises(InvalidTransition):  # nothing short any more
        fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                               reason="again")


def test_cancelling_everything_short_of_an_order_with_nothing_else_cancels_it(session) -> None:
    setup_company(session, on_hand=0)
    order = f.order(session, lines=[("WID-1", 5)])
    assert order.status == OrderStatus.BACKORDERED
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    assert order.status == OrderStatus.CANCELLED
    assert order.cancelled_minor == order.total_minor
    assert uninvoiced_approved_minor(session, order.customer_id) == 0
    assert invariants.validate_all(session) == []


def test_cancelling_the_short_rest_of_a_partly_shipped_order_completes_it(session) -> None:
    # given a backordered order whose reserved units shipped
    order = short_order(session)
    ship(session, order, ("WID-1", 6), ("GADGET", 2))
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    # when the short rest is cancelled
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    # then nothing is left to ship: it is shipped and (already) invoiced
    assert order.status == OrderStatus.INVOICED
    moves = [e.to_state for e in events(session, order, "order.transition")][-3:]
    assert moves == ["partially_shipped", "shipped", "invoiced"]
    assert uninvoiced_approved_minor(session, order.customer_id) == 0
    assert invariants.validate_all(session) == []


def test_wait_and_ship_partial_are_recorded_and_billing_is_told_to_ship(session) -> None:
    order = short_order(session)
    # when the rep chooses to wait, nothing changes but the choice is recorded
    short = fulfilment.wait_for_stock(session, order=order, actor="USALES01")
    assert short == [{"line_no": 1, "sku": "WID-1", "ordered": 10, "reserved": 6,
                      "backordered": 4}]
    assert order.status == OrderStatus.BACKORDERED
    # when the rep chooses ship partial, billing is told what to ship
    to_ship = fulfilment.ship_partial(session, order=order, actor="USALES01")
    assert to_ship == [{"line_no": 1, "sku": "WID-1", "quantity": 6},
                       {"line_no": 2, "sku": "GADGET", "quantity": 2}]
    # and a double click records and tells nothing twice
    fulfilment.ship_partial(session, order=order, actor="USALES01")
    fulfilment.wait_for_stock(session, order=order, actor="USALES01")
    fulfilment.wait_for_stock(session, order=order, actor="USALES01")
    choices = events(session, order, "order.backorder_choice")
    assert [(e.actor, e.data["choice"]) for e in choices] == [
        ("USALES01", "wait"), ("USALES01", "ship_partial"), ("USALES01", "wait")]
    assert len([p for p in outbox(session, "backorder_notice")
                if p["context"].get("choice") == "ship_partial"]) == 1
    billing = [p for p in outbox(session, "backorder_notice") if p["context"].get("choice")][-1]
    assert billing["channel"] == "ar"
    assert billing["context"]["choice"] == "ship_partial"
    assert billing["context"]["ship"] == to_ship
    assert order.status == OrderStatus.BACKORDERED


def test_ship_partial_with_nothing_reserved_is_refused(session) -> None:
    setup_company(session, on_hand=0)
    order = f.order(session, lines=[("WID-1", 5)])
    with pytest.raises(InvalidTransition) as caught:
        fulfilment.ship_partial(session, order=order, actor="USALES01")
    assert "nothing to ship" in caught.value.detail


def test_restock_reserves_for_backorders_oldest_first(session) -> None:
    # given no stock, and two orders waiting for it: 4 (older) and 5
    setup_company(session, on_hand=0)
    older = f.order(session, lines=[("WID-1", 4)])
    younger = f.order(session, lines=[("WID-1", 5)])
    assert older.status == younger.status == OrderStatus.BACKORDERED
    # when 6 arrive
    f.product(session, "WID-1", price="100.00", on_hand=6)
    # then the older order gets all it needs and is approved; the younger gets the rest
    assert older.status == OrderStatus.APPROVED
    assert younger.status == OrderStatus.BACKORDERED
    assert (line_of(session, younger).qty_reserved,
            line_of(session, younger).qty_backordered) == (2, 3)
    assert stock(session) == (6, 6)
    told = [p["context"] for p in outbox(session, "order_status")][-2:]
    assert (told[0]["order"]["number"], told[0]["order"]["status"]) == (older.number,
                                                                       "approved")
    assert told[0]["reasons"] == ["stock arrived: 4 × WID-1 reserved", "ready to ship"]
    assert told[1]["reasons"] == ["stock arrived: 2 × WID-1 reserved",
                                  "still short: 3 × WID-1"]
    # when the rest arrives, the younger is approved too
    f.product(session, "WID-1", price="100.00", on_hand=9)
    assert younger.status == OrderStatus.APPROVED
    assert stock(session) == (9, 9)
    assert [e.data["lines"] for e in events(session, younger, "order.stock_reserved")] == [
        [{"line_no": 1, "sku": "WID-1", "reserved": 2}],
        [{"line_no": 1, "sku": "WID-1", "reserved": 3}]]
    assert invariants.validate_all(session) == []


def test_restock_reserves_the_short_rest_of_a_partly_shipped_order(session) -> None:
    order = short_order(session)
    ship(session, order, ("WID-1", 6))
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    f.product(session, "WID-1", price="100.00", on_hand=4)
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    assert (line_of(session, order).qty_reserved, line_of(session, order).qty_backordered) == (
        4, 0)
    ship(session, order)
    assert order.status == OrderStatus.INVOICED
    assert invariants.validate_all(session) == []


def test_on_hand_cannot_go_below_what_is_reserved(session) -> None:
    setup_company(session, on_hand=10)
    f.order(session, lines=[("WID-1", 8)])
    with pytest.raises(ValidationFailed) as caught:
        f.product(session, "WID-1", on_hand=7)
    assert caught.value.errors[0].field == "on_hand"


def test_a_restock_while_the_order_ships_serves_its_backorder(db, monkeypatch) -> None:
    # given an order of 10 with 6 reserved and 4 backordered
    with db.transaction() as s:
        number = short_order(s).number
    # and a shipment of the 6 that holds the order (and the product) for a while
    meet = threading.Barrier(2, timeout=1.5)
    invoice_shipment = shipping.invoice_shipment

    def slow_invoice(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return invoice_shipment(*args, **kwargs)

    monkeypatch.setattr(shipping, "invoice_shipment", slow_invoice)
    errors: list[Exception] = []

    def run(work) -> None:
        try:
            with db.transaction() as s:
                work(s)
        except Exception as exc:
            errors.append(exc)

    def ship_reserved(s: Session) -> None:
        shipping.ship_order(s, order_number=number, carrier="UPS", tracking_number="1Z1",
                            shipped_at=SHIPPED_AT, actor="api", now=NOW,
                            lines=[ShipmentLineIn(sku="WID-1", quantity=6),
                                   ShipmentLineIn(sku="GADGET", quantity=2)])

    # when the ERP restocks the product at the same moment
    threads = [threading.Thread(target=run, args=(ship_reserved,)),
               threading.Thread(target=run, args=(lambda s: f.product(
                   s, "WID-1", price="100.00", on_hand=10),))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then both went through (one after the other, no deadlock) and the backorder is served
    assert errors == []
    with db.read_session() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        line = line_of(s, order)
        assert (line.qty_shipped, line.qty_reserved, line.qty_backordered) == (6, 4, 0)
        assert order.status == OrderStatus.PARTIALLY_SHIPPED
        assert stock(s)[1] == 4
        assert invariants.validate_all(s) == []


# -- the rest of a partly shipped order ---------------------------------------------------------

def partly_shipped(session: Session) -> tuple[Order, Order]:
    """An order of 10 widgets + 2 gadgets, 4 widgets and the gadgets shipped (6 widgets still
    reserved for it), and a later order waiting for 3 widgets."""
    setup_company(session, on_hand=10)
    order = f.order(session, lines=[("WID-1", 10), ("GADGET", 2)])
    waiting = f.order(session, lines=[("WID-1", 3)])
    assert waiting.status == OrderStatus.BACKORDERED
    ship(session, order, ("WID-1", 4), ("GADGET", 2))
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    assert stock(session) == (6, 6)
    return order, waiting


@pytest.mark.parametrize("paid", [False, True])
def test_cancelling_the_reserved_rest_of_a_partly_shipped_order_completes_it(session,
                                                                          paid) -> None:
    from workflows.cash_application import PaymentIn, record_payment

    # given a partly shipped order (its shipment invoiced: 420.00, paid or not) whose
    # customer no longer wants the 6 widgets still reserved for it
    order, waiting = partly_shipped(session)
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert invoice.total_minor == 42000
    if paid:
        record_payment(session, PaymentIn(amount="420.00", currency="USD", received_at=NOW,
                                          reference=invoice.number), actor="test",
                       apply_to=[invoice.number])
    # when the rep cancels the rest
    done = fulfilment.cancel_rest(session, order=order, actor="USALES01",
                                  reason="customer no longer wants the rest", now=NOW)
    session.commit()
    # then the 6 are cancelled and their stock released to the waiting order
    assert done == [{"line_no": 1, "sku": "WID-1", "quantity": 6, "released": 6}]
    line = line_of(session, order)
    assert (line.qty_shipped, line.qty_cancelled, line.qty_reserved, line.qty_backordered) == (
        4, 6, 0, 0)
    assert order.cancelled_minor == 60000
    assert waiting.status == OrderStatus.APPROVED
    assert line_of(session, waiting).qty_reserved == 3
    assert stock(session) == (6, 3)
    # and the order is complete: shipped, invoiced (and paid when its invoice is)
    assert order.status == (OrderStatus.PAID if paid else OrderStatus.INVOICED)
    moves = [e.to_state for e in events(session, order, "order.transition")]
    assert moves[-3 if paid else -2:] == ["shipped", "invoiced"] + (["paid"] if paid else [])
    # its exposure is gone: only the waiting order is approved and not invoiced
    assert uninvoiced_approved_minor(session, order.customer_id) == waiting.total_minor
    [event] = events(session, order, "order.line_cancelled")
    assert (event.actor, event.reason, event.data["quantity"], event.data["released"]) == (
        "USALES01", "customer no longer wants the rest", 6, 6)
    told = [p for p in outbox(session, "order_status") if p["channel"] == "USALES01"
            and p["context"]["order"]["number"] == order.number][-1]
    assert "cancelled the rest: 6 × WID-1" in told["context"]["reasons"][0]
    billing = [p for p in outbox(session, "order_status") if p["channel"] == "ar"][-1]
    assert billing["context"]["order"]["number"] == order.number
    assert invariants.validate_all(session) == []


def test_cancelling_the_rest_is_for_the_rep_or_an_admin_of_a_partly_shipped_order(
        session) -> None:
    order, _ = partly_shipped(session)
    with pytest.raises(PermissionDenied) as caught:
        fulfilment.cancel_rest(session, order=order, actor="USALES02", reason="no")
    assert caught.value.action == "order.backorder_choice.cancel_rest"
    with pytest.raises(ValidationFailed):
        fulfilment.cancel_rest(session, order=order, actor="USALES01", reason=" ")
    assert line_of(session, order).qty_cancelled == 0 and stock(session) == (6, 6)
    fulfilment.cancel_rest(session, order=order, actor="UADMIN01", reason="discontinued")
    with pytest.raises(InvalidTransition):  # nothing is left, the order is invoiced
        fulfilment.cancel_rest(session, order=order, actor="UADMIN01", reason="again")
    # an order nothing of which shipped is cancelled whole (`orders.cancel_order`) instead
    fresh = f.order(session, lines=[("GADGET", 1)])
    with pytest.raises(InvalidTransition) as refused:
        fulfilment.cancel_rest(session, order=fresh, actor="USALES01", reason="x")
    assert "nothing of it has shipped" in refused.value.detail
    assert invariants.validate_all(session) == []


def test_after_a_rate_change_the_cancelled_rest_leaves_what_was_invoiced(session) -> None:
    # given 10 x 100.00 taken at 10 % tax (1,100.00), 5 shipped and invoiced (550.00)
    setup_company(session, tax_pct=10)
    order = f.order(session, lines=[("WID-1", 10)])
    ship(session, order, ("WID-1", 5), tracking="1Z1")
    # when the ERP moves the customer to 20 %, then the rep cancels the 5 not shipped
    f.customer(session, sales_rep="USALES01", tax_rate="20")
    session.commit()
    # then the order is worth what it bills: 550.00 invoiced + 500.00 + 100.00 tax to come
    assert (order.tax_minor, order.total_minor, order.cancelled_minor) == (15000, 115000, 0)
    assert uninvoiced_approved_minor(session, order.customer_id) == 60000
    fulfilment.cancel_rest(session, order=order, actor="USALES01", reason="not wanted",
                           now=NOW)
    session.commit()
    # and what was cancelled is the rest at 20 % (600.00): the order's total less it is
    # the 550.00 it was invoiced, not 500.00 (1,100.00 at 10 % less 600.00 at 20 %)
    invoiced = sum(i.total_minor for i in session.exec(
        select(Invoice).where(Invoice.order_id == order.id)))
    assert invoiced == 55000
    assert order.cancelled_minor == 60000
    assert order.total_minor - order.cancelled_minor == invoiced
    assert order.status == OrderStatus.INVOICED
    assert invariants.validate_all(session) == []


def test_the_cancelled_value_is_at_the_rate_the_order_is_worth(session) -> None:
    # given 10 x 100.00 + 2 x 10.00 at 10 % tax (1,122.00), 4 widgets short, and the
    # customer moved to 20 % while the order waits for stock
    order = short_order(session, tax_pct=10)
    f.customer(session, sales_rep="USALES01", tax_rate="20")
    session.commit()
    assert order.total_minor == 122400  # 1,020.00 + 204.00 tax
    # when the short 4 are cancelled
    fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01", reason="gone")
    session.commit()
    # then they are worth 400.00 + 80.00 tax, and the order what it will invoice: 744.00
    assert order.cancelled_minor == 48000
    assert order.total_minor - order.cancelled_minor == 74400
    assert uninvoiced_approved_minor(session, order.customer_id) == 74400
    ship(session, order)
    invoice = session.exec(select(Invoice).where(Invoice.order_id == order.id)).one()
    assert invoice.total_minor == 74400
    assert invariants.validate_all(session) == []
