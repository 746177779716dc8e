"""Master data pushed every night by an ERP (`workflows.masterdata`): a change of a customer or
a product never rewrites what was already sold, billed or recognised; a change that would
(a customer's currency) is refused, naming the field; keys differing only in spaces or case
do not make twins."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, func, select

from models import AuditEvent, Customer, Invoice, OrderLine, OutboxMessage, Product
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import invariants, masterdata, orders, revenue, shipping
from workflows.errors import ValidationFailed
from workflows.inputs import CustomerIn, OrderIn, OrderLineIn, ProductIn, ShipmentLineIn

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def globex(**changes: object) -> CustomerIn:
    return CustomerIn(**{"external_id": "C-GLOBEX", "name": "Globex Corporation",
                         "currency": "USD", "credit_limit": "50000.00",
                         "payment_terms": "NET30", **changes})


def test_a_customers_currency_never_changes_once_it_exists(session: Session) -> None:
    # given a USD customer with an open invoice
    f.customer(session)
    f.invoice(session, "INV-ERP-1", total="1000.00")
    # when the ERP re-sends it in EUR
    with pytest.raises(ValidationFailed) as refused:
        masterdata.upsert_customer(session, globex(currency="EUR"), actor="api")
    # then it is refused by field and the customer still bills in USD
    assert refused.value.errors[0].field == "currency"
    assert "bills in USD" in refused.value.errors[0].detail
    assert session.exec(select(Customer.currency)).one() == "USD"
    # and its own currency in lower case is no change at all
    again = masterdata.upsert_customer(session, globex(currency="usd"), actor="api")
    assert (again.created, again.changed) == (False, False)


def test_a_credit_limit_change_is_audited_from_and_to(session: Session) -> None:
    # given
    customer = f.customer(session)
    # when the ERP raises the limit
    masterdata.upsert_customer(session, globex(credit_limit="75000.00",
                                               billing_email="ap@globex.example",
                                               billing_address="1 Main St, Springfield",
                                               credit_reviewed=True), actor="api")
    # then who, from and to, and in which currency, are in the audit log, under the action a
    # credit approver's raise is recorded as (one trail of credit-limit decisions)
    [event] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "customer.updated", AuditEvent.entity_id == customer.id)).all()
    assert event.actor == "api"
    assert event.data["changes"] == {"credit_limit_minor": [5000000, 7500000]}
    [limit] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "customer.credit_limit_changed")).all()
    assert (limit.actor, limit.entity_id, limit.data["currency"], limit.data["changes"]) == (
        "api", str(customer.id), "USD", {"credit_limit_minor": [5000000, 7500000]})


def mixed_order(session: Session):
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1000000.00")
    f.product(session, "HW-1", price="450.00", ssp="500.00")
    f.product(session, "INST", price="300.00", ssp="400.00", revenue_type="service")
    return orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="HW-1", quantity=2, discount_pct="10"),
            OrderLineIn(sku="INST", quantity=1, service_start="2026-03-01",
                        service_end="2026-03-31")]), actor="USALES01", now=NOW)


def test_a_product_change_never_rewrites_orders_already_taken(session: Session) -> None:
    # given an order mixing goods and a service, allocated by SSP
    placed = mixed_order(session)
    before = {ob.sku: ob.allocated_minor for ob in revenue.load_obligations(session)}
    lines_before = [(li.unit_price_minor, li.ssp_minor, li.revenue_type, li.line_total_minor)
                    for li in session.exec(select(OrderLine).order_by(OrderLine.line_no))]
    # when the ERP reprices both products, changes their SSP, cap and revenue type
    masterdata.upsert_product(session, ProductIn(
        sku="HW-1", name="Widget HW-1", unit_price="900.00", currency="USD", on_hand=1000,
        ssp="100.00", max_discount_pct="0", revenue_type="service"), actor="api")
    masterdata.upsert_product(session, ProductIn(
        sku="INST", name="Widget INST", unit_price="10.00", currency="USD", on_hand=1000,
        ssp="5000.00", revenue_type="goods"), actor="api")
    session.flush()
    # then the order's lines, totals and allocations are those it was sold at
    assert before == {"HW-1": 79286, "INST": 31714}  # 1110.00 by SSP 1000:400
    assert {ob.sku: ob.allocated_minor for ob in revenue.load_obligations(session)} == before
    assert [(li.unit_price_minor, li.ssp_minor, li.revenue_type, li.line_total_minor)
            for li in session.exec(select(OrderLine).order_by(OrderLine.line_no))
            ] == lines_before == [(45000, 50000, "goods", 81000),
                                  (30000, 40000, "service", 30000)]
    session.refresh(placed)
    assert placed.total_minor == 111000
    assert invariants.validate_order_totals(session) == []


def test_a_sku_differing_only_in_case_or_spaces_is_no_second_product(session: Session) -> None:
    # given
    f.product(session, "WID-1", price="100.00")
    # when the ERP sends the same SKU in another case, with spaces around it
    with pytest.raises(ValidationFailed) as refused:
        masterdata.upsert_product(session, ProductIn(
            sku=" wid-1 ", name="Widget", unit_price="100.00", currency="USD", on_hand=5),
            actor="api")
    # then it is refused, naming the product already stored
    assert refused.value.errors[0].field == "sku"
    assert "WID-1" in refused.value.errors[0].detail
    assert session.exec(select(func.count()).select_from(Product)).one() == 1


def test_terms_tax_rate_and_billing_email_changes_reach_only_later_invoices(
        session: Session) -> None:
    # given an order of 2 x 500.00 taken at 0 % tax on NET30, one unit shipped and invoiced
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="100000.00", billing_email="old@globex.example")
    f.product(session, "WID-1", price="500.00")
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
        lines=[OrderLineIn(sku="WID-1", quantity=2)]), actor="USALES01", now=NOW)
    ship = {"order_number": placed.number, "carrier": "UPS", "actor": "api",
            "lines": [ShipmentLineIn(sku="WID-1", quantity=1)]}
    shipping.ship_order(session, tracking_number="1Z1", shipped_at=NOW, now=NOW, **ship)
    # when the ERP moves the customer to NET60, 20 % tax and a new billing address
    masterdata.upsert_customer(session, globex(payment_terms="NET60", tax_rate_pct="20",
                                               billing_email="new@globex.example",
                                               credit_limit="100000.00"), actor="api")
    later = NOW.replace(day=27)
    shipping.ship_order(session, tracking_number="1Z2", shipped_at=later, now=later, **ship)
    # then the first invoice is as it was issued; the second is billed on the new terms, at
    # the rate of its own day (the tax point), to the new address
    first, second = session.exec(select(Invoice).order_by(Invoice.id)).all()
    assert (first.payment_terms, str(first.due_date), first.tax_minor, first.total_minor) == (
        "NET30", "2026-04-19", 0, 50000)
    assert (second.payment_terms, str(second.due_date), second.tax_minor,
            second.total_minor) == ("NET60", "2026-05-26", 10000, 60000)
    sent = session.exec(select(OutboxMessage.payload).where(
        OutboxMessage.transport == "email").order_by(OutboxMessage.id)).all()
    assert [m["to"] for m in sent if m.get("template") == "invoice"] == [
        "old@globex.example", "new@globex.example"]
    # and the order, priced again when the rate changed (its invoiced unit at 0 %, the rest
    # at 20 %), is worth what its invoices came to
    session.refresh(placed)
    assert (placed.tax_minor, placed.total_minor, placed.status) == (10000, 110000, "invoiced")
    assert placed.total_minor == first.total_minor + second.total_minor
    assert invariants.validate_all(session) == []


def test_two_limit_changes_at_once_are_audited_one_after_the_other(db) -> None:
    # given a customer with a 50,000.00 limit
    with db.transaction() as s:
        f.customer(s)
    done = threading.Event()

    def erp_sync() -> None:
        with db.transaction() as s:
            masterdata.upsert_customer(s, globex(credit_limit="60000.00"), actor="import")
        done.set()

    # when the API raises it to 75,000.00 while a CSV import sets 60,000.00
    with db.transaction() as s:
        masterdata.upsert_customer(s, globex(credit_limit="75000.00"), actor="api")
        s.flush()
        other = threading.Thread(target=erp_sync)
        other.start()
        time.sleep(0.5)  # the import reads the customer while the API's change is uncommitted
        assert not done.is_set()
    other.join()
    # then the later change starts from the earlier one: the trail reads 50k -> 75k -> 60k
    with db.read_session() as s:
        trail = [(e.actor, e.data["changes"]["credit_limit_minor"]) for e in s.exec(
            select(AuditEvent).where(AuditEvent.action == "customer.credit_limit_changed")
            .order_by(AuditEvent.id))]
        limit = s.exec(select(Customer.credit_limit_minor)).one()
    assert trail == [("api", [5000000, 7500000]), ("import", [7500000, 6000000])]
    assert limit == 6000000
