"""Credit notes: requested, approved by someone else, issued once, capped, by lines or amount,
customer credit on a paid invoice, tiers (issue 14, point 3 and 6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from models import (
    Approval,
    AuditEvent,
    CreditNote,
    CreditNoteLine,
    CreditNoteRequest,
    Invoice,
    InvoiceLine,
    OutboxMessage,
)
from tests.support import factories as f
from tests.support.examples import examples
from tests.support.meanwhile import at_once
from tests.support.timetravel import frozen_at
from workflows import approvals, credit_notes, invariants, policy
from workflows.cash_application import PaymentIn, record_payment
from workflows.credit_notes import pro_rata
from workflows.errors import (
    AlreadyDecided,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.inputs import CreditNoteIn
from workflows.inputs import CreditNoteLineIn as LineIn

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)  # a Tuesday
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UCREDIT2", "credit_approver")
    f.user(session, "UADMIN01", "admin")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    f.invoice(session, "INV-2026-000001", total="1000.00", issued=TODAY - timedelta(days=10))
    session.commit()
    return session


def lined(session, number: str = "INV-2026-000002") -> str:
    """An invoice with three lines: 600.00, 300.00 and 100.00 (+10% tax each)."""
    from workflows.inputs import InvoiceIn
    from workflows.invoicing import ingest_erp_invoice

    invoice = ingest_erp_invoice(session, InvoiceIn(
        number=number, customer="C-GLOBEX", currency="USD", issue_date=TODAY,
        due_date=TODAY + timedelta(days=30), total="1100.00",
        lines=[{"description": "A", "quantity": 6, "unit_price": "100.00"},
               {"description": "B", "quantity": 3, "unit_price": "100.00"},
               {"description": "C", "quantity": 1, "unit_price": "100.00"}]), actor="test")
    for line in session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)):
        line.tax_minor = line.line_total_minor // 10
        session.add(line)
    session.commit()
    return number


def ask(session, *, amount: str | None = "100.00", lines=None, by: str = "UCOLL001",
        number: str = "INV-2026-000001", **kw) -> CreditNoteRequest:
    request, _ = credit_notes.request_credit_note(session, CreditNoteIn(
        invoice=number, reason="two units damaged", amount=amount, lines=lines, **kw),
        actor=by, now=NOW)
    return request


def approval_of(session, request: CreditNoteRequest) -> Approval:
    return session.get(Approval, request.approval_id)


def test_a_request_waits_for_a_credit_approver_and_is_issued_once(books) -> None:
    # given a credit approver's own request
    request = ask(books, by="UCREDIT1")
    card = books.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "backoffice_approval_card")).one()
    assert card.payload["channel"] == "approvals"
    assert books.exec(select(CreditNote)).all() == []
    # when the requester tries to approve it, then a credit approver does, then another
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=True, now=NOW)
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT2",
                     approve=True, now=NOW)
    with pytest.raises(AlreadyDecided) as late:
        approvals.decide(session=books, approval_id=request.approval_id, user_id="UADMIN01",
                         approve=True, now=NOW)
    books.commit()
    # then one CN-<year>-<6 digits> reduced the balance, e-mailed with its PDF
    [note] = books.exec(select(CreditNote)).all()
    assert note.number == "CN-2026-000001" and note.amount_minor == 10_000
    invoice = credit_notes.get_invoice(books, "INV-2026-000001")
    assert invoice.balance_minor == 90_000
    assert late.value.decided_by == "UCREDIT2"
    assert request.status == "issued"
    mail = books.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "credit_note")).one()
    assert mail.payload["attachments"] == [{"kind": "credit_note_pdf", "number": note.number}]
    assert invariants.validate_all(books) == []


def test_a_rejection_issues_nothing_and_needs_a_reason(books) -> None:
    request = ask(books)
    with pytest.raises(ValidationFailed):
        approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=False, now=NOW, note=" ")
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=False, now=NOW, note="the goods were fine")
    assert request.status == "rejected" and books.exec(select(CreditNote)).all() == []
    assert credit_notes.creditable(books, credit_notes.get_invoice(
        books, "INV-2026-000001")) == 100_000


def test_never_more_than_the_total_less_earlier_and_pending_notes(books) -> None:
    # given 600.00 waiting and 300.00 issued
    ask(books, amount="600.00")
    issued = ask(books, amount="300.00")
    approvals.decide(session=books, approval_id=issued.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    # when more than the last 100.00 is asked
    with pytest.raises(ValidationFailed) as refused:
        ask(books, amount="100.01")
    # then it is refused, naming the amount and what is left
    assert refused.value.errors[0].field == "amount"
    assert "100.00 more at most" in refused.value.detail
    assert ask(books, amount="100.00").amount_minor == 10_000
    assert invariants.validate_credit_notes(books) == []


def test_a_note_issued_without_approval_counts_the_requests_waiting_too(books) -> None:
    # given 600.00 waiting for approval on the 1000.00 invoice
    ask(books, amount="600.00")
    # when a script issues one of its own for more than the 400.00 left
    with pytest.raises(ValidationFailed) as refused:
        credit_notes.issue_direct(books, invoice_number="INV-2026-000001", amount="400.01",
                                  reason="script", actor="test", now=NOW)
    # then it is refused as a request would be, and 400.00 is not
    assert "400.00 more at most" in refused.value.detail
    credit_notes.issue_direct(books, invoice_number="INV-2026-000001", amount="400.00",
                              reason="script", actor="test", now=NOW)
    assert invariants.validate_credit_notes(books) == []


def test_a_note_on_a_paid_invoice_becomes_customer_credit(books) -> None:
    # given the invoice was paid but for 100.00
    record_payment(books, PaymentIn(amount="900.00", currency="USD", received_at=NOW,
                                    reference="INV-2026-000001"), actor="test")
    request = ask(books, amount="250.00")
    # when approved
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    # then 100.00 closed the invoice and 150.00 is the customer's credit
    note = books.exec(select(CreditNote)).one()
    assert (note.amount_minor, note.customer_credit_minor, note.total_minor) == (
        10_000, 15_000, 25_000)
    customer = f.customer(books)
    assert credit_notes.customer_credit_minor(books, customer.id) == 15_000
    assert credit_notes.get_invoice(books, "INV-2026-000001").balance_minor == 0
    assert invariants.validate_all(books) == []


def write_off(session, amount: str, number: str = "INV-2026-000001") -> None:
    """A bad-debt write-off of `amount`, asked by the collector, approved."""
    from workflows import write_offs

    asked = write_offs.request_write_off(session, invoice_number=number, reason="insolvent",
                                         actor="UCOLL001", now=NOW, amount=amount)
    approvals.decide(session=session, approval_id=asked.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)


def test_a_written_off_invoice_cannot_be_credited_into_customer_credit(books) -> None:
    # given the 1000.00 invoice written off in full as bad debt (nobody paid anything)
    write_off(books, "1000.00")
    # when a credit note is asked for on it
    with pytest.raises(ValidationFailed) as refused:
        ask(books, amount="1000.00")
    # then it is refused, saying why; no customer credit appears from money never paid
    assert refused.value.errors[0].field == "amount"
    assert "0.00 more at most" in refused.value.detail
    assert "1000.00 of it was written off" in refused.value.detail
    assert books.exec(select(CreditNote)).all() == []
    assert credit_notes.customer_credit_minor(books, f.customer(books).id) == 0
    assert invariants.validate_all(books) == []


def test_a_partly_paid_rest_written_off_invoice_credits_back_only_what_was_paid(books) -> None:
    # given 600.00 paid and the other 400.00 written off
    record_payment(books, PaymentIn(amount="600.00", currency="USD", received_at=NOW,
                                    reference="INV-2026-000001"), actor="test")
    write_off(books, "400.00")
    # when the whole invoice is to be credited, then only the 600.00 paid can be
    with pytest.raises(ValidationFailed, match="600.00 more at most"):
        ask(books, amount="1000.00")
    request = ask(books, amount="600.00")
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    # and all of it is customer credit: exactly the money the customer paid
    note = books.exec(select(CreditNote)).one()
    assert (note.amount_minor, note.customer_credit_minor) == (0, 60_000)
    assert invariants.validate_all(books) == []


def test_a_note_waiting_keeps_its_amount_from_a_write_off_meanwhile(books) -> None:
    # given a credit note of 300.00 waiting for approval
    request = ask(books, amount="300.00")
    # when the whole 1000.00 is to be written off meanwhile: refused, 700.00 is what is left
    with pytest.raises(ValidationFailed, match="at most what is open and not already asked "
                       "for, 700.00"):
        write_off(books, "1000.00")
    write_off(books, "700.00")
    # then the note, approved afterwards, is issued: the customer gets the credit asked for
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    assert books.exec(select(CreditNote)).one().amount_minor == 30_000
    assert credit_notes.get_invoice(books, "INV-2026-000001").balance_minor == 0
    assert invariants.validate_all(books) == []


def test_by_lines_quantity_and_amount_with_their_tax(books) -> None:
    number = lined(books)
    # when line 1 is credited 2 units of 6 and line 3 a net 40.00
    request = ask(books, number=number, amount=None,
                  lines=[LineIn(line_no=1, quantity=2), LineIn(line_no=3, amount="40.00")])
    # then the total carries each line's tax pro rata: 200 + 20 + 40 + 4
    assert request.amount_minor == 26_400
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    note = books.exec(select(CreditNote)).one()
    by_line = credit_notes.credit_note_lines(books, note.id)  # what revenue recognition reads
    assert [(c.line_no, c.net_minor, c.tax_minor, c.amount_minor, c.quantity) for c in by_line] \
        == [(1, 20_000, 2_000, 22_000, 2), (3, 4_000, 400, 4_400, None)]
    # and a line cannot be credited beyond its net amount
    with pytest.raises(ValidationFailed) as refused:
        ask(books, number=number, amount=None, lines=[LineIn(line_no=3, amount="60.01")])
    assert refused.value.errors[0].field == "lines[0]"
    with pytest.raises(ValidationFailed):
        ask(books, number=number, amount=None, lines=[LineIn(line_no=9, quantity=1)])
    assert invariants.validate_all(books) == []


def taxed_invoice(session, *, price: str, quantity: int, discount: str | None = None,
                  tax_rate: str = "10") -> Invoice:
    """A shipment invoice of one line (`quantity` x `price`, less `discount` %) to a customer
    taxed at `tax_rate` %."""
    f.customer(session, "C-TAXED", "Taxed Ltd", collector="UCOLL001", sales_rep="USALES01",
               tax_rate=tax_rate)
    f.product(session, "UNIT-1", price=price, max_discount="50")  # no discount approval
    order = f.order(session, "C-TAXED", lines=[("UNIT-1", quantity)], discount=discount)
    return f.shipped_invoice(session, order, shipped_at=NOW - timedelta(days=1))


def credit_units(session, invoice: Invoice, parts: list[int]) -> list[CreditNote]:
    """Line 1 of `invoice` credited `parts[0]` units, then `parts[1]`, ... each approved."""
    for units in parts:
        request = ask(session, number=invoice.number, amount=None,
                      lines=[LineIn(line_no=1, quantity=units)])
        approvals.decide(session=session, approval_id=request.approval_id,
                         user_id="UCREDIT1", approve=True, now=NOW)
    return list(session.exec(select(CreditNote).where(CreditNote.invoice_id == invoice.id)
                             .order_by(CreditNote.id)))


def people(session) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")


def test_a_line_returned_one_unit_at_a_time_is_credited_to_the_cent(session) -> None:
    # given 3 units at 10.00 less 0.05 %: 29.99 net + 3.00 tax (10 %) = 32.99
    people(session)
    books = session
    invoice = taxed_invoice(books, price="10.00", quantity=3, discount="0.05")
    [line] = credit_notes.lines_of(books, invoice)
    assert (line.line_total_minor, line.tax_minor, invoice.total_minor) == (2_999, 300, 3_299)
    # when each unit is credited on its own note
    notes = credit_units(books, invoice, [1, 1, 1])
    # then the rounding is cumulative (10.00, 9.99, 10.00 net) and the last unit takes what
    # was left: the whole line is credited, nothing stays open
    rows = [credit_notes.credit_note_lines(books, note.id)[0] for note in notes]
    assert [(r.net_minor, r.tax_minor, r.quantity) for r in rows] == [
        (1_000, 100, 1), (999, 100, 1), (1_000, 100, 1)]
    books.refresh(invoice)
    assert invoice.balance_minor == 0 and sum(n.total_minor for n in notes) == 3_299
    # and no unit is left to credit
    with pytest.raises(ValidationFailed) as refused:
        ask(books, number=invoice.number, amount=None, lines=[LineIn(line_no=1, quantity=1)])
    assert "only 0 of 3 units left" in refused.value.detail
    assert invariants.validate_all(books) == []


def test_a_line_of_100_00_for_3_units_is_not_left_a_cent_open(books) -> None:
    # given an ERP invoice of one line: 3 units for 100.00
    from workflows.inputs import InvoiceIn
    from workflows.invoicing import ingest_erp_invoice

    invoice = ingest_erp_invoice(books, InvoiceIn(
        number="INV-2026-000003", customer="C-GLOBEX", currency="USD", issue_date=TODAY,
        due_date=TODAY + timedelta(days=30), total="100.00",
        lines=[{"description": "A", "quantity": 3, "amount": "100.00"}]), actor="test")
    # when its units are credited one at a time
    notes = credit_units(books, invoice, [1, 1, 1])
    # then 33.33 + 33.34 + 33.33: the invoice is credited in full
    assert [n.total_minor for n in notes] == [3_333, 3_334, 3_333]
    books.refresh(invoice)
    assert invoice.balance_minor == 0
    assert invariants.validate_all(books) == []


def test_a_line_credited_by_net_amounts_in_parts_takes_its_tax_to_the_cent(session) -> None:
    # given a line of 201.00 net + 10.05 tax (5 %) = 211.05
    people(session)
    invoice = taxed_invoice(session, price="100.50", quantity=2, tax_rate="5")
    [line] = credit_notes.lines_of(session, invoice)
    assert (line.line_total_minor, line.tax_minor, invoice.total_minor) == (20_100, 1_005, 21_105)
    # when it is credited a net 100.50, then the other 100.50
    for _ in range(2):
        request = ask(session, number=invoice.number, amount=None,
                      lines=[LineIn(line_no=1, amount="100.50")])
        approvals.decide(session=session, approval_id=request.approval_id,
                         user_id="UCREDIT1", approve=True, now=NOW)
    # then the tax follows cumulatively (5.03, then the 5.02 left): the line is credited
    # exactly its 211.05 (the second note asked 105.53 again: 0.01 more tax than the line
    # had left, refused as more than the invoice's total; on an invoice of more lines it
    # was issued, the line credited 211.06 of 211.05)
    notes = session.exec(select(CreditNote).where(CreditNote.invoice_id == invoice.id)
                         .order_by(CreditNote.id)).all()
    rows = [credit_notes.credit_note_lines(session, note.id)[0] for note in notes]
    assert [(r.net_minor, r.tax_minor) for r in rows] == [(10_050, 503), (10_050, 502)]
    session.refresh(invoice)
    assert invoice.balance_minor == 0
    assert invariants.validate_all(session) == []


def test_an_invoice_credited_by_amounts_in_parts_gives_back_each_line_net_and_tax(
        session) -> None:
    # given a line of 100.00 net + 20.00 tax (20 %) = 120.00
    people(session)
    invoice = taxed_invoice(session, price="100.00", quantity=1, tax_rate="20")
    [line] = credit_notes.lines_of(session, invoice)
    assert (line.line_total_minor, line.tax_minor) == (10_000, 2_000)
    # when it is credited 60.03, then the other 59.97 (tax included)
    for amount in ("60.03", "59.97"):
        request = ask(session, number=invoice.number, amount=amount)
        approvals.decide(session=session, approval_id=request.approval_id,
                         user_id="UCREDIT1", approve=True, now=NOW)
    # then the tax follows cumulatively: 10.01 (half of 20.01 is 10.005), then the 9.99
    # left, so the line got back its 100.00 net (revenue recognition reads the net) and its
    # 20.00 tax; each half had taken its tax half-up on its own, 10.01 and 10.00, so 99.99
    # net and 20.01 tax of a line credited in full
    notes = session.exec(select(CreditNote).where(CreditNote.invoice_id == invoice.id)
                         .order_by(CreditNote.id)).all()
    rows = [credit_notes.credit_note_lines(session, note.id)[0] for note in notes]
    assert [(r.net_minor, r.tax_minor) for r in rows] == [(5_002, 1_001), (4_998, 999)]
    assert invariants.validate_all(session) == []


@st.composite
def unit_returns(draw) -> tuple:
    """A line (unit price, quantity, discount, tax rate) and its units split in parts."""
    quantity = draw(st.integers(1, 12))
    cuts = sorted(draw(st.sets(st.integers(1, quantity - 1), max_size=quantity - 1))
                  if quantity > 1 else set())
    bounds = [0, *cuts, quantity]
    parts = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    price = draw(st.integers(1, 99_999))
    discount = draw(st.sampled_from([None, "0.05", "3.33", "12.5"]))
    tax = draw(st.sampled_from(["0", "7.5", "10", "16", "5.13"]))
    return price, quantity, discount, tax, parts


@settings(max_examples=examples(20), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=unit_returns())
def test_any_sequence_of_unit_credits_reaching_the_quantity_credits_the_whole_line(
        db_factory, case) -> None:
    price, quantity, discount, tax, parts = case
    with db_factory.fresh() as database, database.session() as session:
        # given a line of `quantity` units (any price, discount and tax)
        people(session)
        invoice = taxed_invoice(session, price=f"{price / 100:.2f}", quantity=quantity,
                                discount=discount, tax_rate=tax)
        [line] = credit_notes.lines_of(session, invoice)
        # when its units are credited in any parts that add up to the quantity
        notes = credit_units(session, invoice, parts)
        # then exactly the line's net and its tax were credited, and nothing is open
        rows = [row for note in notes for row in credit_notes.credit_note_lines(session, note.id)]
        assert sum(r.net_minor for r in rows) == line.line_total_minor
        assert sum(r.tax_minor for r in rows) == line.tax_minor
        assert all(r.net_minor >= 0 and r.tax_minor >= 0 for r in rows)
        session.refresh(invoice)
        assert invoice.balance_minor == 0
        assert invariants.validate_all(session) == []


def test_an_amount_is_spread_pro_rata_half_up_the_rest_to_the_largest(books) -> None:
    number = lined(books)
    request = ask(books, number=number, amount="100.00")
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    note = books.exec(select(CreditNote)).one()
    spread = [(c.line_no, c.amount_minor) for c in credit_notes.credit_note_lines(books, note.id)]
    # 10000 x 660/1100 = 6000, x 330/1100 = 3000, x 110/1100 = 1000
    assert spread == [(1, 6_000), (2, 3_000), (3, 1_000)]
    assert sum(a for _, a in spread) == note.total_minor
    assert pro_rata(100, [1, 1, 1]) == [34, 33, 33]  # the remainder to the first largest
    # both halves round up to 1; the remainder (-1) is taken from the first largest
    assert pro_rata(1, [3, 3]) == [0, 1]


def test_a_note_issued_before_lines_were_recorded_is_spread_over_the_invoice_lines(
        books) -> None:
    # given a credit note of 110.00 as migration 0011 finds one: no request, no stored lines
    number = lined(books)
    request = ask(books, number=number, amount="110.00")
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    note = books.exec(select(CreditNote)).one()
    books.execute(sa.delete(CreditNoteLine).where(CreditNoteLine.credit_note_id == note.id))
    books.execute(sa.update(CreditNote).where(CreditNote.id == note.id).values(request_id=None))
    books.commit()
    # when its lines are asked for
    lines = credit_notes.credit_note_lines(books, note.id)
    # then its total is spread over the lines by net + tax, the tax pro rata within each
    assert [(c.line_no, c.net_minor, c.tax_minor, c.amount_minor) for c in lines] == [
        (1, 6_000, 600, 6_600), (2, 3_000, 300, 3_300), (3, 1_000, 100, 1_100)]
    # and an unknown credit note is not found
    with pytest.raises(NotFound):
        credit_notes.credit_note_lines(books, note.id + 1)


def test_an_erp_credit_note_is_posted_as_issued_with_its_date(books) -> None:
    request, created = credit_notes.request_credit_note(books, CreditNoteIn(
        invoice="INV-2026-000001", reason="ERP correction", amount="50.00", source="erp",
        external_id="ERP-CN-7", issue_date=TODAY - timedelta(days=2)), actor="api", now=NOW)
    again, created_again = credit_notes.request_credit_note(books, CreditNoteIn(
        invoice="INV-2026-000001", reason="ERP correction", amount="50.00", source="erp",
        external_id="ERP-CN-7", issue_date=TODAY - timedelta(days=2)), actor="api", now=NOW)
    assert created and not created_again and again.id == request.id
    note = books.exec(select(CreditNote)).one()
    assert (request.status, request.approval_id, note.value_date, note.source) == (
        "issued", None, TODAY - timedelta(days=2), "erp")
    with pytest.raises(Conflict):  # the same external id for another credit note
        credit_notes.request_credit_note(books, CreditNoteIn(
            invoice="INV-2026-000001", reason="x", amount="60.00", source="erp",
            external_id="ERP-CN-7"), actor="api", now=NOW)


def test_only_sales_collectors_and_credit_approvers_ask_in_slack(books) -> None:
    f.user(books, "UNOBODY1")
    with pytest.raises(PermissionDenied) as refused:
        ask(books, by="UNOBODY1")
    assert refused.value.action == "credit_note.request"


def test_above_a_tier_a_second_decision_by_the_named_role(books) -> None:
    # given credit notes above 500.00 need an admin after the first approval
    policy.set_value(books, key="approval_tiers", value="credit_note:500:admin", actor="test")
    request = ask(books, amount="600.00")
    approval = approval_of(books, request)
    assert approval.second_role == "admin"
    # when a credit approver approves first
    decision = approvals.decide(session=books, approval_id=approval.id, user_id="UCREDIT1",
                                approve=True, now=NOW)
    # then nothing is issued yet, and another credit approver cannot take the second decision
    assert decision.outcome == "first_approved" and request.status == "pending_approval"
    with pytest.raises(PermissionDenied, match="approval tier"):
        approvals.decide(session=books, approval_id=approval.id, user_id="UCREDIT2",
                         approve=True, now=NOW)
    # when an admin approves
    approvals.decide(session=books, approval_id=approval.id, user_id="UADMIN01",
                     approve=True, now=NOW + timedelta(minutes=5))
    # then it is issued; both decisions are audited and on the card
    assert request.status == "issued" and approval.status == "approved"
    events = [(e.action, e.actor) for e in books.exec(select(AuditEvent).where(
        AuditEvent.entity_type == "approval", AuditEvent.entity_id == str(approval.id))
        .order_by(AuditEvent.id))]
    assert events == [("approval.requested", "UCOLL001"),
                      ("approval.first_approved", "UCREDIT1"),
                      ("approval.approved", "UADMIN01")]
    last = books.exec(select(OutboxMessage).where(
        OutboxMessage.method == "chat.update").order_by(OutboxMessage.id.desc())).first()
    ctx = last.payload["context"]
    assert (ctx["first_decided_by"], ctx["decided_by"], ctx["status"]) == (
        "UCREDIT1", "UADMIN01", "approved")


def test_below_the_tier_one_decision_is_enough_and_other_currencies_always_ask(books) -> None:
    policy.set_value(books, key="approval_tiers", value="credit_note:500:admin", actor="test")
    assert approval_of(books, ask(books, amount="500.00")).second_role is None
    f.customer(books, "C-EU", "Euro GmbH", currency="EUR")
    f.invoice(books, "INV-EU-1", "C-EU", total="50.00", currency="EUR",
              issued=date(2026, 6, 1))
    assert approval_of(books, ask(books, amount="10.00", number="INV-EU-1")
                       ).second_role == "admin"


def test_a_credit_split_into_requests_under_the_tier_still_needs_the_second_decision(
        books) -> None:
    # given credit notes above 500.00 need an admin after the first approval
    policy.set_value(books, key="approval_tiers", value="credit_note:500:admin", actor="test")
    # when 800.00 is asked as two requests of 400.00 on the same invoice
    first, second = ask(books, amount="400.00"), ask(books, amount="400.00")
    # then the first is under the tier, the second is not: together they are 800.00
    assert (approval_of(books, first).second_role, approval_of(books, second).second_role) == (
        None, "admin")
    requested = books.exec(select(AuditEvent).where(
        AuditEvent.action == "approval.requested",
        AuditEvent.entity_id == str(second.approval_id))).one()
    assert (requested.data["amount_minor"], requested.data["tier_amount_minor"]) == (
        40_000, 80_000)
    # and one credit approver cannot issue both: the second waits for an admin
    approvals.decide(session=books, approval_id=first.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    approvals.decide(session=books, approval_id=second.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    assert (first.status, second.status) == ("issued", "pending_approval")
    # an issued note still counts; a rejected request does not; an ERP's own never did
    approvals.decide(session=books, approval_id=second.approval_id, user_id="UADMIN01",
                     approve=False, now=NOW, note="one is enough")
    credit_notes.request_credit_note(books, CreditNoteIn(
        invoice="INV-2026-000001", reason="ERP correction", amount="300.00", source="erp"),
        actor="api", now=NOW)
    assert approval_of(books, ask(books, amount="100.00")).second_role is None  # 500.00
    assert approval_of(books, ask(books, amount="100.00")).second_role == "admin"  # 600.00


def test_two_requests_at_once_under_the_tier_the_later_needs_the_second_decision(
        db, books) -> None:
    policy.set_value(books, key="approval_tiers", value="credit_note:500:admin", actor="test")
    books.commit()

    def request() -> int:
        with db.transaction() as s:
            return ask(s, amount="400.00").approval_id

    ids = at_once(request, 2)  # two transactions; the invoice lock orders them
    with db.read_session() as s:
        roles = sorted((s.get(Approval, i).second_role or "") for i in ids)
    assert roles == ["", "admin"]


def test_get_by_number_or_request_id(books) -> None:
    request = ask(books)
    view = credit_notes.credit_note_view(books, str(request.id))
    assert view.note is None and view.request.status == "pending_approval"
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    view = credit_notes.credit_note_view(books, "CN-2026-000001")
    assert view.request.id == request.id and [e.action for e in view.history][:1] == [
        "credit_note.requested"]
