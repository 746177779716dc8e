"""When an invoice counts as paid (`Invoice.paid_at`, the late-payment history of approval cards
and the collections risk factor) and when a promise to pay counts as kept: by when the money
was RECEIVED, never by when we imported or applied it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from models import Invoice, Payment, PromiseStatus, PromiseToPay
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import collections, credit, invariants
from workflows.bank_statements import import_statement
from workflows.cash_application import (
    PaymentIn,
    apply_suggestion,
    record_payment,
    write_off,
)
from workflows.invoicing import issue_credit_note

TODAY = date(2026, 11, 24)
NOW = datetime.combine(TODAY, time(12, 0), tzinfo=UTC)
frozen_time = frozen_at(NOW)
DUE = TODAY - timedelta(days=5)  # due five days ago: today's processing would be 5 days late
ON_DUE_DATE = datetime.combine(DUE, time(10, 0), tzinfo=UTC)


@pytest.fixture
def books(session):  # noqa: ANN001, ANN201
    f.user(session, "UCOLL001", "collector")
    f.customer(session, "C-GLOBEX", "Globex Corporation", collector="UCOLL001")
    f.invoice(session, "INV-2026-000801", total="1000.00", due=DUE)
    f.invoice(session, "INV-2026-000802", total="400.00", due=DUE)
    f.invoice(session, "INV-2026-000803", total="400.00", due=DUE)
    session.commit()
    return session


def invoice(session, number: str) -> Invoice:  # noqa: ANN001
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def pay(session, amount: str, received: datetime, reference: str | None = None,  # noqa: ANN001
        **kwargs) -> Payment:  # noqa: ANN003
    payment, _ = record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=received, reference=reference, **kwargs),
        actor="test")
    session.commit()
    return payment


def history(session) -> dict:  # noqa: ANN001
    customer_id = invoice(session, "INV-2026-000801").customer_id
    return credit.payment_history(session, customer_id, TODAY)


def late_paid(session) -> int:  # noqa: ANN001
    customer_id = invoice(session, "INV-2026-000801").customer_id
    return collections.account(session, customer_id, TODAY).late_paid


def test_money_received_on_the_due_date_and_applied_days_later_is_on_time(books) -> None:  # noqa: ANN001
    # when a payment received on the due date is recorded (and applied) today, 5 days later
    payment = pay(books, "1000.00", ON_DUE_DATE, reference="INV-2026-000801")
    # then the invoice was paid when the money arrived
    assert payment.status == "applied"
    assert invoice(books, "INV-2026-000801").paid_at == ON_DUE_DATE
    assert history(books)["paid"] == 1 and history(books)["paid_late"] == 0
    assert late_paid(books) == 0


def test_a_bank_statement_imported_days_later_pays_on_the_booking_date(  # noqa: ANN001
        books, tmp_path: Path) -> None:
    # given the bank's export of the due date, imported today
    path = tmp_path / "statement.csv"
    path.write_text("Date,Amount,Currency,Payer,Reference\n"
                    f"{DUE.isoformat()},1000.00,USD,GLOBEX CORPORATION,INV-2026-000801\n")
    # when
    report = import_statement(books, path)
    books.commit()
    # then
    assert (report.created, report.errors) == (1, [])
    assert invoice(books, "INV-2026-000801").paid_at == datetime.combine(DUE, time(12, 0),
                                                                         tzinfo=UTC)
    assert history(books)["paid_late"] == 0 and late_paid(books) == 0


def test_money_received_after_the_due_date_is_late_by_its_receipt(books) -> None:  # noqa: ANN001
    received = ON_DUE_DATE + timedelta(days=3)
    pay(books, "1000.00", received, reference="INV-2026-000801")
    assert invoice(books, "INV-2026-000801").paid_at == received
    assert history(books) == {"paid": 1, "paid_late": 1, "avg_days_late": "3.0", "days": 365}
    assert late_paid(books) == 1


def test_a_suggestion_applied_by_hand_after_review_pays_when_received(books) -> None:  # noqa: ANN001
    # given a payment the engine is unsure about (two 400.00 invoices fit), received on the due
    # date, waiting for review
    payment = pay(books, "400.00", ON_DUE_DATE, payer_name="GLOBEX CORP")
    assert payment.status == "needs_review"
    # when a collector applies the first suggestion today
    apply_suggestion(books, payment_id=payment.id, rank=1, actor="UCOLL001", now=NOW)
    books.commit()
    # then the invoice counts as paid on the due date
    paid = [i for i in (invoice(books, "INV-2026-000802"), invoice(books, "INV-2026-000803"))
            if i.balance_minor == 0]
    assert len(paid) == 1 and paid[0].paid_at == ON_DUE_DATE
    assert history(books)["paid_late"] == 0 and late_paid(books) == 0


def test_paid_in_two_parts_it_is_paid_when_the_last_money_arrived(books) -> None:  # noqa: ANN001
    # given the later part is applied first (its statement came in first)
    late_part = ON_DUE_DATE + timedelta(days=2)
    pay(books, "600.00", late_part, reference="INV-2026-000801", external_id="B-2")
    assert invoice(books, "INV-2026-000801").paid_at is None
    # when the earlier part is applied afterwards, closing the invoice
    pay(books, "400.00", ON_DUE_DATE - timedelta(days=3), reference="INV-2026-000801",
        external_id="B-1")
    # then it was settled when the second part arrived, not by the one that closed it last
    closed = invoice(books, "INV-2026-000801")
    assert closed.balance_minor == 0 and closed.paid_at == late_part
    assert history(books)["avg_days_late"] == "2.0"


def test_a_credit_note_closing_a_paid_invoice_keeps_the_payment_date(books) -> None:  # noqa: ANN001
    # given the customer paid 900.00 on time and disputed 100.00
    pay(books, "900.00", ON_DUE_DATE, reference="INV-2026-000801", customer="C-GLOBEX")
    assert invoice(books, "INV-2026-000801").balance_minor == 10_000
    # when the dispute is settled with a credit note today (after the due date)
    credited_at = NOW - timedelta(hours=1)
    note = issue_credit_note(books, invoice_number="INV-2026-000801", amount="100.00",
                             reason="two units damaged", actor="test", now=credited_at)
    books.commit()
    # then the invoice was paid (on time) when the money arrived, not when we credited it
    assert note.created_at == credited_at
    assert invoice(books, "INV-2026-000801").paid_at == ON_DUE_DATE
    assert history(books)["paid_late"] == 0 and late_paid(books) == 0


def test_an_invoice_credited_in_full_was_never_paid(books) -> None:  # noqa: ANN001
    # when an invoice is cancelled by a credit note after its due date
    issue_credit_note(books, invoice_number="INV-2026-000801", amount="1000.00",
                      reason="order cancelled", actor="test", now=NOW)
    books.commit()
    # then it is settled but not paid: not in the payment history, on time or late
    closed = invoice(books, "INV-2026-000801")
    assert closed.balance_minor == 0 and closed.paid_at is None
    assert history(books)["paid"] == 0 and late_paid(books) == 0
    assert invariants.validate_all(books) == []


def test_a_bad_debt_write_off_settles_at_its_own_time(books) -> None:  # noqa: ANN001
    # given
    decided = datetime.combine(DUE + timedelta(days=4), time(16, 0), tzinfo=UTC)
    target = invoice(books, "INV-2026-000801")
    # when finance writes the invoice off
    row = write_off(books, invoice=target, amount_minor=target.balance_minor,
                    reason="bad_debt", actor="test", now=decided)
    books.commit()
    # then
    assert row.created_at == decided
    assert invoice(books, "INV-2026-000801").paid_at == decided
    assert history(books)["paid_late"] == 1


def test_a_bank_fee_write_off_closes_on_the_payment_date(books) -> None:  # noqa: ANN001
    # when 999.00 arrives for a 1000.00 invoice (1.00 within the bank-fee tolerance)
    payment = pay(books, "999.00", ON_DUE_DATE, reference="INV-2026-000801")
    # then the fee is written off with the payment, and the invoice was paid on the due date
    assert payment.status == "applied" and payment.match_details["write_off_minor"] == 100
    assert invoice(books, "INV-2026-000801").paid_at == ON_DUE_DATE


# -- promises to pay --------------------------------------------------------------------------
def promise_for(session, day, *, taken: datetime) -> PromiseToPay:  # noqa: ANN001
    customer_id = invoice(session, "INV-2026-000801").customer_id
    promise = collections.create_promise(session, customer_id=customer_id, actor="UCOLL001",
                                         amount="1000.00", promised_date=day, note=None,
                                         as_of=day)
    session.flush()
    table = PromiseToPay.__table__
    session.execute(sa.update(table).where(table.c.id == promise.id).values(created_at=taken))
    session.commit()
    session.refresh(promise)
    return promise


def test_a_promise_is_kept_by_money_received_on_the_day_but_applied_the_next(books) -> None:  # noqa: ANN001
    # given a promise (taken yesterday morning) to pay yesterday
    yesterday = TODAY - timedelta(days=1)
    promise = promise_for(books, yesterday,
                          taken=datetime.combine(yesterday, time(9, 0), tzinfo=UTC))
    # when the money that arrived yesterday afternoon is applied today (statement came today)
    pay(books, "1000.00", datetime.combine(yesterday, time(15, 0), tzinfo=UTC),
        reference="INV-2026-000801")
    result = collections.check_promises(books, TODAY)
    books.commit()
    # then the promise is kept, and nobody is alerted
    assert (result.kept, result.broken) == ([promise.id], [])
    books.refresh(promise)
    assert promise.status == PromiseStatus.KEPT


def test_money_received_after_the_promised_day_breaks_the_promise(books) -> None:  # noqa: ANN001
    # given a promise to pay yesterday
    yesterday = TODAY - timedelta(days=1)
    promise = promise_for(books, yesterday,
                          taken=datetime.combine(yesterday, time(9, 0), tzinfo=UTC))
    # when the money arrives only today
    pay(books, "1000.00", NOW, reference="INV-2026-000801")
    result = collections.check_promises(books, TODAY)
    books.commit()
    # then
    assert (result.kept, result.broken) == ([], [promise.id])
