"""One shortfall, one deduction: a later short payment on an invoice whose deduction is still
being worked pays part of it — applied, nothing flagged again — whether the engine applies it
(one payment, or several of one bank statement), a person applies a suggestion, or a person
picks the invoice; the deduction's buttons act on what is left of it, at most the balance."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import (
    CreditNote,
    CreditNoteRequest,
    Deduction,
    Dispute,
    Payment,
    PaymentStatus,
    PaymentSuggestion,
    WriteOffRequest,
)
from tests.support import factories as f
from tests.support.meanwhile import in_thread
from tests.support.timetravel import frozen_at
from workflows import approvals, deductions, disputes, invariants, refunds
from workflows.cash_application import PaymentIn, apply_suggestion, record_payment
from workflows.cash_runs import CashRun
from workflows.errors import AlreadyDecided
from workflows.invoicing import get_invoice

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)
NUMBER = "INV-2026-000001"


@pytest.fixture
def books(session):
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    f.invoice(session, NUMBER, total="1000.00", due=TODAY - timedelta(days=3),
              issued=TODAY - timedelta(days=33))
    session.commit()
    return session


def paid(amount: str, n: int = 1) -> PaymentIn:
    return PaymentIn(amount=amount, currency="USD", received_at=NOW - timedelta(hours=n),
                     payer_name="GLOBEX CORP", reference=f"{NUMBER} instalment {n}",
                     external_id=f"BANK:{n}")


def active(session) -> list[Deduction]:
    return list(session.exec(select(Deduction).where(
        Deduction.status.in_([str(s) for s in deductions.ACTIVE])).order_by(Deduction.id)))


def test_the_engine_flags_a_second_short_payment_on_a_deducted_invoice_once(books) -> None:
    # given 900.00 of 1000.00 paid: a 100.00 deduction
    record_payment(books, paid("900.00", 1), actor="test")
    first = books.exec(select(Deduction)).one()
    assert first.amount_minor == 10_000
    # when the customer pays 60.00 more of it, quoting the invoice
    second, _ = record_payment(books, paid("60.00", 2), actor="test")
    books.commit()
    # then the 60.00 is applied, and the shortfall is still one deduction: what is left of
    # it is the 40.00 still open, counted once
    assert (second.status, second.unapplied_minor) == (PaymentStatus.APPLIED, 0)
    assert second.match_details["deduction_minor"] == 0
    assert get_invoice(books, NUMBER).balance_minor == 4_000
    assert [d.id for d in active(books)] == [first.id]
    assert deductions.due_minor(books, first, get_invoice(books, NUMBER)) == 4_000
    assert deductions.outstanding(books) == {"USD": (1, 4_000)}
    assert invariants.validate_all(books) == []


def test_two_short_payments_of_one_statement_flag_one_deduction(books) -> None:
    run = CashRun(books, actor="import", source="bank")
    tickets = [run.add(paid("500.00", 1)), run.add(paid("300.00", 2))]
    run.flush()
    books.commit()
    assert [t.error for t in tickets] == [None, None]
    [only] = active(books)
    assert (only.payment_id, only.amount_minor) == (tickets[0].payment_id, 50_000)
    assert get_invoice(books, NUMBER).balance_minor == 20_000
    details = [books.get(Payment, t.payment_id).match_details["deduction_minor"]
               for t in tickets]
    assert details == [50_000, 0]
    assert deductions.outstanding(books) == {"USD": (1, 20_000)}
    assert invariants.validate_all(books) == []


def test_a_short_payment_while_the_deduction_is_disputed_flags_nothing_more(books) -> None:
    record_payment(books, paid("900.00", 1), actor="test")
    first = books.exec(select(Deduction)).one()
    deductions.open_dispute(books, deduction_id=first.id, reason="damaged", note=None,
                            actor="UCOLL001", now=NOW)
    record_payment(books, paid("30.00", 2), actor="test")
    books.commit()
    assert [d.id for d in active(books)] == [first.id]
    assert invariants.validate_all(books) == []


def deducted_and_a_suggestion_waiting(books) -> tuple[Deduction, Payment]:
    """The 100.00 deduction (900.00 paid), and a 70.00 payment waiting for a person whose
    suggestion pays 70.00 of the 100.00 open and leaves 30.00 as a deduction."""
    record_payment(books, paid("900.00", 1), actor="test")
    first = books.exec(select(Deduction)).one()
    waiting, _ = record_payment(books, PaymentIn(amount="70.00", currency="USD",
                                                 received_at=NOW, payer_name="J SMITH",
                                                 external_id="BANK:3"), actor="test")
    invoice = get_invoice(books, NUMBER)
    waiting.status = PaymentStatus.NEEDS_REVIEW
    books.add(waiting)
    books.add(PaymentSuggestion(
        payment_id=waiting.id, round=1, rank=1, customer_id=invoice.customer_id,
        kind="reference", fit="short", confidence_bp=6_000, write_off_minor=0,
        deduction_minor=3_000, unapplied_minor=0,
        lines=[{"invoice_id": invoice.id, "number": NUMBER, "allocate_minor": 7_000,
                "write_offs": [], "deduction_minor": 3_000}],
        reasons=[], concerns=[], signals=[]))
    books.commit()
    return first, waiting


def test_applying_a_suggestion_on_a_deducted_invoice_flags_nothing_more(books) -> None:
    # given the 100.00 deduction, and a payment waiting for a person whose suggestion pays
    # 70.00 of the 100.00 open and leaves 30.00 as a deduction
    first, waiting = deducted_and_a_suggestion_waiting(books)
    # when a collector applies it
    done = apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UCOLL001", now=NOW)
    books.commit()
    # then the 70.00 is applied and the 100.00 deduction is still the only one
    assert done.unapplied_minor == 0
    assert done.match_details["deduction_minor"] == 0
    assert get_invoice(books, NUMBER).balance_minor == 3_000
    assert [d.id for d in active(books)] == [first.id]
    assert invariants.validate_all(books) == []


def test_the_invariant_names_an_invoice_with_two_deductions_being_worked(books) -> None:
    record_payment(books, paid("900.00", 1), actor="test")
    first = books.exec(select(Deduction)).one()
    books.add(Deduction(payment_id=first.payment_id, invoice_id=first.invoice_id,
                        amount_minor=5_000))
    books.commit()
    assert invariants.validate_deductions(books) == [
        f"invoice {NUMBER}: 2 deductions being worked at once (one shortfall counted more "
        "than once)"]


# -- what resolving a deduction takes, to the cent, once part of it was paid -----------------------
def test_a_deduction_paid_in_part_since_is_written_off_for_what_is_open_only(books) -> None:
    record_payment(books, paid("900.00", 1), actor="test")  # 100.00 short
    record_payment(books, paid("60.00", 2), actor="test")  # then 60.00 of it paid
    deduction = books.exec(select(Deduction)).one()
    request = deductions.write_off(books, deduction_id=deduction.id, reason="not worth it",
                                   actor="UCOLL001", now=NOW)
    assert request.amount_minor == 4_000
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    books.refresh(deduction)
    assert (deduction.status, deduction.resolution) == ("resolved", "written_off")
    assert get_invoice(books, NUMBER).balance_minor == 0
    assert deductions.outstanding(books) == {}
    assert invariants.validate_all(books) == []


def test_a_deduction_paid_in_part_since_is_disputed_and_credited_for_what_is_open(
        books) -> None:

    record_payment(books, paid("900.00", 1), actor="test")
    record_payment(books, paid("60.00", 2), actor="test")
    deduction = books.exec(select(Deduction)).one()
    dispute = deductions.open_dispute(books, deduction_id=deduction.id, reason="damaged",
                                      note=None, actor="UCOLL001", now=NOW)
    assert dispute.amount_minor == 4_000
    disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01", now=NOW)
    request = books.exec(select(CreditNoteRequest)).one()
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    books.refresh(deduction)
    note = books.exec(select(CreditNote)).one()
    assert (note.amount_minor, note.customer_credit_minor) == (4_000, 0)
    assert (deduction.status, deduction.resolution) == ("resolved", "settled")
    assert get_invoice(books, NUMBER).balance_minor == 0
    assert invariants.validate_all(books) == []


# -- two collectors on one deduction at the same moment ------------------------------------------
@pytest.mark.parametrize("second", ["write_off", "dispute"])
def test_two_collectors_acting_at_once_resolve_a_deduction_once(db, monkeypatch,
                                                                second) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCOLL002", "collector")
        f.customer(s, collector="UCOLL001", sales_rep="USALES01")
        f.invoice(s, NUMBER, total="1000.00", due=TODAY - timedelta(days=3),
                  issued=TODAY - timedelta(days=33))
    with db.transaction() as s:
        record_payment(s, paid("900.00", 1), actor="test")
    with db.read_session() as s:
        deduction_id = s.exec(select(Deduction.id)).one()
    # both read the deduction open and work out what to ask before either claims it
    # (PostgreSQL; SQLite lets one writer in at a time, so there they go one after the other)
    meet = threading.Barrier(2, timeout=5) if db.is_postgres else None
    left_of = deductions.left_minor

    waited: set[int] = set()

    def slow_left_of(*args, **kwargs):
        found = left_of(*args, **kwargs)
        if meet is not None and threading.get_ident() not in waited:  # (its first read)
            waited.add(threading.get_ident())
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait()
        return found

    monkeypatch.setattr(deductions, "left_minor", slow_left_of)

    def act(who: str, what: str) -> object:
        try:
            with db.transaction() as s:
                if what == "write_off":
                    return deductions.write_off(s, deduction_id=deduction_id, reason="small",
                                                actor=who, now=NOW).id
                return deductions.open_dispute(s, deduction_id=deduction_id,
                                               reason="damaged", note=None, actor=who,
                                               now=NOW).id
        except AlreadyDecided as taken:
            return taken

    running = [in_thread(lambda: act("UCOLL001", "write_off")),
               in_thread(lambda: act("UCOLL002", second))]
    outcomes = [result() for result in running]
    assert sum(isinstance(o, AlreadyDecided) for o in outcomes) == 1, outcomes
    with db.read_session() as s:
        asked = s.exec(select(WriteOffRequest)).all()
        opened = s.exec(select(Dispute)).all()
        assert len(asked) + len(opened) == 1
        assert [r.amount_minor for r in asked] + [d.amount_minor for d in opened] == [10_000]
        assert s.get(Deduction, deduction_id).status in ("write_off_pending", "disputed")
        assert invariants.validate_all(s) == []


# -- a short payment whose money went back -------------------------------------------------------
def test_a_short_payment_refunded_in_full_leaves_no_deduction_standing(books) -> None:
    # given 900.00 of 1000.00 paid: a 100.00 deduction
    payment, _ = record_payment(books, paid("900.00", 1), actor="test")
    deduction = books.exec(select(Deduction)).one()
    # when the 900.00 goes back (a bank return, a Stripe refund)
    refunds.refund_payment(books, payment=payment, amount_minor=90_000,
                           external_id="return-1", value_date=TODAY, actor="test")
    books.commit()
    # then the invoice owes its 1000.00 again, and no card offers to write off or bill back
    # "100.00 missing of your 900.00"
    books.refresh(deduction)
    assert get_invoice(books, NUMBER).balance_minor == 100_000
    assert (deduction.status, deduction.resolution) == ("resolved", "reversed")
    assert deductions.outstanding(books) == {}
    with pytest.raises(AlreadyDecided):
        deductions.write_off(books, deduction_id=deduction.id, reason="x", actor="UCOLL001",
                             now=NOW)
    assert invariants.validate_all(books) == []


def test_a_short_payment_refunded_in_part_keeps_its_deduction(books) -> None:
    payment, _ = record_payment(books, paid("900.00", 1), actor="test")
    refunds.refund_payment(books, payment=payment, amount_minor=30_000,
                           external_id="return-1", value_date=TODAY, actor="test")
    books.commit()
    deduction = books.exec(select(Deduction)).one()
    assert deduction.status == "open"
    assert deductions.outstanding(books) == {"USD": (1, 10_000)}
    assert invariants.validate_all(books) == []


def last_card(session, deduction: Deduction) -> dict:
    """What the deduction's card shows now: its last update, else the card as posted."""
    from models import OutboxMessage

    updates = session.exec(select(OutboxMessage).where(
        OutboxMessage.target_outbox_id == deduction.card_outbox_id)
        .order_by(OutboxMessage.id)).all()
    return (updates[-1] if updates else session.get(OutboxMessage, deduction.card_outbox_id)
            ).payload["context"]


