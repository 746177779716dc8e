"""When an invoice counts as paid (`Invoice.paid_at`, the late-payment history of approval cards
and the collections risk factor) and when a promise to pay counts as kept: by when the money
was RECEIVED, never by when we imported or applied it. And the economic date every settlement
carries for the as-of reports (issue 21): an allocation's value date, a credit note's issue
date, a write-off's effective date, apart from when it was recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import select

from models import Allocation, Invoice, Payment, PromiseStatus, PromiseToPay, WriteOff
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import collections, credit, invariants
from workflows.bank_statements import import_statement, parse_statement
from workflows.cash_application import (
    apply_suggestion,
    record_payment,
    write_off,
)
from workflows.errors import ValidationFailed
from workflows.inputs import PaymentIn
from workflows.invoicing import issue_credit_note

TODAY = date(2026, 11, 24)
NOW = datetime.combine(TODAY, time(12, 0), tzinfo=UTC)
frozen_time = frozen_at(NOW)
DUE = TODAY - timedelta(days=5)  # due five days ago: today's processing would be 5 days late
ON_DUE_DATE = datetime.combine(DUE, time(10, 0), tzinfo=UTC)


@pytest.fixture
def books(session):
    f.user(session, "UCOLL001", "collector")
    f.customer(session, "C-GLOBEX", "Globex Corporation", collector="UCOLL001")
    f.invoice(session, "INV-2026-000801", total="1000.00", due=DUE)
    f.invoice(session, "INV-2026-000802", total="400.00", due=DUE)
    f.invoice(session, "INV-2026-000803", total="400.00", due=DUE)
    session.commit()
    return session


def invoice(session, number: str) -> Invoice:
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def pay(session, amount: str, received: datetime, reference: str | None = None,
        **kwargs) -> Payment:
    payment, _ = record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=received, reference=reference, **kwargs),
        actor="test")
    session.commit()
    return payment


def history(session) -> dict:
    customer_id = invoice(session, "INV-2026-000801").customer_id
    return credit.payment_history(session, customer_id, TODAY)


def late_paid(session) -> int:
    customer_id = invoice(session, "INV-2026-000801").customer_id
    return collections.account(session, customer_id, TODAY).late_paid


def test_money_received_on_the_due_date_and_applied_days_later_is_on_time(books) -> None:
    # when a payment received on the due date is recorded (and applied) today, 5 days later
    payment = pay(books, "1000.00", ON_DUE_DATE, reference="INV-2026-000801")
    # then the invoice was paid when the money arrived
    assert payment.status == "applied"
    assert invoice(books, "INV-2026-000801").paid_at == ON_DUE_DATE
    assert history(books)["paid"] == 1 and history(books)["paid_late"] == 0
    assert late_paid(books) == 0


def test_a_bank_statement_imported_days_later_pays_on_the_booking_date(
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


def test_money_received_after_the_due_date_is_late_by_its_receipt(books) -> None:
    received = ON_DUE_DATE + timedelta(days=3)
    pay(books, "1000.00", received, reference="INV-2026-000801")
    assert invoice(books, "INV-2026-000801").paid_at == received
    assert history(books) == {"paid": 1, "paid_late": 1, "avg_days_late": "3.0", "days": 365}
    assert late_paid(books) == 1


def test_a_suggestion_applied_by_hand_after_review_pays_when_received(books) -> None:
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


def test_paid_in_two_parts_it_is_paid_when_the_last_money_arrived(books) -> None:
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


def test_a_credit_note_closing_a_paid_invoice_keeps_the_payment_date(books) -> None:
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


def test_an_invoice_credited_in_full_was_never_paid(books) -> None:
    # when an invoice is cancelled by a credit note after its due date
    issue_credit_note(books, invoice_number="INV-2026-000801", amount="1000.00",
                      reason="order cancelled", actor="test", now=NOW)
    books.commit()
    # then it is settled but not paid: not in the payment history, on time or late
    closed = invoice(books, "INV-2026-000801")
    assert closed.balance_minor == 0 and closed.paid_at is None
    assert history(books)["paid"] == 0 and late_paid(books) == 0
    assert invariants.validate_all(books) == []


def test_a_bad_debt_write_off_settles_at_its_own_time(books) -> None:
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


def test_a_bank_fee_write_off_closes_on_the_payment_date(books) -> None:
    # when 999.00 arrives for a 1000.00 invoice (1.00 within the bank-fee tolerance)
    payment = pay(books, "999.00", ON_DUE_DATE, reference="INV-2026-000801")
    # then the fee is written off with the payment, and the invoice was paid on the due date
    assert payment.status == "applied" and payment.match_details["write_off_minor"] == 100
    assert invoice(books, "INV-2026-000801").paid_at == ON_DUE_DATE


# -- promises to pay --------------------------------------------------------------------------
def promise_for(session, day, *, taken: datetime) -> PromiseToPay:
    customer_id = invoice(session, "INV-2026-000801").customer_id
    promise = collections.create_promise(session, customer_id=customer_id, actor="UCOLL001",
                                         amount="1000.00", promised_date=day, note=None,
                                         as_of=day, now=taken)
    session.flush()
    table = PromiseToPay.__table__
    session.execute(sa.update(table).where(table.c.id == promise.id).values(created_at=taken))
    session.commit()
    session.refresh(promise)
    return promise


def test_a_promise_is_kept_by_money_received_on_the_day_but_applied_the_next(books) -> None:
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


def test_money_received_after_the_promised_day_breaks_the_promise(books) -> None:
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


# -- economic dates of settlements (issue 21) -----------------------------------------------------
ISSUED = date(2026, 3, 2)


@pytest.fixture
def march(session):
    """One 1000.00 invoice issued 03-02, due 04-01."""
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.invoice(session, "INV-2026-000901", total="1000.00", issued=ISSUED,
              due=date(2026, 4, 1))
    session.commit()
    return session


def allocations(session) -> list[Allocation]:
    return list(session.exec(select(Allocation).order_by(Allocation.id)))


def test_an_allocation_is_dated_by_the_value_date_and_keeps_its_recording_time(march) -> None:
    # given: money received 20 March, posted on 9 April
    posted = datetime(2026, 4, 9, 15, tzinfo=UTC)
    # when
    with time_machine.travel(posted, tick=False):
        payment = pay(march, "400.00", datetime(2026, 3, 20, 10, tzinfo=UTC),
                      reference="INV-2026-000901")
    # then
    [allocation] = allocations(march)
    assert payment.value_date == date(2026, 3, 20)
    assert (allocation.value_date, allocation.effective_date) == (date(2026, 3, 20),) * 2
    assert allocation.created_at == posted


def test_the_value_date_is_the_day_the_sender_stated(march) -> None:
    # when: 00:30 on 21 March in Berlin is still 20 March in UTC; 21:00 on 20 March in New
    # York is already 21 March in UTC
    berlin = pay(march, "100.00", datetime.fromisoformat("2026-03-21T00:30:00+01:00"),
                 reference="INV-2026-000901")
    new_york = pay(march, "100.00", datetime.fromisoformat("2026-03-20T21:00:00-04:00"),
                   reference="INV-2026-000901")
    # then: each is dated by the calendar day it was sent with
    assert (berlin.value_date, new_york.value_date) == (date(2026, 3, 21), date(2026, 3, 20))
    assert [a.effective_date for a in allocations(march)] == [date(2026, 3, 21),
                                                              date(2026, 3, 20)]


def test_money_received_before_the_invoice_counts_from_its_issue_date(march) -> None:
    # when: a prepayment of 25 February applied to the invoice issued 2 March
    pay(march, "1000.00", datetime(2026, 2, 25, 9, tzinfo=UTC), reference="INV-2026-000901")
    # then
    [allocation] = allocations(march)
    assert (allocation.value_date, allocation.effective_date) == (date(2026, 2, 25), ISSUED)


def test_a_statement_line_is_valued_on_its_value_date(march, tmp_path: Path) -> None:
    # given: booked by the bank on Monday 23 March, value date Friday 20 March
    path = tmp_path / "statement.csv"
    path.write_text("Booking date,Value date,Amount,Currency,Payer,Reference\n"
                    "2026-03-23,2026-03-20,1000.00,USD,GLOBEX CORPORATION,INV-2026-000901\n")
    # when
    report = import_statement(march, path)
    march.commit()
    # then: received on the booking day, counted on the value day
    assert (report.created, report.errors) == (1, [])
    payment = march.exec(select(Payment)).one()
    assert payment.received_at.date() == date(2026, 3, 23)
    assert payment.value_date == date(2026, 3, 20)
    assert allocations(march)[0].effective_date == date(2026, 3, 20)


def test_a_camt_entry_is_valued_on_its_valdt() -> None:
    # given
    xml = CAMT_ONE_ENTRY.format(booked="2026-03-23", valued="2026-03-20").encode()
    # when
    kind, [line], _, errors = parse_statement(xml)
    # then
    assert (kind, errors) == ("camt.053", [])
    assert (line.booked_on, line.value_date) == (date(2026, 3, 23), date(2026, 3, 20))


def test_a_credit_note_is_dated_by_its_issue_date(march) -> None:
    # when: an ERP's credit note of 25 March, sent on 2 April; and one of ours, today
    recorded = datetime(2026, 4, 2, 8, tzinfo=UTC)
    erp = issue_credit_note(march, invoice_number="INV-2026-000901", amount="50.00",
                            reason="short shipped", actor="api", now=recorded,
                            issue_date=date(2026, 3, 25))
    ours = issue_credit_note(march, invoice_number="INV-2026-000901", amount="20.00",
                             reason="goodwill", actor="UCOLL001", now=recorded)
    # then
    assert (erp.value_date, erp.effective_date, erp.created_at) == (
        date(2026, 3, 25), date(2026, 3, 25), recorded)
    assert (ours.value_date, ours.effective_date) == (date(2026, 4, 2),) * 2


@pytest.mark.parametrize("issue_date, says", [(date(2026, 3, 1), "before INV-2026-000901"),
                                              (date(2026, 4, 3), "in the future")])
def test_a_credit_note_dated_before_its_invoice_or_in_the_future_is_refused(
        march, issue_date: date, says: str) -> None:
    # when
    with pytest.raises(ValidationFailed) as refused:
        issue_credit_note(march, invoice_number="INV-2026-000901", amount="50.00",
                          reason="short shipped", actor="api",
                          now=datetime(2026, 4, 2, 8, tzinfo=UTC), issue_date=issue_date)
    # then: nothing changed
    assert [e.field for e in refused.value.errors] == ["issue_date"]
    assert says in refused.value.detail
    march.rollback()
    assert invoice(march, "INV-2026-000901").balance_minor == 100_000


def test_a_write_off_is_dated_by_its_effective_date(march) -> None:
    # when: finance decides on 2 April to write off, effective 31 March
    target = invoice(march, "INV-2026-000901")
    row = write_off(march, invoice=target, amount_minor=100_000, reason="bad_debt",
                    actor="test", now=datetime(2026, 4, 2, 16, tzinfo=UTC),
                    effective_date=date(2026, 3, 31))
    march.commit()
    # then: written off (and settled) on 31 March, recorded on 2 April
    assert (row.value_date, row.effective_date) == (date(2026, 3, 31),) * 2
    assert row.created_at == datetime(2026, 4, 2, 16, tzinfo=UTC)
    assert invoice(march, "INV-2026-000901").paid_at.date() == date(2026, 3, 31)


@pytest.mark.parametrize("effective, says", [(date(2026, 3, 1), "before INV-2026-000901 was"),
                                             (date(2026, 4, 3), "in the future")])
def test_a_write_off_before_its_invoice_or_in_the_future_is_refused(
        march, effective: date, says: str) -> None:
    # when
    target = invoice(march, "INV-2026-000901")
    with pytest.raises(ValidationFailed) as refused:
        write_off(march, invoice=target, amount_minor=100_000, reason="bad_debt",
                  actor="test", now=datetime(2026, 4, 2, 16, tzinfo=UTC),
                  effective_date=effective)
    # then: the field is named and nothing changed
    assert [e.field for e in refused.value.errors] == ["effective_date"]
    assert says in refused.value.detail
    march.rollback()
    assert invoice(march, "INV-2026-000901").balance_minor == 100_000
    assert march.exec(select(WriteOff)).all() == []


def test_a_fee_written_off_with_a_payment_is_dated_by_the_payment(march) -> None:
    # when: 999.00 received 28 March for the 1000.00 invoice, posted 6 April
    with time_machine.travel(datetime(2026, 4, 6, 9, tzinfo=UTC), tick=False):
        pay(march, "999.00", datetime(2026, 3, 28, 12, tzinfo=UTC),
            reference="INV-2026-000901")
    # then
    fee = march.exec(select(WriteOff)).one()
    assert (fee.reason, fee.value_date, fee.effective_date) == ("bank_fee", date(2026, 3, 28),
                                                                date(2026, 3, 28))


CAMT_ONE_ENTRY = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <Stmt>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
      <Ntry>
        <Amt Ccy="USD">1000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>{booked}</Dt></BookgDt>
        <ValDt><Dt>{valued}</Dt></ValDt>
        <AcctSvcrRef>X-1</AcctSvcrRef>
        <AddtlNtryInf>INV-2026-000901</AddtlNtryInf>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""
