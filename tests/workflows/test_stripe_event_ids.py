"""A Stripe event whose ids do not fit our columns (a forged-but-signed or garbled event: a
charge, payment intent or dispute id of hundreds of characters, an event id longer than 255)
is kept as failed with the reason, audited, AR told; nothing else changes, and a re-delivery
is a duplicate. Before, PostgreSQL refused the row (`Refund.external_id` holds 255
characters) with a 500 that Stripe retried for days; SQLite stored it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import select

from models import AuditEvent, Dispute, Invoice, Payment, ProviderEvent, Refund
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from tests.support.timetravel import frozen_at
from workflows import stripe_events
from workflows.invariants import validate_all

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
LONG = "x" * 300


def handle(db, event: dict) -> stripe_events.Outcome:
    with db.transaction() as s:
        return stripe_events.handle(s, event, now=NOW, fetch_fees=False)


def paid(db, pi_id: str = "pi_I") -> None:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, collector="UCOLL001")
        f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 3, 30))
    assert handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice="INV-2026-000001", amount=10_000, pi_id=pi_id))).status == "processed"


def unchanged(db, *, payments: int = 1) -> None:
    with db.read_session() as s:
        assert len(s.exec(select(Payment)).all()) == payments
        assert s.exec(select(Refund)).all() == []
        assert s.exec(select(Dispute)).all() == []
        if payments:
            assert s.exec(select(Invoice)).one().balance_minor == 0
        assert validate_all(s) == []


def kept_failed(db, event: dict, why: str) -> None:
    with db.read_session() as s:
        row = s.get(ProviderEvent, ("stripe", event["id"][:255]))
        assert row.status == "failed" and why in row.detail, row.detail
        assert row.payload["type"] == event["type"]
        [audited] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "provider_event.refused")).all()
        assert audited.reason == row.detail


def test_a_refund_of_a_charge_with_an_overlong_id_changes_nothing(db) -> None:
    paid(db)
    refund = sp.event("charge.refunded", sp.charge(payment_intent="pi_I", amount=10_000,
                                                   amount_refunded=10_000, charge_id=LONG))
    outcome = handle(db, refund)
    assert outcome.status == "failed"
    assert "its id is 300 characters long" in outcome.detail
    kept_failed(db, refund, "nothing was changed")
    assert handle(db, refund).status == "duplicate"
    unchanged(db)


def test_a_chargeback_with_an_overlong_dispute_id_changes_nothing(db) -> None:
    paid(db)
    chargeback = sp.event("charge.dispute.created", sp.dispute(
        payment_intent="pi_I", charge_id="ch_I", amount=10_000, dispute_id=LONG))
    assert handle(db, chargeback).status == "failed"
    kept_failed(db, chargeback, "its id is 300 characters long")
    unchanged(db)


def test_a_payment_or_refund_naming_an_overlong_payment_intent_changes_nothing(db) -> None:
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 3, 30))
    payment = sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice="INV-2026-000001", amount=10_000, pi_id=LONG))
    assert handle(db, payment).status == "failed"
    kept_failed(db, payment, "its payment intent id is 300 characters long")
    # (a refund naming it would wait for it under that id, in a column of 255)
    refund = sp.event("charge.refunded", sp.charge(payment_intent=LONG, amount=10_000,
                                                   amount_refunded=10_000))
    assert handle(db, refund).status == "failed"
    with db.read_session() as s:
        assert s.exec(select(Payment)).all() == []
        assert s.exec(select(ProviderEvent).where(
            ProviderEvent.status == "waiting")).all() == []


def test_an_overlong_event_id_is_kept_by_its_first_255_characters_and_changes_nothing(
        db) -> None:
    paid(db)
    refund = sp.event("charge.refunded", sp.charge(payment_intent="pi_I", amount=10_000,
                                                   amount_refunded=10_000),
                      event_id="evt_" + LONG)
    assert handle(db, refund).status == "failed"
    kept_failed(db, refund, "its id is 304 characters long (at most 255)")
    assert handle(db, refund).status == "duplicate"
    unchanged(db)


def test_ids_as_long_as_allowed_fit_every_key_made_of_them(db) -> None:
    # given a payment, a chargeback won (its money paid again), then a refund of the
    # reinstated money: the longest keys ("stripe:<charge>:refunded:<total>:<dispute>")
    longest = "y" * stripe_events.STRIPE_ID_MAX
    pi_id = "pi_" + "p" * (stripe_events.STRIPE_ID_MAX - 3)
    paid(db, pi_id=pi_id)
    dispute = sp.dispute(payment_intent=pi_id, charge_id=longest, amount=10_000,
                         dispute_id="dp_" + "d" * (stripe_events.STRIPE_ID_MAX - 3))
    assert handle(db, sp.event("charge.dispute.created", dispute)).status == "processed"
    assert handle(db, sp.event("charge.dispute.closed", {**dispute, "status": "won"})
                  ).status == "processed"
    assert handle(db, sp.event("charge.refunded", sp.charge(
        payment_intent=pi_id, amount=10_000, amount_refunded=10_000, charge_id=longest))
    ).status == "processed"
    with db.read_session() as s:  # (the whole charge refunded: the invoice is owed again)
        assert s.exec(select(Invoice)).one().balance_minor == 10_000
        assert max(len(r.external_id) for r in s.exec(select(Refund))) > 200
        assert validate_all(s) == []


def test_a_payment_with_an_overlong_payer_name_is_recorded_with_the_name_cut(db) -> None:
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 3, 30))
    paid_in = sp.event("checkout.session.completed", sp.checkout_session(
        invoice="INV-2026-000001", amount=10_000, payment_intent="pi_N", name="N" * 400))
    assert handle(db, paid_in).status == "processed"
    with db.read_session() as s:
        payment = s.exec(select(Payment)).one()
        assert (payment.payer_name, payment.amount_minor) == ("N" * 300, 10_000)
        assert s.exec(select(Invoice)).one().balance_minor == 0


def test_a_payment_whose_payer_name_holds_a_nul_is_recorded_and_its_event_kept(db) -> None:
    # given a checkout paid by a customer whose name reached Stripe with a NUL character in it
    # (PostgreSQL stores no NUL: the payment and the kept event failed with a 500, retried by
    # Stripe for days; the payment input refuses one too)
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000001", total="100.00", due=date(2026, 3, 30))
    paid_in = sp.event("checkout.session.completed", sp.checkout_session(
        invoice="INV-2026-000001", amount=10_000, payment_intent="pi_Z", name="Ac\x00me"))
    # when it arrives
    outcome = handle(db, paid_in)
    # then the payment is recorded and applied, the NUL shown as U+FFFD, nowhere kept as NUL
    assert outcome.status == "processed"
    with db.read_session() as s:
        payment = s.exec(select(Payment)).one()
        assert (payment.payer_name, payment.amount_minor) == ("Ac\ufffdme", 10_000)
        assert s.exec(select(Invoice)).one().balance_minor == 0
        kept = s.get(ProviderEvent, ("stripe", paid_in["id"]))
        assert kept is not None and "\x00" not in repr(kept.payload)
        assert validate_all(s) == []
    # and an event of any shape comes out of `scrub` without one, keys included
    assert "\x00" not in repr(stripe_events.scrub({"a\x00": ["b\x00", {"c": "\x00"}]}))
