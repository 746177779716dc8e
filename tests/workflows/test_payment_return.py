""""Refund or return" on a payment: what it still holds is booked as refunded, once, audited,
by a collector, with the AR invariants holding (SPEC §5.8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from models import AuditEvent, Payment, Refund
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import cash_application, invariants
from workflows.errors import AlreadyDecided, Conflict, PermissionDenied
from workflows.inputs import PaymentIn

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(MONDAY)


def paid(session, amount: str, reference: str, external_id: str) -> Payment:
    cash_application.record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=MONDAY, reference=reference,
        customer="C-GLOBEX", external_id=external_id), actor="test")
    return session.exec(select(Payment).where(Payment.external_id == external_id)).one()


def test_an_overpayment_gives_back_only_what_it_holds_once(session) -> None:
    # given USD 150 paid on an invoice of USD 100: USD 50 held as credit
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    f.customer(session)
    f.invoice(session, "INV-1", total="100.00")
    payment = paid(session, "150.00", "INV-1", "PAY-1")
    assert payment.unapplied_minor == 5000
    # when a sales rep tries, it is refused
    with pytest.raises(PermissionDenied):
        cash_application.return_payment(session, payment_id=payment.id, actor="USALES01",
                                        reason="x", now=MONDAY)
    # when a collector returns it, twice
    cash_application.return_payment(session, payment_id=payment.id, actor="UCOLL001",
                                    reason="overpaid", now=MONDAY)
    with pytest.raises(AlreadyDecided):
        cash_application.return_payment(session, payment_id=payment.id, actor="UCOLL001",
                                        reason="again", now=MONDAY)
    session.commit()
    # then USD 50 went back once; the invoice stays paid; the books add up
    [refund] = session.exec(select(Refund)).all()
    assert (refund.amount_minor, refund.from_unapplied_minor, refund.reason,
            refund.external_id) == (5000, 5000, "overpaid", f"return:{payment.id}")
    session.refresh(payment)
    assert (payment.status, payment.unapplied_minor, payment.refunded_minor) == (
        "applied", 0, 5000)
    assert invariants.validate_all(session) == []
    assert len(session.exec(select(AuditEvent).where(
        AuditEvent.action == "payment.returned")).all()) == 1


def test_a_payment_applied_in_full_has_nothing_to_give_back(session) -> None:
    f.user(session, "UCOLL001", "collector")
    f.customer(session)
    f.invoice(session, "INV-1", total="100.00")
    payment = paid(session, "100.00", "INV-1", "PAY-1")
    with pytest.raises(Conflict, match="nothing is left to give back"):
        cash_application.return_payment(session, payment_id=payment.id, actor="UCOLL001",
                                        reason="why not", now=MONDAY)
