"""Manual cash application, attacked: what a person chooses in the payment modal or a
correction may not put one payment on two customers, nor take back money a credit note
already turned into customer credit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from models import (
    Allocation,
    CreditNote,
    CreditNoteRequest,
    CreditNoteStatus,
    Deduction,
    Invoice,
    Payment,
    WriteOffRequest,
)
from tests.support import factories as f
from tests.support import meanwhile
from tests.support.timetravel import frozen_at
from workflows import credit_notes, deductions, invariants
from workflows.cash_application import (
    PaymentIn,
    check_from_slack,
    correct_application,
    payment_allocations,
    record_payment,
)
from workflows.errors import Conflict, ValidationFailed

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)
ISSUED = date(2026, 11, 1)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "UCOLL001", "collector")
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.customer(session, "C-INITECH", "Initech LLC")
    for number, customer, total in [
            ("INV-2026-000101", "C-GLOBEX", "1000.00"), ("INV-2026-000102", "C-GLOBEX", "400.00"),
            ("INV-2026-000201", "C-INITECH", "777.77")]:
        f.invoice(session, number, customer, total=total, issued=ISSUED,
                  due=ISSUED + timedelta(days=30))
    session.commit()
    return session


def invoice(session, number: str) -> Invoice:
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def applied_to(session, payment: Payment) -> dict[str, int]:
    return {inv.number: a.amount_minor for a, inv in payment_allocations(session, payment.id)}


def test_invoices_chosen_in_the_modal_without_a_customer_must_be_one_customers(books) -> None:
    # given a collector who types 1777.77 and picks Globex's 1000.00 and Initech's 777.77
    data = PaymentIn(amount="1777.77", currency="USD", received_at=RECEIVED,
                     external_id="slack-pay-1")
    picked = ["INV-2026-000101", "INV-2026-000201"]
    # then the modal refuses it under the invoices field, and recording refuses it too
    with pytest.raises(ValidationFailed) as checked:
        check_from_slack(books, data, user_id="UCOLL001", apply_to=picked)
    assert checked.value.errors[0].field == "apply_to"
    with pytest.raises(ValidationFailed) as refused:
        record_payment(books, data, actor="UCOLL001", source="slack", apply_to=picked)
    assert refused.value.errors[0].field == "apply_to"
    books.rollback()
    # and nothing was stored: both invoices are open in full
    assert books.exec(select(Payment)).all() == []
    assert books.exec(select(Allocation)).all() == []
    assert invoice(books, "INV-2026-000101").balance_minor == 100_000
    assert invoice(books, "INV-2026-000201").balance_minor == 77_777
    assert invariants.validate_all(books) == []


def test_a_correction_keeps_the_money_a_credit_note_turned_into_customer_credit(books) -> None:
    # given Globex's 1000.00 invoice paid in full by a payment the collector placed
    payment, _ = record_payment(books, PaymentIn(
        amount="1000.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", source="slack", apply_to=["INV-2026-000101"])
    books.commit()
    # and then a 300.00 credit note on the paid invoice: 300.00 we owe Globex back
    target = invoice(books, "INV-2026-000101")
    request = CreditNoteRequest(invoice_id=target.id, customer_id=target.customer_id,
                                currency="USD", amount_minor=30_000, lines=[],
                                reason="price corrected", status=CreditNoteStatus.PENDING,
                                source="o2c", requested_by="UCOLL001", created_at=NOW)
    books.add(request)
    books.flush()
    credit_notes.issue(books, request, actor="UCOLL001", now=NOW)
    books.commit()
    assert books.exec(select(CreditNote.customer_credit_minor)).one() == 30_000
    # when a collector moves the payment to the other Globex invoice
    with pytest.raises(Conflict, match="customer credit"):
        correct_application(books, payment_id=payment.id, invoices=["INV-2026-000102"],
                            actor="UCOLL001", now=NOW)
    books.rollback()
    # then nothing moved: the customer credit still stands on money that was paid
    assert applied_to(books, payment) == {"INV-2026-000101": 100_000}
    assert invoice(books, "INV-2026-000101").balance_minor == 0
    assert invoice(books, "INV-2026-000102").balance_minor == 40_000
    assert invariants.validate_all(books) == []


def test_a_correction_racing_a_write_off_of_its_deduction_changes_nothing(books, db) -> None:
    # given Globex's 1000.00 invoice paid 900.00: 100.00 short, an open deduction
    payment, _ = record_payment(books, PaymentIn(
        amount="900.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX",
        reference="INV-2026-000101"), actor="test")
    books.commit()
    deduction = books.exec(select(Deduction)).one()
    assert (deduction.amount_minor, deduction.status) == (10_000, "open")
    # when one collector asks for the deduction to be written off while another moves the
    # payment to the other Globex invoice (the correction read the deduction open)
    deductions.write_off(books, deduction_id=deduction.id, reason="not worth chasing",
                         actor="UCOLL001", now=NOW)

    def correct(s):
        return correct_application(s, payment_id=payment.id, invoices=["INV-2026-000102"],
                                   actor="UCOLL001", now=NOW)
    with pytest.raises(Conflict):
        meanwhile.second_writer(db, books, correct)
    # then the correction changed nothing: the deduction waits for its write-off approval,
    # the 900.00 is still on the invoice it paid
    books.expire_all()
    assert books.get(Deduction, deduction.id).status == "write_off_pending"
    assert books.exec(select(WriteOffRequest.amount_minor)).one() == 10_000
    assert applied_to(books, payment) == {"INV-2026-000101": 90_000}
    assert invoice(books, "INV-2026-000101").balance_minor == 10_000
    assert invoice(books, "INV-2026-000102").balance_minor == 40_000
    assert invariants.validate_all(books) == []


def test_a_second_pick_keeps_the_invoice_the_first_pick_paid(books) -> None:
    # given 1400.00 nobody could place, and a collector who picks Globex's 1000.00 invoice on
    # its card: paid, 400.00 left as credit
    payment, _ = record_payment(books, PaymentIn(
        amount="1400.00", currency="USD", received_at=RECEIVED, payer_name="ZZ TRADING"),
        actor="test")
    books.commit()
    assert payment.status == "unapplied"
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000101"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    assert (payment.unapplied_minor, invoice(books, "INV-2026-000101").balance_minor) == (
        40_000, 0)
    # when they pick the 400.00 invoice too (the select sends both picks)
    correct_application(books, payment_id=payment.id,
                        invoices=["INV-2026-000101", "INV-2026-000102"],
                        actor="UCOLL001", now=NOW + timedelta(minutes=1))
    books.commit()
    # then the payment pays both in full
    assert applied_to(books, payment) == {"INV-2026-000101": 100_000,
                                          "INV-2026-000102": 40_000}
    assert (payment.status, payment.unapplied_minor) == ("applied", 0)
    assert invoice(books, "INV-2026-000102").balance_minor == 0
    assert invariants.validate_all(books) == []


def test_a_correction_to_an_invoice_someone_else_paid_is_refused(books) -> None:
    # given Globex's 400.00 invoice paid by another payment
    record_payment(books, PaymentIn(amount="400.00", currency="USD", received_at=RECEIVED,
                                    customer="C-GLOBEX"),
                   actor="UCOLL001", apply_to=["INV-2026-000102"])
    payment, _ = record_payment(books, PaymentIn(
        amount="1000.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000101"])
    books.commit()
    # when a collector moves the 1000.00 to it, then it is refused and nothing moved
    with pytest.raises(ValidationFailed, match="INV-2026-000102 is already paid"):
        correct_application(books, payment_id=payment.id, invoices=["INV-2026-000102"],
                            actor="UCOLL001", now=NOW)
    books.rollback()
    assert applied_to(books, payment) == {"INV-2026-000101": 100_000}
    assert invariants.validate_all(books) == []


@pytest.mark.parametrize("case", ["partly refunded", "booked in a closed month",
                                  "invoice in another currency"])
def test_a_correction_that_cannot_be_made_changes_nothing(books, case) -> None:
    from workflows import periods, refunds

    # given 1,100.00 applied to Globex's 1,000.00 invoice (100.00 left as credit), on 20 Oct
    f.invoice(books, "INV-2026-000090", "C-GLOBEX", total="1000.00", issued=date(2026, 10, 1),
              due=date(2026, 10, 31))
    f.customer(books, "C-EURO", "Euro GmbH", currency="EUR")
    f.invoice(books, "INV-2026-000301", "C-EURO", total="100.00", currency="EUR",
              issued=ISSUED, due=ISSUED + timedelta(days=30))
    payment, _ = record_payment(books, PaymentIn(
        amount="1100.00", currency="USD", received_at=datetime(2026, 10, 20, 10, tzinfo=UTC),
        customer="C-GLOBEX"), actor="UCOLL001", apply_to=["INV-2026-000090"])
    target = "INV-2026-000301" if case == "invoice in another currency" else "INV-2026-000101"
    if case == "partly refunded":  # 50.00 of the credit given back
        refunds.refund_payment(books, payment=payment, amount_minor=5_000, external_id="R-1",
                               value_date=NOW.date(), actor="UCOLL001")
    if case == "booked in a closed month":
        periods.close_period(books, period="2026-10", actor="UCOLL001", now=NOW)
    books.commit()
    # when a collector moves it to another invoice
    with pytest.raises((Conflict, ValidationFailed)) as refused:
        correct_application(books, payment_id=payment.id, invoices=[target],
                            actor="UCOLL001", now=NOW)
    books.rollback()
    # then it is refused, saying why, and nothing moved
    assert {"partly refunded": "partly refunded", "booked in a closed month": "closed period",
            "invoice in another currency": "is in EUR, not USD"}[case] in str(refused.value)
    assert applied_to(books, payment) == {"INV-2026-000090": 100_000}
    assert (invoice(books, "INV-2026-000090").balance_minor,
            invoice(books, "INV-2026-000101").balance_minor) == (0, 100_000)
    assert invariants.validate_all(books) == []


def fees_allowed(session) -> None:
    """A bank-fee tolerance of 1.5 % up to 20.00 (the policy an admin set)."""
    from workflows import policy

    policy.set_value(session, key="bank_fee_pct", value="1.5", actor="test")
    policy.set_value(session, key="bank_fee_max", value="20.00", actor="test")
    session.commit()


def written_off(session, payment: Payment) -> dict[str, list[tuple[int, str]]]:
    from models import WriteOff

    rows = session.exec(select(WriteOff, Invoice).join(Invoice, Invoice.id == WriteOff.invoice_id)
                        .where(WriteOff.payment_id == payment.id).order_by(WriteOff.id)).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for row, inv in rows:
        found.setdefault(inv.number, []).append((row.amount_minor, row.reason))
    return found


def test_a_correction_to_the_invoice_the_payment_is_on_changes_nothing(books) -> None:
    from models import AuditEvent

    # given 987.50 from Globex for its 1,000.00 invoice, applied by the engine with the
    # 12.50 short written off as a bank fee (the tolerance allows it): the invoice is settled
    fees_allowed(books)
    payment, _ = record_payment(books, PaymentIn(
        amount="987.50", currency="USD", received_at=RECEIVED, customer="C-GLOBEX",
        reference="INV-2026-000101"), actor="test")
    books.commit()
    assert applied_to(books, payment) == {"INV-2026-000101": 98_750}
    assert written_off(books, payment) == {"INV-2026-000101": [(1_250, "bank_fee")]}
    assert invoice(books, "INV-2026-000101").balance_minor == 0
    events = len(books.exec(select(AuditEvent)).all())
    # when a collector "corrects" it to the invoice it is already on
    with pytest.raises(Conflict) as refused:
        correct_application(books, payment_id=payment.id, invoices=["INV-2026-000101"],
                            actor="UCOLL001", now=NOW)
    books.rollback()
    # then they are told there is nothing to correct, and nothing moved: the fee stays
    # written off, the invoice settled (no 12.50 left to dun), no audit noise
    assert str(refused.value) == (
        f"Payment #{payment.id} is already applied that way (USD 987.50 to "
        "INV-2026-000101, USD 12.50 written off as bank fee); nothing changed.")
    assert applied_to(books, payment) == {"INV-2026-000101": 98_750}
    assert written_off(books, payment) == {"INV-2026-000101": [(1_250, "bank_fee")]}
    assert invoice(books, "INV-2026-000101").balance_minor == 0
    assert len(books.exec(select(AuditEvent)).all()) == events
    assert invariants.validate_all(books) == []


def test_a_correction_weighs_the_bank_fee_again_as_the_engine_does(books) -> None:
    # given 1,387.50 from Globex for both its invoices (1,000.00 and 400.00): the engine
    # wrote the 12.50 short off as a bank fee on the last one
    fees_allowed(books)
    payment, _ = record_payment(books, PaymentIn(
        amount="1387.50", currency="USD", received_at=RECEIVED, customer="C-GLOBEX",
        reference="INV-2026-000101 INV-2026-000102"), actor="test")
    books.commit()
    assert written_off(books, payment) == {"INV-2026-000102": [(1_250, "bank_fee")]}
    # when a collector moves it to the 1,000.00 invoice alone: no fee fits any more
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000101"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    assert applied_to(books, payment) == {"INV-2026-000101": 100_000}
    assert written_off(books, payment) == {}
    assert (payment.unapplied_minor, invoice(books, "INV-2026-000102").balance_minor) == (
        38_750, 40_000)
    # and then back to both: the 12.50 is a bank fee within tolerance again, written off
    # (not left open on the 400.00 invoice to be dunned)
    correct_application(books, payment_id=payment.id,
                        invoices=["INV-2026-000101", "INV-2026-000102"],
                        actor="UCOLL001", now=NOW + timedelta(minutes=1))
    books.commit()
    assert applied_to(books, payment) == {"INV-2026-000101": 100_000,
                                          "INV-2026-000102": 38_750}
    assert written_off(books, payment) == {"INV-2026-000102": [(1_250, "bank_fee")]}
    assert (invoice(books, "INV-2026-000101").balance_minor,
            invoice(books, "INV-2026-000102").balance_minor) == (0, 0)
    assert (payment.status, payment.unapplied_minor) == ("applied", 0)
    assert payment.match_details["write_off_minor"] == 1_250
    assert invariants.validate_all(books) == []


def test_invoices_picked_when_recording_follow_the_engines_fee_rule_too(books) -> None:
    # given the same tolerance, a collector records 987.50 from Globex in the modal and picks
    # its 1,000.00 invoice: 12.50 short, a bank fee the engine writes off
    fees_allowed(books)
    payment, _ = record_payment(books, PaymentIn(
        amount="987.50", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", source="slack", apply_to=["INV-2026-000101"])
    books.commit()
    # then the invoice is settled, the fee written off (not 12.50 left open to be dunned)
    assert applied_to(books, payment) == {"INV-2026-000101": 98_750}
    assert written_off(books, payment) == {"INV-2026-000101": [(1_250, "bank_fee")]}
    assert invoice(books, "INV-2026-000101").balance_minor == 0
    assert (payment.status, payment.unapplied_minor) == ("applied", 0)
    assert payment.match_details["outcome"] == "manual"
    assert payment.match_details["write_off_minor"] == 1_250
    # and a payment short by more than the tolerance pays as far as it goes, the rest open
    short, _ = record_payment(books, PaymentIn(
        amount="300.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", source="slack", apply_to=["INV-2026-000102"])
    books.commit()
    assert applied_to(books, short) == {"INV-2026-000102": 30_000}
    assert written_off(books, short) == {}
    assert invoice(books, "INV-2026-000102").balance_minor == 10_000
    assert invariants.validate_all(books) == []


def test_two_corrections_crossing_each_others_invoices_both_go_through(books, db) -> None:
    from workflows import cash_application

    # given 300.00 on Globex's 1,000.00 invoice and 100.00 on its 400.00 invoice
    first, _ = record_payment(books, PaymentIn(
        amount="300.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000101"])
    second, _ = record_payment(books, PaymentIn(
        amount="100.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000102"])
    books.commit()

    def move(payment_id: int, to: str):
        def work(s):
            return correct_application(s, payment_id=payment_id, invoices=[to],
                                       actor="UCOLL001", now=NOW).id
        return work
    # when two collectors each move one onto the other's invoice at the same moment (each
    # held just before it takes its payment off its invoice: the interleaving in which
    # they waited for each other in a circle)
    outcomes = meanwhile.side_by_side(
        db, (move(first.id, "INV-2026-000102"), cash_application, "_reverse"),
        (move(second.id, "INV-2026-000101"), cash_application, "_reverse"))
    # then both went through, one after the other, and the books add up
    assert outcomes == [first.id, second.id]
    books.expire_all()
    assert applied_to(books, books.get(Payment, first.id)) == {"INV-2026-000102": 30_000}
    assert applied_to(books, books.get(Payment, second.id)) == {"INV-2026-000101": 10_000}
    assert (invoice(books, "INV-2026-000101").balance_minor,
            invoice(books, "INV-2026-000102").balance_minor) == (90_000, 10_000)
    assert invariants.validate_all(books) == []


def test_the_same_correction_twice_at_once_moves_the_payment_once(books, db) -> None:
    from models import AuditEvent

    # given 1,000.00 on Globex's 1,000.00 invoice
    payment, _ = record_payment(books, PaymentIn(
        amount="1000.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000101"])
    books.commit()
    # when two collectors move it to the 400.00 invoice at the same moment (the second
    # waits for the first)
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000102"],
                        actor="UCOLL001", now=NOW)

    def again(s):
        return correct_application(s, payment_id=payment.id, invoices=["INV-2026-000102"],
                                   actor="UCOLL001", now=NOW)
    with pytest.raises(Conflict, match="already applied that way"):
        meanwhile.second_writer(db, books, again)
    # then it was moved once: 400.00 on the invoice, 600.00 credit, one correction audited
    books.expire_all()
    assert applied_to(books, books.get(Payment, payment.id)) == {"INV-2026-000102": 40_000}
    assert books.get(Payment, payment.id).unapplied_minor == 60_000
    assert (invoice(books, "INV-2026-000101").balance_minor,
            invoice(books, "INV-2026-000102").balance_minor) == (100_000, 0)
    assert len(books.exec(select(AuditEvent).where(
        AuditEvent.action == "payment.corrected")).all()) == 1
    assert invariants.validate_all(books) == []


def test_a_correction_of_a_payment_given_back_says_so(books) -> None:
    from workflows.cash_application import return_payment

    # given 50.00 nobody could place, given back to its payer
    payment, _ = record_payment(books, PaymentIn(
        amount="50.00", currency="USD", received_at=RECEIVED, payer_name="ZZ TRADING"),
        actor="test")
    return_payment(books, payment_id=payment.id, actor="UCOLL001", reason="not ours", now=NOW)
    books.commit()
    # when a collector applies it to an invoice
    with pytest.raises(Conflict) as refused:
        correct_application(books, payment_id=payment.id, invoices=["INV-2026-000101"],
                            actor="UCOLL001", now=NOW)
    books.rollback()
    # then they are told it was refunded (not that it is "already applied that way"), and
    # nothing moved
    assert str(refused.value) == (f"Payment #{payment.id} was refunded; correct it in your "
                                  "ERP. Nothing changed.")
    assert applied_to(books, payment) == {}
    assert invoice(books, "INV-2026-000101").balance_minor == 100_000
    assert invariants.validate_all(books) == []


def test_a_payment_corrected_onto_another_customer_is_no_longer_said_to_be_the_first(
        books) -> None:
    from blocks.cashapp import review_card
    from workflows.cash_application import assign_customer, review_card_context
    from workflows.errors import AlreadyDecided

    # given a payment of 100.00 nobody could place, which a collector said is Globex's (no
    # Globex invoice fits, so it stays Globex's credit)
    payment, _ = record_payment(books, PaymentIn(
        amount="100.00", currency="USD", received_at=RECEIVED, payer_name="J SMITH",
        external_id="bank-1"), actor="test")
    assign_customer(books, payment_id=payment.id, customer="C-GLOBEX", actor="UCOLL001",
                    now=NOW)
    assert payment.match_details["identified"]["customer"] == "C-GLOBEX"
    # when it turns out to be Initech's: a collector applies it to Initech's invoice
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000201"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then nothing says it is Globex's any more: the card names Initech, and naming Initech
    # again answers what was done (applied by UCOLL001), not "UCOLL001 already said it is
    # Initech's" (they said Globex)
    assert "identified" not in payment.match_details
    card = str(review_card(review_card_context(books, payment)))
    assert "Initech LLC" in card and "Globex" not in card
    with pytest.raises(AlreadyDecided) as again:
        assign_customer(books, payment_id=payment.id, customer="C-INITECH", actor="UCOLL001",
                        now=NOW)
    assert "already said" not in str(again.value)
    assert invariants.validate_all(books) == []


@pytest.mark.parametrize("how", ["modal", "correction"])
def test_a_short_payment_a_person_applies_flags_the_shortfall_as_the_engine_does(
        books, how) -> None:
    # given a payment of 600.00 a collector applies to Globex's INV-2026-000101 of 1000.00
    # (400.00 short: far beyond the bank-fee tolerance), picked in the modal or by correction
    data = PaymentIn(amount="600.00", currency="USD", received_at=RECEIVED,
                     payer_name="J SMITH", external_id="bank-1")
    if how == "modal":
        payment, _ = record_payment(books, data, actor="UCOLL001", source="slack",
                                    apply_to=["INV-2026-000101"])
    else:
        payment, _ = record_payment(books, data, actor="test")
        correct_application(books, payment_id=payment.id, invoices=["INV-2026-000101"],
                            actor="UCOLL001", now=NOW)
    books.commit()
    # then 600.00 is applied and the 400.00 short is a deduction to be worked (SPEC: a larger
    # short payment is applied partially and flagged as a deduction), with its card in AR,
    # not an open balance nobody is told about
    assert applied_to(books, payment) == {"INV-2026-000101": 60_000}
    assert invoice(books, "INV-2026-000101").balance_minor == 40_000
    [short] = books.exec(select(Deduction)).all()
    assert (short.payment_id, short.invoice_id, short.amount_minor, short.status) == (
        payment.id, invoice(books, "INV-2026-000101").id, 40_000, "open")
    assert short.card_outbox_id is not None
    assert payment.match_details["deduction_minor"] == 40_000
    assert invariants.validate_all(books) == []


def test_paying_part_of_a_flagged_shortfall_does_not_flag_it_twice(books) -> None:
    # given INV-2026-000101 (1000.00) short paid 950.00 by reference: a 50.00 deduction open
    record_payment(books, PaymentIn(amount="950.00", currency="USD", received_at=RECEIVED,
                                    reference="INV-2026-000101"), actor="test")
    [first] = books.exec(select(Deduction)).all()
    assert first.amount_minor == 5_000
    # when the customer pays 20.00 of it and a collector picks the invoice in the modal
    record_payment(books, PaymentIn(amount="20.00", currency="USD", received_at=RECEIVED,
                                    external_id="slack-1"), actor="UCOLL001", source="slack",
                   apply_to=["INV-2026-000101"])
    # then the 30.00 left is still the one deduction's to work, not a second one
    assert invoice(books, "INV-2026-000101").balance_minor == 3_000
    assert [d.id for d in books.exec(select(Deduction)).all()] == [first.id]
    assert invariants.validate_all(books) == []
