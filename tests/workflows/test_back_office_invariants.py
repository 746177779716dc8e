"""The back office's AR invariants (`workflows.invariants`) hold on a book with one of
everything, and each one catches the breach it exists for: a row corrupted behind the
workflows' back (raw SQL, as a faulty script or import could) is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from models import (
    CreditNote,
    CreditNoteLine,
    CreditNoteRequest,
    Deduction,
    Dispute,
    Invoice,
    InvoiceLine,
    WriteOffRequest,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import (
    approvals,
    credit_notes,
    deductions,
    dunning,
    invariants,
    policy,
    write_offs,
)
from workflows.cash_application import PaymentIn, record_payment
from workflows.inputs import CreditNoteLineIn, InvoiceIn
from workflows.invoicing import ingest_erp_invoice

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    """A dispute open on 001, a credit note issued by lines on 002, a bad-debt write-off done
    on 003, a deduction disputed on 004, a late fee on 005."""
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    policy.set_value(session, key="late_fees", value="7:fee=25.00", actor="test")
    for n in (1, 3, 4):
        f.invoice(session, f"INV-2026-00000{n}", total="1000.00", issued=TODAY)
    ingest_erp_invoice(session, InvoiceIn(
        number="INV-2026-000002", customer="C-GLOBEX", currency="USD", issue_date=TODAY,
        due_date=TODAY + timedelta(days=30), total="300.00",
        lines=[{"description": "A", "quantity": 2, "unit_price": "100.00"},
               {"description": "B", "quantity": 1, "unit_price": "100.00"}]), actor="test")
    f.invoice(session, "INV-2026-000005", total="500.00", due=TODAY - timedelta(days=7),
              issued=TODAY - timedelta(days=37))
    f.dispute(session, "INV-2026-000001", amount="400.00", actor="UCOLL001", now=NOW)
    request, _ = credit_notes.request_credit_note(session, credit_notes.CreditNoteIn(
        invoice="INV-2026-000002", reason="damaged",
        lines=[CreditNoteLineIn(line_no=1, quantity=1)]), actor="UCOLL001", now=NOW)
    approvals.decide(session=session, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    asked = write_offs.request_write_off(session, invoice_number="INV-2026-000003",
                                         reason="insolvent", actor="UCOLL001", now=NOW,
                                         amount="200.00")
    approvals.decide(session=session, approval_id=asked.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    record_payment(session, PaymentIn(amount="900.00", currency="USD", received_at=NOW,
                                      reference="INV-2026-000004"), actor="test")
    deduction = session.exec(select(Deduction)).one()
    deductions.open_dispute(session, deduction_id=deduction.id, reason="damaged", note=None,
                            actor="UCOLL001", now=NOW)
    dunning.run_dunning(session, TODAY)
    session.commit()
    return session


def corrupt(session, model: type, *where, **values) -> None:
    session.execute(sa.update(model.__table__).where(*where).values(**values))
    session.commit()


def test_a_book_with_one_of_everything_is_healthy(books) -> None:
    assert books.exec(select(sa.func.count()).select_from(Invoice).where(
        Invoice.source == "fee")).one() == 1
    assert invariants.validate_all(books) == []


def test_disputes_held_out_of_step_are_named(books) -> None:
    dispute = books.exec(select(Dispute).where(Dispute.deduction_id.is_(None))).one()
    # an open dispute that holds less than it is for, and an invoice not in step with it
    corrupt(books, Dispute, Dispute.id == dispute.id, held_minor=10_000)
    problems = invariants.validate_disputes(books)
    assert f"dispute {dispute.id}: open but holds 10000 of 40000" in problems
    assert "invoice INV-2026-000001: in dispute 40000, but its disputes hold 10000 of " \
        "balance 100000" in problems
    # a rejected one still holding, never released
    corrupt(books, Dispute, Dispute.id == dispute.id, status="rejected", held_minor=0)
    assert f"dispute {dispute.id}: holds nothing but was never released" in \
        invariants.validate_disputes(books)


def test_credit_notes_beyond_the_invoice_or_not_adding_up_are_named(books) -> None:
    note = books.exec(select(CreditNote)).one()
    [line] = books.exec(select(CreditNoteLine)).all()
    # a line whose net + tax is not its amount, so the lines no longer make the note's total
    corrupt(books, CreditNoteLine, CreditNoteLine.id == line.id, net_minor=line.net_minor + 1,
            amount_minor=line.amount_minor + 2)
    problems = invariants.validate_credit_notes(books)
    assert f"credit note {note.number} line 1: {line.net_minor + 1} + {line.tax_minor} != " \
        f"{line.amount_minor + 2}" in problems
    assert f"credit note {note.number}: lines add up to {line.amount_minor + 2}, not " \
        f"{note.total_minor}" in problems
    # more credited than the invoice's total, and a request issued twice
    corrupt(books, CreditNote, CreditNote.id == note.id, customer_credit_minor=30_000)
    assert f"invoice INV-2026-000002: credited {note.amount_minor + 30_000} of total 30000" \
        in invariants.validate_credit_notes(books)
    corrupt(books, CreditNoteRequest, CreditNoteRequest.id == note.request_id,
            status="rejected")
    assert f"credit note request {note.request_id}: rejected with 1 note(s)" in \
        invariants.validate_credit_notes(books)
    # a line credited beyond its net + tax
    invoice_line = books.get(InvoiceLine, line.invoice_line_id)
    corrupt(books, CreditNoteLine, CreditNoteLine.id == line.id, amount_minor=30_000)
    assert f"invoice line {invoice_line.id} (no 1): credited 30000 of 20000" in \
        invariants.validate_credit_notes(books)


def test_write_off_requests_fee_invoices_and_deductions_out_of_step_are_named(books) -> None:
    request = books.exec(select(WriteOffRequest)).one()
    corrupt(books, WriteOffRequest, WriteOffRequest.id == request.id, amount_minor=100)
    assert f"write-off request {request.id}: wrote off 20000 of 100 asked" in \
        invariants.validate_write_off_requests(books)
    corrupt(books, WriteOffRequest, WriteOffRequest.id == request.id, status="rejected")
    assert f"write-off request {request.id}: rejected with write-off {request.write_off_id}" \
        in invariants.validate_write_off_requests(books)
    # a fee charging a fee, and with no level
    fee = books.exec(select(Invoice).where(Invoice.source == "fee")).one()
    original = books.exec(select(Invoice).where(Invoice.number == "INV-2026-000005")).one()
    corrupt(books, Invoice, Invoice.id == original.id, fee_for_invoice_id=fee.id, fee_level=1)
    assert f"fee invoice {fee.number}: charges a fee on a fee" in \
        invariants.validate_fee_invoices(books)
    corrupt(books, Invoice, Invoice.id == fee.id, fee_level=None)
    assert f"fee invoice {fee.number}: level None, source fee" in \
        invariants.validate_fee_invoices(books)
    # a deduction disputed without a dispute, one resolved without saying how
    deduction = books.exec(select(Deduction)).one()
    corrupt(books, Dispute, Dispute.deduction_id == deduction.id, deduction_id=None)
    assert invariants.validate_deductions(books) == [
        f"deduction {deduction.id}: disputed without a dispute"]
    corrupt(books, Deduction, Deduction.id == deduction.id, status="resolved")
    assert invariants.validate_deductions(books) == [
        f"deduction {deduction.id}: resolved without a resolution"]


def test_an_issued_invoice_edited_after_issue_is_named(books) -> None:
    # given a shipment invoice (2 x 100.00 at 10 % tax) and an ERP invoice whose lines only
    # describe part of its total, next to the book's ERP and late-fee invoices: all healthy
    f.customer(books, "C-TAXED", "Taxed Ltd", sales_rep="USALES01", tax_rate="10")
    f.product(books, "WID-1", price="100.00")
    order = f.order(books, "C-TAXED", lines=[("WID-1", 2)], now=NOW)
    shipped = f.shipped_invoice(books, order, shipped_at=NOW)
    ingest_erp_invoice(books, InvoiceIn(
        number="ERP-7", customer="C-GLOBEX", currency="USD", issue_date=TODAY,
        due_date=TODAY + timedelta(days=45), total="500.00",
        lines=[{"description": "freight", "quantity": 1, "amount": "20.00"}]), actor="test")
    books.commit()
    assert (shipped.subtotal_minor, shipped.tax_minor, shipped.total_minor) == (
        20_000, 2_000, 22_000)
    assert invariants.validate_all(books) == []
    # when the issued invoice is edited: its total (and balance), a line's price, its due date
    line = books.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == shipped.id)).one()
    corrupt(books, Invoice, Invoice.id == shipped.id, total_minor=27_000, balance_minor=27_000,
            due_date=shipped.due_date + timedelta(days=30))
    corrupt(books, InvoiceLine, InvoiceLine.id == line.id, unit_price_minor=1)
    # then each change is named
    problems = invariants.validate_all(books)
    n = shipped.number
    assert f"invoice {n}: total 27000 != subtotal 20000 - discount 0 + tax 2000 + fees 0" \
        in problems
    assert f"invoice {n}: lines 20000 net + 2000 tax != total 27000" in problems
    assert f"invoice {n}: lines 2 gross, 20000 net, 2000 tax; the invoice says subtotal " \
        "20000, discount 0, tax 2000" in problems
    assert f"invoice {n}: 1 line(s) with a net outside 0..quantity x unit price or a " \
        "negative tax" in problems
    assert f"invoice {n}: due {shipped.due_date + timedelta(days=30)}, but NET30 from " \
        f"{shipped.issue_date} is {shipped.due_date}" in problems
    # and an ERP invoice is held to its total only
    corrupt(books, Invoice, Invoice.number == "ERP-7", tax_minor=1)
    assert "invoice ERP-7: total 50000 != subtotal 50000 - discount 0 + tax 1 + fees 0" in \
        invariants.validate_invoice_totals(books)
    assert not [p for p in invariants.validate_issued_invoices(books) if "ERP-7" in p]


def test_customer_credit_beyond_the_money_paid_is_named(books) -> None:
    # given the credit note on INV-2026-000002, an invoice nobody paid anything on
    note = books.exec(select(CreditNote)).one()
    assert invariants.validate_customer_credit(books) == []
    # when part of it is customer credit all the same (as a note issued on a written-off
    # invoice made it before credit notes counted write-offs)
    corrupt(books, CreditNote, CreditNote.id == note.id, customer_credit_minor=5_000)
    # then it is named: 50.00 owed to a customer who paid nothing on that invoice
    assert "invoice INV-2026-000002: customer credit 5000 > money applied 0" in \
        invariants.validate_all(books)


def test_a_refund_after_a_note_gave_customer_credit_keeps_the_books_healthy(session) -> None:
    # given an invoice of 100.00 paid in full, then credited 30.00 (customer credit)
    from models import Payment
    from workflows import refunds

    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, collector="UCOLL001")
    f.invoice(session, "INV-2026-000009", total="100.00", issued=TODAY)
    record_payment(session, PaymentIn(amount="100.00", currency="USD", received_at=NOW,
                                      reference="INV-2026-000009"), actor="test")
    request, _ = credit_notes.request_credit_note(session, credit_notes.CreditNoteIn(
        invoice="INV-2026-000009", reason="damaged", amount="30.00"), actor="UCOLL001",
        now=NOW)
    approvals.decide(session=session, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    assert session.exec(select(CreditNote)).one().customer_credit_minor == 3_000
    # when the payment is refunded in full
    payment = session.exec(select(Payment)).one()
    refunds.refund_payment(session, payment=payment, amount_minor=10_000, external_id="r-1",
                           value_date=TODAY, actor="test")
    # then the books are still consistent: the refund gave the 30.00 of credit back first,
    # and the invoice is open again for the 70.00 it comes to after the note
    assert credit_notes.get_invoice(session, "INV-2026-000009").balance_minor == 7_000
    assert credit_notes.customer_credit_minor(session, payment.customer_id) == 0
    assert invariants.validate_all(session) == []
