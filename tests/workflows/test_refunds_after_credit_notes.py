"""A refund of a payment whose invoice a credit note credited after it was paid (the note
became customer credit: SPEC §3 "Back office"): the money given back first settles that
customer credit — it *is* the money we owed back — and only the rest reopens the invoice
(`workflows.refunds`). AR, customer credit and the invariants agree to the cent."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from models import Customer, Invoice, Order, Payment, WriteOff
from tests.support import factories as f
from tests.support.examples import examples
from tests.support.timetravel import frozen_at
from workflows import approvals, credit_notes, invariants, refunds, shipping, statements
from workflows.cash_application import PaymentIn, record_payment

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)  # a Tuesday
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


def paid_and_credited(session: Session, *, total: int, credit: int) -> tuple[Invoice, Payment]:
    """An order's invoice of `total` paid in full, then credited `credit` (customer credit)."""
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, collector="UCOLL001", credit_limit="1000000.00")
    f.product(session, price=f"{total / 100:.2f}")
    order = f.order(session, lines=[("WID-1", 1)], now=NOW - timedelta(days=3))
    shipping.ship_order(session, order_number=order.number, carrier="UPS",
                        tracking_number="1Z", shipped_at=NOW - timedelta(days=2),
                        actor="USALES01", now=NOW - timedelta(days=2))
    invoice = session.exec(select(Invoice)).one()
    assert invoice.total_minor == total
    payment, _ = record_payment(session, PaymentIn(
        amount=f"{total / 100:.2f}", currency="USD", received_at=NOW - timedelta(days=1),
        reference=invoice.number), actor="test")
    assert session.get(Order, order.id).status == "paid"
    request, _ = credit_notes.request_credit_note(session, credit_notes.CreditNoteIn(
        invoice=invoice.number, reason="damaged", amount=f"{credit / 100:.2f}"),
        actor="UCOLL001", now=NOW)
    approvals.decide(session=session, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    session.refresh(invoice)
    assert (invoice.balance_minor, credit_notes.customer_credit_minor(
        session, invoice.customer_id)) == (0, credit)
    return invoice, payment


def refund(session: Session, payment: Payment, amount: int) -> list[dict]:
    _, reopened = refunds.refund_payment(session, payment=payment, amount_minor=amount,
                                         external_id="re_1", value_date=TODAY, actor="test")
    return reopened


def test_refunding_the_customer_credit_leaves_the_invoice_paid(session) -> None:
    # given an invoice of 100.00 paid, then credited 30.00: 30.00 we owe the customer back
    invoice, payment = paid_and_credited(session, total=10_000, credit=3_000)
    # when those 30.00 are refunded
    reopened = refund(session, payment, 3_000)
    # then the customer credit is what was given back: none is left, and the invoice (70.00
    # net of the note, 70.00 of the payment left on it) stays paid, its order too
    session.refresh(invoice)
    assert reopened == []
    assert (invoice.balance_minor, invoice.paid_at is not None) == (0, True)
    assert session.get(Order, invoice.order_id).status == "paid"
    assert credit_notes.customer_credit_minor(session, invoice.customer_id) == 0
    assert credit_notes.paid_total(session, invoice.id) == 7_000
    [used] = session.exec(select(WriteOff)).all()
    assert (used.reason, used.amount_minor, used.payment_id) == (
        "customer_credit", 3_000, payment.id)
    assert invariants.validate_all(session) == []


def test_refunding_the_whole_payment_reopens_the_invoice_for_its_net_only(session) -> None:
    # given the same invoice of 100.00, paid, credited 30.00
    invoice, payment = paid_and_credited(session, total=10_000, credit=3_000)
    # when the whole payment is refunded
    reopened = refund(session, payment, 10_000)
    # then the customer owes the 70.00 the invoice comes to after the note, and holds no
    # credit: not 100.00 owed beside 30.00 of credit for money they got back
    session.refresh(invoice)
    assert reopened == [{"invoice": invoice.number, "amount": "70.00"}]
    assert (invoice.balance_minor, invoice.paid_at) == (7_000, None)
    assert session.get(Order, invoice.order_id).status == "invoiced"
    assert credit_notes.customer_credit_minor(session, invoice.customer_id) == 0
    assert credit_notes.creditable(session, invoice) == 7_000
    mine = statements.statement(session, session.get(Customer, invoice.customer_id),
                                start=TODAY, end=TODAY)
    assert (mine.closing_minor, mine.customer_credit_minor, mine.net_minor) == (7_000, 0, 7_000)
    assert invariants.validate_all(session) == []


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.integers(100, 500_000).flatmap(lambda total: st.tuples(
    st.just(total), st.integers(1, total), st.integers(1, total))))
