"""A waiting credit card shows the exposure every kind of change moved (issue 13): an invoice
issued, a payment applied, corrected (unapplied) and refunded, a credit note, a write-off —
one chat.update per transaction that moved it, none when nothing moved or nothing waits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlmodel import select

from models import Approval, OutboxMessage, Payment
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, cash_application, exposure, invoicing, refunds
from workflows.inputs import PaymentIn

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(MONDAY)


def card_updates(session, approval: Approval) -> list[dict]:
    """The exposure (minor units) each chat.update of the approval's card shows, in order."""
    rows = session.exec(select(OutboxMessage).where(
        OutboxMessage.method == "chat.update",
        OutboxMessage.target_outbox_id == approval.card_outbox_id)
        .order_by(OutboxMessage.id)).all()
    return [r.payload["context"]["snapshot"].get("now", {}).get("exposure_minor")
            for r in rows]


def test_every_change_of_the_exposure_refreshes_the_waiting_card_once(session) -> None:
    # given a new customer owing USD 1,000 with an order of USD 200 waiting: exposure 1,200
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL001", "collector")
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.customer(session, "C-OTHER", "Otherco")
    f.product(session, "WID-1", price="100.00")
    f.invoice(session, "INV-1", "C-NEW", total="1000.00")
    order = f.order(session, "C-NEW", lines=[("WID-1", 2)])
    session.commit()
    approval = session.exec(select(Approval).where(Approval.order_id == order.id)).one()
    assert approval.snapshot["exposure_minor"] == 120000 and card_updates(session, approval) == []
    shown = []

    def step(change) -> None:
        change()
        session.commit()
        seen = sum(len(each) for each in shown)
        shown.append(card_updates(session, approval)[seen:])

    # when an ERP invoice of USD 500 is issued, then a payment of USD 300 applied to INV-1
    step(lambda: f.invoice(session, "INV-2", "C-NEW", total="500.00"))
    step(lambda: cash_application.record_payment(session, PaymentIn(
        amount="300.00", currency="USD", received_at=MONDAY, reference="INV-1",
        customer="C-NEW", external_id="PAY-1"), actor="test"))
    payment = session.exec(select(Payment).where(Payment.external_id == "PAY-1")).one()
    # a collector moves the payment to INV-2 (unapplied from INV-1, applied to INV-2: net 0)
    step(lambda: cash_application.correct_application(
        session, payment_id=payment.id, invoices=["INV-2"], actor="UCOLL001", now=MONDAY))
    # USD 100 of it is refunded (INV-2 open again by 100), a credit note of USD 50 on INV-1,
    # a bad-debt write-off of USD 25 on INV-1, another customer's invoice, and nothing at all
    step(lambda: refunds.refund_payment(session, payment=payment, amount_minor=10000,
                                        external_id="RF-1", value_date=MONDAY.date(),
                                        actor="test"))
    step(lambda: invoicing.issue_credit_note(session, invoice_number="INV-1", amount="50.00",
                                             reason="damaged", actor="test", now=MONDAY))
    step(lambda: cash_application.write_off(session, invoice=invoicing.get_invoice(
        session, "INV-1"), amount_minor=2500, reason="bad debt", actor="test", now=MONDAY))
    step(lambda: f.invoice(session, "INV-3", "C-OTHER", total="70.00"))
    step(lambda: exposure.moved(session, order.customer_id))
    # then each change that moved the exposure updated the card once, with the figure now
    assert shown == [[170000], [140000], [], [150000], [145000], [142500], [], []]
    # and once the order is decided, nothing waits: a later change updates no card but
    # the decision's own
    f.user(session, "UCREDIT1", "credit_approver")
    approvals.decide(session=session, approval_id=approval.id, user_id="UCREDIT1",
                     approve=True, now=MONDAY)
    session.commit()
    decided = len(card_updates(session, approval))
    step(lambda: f.invoice(session, "INV-4", "C-NEW", total="90.00"))
    assert len(card_updates(session, approval)) == decided


def waiting_card(session) -> Approval:
    """Newco (not reviewed) with an order waiting for credit approval: its card's approval."""
    f.user(session, "USALES01", "sales")
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.product(session, "WID-1", price="100.00")
    order = f.order(session, "C-NEW", lines=[("WID-1", 2)])
    session.commit()
    return session.exec(select(Approval).where(Approval.order_id == order.id)).one()