def test_the_card_shows_the_balance_a_later_payment_left(books) -> None:
    # given a 100.00 deduction whose card shows the 100.00 left open
    record_payment(books, paid("900.00", 1), actor="test")
    first = books.exec(select(Deduction)).one()
    assert last_card(books, first)["invoice"]["balance_minor"] == 10_000
    # when the engine applies 60.00 more of it (a bank statement's payment)
    record_payment(books, paid("60.00", 2), actor="test")
    books.commit()
    # then the card is updated in the same transaction: 40.00 open, 40.00 of the deduction
    # still due — what its buttons act on (before: it still showed 100.00 open)
    card = last_card(books, first)
    assert (card["invoice"]["balance_minor"], card["amount_minor"], card["status"]) == (
        4_000, 10_000, "open")
    assert "USD 40.00 open: USD 40.00 of this deduction is still due" in card["note"]
    assert invariants.validate_all(books) == []


def test_the_card_shows_the_balance_a_suggestion_applied_by_hand_left(books) -> None:
    # given the 100.00 deduction, and a payment waiting for a person whose suggestion pays
    # 70.00 of it
    first, waiting = deducted_and_a_suggestion_waiting(books)
    assert last_card(books, first)["invoice"]["balance_minor"] == 10_000
    # when a collector applies it
    apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UCOLL001", now=NOW)
    books.commit()
    # then the card shows the 30.00 left (before: 100.00)
    card = last_card(books, first)
    assert card["invoice"]["balance_minor"] == 3_000
    assert "USD 30.00 of this deduction is still due" in card["note"]
