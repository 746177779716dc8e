"""The money of a Stripe payment goes back through one door: Stripe. A collector's "Refund or
return" of a payment that came through Stripe is refused (audited); the refund is booked
when Stripe's `charge.refunded` arrives, once, whatever the order and however often it is
delivered. Before, the manual return booked the unapplied credit as refunded, and Stripe's
refund of the same money then took it off the invoice as well: paid, reopened, dunned."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from models import AuditEvent, Invoice, Payment, Refund
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from tests.support.timetravel import frozen_at
from workflows import audit, cash_application, refunds, stripe_events
from workflows.errors import PermissionDenied
from workflows.invariants import validate_all

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def handle(db, event: dict) -> stripe_events.Outcome:
    with db.transaction() as s:
        return stripe_events.handle(s, event, now=NOW, fetch_fees=False)


def stripe_overpayment(db) -> Payment:
    """Globex pays USD 150 through Stripe for an invoice of USD 100: USD 50 held as credit."""
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, collector="UCOLL001")
        f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 3, 30))
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice="INV-2026-000001", amount=15_000, pi_id="pi_R")))
    with db.read_session() as s:
        payment = s.exec(select(Payment)).one()
    assert (payment.unapplied_minor, payment.method) == (5_000, "stripe")
    return payment


def returned_by_hand(db, payment_id: int) -> PermissionDenied:
    """A collector's "Refund or return" (as `handlers.views.payment.record_return`: a refusal
    rolls back, and is audited after)."""
    with pytest.raises(PermissionDenied) as refused, db.transaction() as s:
        cash_application.return_payment(s, payment_id=payment_id, actor="UCOLL001",
                                        reason="customer asked", now=NOW)
    with db.transaction() as s:
        audit.refusal_of(s, refused.value)
    return refused.value


def books(db) -> tuple[int, int, int, list[int]]:
    with db.read_session() as s:
        payment = s.exec(select(Payment)).one()
        invoice = s.exec(select(Invoice)).one()
        refunds = [r.amount_minor for r in s.exec(select(Refund).order_by(Refund.id))]
        assert validate_all(s) == []
    return payment.unapplied_minor, payment.refunded_minor, invoice.balance_minor, refunds


def refund_event(amount_refunded: int) -> dict:
    return sp.event("charge.refunded", sp.charge(
        payment_intent="pi_R", amount=15_000, amount_refunded=amount_refunded,
        charge_id="ch_R"))


def test_a_manual_return_of_a_stripe_payment_is_refused_and_stripe_books_the_refund(db) -> None:
    payment = stripe_overpayment(db)
    # when a collector returns it by hand: refused, with where to do it, audited
    refused = returned_by_hand(db, payment.id)
    assert "came through Stripe: refund it in the Stripe dashboard" in refused.detail
    assert books(db) == (5_000, 0, 0, [])
    with db.read_session() as s:
        [event] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.payment.return")).all()
        assert (event.actor, event.entity_id) == ("UCOLL001", str(payment.id))
    # when finance refunds the USD 50 in Stripe, and Stripe delivers it twice
    refunded = refund_event(5_000)
    assert handle(db, refunded).status == "processed"
    assert handle(db, refunded).status == "duplicate"
    # then USD 50 went back once, from the credit: the invoice stays paid
    assert books(db) == (0, 5_000, 0, [5_000])


def test_after_a_stripe_refund_a_manual_return_of_the_rest_is_refused(db) -> None:
    payment = stripe_overpayment(db)
    # given USD 30 of the 50 refunded in Stripe
    assert handle(db, refund_event(3_000)).status == "processed"
    assert books(db) == (2_000, 3_000, 0, [3_000])
    # when a collector returns the USD 20 still held by hand: refused, nothing changes
    returned_by_hand(db, payment.id)
    assert books(db) == (2_000, 3_000, 0, [3_000])
    # and when Stripe refunds the 20 (its amount_refunded counts the 30 too), a redelivery of
    # the first event changes nothing
    assert handle(db, refund_event(5_000)).status == "processed"
    assert handle(db, refund_event(3_000)).status == "processed"  # another event id
    assert books(db) == (0, 5_000, 0, [3_000, 2_000])


def test_a_bank_payment_is_still_returned_by_hand(db) -> None:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s)
        f.invoice(s, "INV-1", total="100.00")
        payment, _ = cash_application.record_payment(s, cash_application.PaymentIn(
            amount="150.00", currency="USD", received_at=NOW, reference="INV-1",
            customer="C-GLOBEX", external_id="BANK-1", method="wire"), actor="api")
        assert not cash_application.through_stripe(payment)
        cash_application.return_payment(s, payment_id=payment.id, actor="UCOLL001",
                                        reason="overpaid", now=NOW)
        assert payment.refunded_minor == 5_000


def test_a_return_booked_by_hand_before_the_refusal_is_not_given_back_again(db) -> None:
    # given a Stripe payment returned by hand before such returns were refused (USD 50 of
    # credit booked as refunded, as `return_payment` did: the refund "return:<payment>")
    payment = stripe_overpayment(db)
    with db.transaction() as s:
        refunds.refund_payment(s, payment=s.get(Payment, payment.id), amount_minor=5_000,
                               external_id=f"return:{payment.id}", value_date=NOW.date(),
                               actor="UCOLL001", reason="customer asked")
    # when finance refunds those USD 50 in Stripe, twice delivered under two event ids
    assert handle(db, refund_event(5_000)).status == "processed"
    assert handle(db, refund_event(5_000)).status == "processed"
    # then nothing more goes back: the invoice stays paid
    assert books(db) == (0, 5_000, 0, [5_000])
    # and when Stripe refunds USD 30 more (amount_refunded 80), only those 30 come off it
    assert handle(db, refund_event(8_000)).status == "processed"
    assert books(db) == (0, 8_000, 3_000, [5_000, 3_000])
