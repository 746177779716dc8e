"""Customer credit and refunds, reconciled to the cent (SPEC §3 cash application and credit
notes, §5.8): a refund reopens what it takes off an invoice exactly as a balance change does,
and the statement says what is held for the customer."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session

from models import Invoice
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import invariants, refunds
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


def pay(session: Session, amount: str, reference: str, day: date = date(2026, 11, 20)):
    payment, _ = record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=datetime.combine(day, datetime.min.time(),
                                                                     UTC),
        customer="C-GLOBEX", reference=reference), actor="api")
    return payment


def test_a_refund_that_reopens_a_disputed_invoice_holds_the_dispute_again(session) -> None:
    # given INV-1 (1000.00) with a dispute open for 400.00, then paid in full (nothing is
    # left to dispute: 0.00 held on the invoice)
    f.customer(session)
    f.invoice(session, "INV-1", total="1000.00", issued=date(2026, 11, 2),
              due=date(2026, 12, 2))
    f.dispute(session, "INV-1", amount="400.00", now=NOW)
    payment = pay(session, "1000.00", "INV-1")
    invoice = session.exec(Invoice.__table__.select()).first()
    assert (invoice.balance_minor, invoice.disputed_minor) == (0, 0)
    # when the whole payment is refunded
    refunds.refund_payment(session, payment=payment, amount_minor=100_000,
                           external_id="re_1", value_date=TODAY, actor="test")
    # then the invoice owes 1000.00 again, 400.00 of it in dispute (left out of dunning),
    # as the open dispute says
    invoice = session.get(Invoice, invoice.id)
    session.refresh(invoice)
    assert (invoice.balance_minor, invoice.disputed_minor, invoice.disputed) == (
        100_000, 40_000, True)
    assert invariants.validate_all(session) == []


def test_a_statement_email_says_what_is_held_for_a_customer_with_only_credit(session) -> None:
    from bot.mailer import render_email
    from workflows import statements

    # given INV-1 (1000.00) overpaid by 300.00 in November: nothing open, 300.00 unapplied
    customer = f.customer(session)
    f.invoice(session, "INV-1", total="1000.00", issued=date(2026, 11, 2),
              due=date(2026, 12, 2))
    pay(session, "1300.00", "INV-1")
    found = statements.statement(session, customer, start=date(2026, 11, 1),
                                 end=date(2026, 11, 30))
    assert (found.closing_minor, found.unapplied_minor, found.net_minor) == (0, 30_000,
                                                                             -30_000)
    # when November's statement is e-mailed
    _, body = render_email("statement", {"statement": {
        "customer": "C-GLOBEX", "start": "2026-11-01", "end": "2026-11-30"}},
        from_email="ar@seller.example", session=session)
    # then the e-mail, like its PDF, says the 300.00 is held for them and that we owe it
    # (not only "Closing balance: USD 0.00")
    assert "Closing balance: USD 0.00" in body
    assert "Unapplied payments on account (not in the balance): USD 300.00" in body
    assert "Net owed to you on 30 Nov 2026: USD 300.00" in body


def test_a_payment_refunded_without_its_refund_rows_is_an_invariant_violation(session) -> None:
    # given 300.00 paid on account, 100.00 of it refunded (a refund row says so)
    f.customer(session)
    payment = pay(session, "300.00", "on account")
    refunds.refund_payment(session, payment=payment, amount_minor=10_000, external_id="re_1",
                           value_date=TODAY, actor="test")
    assert invariants.validate_all(session) == []
    # when the payment says 200.00 went back (its amounts still add up: 100.00 unapplied)
    # while its refunds, which the statements read, say 100.00
    payment.unapplied_minor, payment.refunded_minor = 10_000, 20_000
    session.add(payment)
    session.flush()
    # then the invariants say so
    assert invariants.validate_refunds(session) == [
        f"payment {payment.id}: refunded 20000 but its refunds sum to 10000"]
    assert invariants.validate_refunds(session)[0] in invariants.validate_all(session)


def test_a_refund_is_dated_no_earlier_than_its_payment(session) -> None:
    # given a payment received (valued) on 20 November, applied to INV-1
    f.customer(session)
    f.invoice(session, "INV-1", total="100.00", issued=date(2026, 11, 2),
              due=date(2026, 12, 2))
    payment = pay(session, "100.00", "INV-1")
    # when a refund of it arrives dated 10 November (a provider's or a caller's date)
    refund, _ = refunds.refund_payment(session, payment=payment, amount_minor=10_000,
                                       external_id="re_early", value_date=date(2026, 11, 10),
                                       actor="test")
    # then it is dated 20 November: the invoice was never open for more than its total
    assert refund.value_date == payment.value_date == date(2026, 11, 20)
    assert invariants.validate_all(session) == []
