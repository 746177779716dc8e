"""ERP invoices many at once (`invoicing.ingest_erp_invoices`, the CSV import): the rules of
one at a time (`ingest_erp_invoice`, the API), a refusal per item, and nothing half-written."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session, select

from models import AuditEvent, Invoice, InvoiceLine, Order
from models.invoices import invoice_number_key
from tests.support import factories as f
from tests.support import meanwhile
from workflows import orders
from workflows.errors import Conflict, DomainError, ValidationFailed
from workflows.inputs import InvoiceIn, ShipmentLineIn
from workflows.invoicing import ingest_erp_invoice, ingest_erp_invoices

ORDERED = datetime(2025, 12, 20, 10, tzinfo=UTC)  # before the invoices' fixed dates


def erp(number: str, total: str = "100.00", **kwargs) -> InvoiceIn:
    fields = {"customer": "C-GLOBEX", "currency": "USD", "issue_date": date(2026, 1, 1),
              "due_date": date(2026, 1, 31), **kwargs}
    return InvoiceIn(number=number, total=total, **fields)


@pytest.fixture
def books(session: Session) -> Session:
    f.customer(session)
    f.invoice(session, "ERP-7", total="500.00")
    session.commit()
    return session


def numbers(session: Session) -> list[str]:
    return list(session.exec(select(Invoice.number).order_by(Invoice.number)))


def test_many_at_once_answer_as_one_at_a_time(books) -> None:
    # given items breaking one rule each (of those the input model cannot check), between
    # good ones
    items = [erp("ERP-1"), erp("ERP-7"), erp("ERP-2", customer="C-NOBODY"),
             erp("ERP-3", currency="EUR"), erp("ERP-6", total="0.00"),
             erp("ERP-8", due_date=date(2025, 12, 31)), erp("ERP-4", order="SO-404"),
             erp("ERP-5")]
    # when the batch stores them
    outcomes = ingest_erp_invoices(books, items, actor="import")
    # then each refusal is what one at a time says about that item
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, int):
            continue
        with pytest.raises(DomainError) as alone, books.begin_nested():
            ingest_erp_invoice(books, item, actor="import")
        assert (type(outcome), outcome.detail, outcome.errors) == (
            type(alone.value), alone.value.detail, alone.value.errors)
    assert [type(o).__name__ for o in outcomes] == [
        "int", "Conflict", "ValidationFailed", "ValidationFailed", "ValidationFailed",
        "ValidationFailed", "ValidationFailed", "int"]
    # and the good ones are stored as issued, each audited
    assert numbers(books) == ["ERP-1", "ERP-5", "ERP-7"]
    stored = books.get(Invoice, outcomes[0])
    assert (stored.number, stored.total_minor, stored.balance_minor, stored.source,
            stored.payment_terms) == ("ERP-1", 10_000, 10_000, "erp", "NET30")
    # (with the key remittance texts find it by, as one at a time stores it)
    assert stored.number_key == invoice_number_key("ERP-1") == "1"
    assert sorted(e.data["number"] for e in books.exec(select(AuditEvent).where(
        AuditEvent.action == "invoice.ingested"))) == ["ERP-1", "ERP-5", "ERP-7"]


def test_a_number_twice_is_refused_the_second_time_with_or_without_lines(books) -> None:
    # when a number comes twice in one file, the second time with lines
    line = {"description": "Widget", "sku": "WID-1", "quantity": 1, "amount": "100.00"}
    outcomes = ingest_erp_invoices(books, [
        erp("ERP-1"), erp("ERP-1", lines=[line]), erp("ERP-2", lines=[line]), erp("ERP-2")],
        actor="import")
    # then the second of each is a conflict, and one of each is stored
    assert [type(o) for o in outcomes] == [int, Conflict, int, Conflict]
    assert numbers(books) == ["ERP-1", "ERP-2", "ERP-7"]


def test_an_invoice_whose_lines_are_refused_leaves_nothing(books) -> None:
    # when the lines of one invoice add up to more than its total
    outcomes = ingest_erp_invoices(books, [
        erp("ERP-1", lines=[{"description": "Widget", "sku": "WID-1", "quantity": 2,
                             "unit_price": "80.00"}]),
        erp("ERP-2")], actor="import")
    # then it is refused, and neither it nor its lines are left in the session
    assert isinstance(outcomes[0], ValidationFailed) and "lines" in outcomes[0].detail
    assert isinstance(outcomes[1], int)
    books.flush()
    assert numbers(books) == ["ERP-2", "ERP-7"]
    assert books.exec(select(InvoiceLine)).all() == []


def test_a_number_stored_meanwhile_by_another_import_is_refused_alone(books, db) -> None:
    # given another import that stored ERP-20 and has not committed yet
    assert isinstance(ingest_erp_invoices(books, [erp("ERP-20")], actor="import")[0], int)

    # when a batch holding ERP-20 too is stored at the same time, and waits for it
    outcomes, waited = meanwhile.second_writer(db, books, lambda s: ingest_erp_invoices(
        s, [erp("ERP-21"), erp("ERP-20"), erp("ERP-22")], actor="import"))
    # then (on PostgreSQL the batch ran into ERP-20: it is retried row by row) only ERP-20
    # is refused, as taken, and the others are stored
    assert waited == (not db.is_sqlite)
    assert [type(o).__name__ for o in outcomes] == ["int", "Conflict", "int"]
    books.expire_all()
    assert numbers(books) == ["ERP-20", "ERP-21", "ERP-22", "ERP-7"]


# -- our own numbers beside the ERP's -------------------------------------------------------------
def test_our_invoices_skip_numbers_an_erp_invoice_already_has(books) -> None:
    """An ERP may number in our format (`POST /invoices` keeps its numbers): our next
    invoices — a shipment's, a subscription period's — take the next number no invoice has,
    instead of failing on the unique number (the shipment, the period never billed)."""
    from datetime import UTC, datetime

    from workflows import orders, shipping, subscriptions
    from workflows.inputs import OrderIn, OrderLineIn

    session = books
    # given the ERP's invoices INV-2026-000001 and -000002 (our format, our counter at 0)
    for number in ("INV-2026-000001", "INV-2026-000002"):
        ingest_erp_invoice(session, erp(number, issue_date=date(2026, 3, 1),
                                        due_date=date(2026, 3, 31)), actor="erp")
    f.user(session, "USALES01", "sales")
    f.product(session, "WID", price="10.00", on_hand=5)
    f.product(session, "CLOUD", price="1200.00", revenue_type="subscription")
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    placed = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
            OrderLineIn(sku="WID", quantity=1),
            OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-03-01",
                        service_end="2027-02-28", billing="monthly")]),
        actor="USALES01", now=now)
    # when we invoice a shipment and a subscription's first period
    shipping.ship_order(session, order_number=placed.number, carrier="UPS",
                        tracking_number="1Z1", shipped_at=now, actor="api", now=now,
                        lines=[ShipmentLineIn(sku="WID", quantity=1)])
    [due] = subscriptions.due_periods(session, date(2026, 3, 10))
    period = subscriptions.bill_period(session, order_line_id=due.order_line_id,
                                       period_start=due.period_start, as_of=date(2026, 3, 10),
                                       now=now)
    session.commit()
    # then each got a number of its own, after the ERP's, and the ERP's are unchanged
    ours = list(session.exec(select(Invoice.number).where(Invoice.order_id == placed.id)
                             .order_by(Invoice.id)))
    assert ours == ["INV-2026-000003", "INV-2026-000004"] and period.number in ours
    assert numbers(session) == ["ERP-7", "INV-2026-000001", "INV-2026-000002",
                                "INV-2026-000003", "INV-2026-000004"]


# -- what an ERP invoice may say about its order and its lines -----------------------------------
def test_an_erp_invoice_for_a_cancelled_order_is_refused_naming_its_state(books) -> None:
    # given an order of Globex that was cancelled
    f.user(books, "USALES01", "sales")
    f.product(books)
    placed = f.order(books, now=ORDERED)
    orders.cancel_order(books, placed, actor="USALES01", reason="changed mind", now=ORDERED)
    books.commit()
    assert books.get(Order, placed.id).status == "cancelled"
    # when the ERP invoices it, alone or in a file
    with pytest.raises(ValidationFailed) as alone:
        ingest_erp_invoice(books, erp("ERP-30", order=placed.number), actor="api")
    [in_file] = ingest_erp_invoices(books, [erp("ERP-31", order=placed.number)],
                                    actor="import")
    # then it is refused (422) on `order`, saying why, and nothing is stored
    assert alone.value.errors[0].field == "order"
    assert alone.value.errors[0].detail == (f"order {placed.number} is cancelled; an invoice "
                                            "cannot bill it")
    assert isinstance(in_file, ValidationFailed) and in_file.errors == alone.value.errors
    books.rollback()
    assert numbers(books) == ["ERP-7"]


def test_erp_invoice_lines_are_informational_below_its_total_and_refused_above(
        books) -> None:
    """The ERP's total is what is owed (README: an ERP's lines are informational; its net
    lines may leave tax or freight unitemised), so lines adding up to less are stored as
    sent; lines adding up to more contradict the invoice: 422 saying by how much."""
    # when
    below = ingest_erp_invoice(books, erp("ERP-40", total="108.00", lines=[
        {"description": "Widget", "quantity": 2, "unit_price": "50.00"}]), actor="api")
    with pytest.raises(ValidationFailed) as above:
        ingest_erp_invoice(books, erp("ERP-41", lines=[
            {"description": "Widget", "quantity": 2, "unit_price": "60.00"}]), actor="api")
    # then
    assert (below.total_minor, below.balance_minor) == (10800, 10800)
    assert [li.line_total_minor for li in books.exec(
        select(InvoiceLine).where(InvoiceLine.invoice_id == below.id))] == [10000]
    assert above.value.errors[0].field == "lines"
    assert above.value.errors[0].detail == ("lines add up to 120.00, 20.00 more than the "
                                            "invoice total 100.00")
