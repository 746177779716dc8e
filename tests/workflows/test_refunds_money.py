"""Refunds and the money they give back, attacked: a refund running beside a correction of
the same invoices, Stripe refunds and chargebacks in another currency than their payment's,
refunds past what is left (`workflows.refunds`, `workflows.stripe_events`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from models import Invoice, Payment
from tests.support import factories as f
from tests.support.meanwhile import in_thread, wait_until_blocked
from tests.support.timetravel import frozen_at
from workflows import invariants, invoicing, refunds
from workflows.cash_application import (
    PaymentIn,
    correct_application,
    payment_allocations,
    record_payment,
)

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)
ISSUED = date(2026, 11, 1)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "UCOLL001", "collector")
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    # the lower id first: 400.00, then 1,000.00
    f.invoice(session, "INV-2026-000101", "C-GLOBEX", total="400.00", issued=ISSUED,
              due=ISSUED + timedelta(days=30))
    f.invoice(session, "INV-2026-000102", "C-GLOBEX", total="1000.00", issued=ISSUED,
              due=ISSUED + timedelta(days=30))
    session.commit()
    return session


def invoice(session, number: str) -> Invoice:
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def applied_to(session, payment_id: int) -> dict[str, int]:
    return {inv.number: a.amount_minor for a, inv in payment_allocations(session, payment_id)}


@pytest.mark.postgresql_only  # (two transactions really at once: SQLite runs them in turn)
def test_a_refund_beside_a_correction_of_the_same_invoices_waits_instead_of_deadlocking(
        books, db) -> None:
    # given Q, 100.00 on the 400.00 invoice, then P, 700.00 paying 300.00 of it and 400.00
    # of the 1,000.00 invoice (applied there last: a refund reverses it first)
    q, _ = record_payment(books, PaymentIn(
        amount="100.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000101"])
    p, _ = record_payment(books, PaymentIn(
        amount="700.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000101", "INV-2026-000102"])
    books.commit()
    low = invoice(books, "INV-2026-000101").id
    assert applied_to(books, p.id) == {"INV-2026-000101": 30_000, "INV-2026-000102": 40_000}
    with db.session() as correcting:
        # when a collector's correction of Q (onto the 1,000.00 invoice) has locked its first
        # invoice, the lower id, as corrections do (`invoicing.lock_invoices`) ...
        invoicing.lock_invoices(correcting, [low])

        def refund(s):
            done = refunds.refund_payment(s, payment=s.get(Payment, p.id), amount_minor=70_000,
                                          external_id="re_P", value_date=NOW.date(),
                                          actor="test")
            s.commit()
            return done[0].amount_minor

        def run():
            with db.session() as s:
                return refund(s)
        # ... and P's refund of all of it starts meanwhile and waits for a lock ...
        refunded = in_thread(run)
        wait_until_blocked(db)
        # ... then the correction goes on and locks the higher id
        correct_application(correcting, payment_id=q.id, invoices=["INV-2026-000102"],
                            actor="UCOLL001", now=NOW)
        correcting.commit()
    # then the refund waited for the correction (it did not hold the 1,000.00 invoice the
    # correction needed: no deadlock, neither was aborted) and both went through
    assert refunded() == 70_000
    books.expire_all()
    assert applied_to(books, q.id) == {"INV-2026-000102": 10_000}
    assert sum(a.amount_minor for a, _ in payment_allocations(books, p.id)) == 0
    assert books.get(Payment, p.id).status == "refunded"
    assert (invoice(books, "INV-2026-000101").balance_minor,
            invoice(books, "INV-2026-000102").balance_minor) == (40_000, 90_000)
    assert invariants.validate_all(books) == []
