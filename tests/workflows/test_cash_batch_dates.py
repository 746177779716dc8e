"""Payments applied in batches (`workflows.cash_runs.CashRun`: bank statements, CSV files, every
API payment) carry the same economic dates as the one-by-one primitives
(`cash_application.allocate`, `write_off`; issue 21): allocations and bank-fee write-offs by the
payment's value date, never before the invoice's issue date, and in the first open month when
that day is in a closed one — with the same audit trail. A correction never rewrites a closed
month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import Session, select

from models import Allocation, AuditEvent, Invoice, Payment, WriteOff
from tests.support import factories as f
from workflows import invariants, periods
from workflows.cash_application import (
    PaymentIn,
    correct_application,
    payment_allocations,
    record_payment,
    write_off,
)
from workflows.cash_runs import CashRun
from workflows.errors import Conflict
from workflows.receivables import aging_by_currency

JULY_5 = datetime(2026, 7, 5, 9, tzinfo=UTC)
JULY_10 = datetime(2026, 7, 10, 11, tzinfo=UTC)
JULY_1 = date(2026, 7, 1)
MAY_20, JULY_3 = date(2026, 5, 20), date(2026, 7, 3)

# (invoice for the batch, its twin for the one-by-one path, total, issued, paid, value date)
CASES = [
    ("INV-2026-000701", "INV-2026-000711", "1000.00", MAY_20, "1000.00", date(2026, 6, 15)),
    ("INV-2026-000702", "INV-2026-000712", "500.00", JULY_3, "500.00", date(2026, 7, 2)),
    ("INV-2026-000703", "INV-2026-000713", "400.00", MAY_20, "399.00", date(2026, 7, 6)),
]


@pytest.fixture
def june(session: Session) -> Session:
    """Twin invoices (one for each path), June closed on 5 July, now 10 July."""
    f.user(session, "UCOLL001", "collector")
    f.customer(session)
    for batch, single, total, issued, _, _ in CASES:
        for number in (batch, single):
            f.invoice(session, number, total=total, issued=issued, due=date(2026, 8, 1))
    session.commit()
    periods.close_period(session, period="2026-06", actor="UADMIN01", now=JULY_5)
    session.commit()
    return session


def received(value: date) -> datetime:
    return datetime.combine(value, datetime.min.time(), tzinfo=UTC).replace(hour=12)


def invoice(session: Session, number: str) -> Invoice:
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def dates_and_audit(session: Session, number: str) -> tuple:
    """An invoice's settlements as the as-of reports and the audit log see them."""
    target = invoice(session, number)
    allocations = [(a.amount_minor, a.value_date, a.effective_date) for a in session.exec(
        select(Allocation).where(Allocation.invoice_id == target.id))]
    write_offs = [(w.amount_minor, w.reason, w.value_date, w.effective_date)
                  for w in session.exec(select(WriteOff).where(WriteOff.invoice_id == target.id))]
    allocated = [(e.reason, {k: v for k, v in e.data.items() if k not in ("invoice", "method")})
                 for e in session.exec(select(AuditEvent).where(
                     AuditEvent.action == "payment.allocated")) if e.data["invoice"] == number]
    written = [(e.reason, {k: v for k, v in e.data.items() if k != "payment_id"})
               for e in session.exec(select(AuditEvent).where(
                   AuditEvent.action == "invoice.write_off",
                   AuditEvent.entity_id == str(target.id)))]
    return allocations, write_offs, allocated, written