def test_any_refund_after_a_credit_note_keeps_ar_and_credit_to_the_cent(
        db_factory, case) -> None:
    total, credit, refunded = case
    with db_factory.fresh() as database, database.session() as session:
        # given an invoice of `total` paid in full and credited `credit`
        invoice, payment = paid_and_credited(session, total=total, credit=credit)
        # when `refunded` of the payment is given back
        refund(session, payment, refunded)
        # then the refund took the customer credit first, then reopened the invoice
        session.refresh(invoice)
        left = credit_notes.customer_credit_minor(session, invoice.customer_id)
        assert left == max(credit - refunded, 0)
        assert invoice.balance_minor == max(refunded - credit, 0)
        # what the customer owes on balance is the invoice less the note less the money kept
        assert invoice.balance_minor - left == (total - credit) - (total - refunded)
        assert invariants.validate_all(session) == []


def test_two_refunds_at_once_give_the_customer_credit_back_once(db, monkeypatch) -> None:
    # given an invoice of 100.00 paid by two payments of 50.00, then credited 30.00: 30.00
    # of customer credit, the invoice comes to 70.00
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, collector="UCOLL001", credit_limit="1000000.00")
        f.product(s, price="100.00")
        order = f.order(s, lines=[("WID-1", 1)], now=NOW - timedelta(days=3))
        shipping.ship_order(s, order_number=order.number, carrier="UPS",
                            tracking_number="1Z", shipped_at=NOW - timedelta(days=2),
                            actor="USALES01", now=NOW - timedelta(days=2))
        invoice = s.exec(select(Invoice)).one()
        paid = [record_payment(s, PaymentIn(
            amount="50.00", currency="USD", received_at=NOW - timedelta(days=1),
            reference=invoice.number, external_id=f"pay-{n}"), actor="test")[0].id
            for n in (1, 2)]
        request, _ = credit_notes.request_credit_note(s, credit_notes.CreditNoteIn(
            invoice=invoice.number, reason="damaged", amount="30.00"),
            actor="UCOLL001", now=NOW)
        approvals.decide(session=s, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=True, now=NOW)
        s.refresh(invoice)
        assert (invoice.balance_minor, credit_notes.customer_credit_of(s, invoice.id)) == (
            0, 3_000)
    # and two refunds, one of each payment, that would both read the customer credit before
    # either writes unless one waits for the other: each waits (up to 1.5 s) for the other
    meet = threading.Barrier(2, timeout=1.5)
    credit_of = credit_notes.customer_credit_of

    def slow_credit_of(*args, **kwargs):
        found = credit_of(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return found

    monkeypatch.setattr(credit_notes, "customer_credit_of", slow_credit_of)
    errors: list[BaseException] = []

    def give_back(payment_id: int) -> None:
        try:
            with db.transaction() as s:
                refunds.refund_payment(s, payment=s.get(Payment, payment_id),
                                       amount_minor=5_000, external_id=f"re-{payment_id}",
                                       value_date=TODAY, actor="test")
        except BaseException as exc:  # reported below
            errors.append(exc)

    # when both payments are refunded in full at the same moment, from two sessions
    threads = [threading.Thread(target=give_back, args=(pid,)) for pid in paid]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then the 30.00 of customer credit went back once: the customer owes the 70.00 the
    # invoice comes to, and holds no credit (not 40.00 owed and -30.00 of credit)
    assert errors == []
    with db.read_session() as s:
        invoice = s.get(Invoice, invoice.id)
        assert invoice.balance_minor == 7_000
        assert credit_notes.customer_credit_of(s, invoice.id) == 0
        assert [w.amount_minor for w in s.exec(select(WriteOff)).all()] == [3_000]
        assert invariants.validate_all(s) == []
