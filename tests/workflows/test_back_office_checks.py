"""The read-only checks a back-office modal runs before its ack (`workflows.*.check_*`): they
refuse what the workflow would refuse, naming the same field, and write nothing — so a Slack
form shows each refusal under its field and the work after the ack rarely fails (issue 14,
the Bolt way of issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from models import Deduction
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import credit_notes, deductions, disputes, write_offs
from workflows.cash_application import PaymentIn, record_payment
from workflows.errors import AlreadyDecided, Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import CreditNoteIn, DisputeOpenIn

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UNOBODY1")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=10),
              issued=TODAY - timedelta(days=40))
    session.commit()
    return session


@contextmanager
def no_writes(session: Session) -> Iterator[None]:
    """Fails if anything but a SELECT reaches the database inside the block (what the test
    itself changed before is flushed first)."""
    session.flush()
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement.lstrip().split(None, 1)[0].upper())

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert set(seen) <= {"SELECT", "SAVEPOINT", "RELEASE", "BEGIN"}, seen


def refused(check, error: type[Exception] = ValidationFailed):
    with pytest.raises(error) as raised:
        check()
    return raised.value


def test_opening_a_dispute_is_checked_like_the_workflow_without_writing(books) -> None:
    def check(amount: str | None, *, by: str = "UCOLL001", reason: str = "damaged") -> None:
        disputes.check_open(books, "INV-2026-000001",
                            DisputeOpenIn(reason=reason, amount=amount), actor=by)

    with no_writes(books):
        # when the amount is more than is open, or the reason unknown, or the user has no role
        too_much = refused(lambda: check("1000.01"))
        bad_reason = refused(lambda: check(None, reason="weather"))
        nobody = refused(lambda: check(None, by="UNOBODY1"), PermissionDenied)
        # then each is refused naming its field, as the workflow does
        assert [e.field for e in too_much.errors] == ["amount"]
        assert [e.field for e in bad_reason.errors] == ["reason"]
        assert nobody.action == "dispute.open"
        check("400.00")  # and a good one passes
    # when a dispute is open, a second one is refused before the form closes
    dispute = f.dispute(books, "INV-2026-000001", amount="400.00", actor="UCOLL001", now=NOW)
    with no_writes(books):
        refused(lambda: check("100.00"), Conflict)
        # and resolving it is checked too: a reason to reject, a credit within the dispute
        no_reason = refused(lambda: disputes.check_resolve(
            books, dispute_id=dispute.id, outcome="rejected", by="USALES01"))
        over = refused(lambda: disputes.check_resolve(
            books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
            credit_amount="400.01"))
        assert [e.field for e in no_reason.errors] == ["note"]
        assert [e.field for e in over.errors] == ["credit_amount"]
        refused(lambda: disputes.check_reassign(books, dispute_id=dispute.id,
                                                to_user="UNOBODY1", by="USALES01"))
        disputes.check_resolve(books, dispute_id=dispute.id, outcome="accepted",
                               by="USALES01", credit_amount="400.00")
    # when it is resolved, the check says so (someone was first)
    disputes.resolve(books, dispute_id=dispute.id, outcome="rejected", by="USALES01",
                     note="signed delivery note", now=NOW)
    refused(lambda: disputes.check_resolve(books, dispute_id=dispute.id, outcome="accepted",
                                           by="UCOLL001"), AlreadyDecided)


def test_an_accepted_credit_beyond_what_can_still_be_credited_is_refused_in_the_form(
        books) -> None:
    # given a credit note of 800.00 waiting for approval, and a dispute for 400.00
    credit_notes.request_credit_note(books, credit_notes.CreditNoteIn(
        invoice="INV-2026-000001", reason="price", amount="800.00"), actor="UCOLL001", now=NOW)
    dispute = f.dispute(books, "INV-2026-000001", amount="400.00", actor="UCOLL001", now=NOW)
    # when the owner would accept it with a credit of 300.00 (only 200.00 can be credited)
    with no_writes(books):
        error = refused(lambda: disputes.check_resolve(
            books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
            credit_amount="300.00"))
    # then the form says so under the credit
    assert [e.field for e in error.errors] == ["credit_amount"]
    assert "200.00" in error.detail


def test_credit_notes_write_offs_and_waivers_are_checked_without_writing(books) -> None:
    def note(amount: str, reason: str = "price") -> CreditNoteIn:
        return CreditNoteIn(invoice="INV-2026-000001", reason=reason, amount=amount)

    with no_writes(books):
        # a credit note: the cap, the reason, the role
        assert [e.field for e in refused(lambda: credit_notes.check_request(
            books, note("1000.01"), actor="USALES01")).errors] == ["amount"]
        assert [e.field for e in refused(lambda: credit_notes.check_request(
            books, note("10.00", reason=" "), actor="USALES01")).errors] == ["reason"]
        refused(lambda: credit_notes.check_request(books, note("10.00"), actor="UNOBODY1"),
                PermissionDenied)
        credit_notes.check_request(books, note("1000.00"), actor="USALES01")
        # a write-off: what is open, the role (a sales rep may not ask)
        assert [e.field for e in refused(lambda: write_offs.check_request(
            books, invoice_number="INV-2026-000001", reason="insolvent", actor="UCOLL001",
            amount="1000.01")).errors] == ["amount"]
        refused(lambda: write_offs.check_request(
            books, invoice_number="INV-2026-000001", reason="insolvent", actor="USALES01"),
            PermissionDenied)
        write_offs.check_request(books, invoice_number="INV-2026-000001", reason="insolvent",
                                 actor="UCOLL001")
        # a waiver: only of a late fee
        assert [e.field for e in refused(lambda: write_offs.check_waive(
            books, invoice_number="INV-2026-000001", reason="first time",
            actor="UCOLL001")).errors] == ["invoice"]


def test_a_deductions_dispute_and_write_off_are_checked_once_it_is_acted_on(books) -> None:
    # given a 50.00 deduction
    record_payment(books, PaymentIn(amount="950.00", currency="USD", received_at=NOW,
                                    reference="INV-2026-000001"), actor="test")
    deduction = books.exec(select(Deduction)).one()
    with no_writes(books):
        deductions.check_open_dispute(books, deduction_id=deduction.id, reason="damaged",
                                      note=None, actor="UCOLL001")
        deductions.check_write_off(books, deduction_id=deduction.id, reason="small",
                                   actor="UCOLL001")
        assert [e.field for e in refused(lambda: deductions.check_write_off(
            books, deduction_id=deduction.id, reason=" ", actor="UCOLL001")).errors] == [
            "reason"]
    # when it is disputed, neither passes any more
    deductions.open_dispute(books, deduction_id=deduction.id, reason="damaged", note=None,
                            actor="UCOLL001", now=NOW)
    refused(lambda: deductions.check_write_off(books, deduction_id=deduction.id,
                                               reason="small", actor="UCOLL001"),
            AlreadyDecided)