def test_a_batch_dates_settlements_exactly_as_one_by_one(june) -> None:
    with time_machine.travel(JULY_10, tick=False):
        # when the same money goes through a batch of two-payment chunks (as a statement
        # does) and, for the twins, one payment at a time through the primitives
        run = CashRun(june, actor="import", source="bank", chunk=2)
        tickets = [run.add(PaymentIn(amount=paid, currency="USD", received_at=received(value),
                                     value_date=value, reference=batch,
                                     external_id=f"bank:{batch}"))
                   for batch, _, _, _, paid, value in CASES]
        run.flush()
        for _, single, _, _, paid, value in CASES:
            payment, _ = record_payment(june, PaymentIn(
                amount=paid, currency="USD", received_at=received(value), value_date=value,
                external_id=f"one:{single}"), actor="import", apply_to=[single])
            target = invoice(june, single)
            if target.balance_minor:  # what the engine wrote off as a bank fee, by hand
                write_off(june, invoice=target, amount_minor=target.balance_minor,
                          reason="bank_fee", actor="import", payment=payment)
        june.commit()
    # then the batch applied everything, with a fee written off
    assert [t.status for t in tickets] == ["applied"] * 3
    batch = {number: dates_and_audit(june, number) for number, *_ in CASES}
    assert [a for a, _, _, _ in batch.values()] == [
        [(100_000, date(2026, 6, 15), JULY_1)],  # in closed June: booked on 1 July
        [(50_000, date(2026, 7, 2), JULY_3)],  # before its invoice: from the issue date
        [(39_900, date(2026, 7, 6), date(2026, 7, 6))]]
    assert batch["INV-2026-000703"][1] == [(100, "bank_fee", date(2026, 7, 6),
                                             date(2026, 7, 6))]
    moved = batch["INV-2026-000701"][2][0]
    assert "closed period" in moved[0] and moved[1]["booked_in_open_period"] is True
    # and every date and audit entry is what the one-by-one path wrote for the twin
    for number, twin, *_ in CASES:
        assert batch[number] == dates_and_audit(june, twin), number
    # and June's closing AR is what it was (the four invoices of May open), 1 July counts
    # the money of 15 June
    assert aging_by_currency(june, date(2026, 6, 30))["USD"].total == 280_000
    assert aging_by_currency(june, JULY_1)["USD"].total == 80_000
    assert invariants.validate_all(june) == []


def test_a_correction_never_undoes_what_a_closed_month_counted(june) -> None:
    # given a payment of 2 July applied by the engine, and July closed since
    payment, _ = record_payment(june, PaymentIn(
        amount="1000.00", currency="USD", received_at=received(date(2026, 7, 2)),
        reference="INV-2026-000701"), actor="api")
    june.commit()
    periods.close_period(june, period="2026-07", actor="UADMIN01",
                         now=datetime(2026, 8, 3, 9, tzinfo=UTC))
    june.commit()
    # when a collector corrects it to the twin invoice in August
    with time_machine.travel(datetime(2026, 8, 4, 9, tzinfo=UTC), tick=False), \
            pytest.raises(Conflict, match="closed period"):
        correct_application(june, payment_id=payment.id, invoices=["INV-2026-000711"],
                            actor="UCOLL001", now=datetime(2026, 8, 4, 9, tzinfo=UTC))
    june.rollback()
    # then nothing moved
    assert [(inv.number, a.amount_minor) for a, inv in payment_allocations(
        june, payment.id)] == [("INV-2026-000701", 100_000)]
    assert june.get(Payment, payment.id).unapplied_minor == 0
    assert invariants.validate_all(june) == []


def test_a_correction_in_an_open_month_is_booked_as_usual(june) -> None:
    # given a payment of 2 July applied by the engine (July is open)
    payment, _ = record_payment(june, PaymentIn(
        amount="1000.00", currency="USD", received_at=received(date(2026, 7, 2)),
        reference="INV-2026-000701"), actor="api")
    june.commit()
    # when a collector corrects it to the twin invoice
    with time_machine.travel(JULY_10, tick=False):
        correct_application(june, payment_id=payment.id, invoices=["INV-2026-000711"],
                            actor="UCOLL001", now=JULY_10)
        june.commit()
    # then the new allocation is dated by the payment's value date
    assert [(inv.number, a.value_date, a.effective_date) for a, inv in payment_allocations(
        june, payment.id)] == [("INV-2026-000711", date(2026, 7, 2), date(2026, 7, 2))]
    assert invariants.validate_all(june) == []