def test_a_rolled_back_change_refreshes_nothing(session) -> None:
    # given a waiting card
    approval = waiting_card(session)
    # when an invoice is issued and the transaction rolls back, then another commits
    f.invoice(session, "INV-1", "C-NEW", total="1000.00")
    session.rollback()
    session.add(approval)
    session.commit()
    # then no card was refreshed
    assert card_updates(session, approval) == []


def test_a_savepoint_waits_for_its_transaction(session) -> None:
    # given a waiting card
    approval = waiting_card(session)
    # when two invoices are issued, each in a savepoint of one transaction
    for number in ("INV-1", "INV-2"):
        with session.begin_nested():
            f.invoice(session, number, "C-NEW", total="100.00")
        assert card_updates(session, approval) == []  # not yet
    session.commit()
    # then the card was updated once, when the transaction committed
    assert card_updates(session, approval) == [40000]


def test_two_payments_at_once_leave_the_card_with_the_exposure_after_both(db) -> None:
    # given a waiting card of a customer owing two invoices of USD 1,000 (exposure 2,200)
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-NEW", "Newco", reviewed=False)
        f.product(s, "WID-1", price="100.00")
        f.invoice(s, "INV-1", "C-NEW", total="1000.00")
        f.invoice(s, "INV-2", "C-NEW", total="1000.00")
        order_id = f.order(s, "C-NEW", lines=[("WID-1", 2)]).id
    # when two payments are applied in two transactions that commit at the same moment
    # (PostgreSQL: both wait at the barrier before committing; SQLite runs them in turn)
    barrier = threading.Barrier(2) if db.is_postgres else None
    errors: list[BaseException] = []

    def pay(number: str, amount: str) -> None:
        try:
            with db.transaction() as s:
                cash_application.record_payment(s, PaymentIn(
                    amount=amount, currency="USD", received_at=MONDAY, reference=number,
                    customer="C-NEW", external_id=f"PAY-{number}"), actor="test")
                if barrier is not None:
                    barrier.wait(timeout=20)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=pay, args=args)
               for args in (("INV-1", "1000.00"), ("INV-2", "300.00"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # then the last update of the card shows the exposure after both (700 open + 200)
    with db.read_session() as s:
        approval = s.exec(select(Approval).where(Approval.order_id == order_id)).one()
        shown = card_updates(s, approval)
    assert shown[-1] == 70000 + 20000 and len(shown) == 2


def test_a_new_credit_limit_shows_on_the_waiting_card(session) -> None:
    # given a waiting card (limit USD 50,000)
    approval = waiting_card(session)
    # when the limit is lowered to USD 100
    f.customer(session, "C-NEW", "Newco", reviewed=False, credit_limit="100.00")
    session.commit()
    # then the card shows the same exposure against the new limit
    session.refresh(approval)
    assert approval.snapshot["now"] == {"exposure_minor": 20000, "credit_limit_minor": 10000,
                                        "currency": "USD"}
    assert card_updates(session, approval) == [20000]


def test_a_new_tax_rate_shows_on_the_waiting_card(session) -> None:
    # given Globex (limit USD 1,500, 10 % tax) with an approved order of 10 x 100.00
    # (1,100.00) and one of 4 x 100.00 (440.00) waiting: exposure 1,540.00
    f.user(session, "USALES01", "sales")
    f.customer(session, credit_limit="1500.00", tax_rate="10")
    f.product(session, "WID-1", price="100.00")
    f.order(session, lines=[("WID-1", 10)])
    waiting = f.order(session, lines=[("WID-1", 4)])
    session.commit()
    approval = session.exec(select(Approval).where(Approval.order_id == waiting.id)).one()
    assert approval.snapshot["exposure_minor"] == 154000
    # when the ERP moves the customer to 20 % tax
    f.customer(session, credit_limit="1500.00", tax_rate="20")
    session.commit()
    # then the card shows the approved order at what it will invoice now, 1,200.00, and the
    # waiting one too: 480.00 (its total, re-priced at the rate it will be invoiced at)
    assert card_updates(session, approval) == [120000 + 48000]
    assert (waiting.tax_minor, waiting.total_minor) == (8000, 48000)
