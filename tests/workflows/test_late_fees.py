"""Late fees and interest per dunning level: a fee invoice once per (invoice, level), named in
the level's e-mail; waived by a collector, by approval above the threshold (issue 14,
point 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from models import AuditEvent, Invoice, InvoiceLine, OutboxMessage, WriteOff, WriteOffRequest
from tests.support import factories as f
from tests.support.meanwhile import at_once
from tests.support.timetravel import frozen_at
from workflows import approvals, dunning, invariants, late_fees, policy, write_offs
from workflows.errors import Conflict, PermissionDenied, ValidationFailed
from workflows.late_fees import LateFee, parse_late_fees

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


def test_parsing_the_setting() -> None:
    assert parse_late_fees("7:fee=25.00,30:rate=8") == {
        7: LateFee(7, Decimal("25.00")), 30: LateFee(30, rate=Decimal("8"))}
    assert parse_late_fees("30:fee=10+rate=8.5") == {30: LateFee(30, Decimal("10"),
                                                                   Decimal("8.5"))}
    assert parse_late_fees("") == {}
    for bad in ("7", "x:fee=1", "7:fee=-1", "7:rate=101", "7:fee=1,7:fee=2", "7:cost=1",
                "0:fee=1", "7:fee=1.0001"):
        with pytest.raises(ValueError):
            parse_late_fees(bad)
    # an amount too large to be money is refused naming it (it raised InvalidOperation, a
    # traceback at start-up or in /o2c policy, instead of the ValueError naming the item)
    for huge in ("7:fee=1e400", "7:rate=1e400", "7:fee=" + "9" * 40):
        with pytest.raises(ValueError, match="at most 15 digits"):
            parse_late_fees(huge)


@pytest.fixture
def books(session):
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "USALES01", "sales")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    policy.set_value(session, key="late_fees", value="7:fee=25.00,30:rate=8", actor="test")
    # 1000.00 due 7 days ago; 730.00 due 30 days ago
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=7),
              issued=TODAY - timedelta(days=37))
    f.invoice(session, "INV-2026-000002", total="730.00", due=TODAY - timedelta(days=30),
              issued=TODAY - timedelta(days=60))
    session.commit()
    return session


def fees(session) -> list[Invoice]:
    return list(session.exec(select(Invoice).where(Invoice.source == "fee")
                             .order_by(Invoice.id)))


def test_a_fee_invoice_per_level_named_in_the_email_and_charged_once(books) -> None:
    # when dunning runs twice
    run = dunning.run_dunning(books, TODAY)
    books.commit()
    dunning.run_dunning(books, TODAY)
    books.commit()
    # then +7 charged the fixed 25.00 and +30 the interest: 730.00 x 8% x 30/365 = 4.80
    charged = {get_original(books, i).number: i for i in fees(books)}
    assert charged["INV-2026-000001"].total_minor == 2_500
    assert charged["INV-2026-000002"].total_minor == 480
    assert sorted(run.fees) == sorted(i.number for i in fees(books))
    fee = charged["INV-2026-000001"]
    assert (fee.fee_level, fee.due_date, fee.payment_terms, fee.source) == (
        7, TODAY, "DUE_ON_RECEIPT", "fee")
    [line] = books.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == fee.id)).all()
    assert "INV-2026-000001" in line.description
    # the customer's notices of the run (+7 and +30) make one statement e-mail
    # (the second run reminds of the fee invoices, due today, in a statement of its own)
    [mail] = [m for m in books.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "dunning_statement"))
        if "INV-2026-000001" in {i["number"] for i in m.payload["context"]["invoices"]}]
    listed = {i["number"]: i for i in mail.payload["context"]["invoices"]}
    assert listed["INV-2026-000001"]["late_fee"]["number"] == fee.number
    # and the collector's one message of the run names the fee charged with the final notice
    [told] = [m.payload["context"] for m in books.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "dunning_people"))
        if m.payload["channel"] == "UCOLL001"]
    [final] = told["kinds"]
    assert final["top"][0]["first"]["late_fee"] == {
        "number": charged["INV-2026-000002"].number, "amount_minor": 480, "currency": "USD"}
    assert invariants.validate_all(books) == []


def get_original(session, fee: Invoice) -> Invoice:
    return session.get(Invoice, fee.fee_for_invoice_id)


def test_off_by_default_and_never_on_a_fee_or_a_disputed_amount(session) -> None:
    f.user(session, "UCOLL001", "collector")
    f.customer(session, collector="UCOLL001")
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=7))
    dunning.run_dunning(session, TODAY)
    assert fees(session) == []
    policy.set_value(session, key="late_fees", value="1:rate=10", actor="test")
    f.invoice(session, "INV-2026-000003", total="100.00", due=TODAY - timedelta(days=1))
    f.dispute(session, "INV-2026-000003", amount="100.00")
    dunning.run_dunning(session, TODAY)
    assert fees(session) == []  # wholly in dispute: not dunned, nothing charged


def test_concurrent_dunning_runs_charge_once(db, books) -> None:
    def run() -> None:
        with db.transaction() as s:
            dunning.run_dunning(s, TODAY)

    at_once(run, 3)  # (an error in any run fails the test)
    with db.read_session() as s:
        assert len(fees(s)) == 2
        assert invariants.validate_all(s) == []


def test_a_collector_waives_a_small_fee_at_once_a_large_one_by_approval(books) -> None:
    dunning.run_dunning(books, TODAY)
    small = next(i for i in fees(books) if i.fee_level == 30)  # 4.80
    big = next(i for i in fees(books) if i.fee_level == 7)  # 25.00
    policy.set_value(books, key="fee_waiver_approval", value="10.00", actor="test")
    with pytest.raises(PermissionDenied):
        write_offs.waive_fee(books, invoice_number=small.number, reason="goodwill",
                             actor="USALES01", now=NOW)
    done = write_offs.waive_fee(books, invoice_number=small.number, reason="goodwill",
                                actor="UCOLL001", now=NOW)
    assert isinstance(done, WriteOff) and done.reason == "fee_waived"
    with pytest.raises(Conflict):
        write_offs.waive_fee(books, invoice_number=small.number, reason="again",
                             actor="UCOLL001", now=NOW)
    asked = write_offs.waive_fee(books, invoice_number=big.number, reason="long customer",
                                 actor="UCOLL001", now=NOW)
    assert isinstance(asked, WriteOffRequest) and asked.kind == "fee_waiver"
    approvals.decide(session=books, approval_id=asked.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    assert books.get(Invoice, big.id).balance_minor == 0
    with pytest.raises(ValidationFailed):  # not a fee invoice
        write_offs.waive_fee(books, invoice_number="INV-2026-000001", reason="x",
                             actor="UCOLL001", now=NOW)
    waived = books.exec(select(AuditEvent).where(AuditEvent.action == "late_fee.waived")).all()
    assert [e.actor for e in waived] == ["UCOLL001"]
    assert invariants.validate_all(books) == []


def test_a_waiver_approved_after_the_fee_was_paid_writes_nothing_off(books) -> None:
    from workflows.cash_application import PaymentIn, record_payment

    dunning.run_dunning(books, TODAY)
    fee = next(i for i in fees(books) if i.fee_level == 7)  # 25.00
    policy.set_value(books, key="fee_waiver_approval", value="10.00", actor="test")
    asked = write_offs.waive_fee(books, invoice_number=fee.number, reason="long customer",
                                 actor="UCOLL001", now=NOW)
    # meanwhile the customer pays the fee
    record_payment(books, PaymentIn(amount="25.00", currency="USD", received_at=NOW,
                                    reference=fee.number), actor="test")
    assert books.get(Invoice, fee.id).balance_minor == 0
    approvals.decide(session=books, approval_id=asked.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW + timedelta(minutes=5))
    # then nothing is written off (the money paid is not waived), and the log says why
    assert (asked.status, asked.write_off_id) == ("nothing_left", None)
    assert books.exec(select(WriteOff).where(WriteOff.invoice_id == fee.id)).all() == []
    event = books.exec(select(AuditEvent).where(
        AuditEvent.action == "write_off.nothing_left")).one()
    assert (event.actor, event.entity_id) == ("UCREDIT1", str(asked.id))
    assert invariants.validate_all(books) == []


def test_interest_is_actual_365_half_up_on_the_undisputed_balance() -> None:
    invoice = Invoice(number="X", customer_id=1, currency="USD", issue_date=TODAY,
                      due_date=TODAY - timedelta(days=31), total_minor=123_457,
                      balance_minor=123_457, disputed_minor=23_457)
    charge = late_fees.compute(invoice, LateFee(30, Decimal("1.99"), Decimal("12.5")), TODAY)
    # 1000.00 x 12.5% x 31 / 365 = 10.616... -> 10.62; the fee 1.99
    assert (charge.interest_minor, charge.fixed_minor, charge.base_minor, charge.days) == (
        1_062, 199, 100_000, 31)
    jpy = Invoice(number="Y", customer_id=1, currency="JPY", issue_date=TODAY,
                  due_date=TODAY - timedelta(days=1), total_minor=1000, balance_minor=1000)
    assert late_fees.compute(jpy, LateFee(1, Decimal("2.5")), TODAY).fixed_minor == 3


def _interest_books(session, levels: str, late: str) -> None:
    """3,650.00 due 60 days ago (1.00 of interest a day at 10 % a year), dunning `levels`
    (the charged levels e-mail the customer: the second-to-last is the rep's escalation)."""
    f.user(session, "UCOLL001", "collector")
    f.customer(session, collector="UCOLL001")
    policy.set_value(session, key="late_fees", value=late, actor="test")
    policy.set_value(session, key="dunning_levels", value=levels, actor="test")
    f.invoice(session, "INV-2026-000001", total="3650.00", due=TODAY - timedelta(days=60),
              issued=TODAY - timedelta(days=90))
    session.commit()


def _dun_on(session, *days_past_due: int) -> dict[int, int]:
    """Run dunning on each of those days past due; the fee charged per level."""
    for days in days_past_due:
        dunning.run_dunning(session, TODAY - timedelta(days=60 - days))
        session.commit()
    return {i.fee_level: i.total_minor for i in fees(session)}


def test_two_levels_with_a_rate_charge_each_overdue_day_once(session) -> None:
    # given interest of 10 % a year at +30 and at +60 on 3,650.00
    _interest_books(session, "-3,1,7,14,30,45,60", "30:rate=10,60:rate=10")
    # when dunning reaches +30, then +60
    charged = _dun_on(session, 30, 60)
    # then +30 bills days 1-30 and +60 days 31-60: 3650 x 10% x 60/365 = 60.00 in all
    assert charged == {30: 3_000, 60: 3_000}
    later = next(i for i in fees(session) if i.fee_level == 60)
    [line] = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == later.id)).all()
    assert "for 30 days" in line.description
    assert (line.service_start, line.service_end) == (TODAY - timedelta(days=29), TODAY)
    [event] = [e for e in session.exec(select(AuditEvent).where(
        AuditEvent.action == "late_fee.charged")) if e.data["level"] == 60]
    assert (event.data["days"], event.data["interest_from"]) == (
        30, (TODAY - timedelta(days=29)).isoformat())
    assert invariants.validate_all(session) == []


def test_three_levels_with_a_rate_and_a_fixed_fee_between_charge_each_day_once(session) -> None:
    # given interest at +30, +45 and +60, and a fixed fee (no interest) at +14
    _interest_books(session, "-3,1,7,14,30,45,50,60",
                    "14:fee=5.00,30:rate=10,45:rate=10,60:rate=10")
    # when dunning reaches each level in turn
    charged = _dun_on(session, 14, 30, 45, 60)
    # then the fixed fee does not move the interest's start: 30 + 15 + 15 days = 60.00
    assert charged == {14: 500, 30: 3_000, 45: 1_500, 60: 1_500}
    assert invariants.validate_all(session) == []


def test_a_partial_payment_between_levels_lowers_the_later_interest(session) -> None:
    from workflows.cash_application import record_payment
    from workflows.inputs import PaymentIn

    # given interest at +30 (charged on 3,650.00) and at +60
    _interest_books(session, "-3,1,7,14,30,45,60", "30:rate=10,60:rate=10")
    _dun_on(session, 30)
    # when half the invoice is paid before +60
    record_payment(session, PaymentIn(amount="1825.00", currency="USD",
                                      received_at=NOW - timedelta(days=20),
                                      reference="INV-2026-000001"), actor="test")
    session.commit()
    charged = _dun_on(session, 60)
    # then +60 bills days 31-60 on what is still open: 1825 x 10% x 30/365 = 15.00
    assert charged == {30: 3_000, 60: 1_500}
    assert invariants.validate_all(session) == []


def test_a_level_run_late_bills_only_the_days_after_the_earlier_charge(session) -> None:
    # given interest at +30 charged on time, and +60 only reached by a run 5 days late
    _interest_books(session, "-3,1,7,14,30,45,60", "30:rate=10,60:rate=10")
    _dun_on(session, 30)
    # when +60 is charged at +65 ... (the invoice is 65 days overdue by then)
    dunning.run_dunning(session, TODAY + timedelta(days=5))
    session.commit()
    # then it bills days 31-65: 35.00, each day once
    assert {i.fee_level: i.total_minor for i in fees(session)} == {30: 3_000, 60: 3_500}


def test_an_invalid_late_fees_value_is_refused_naming_the_key_and_nothing_is_stored(
        session) -> None:
    # given late fees of 25.00 at +7
    policy.set_value(session, key="late_fees", value="7:fee=25.00", actor="test")
    # when someone sets a fee with four decimals
    with pytest.raises(ValidationFailed) as refused:
        policy.set_value(session, key="late_fees", value="7:fee=2.0005", actor="test")
    # then the error names the key and the item, and the policy stays as it was, unaudited
    assert [e.field for e in refused.value.errors] == ["late_fees"]
    assert "late_fees" in str(refused.value) and "2.0005" in str(refused.value)
    assert policy.current(session).late_fees == "7:fee=25.00"
    changes = session.exec(select(AuditEvent).where(AuditEvent.action == "policy.changed")).all()
    assert [e.to_state for e in changes] == ["7:fee=25.00"]


def test_a_bad_late_fees_value_stored_earlier_holds_its_levels_and_dunning_goes_on(
        session) -> None:
    from models import DunningNotice
    from models import Policy as PolicyRow

    # given a late_fees value stored before it was checked (a raw row: set_value refuses it),
    # an invoice at +7 (a level it names) and one at +1
    f.user(session, "UCOLL001", "collector")
    f.customer(session, collector="UCOLL001")
    session.add(PolicyRow(key="late_fees", value="7:fee=2.0005", updated_by="old"))
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=7))
    f.invoice(session, "INV-2026-000002", total="500.00", due=TODAY - timedelta(days=1))
    session.commit()
    # when dunning runs
    run = dunning.run_dunning(session, TODAY)
    session.commit()
    # then +1 is sent, +7 is held back (not claimed: no notice at all), and the run says why,
    # once
    sent = {(get_invoice_number(session, n.invoice_id), n.level)
            for n in session.exec(select(DunningNotice)) if not n.skipped}
    assert sent == {("INV-2026-000002", 1)}
    assert "2.0005" in run.summary()["late_fees_invalid"]
    [alarm] = session.exec(select(AuditEvent).where(AuditEvent.action == "late_fees.invalid"))
    assert alarm.data["held_levels"] == [7]
    assert fees(session) == []
    # when an admin fixes the value and dunning runs again
    policy.set_value(session, key="late_fees", value="7:fee=2.00", actor="test")
    run = dunning.run_dunning(session, TODAY)
    session.commit()
    # then +7 is sent with its fee
    assert [(i.fee_level, i.total_minor) for i in fees(session)] == [(7, 200)]
    assert "late_fees_invalid" not in run.summary()
    assert invariants.validate_all(session) == []


def get_invoice_number(session, invoice_id: int) -> str:
    return session.get(Invoice, invoice_id).number


def test_fee_invoices_are_not_credit_sales_in_dso_live_or_from_the_rollups(books) -> None:
    """DSO divides AR by credit sales: a late fee is owed (it stays in AR) but it is not a
    sale, so the 25.00 and 4.80 fees charged today leave credit sales at 1730.00 — read from
    the base rows (as of a moment) and from the rollups alike. CEI counts what was billed
    (fees too: they are in AR at both ends), so it is the same either way."""
    from workflows import kpis

    # given the two fee invoices the dunning run charges today
    dunning.run_dunning(books, TODAY)
    books.commit()
    assert sorted(i.total_minor for i in fees(books)) == [480, 2_500]
    # when the KPIs are computed from the rollups, from the base rows, and as known now
    live = kpis.compute(books, TODAY)
    base = kpis.compute(books, TODAY, rollups=False)
    known = kpis.compute(books, TODAY, known_at=NOW + timedelta(minutes=1))
    # then credit sales leave the fees out, and DSO = 1759.80 / 1730.00 x 90 days
    for report in (live, base, known):
        assert (report.ar_minor, report.credit_sales_minor) == (175_980, 173_000)
        assert report.dso == Decimal("91.55")
        assert report.bad_debt_ratio == Decimal("0.00")
    assert live.cei == base.cei == known.cei
    assert live.count_back_dso == base.count_back_dso == known.count_back_dso
    assert invariants.validate_kpi_rollups(books) == []


def test_a_waiver_leaves_what_a_waiting_credit_note_on_the_fee_will_credit(books) -> None:
    from models import CreditNoteRequest
    from workflows.credit_notes import request_credit_note
    from workflows.inputs import CreditNoteIn

    dunning.run_dunning(books, TODAY)
    fee = next(i for i in fees(books) if i.fee_level == 7)  # 25.00
    # given a credit note of 10.00 on the fee asked for (waiting for approval)
    note, _ = request_credit_note(books, CreditNoteIn(invoice=fee.number, amount="10.00",
                                                      reason="fee charged in error in part"),
                                  actor="UCOLL001", now=NOW)
    # when a collector waives the fee, then only the 15.00 the credit note leaves is waived
    done = write_offs.waive_fee(books, invoice_number=fee.number, reason="goodwill",
                                actor="UCOLL001", now=NOW)
    assert isinstance(done, WriteOff) and done.amount_minor == 1_500
    # and the credit note, approved after, still goes through
    approvals.decide(session=books, approval_id=note.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW)
    assert books.get(CreditNoteRequest, note.id).status == "issued"
    assert books.get(Invoice, fee.id).balance_minor == 0
    assert invariants.validate_all(books) == []


def test_no_fee_at_a_level_that_e_mails_the_customer_nothing(session) -> None:
    # given a fee at +14 (the default plan's escalation to the sales rep: internal) and at
    # +30 (the final notice), and a customer with no billing e-mail
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    f.customer(session, "C-INITECH", "Initech", collector="UCOLL001", billing_email=None)
    policy.set_value(session, key="late_fees", value="14:fee=10.00,30:fee=20.00", actor="test")
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=14))
    f.invoice(session, "INV-2026-000002", "C-INITECH", total="500.00",
              due=TODAY - timedelta(days=30))
    f.invoice(session, "INV-2026-000003", total="300.00", due=TODAY - timedelta(days=30))
    run = dunning.run_dunning(session, TODAY)
    # then the escalation still reaches the rep and the final notices are recorded, but the
    # only fee charged is the one an e-mail names: the final notice to Globex
    assert run.sent == {14: 1, 30: 2}
    [fee] = fees(session)
    assert (get_original(session, fee).number, fee.total_minor) == ("INV-2026-000003", 2_000)
    [mail] = session.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "dunning_final")).all()
    assert mail.payload["context"]["late_fee"]["number"] == fee.number
    assert invariants.validate_all(session) == []


def _pay(session, number: str, amount: str) -> None:
    from workflows.cash_application import record_payment
    from workflows.inputs import PaymentIn

    record_payment(session, PaymentIn(amount=amount, currency="USD", received_at=NOW,
                                      reference=number), actor="test")


@pytest.mark.postgresql_only  # (a payment on another host while dunning runs: SQLite serialises)
def test_a_payment_committed_while_dunning_runs_leaves_no_fee_on_what_it_paid(db, books
                                                                               ) -> None:
    from tests.support.meanwhile import second_writer

    # given the 730.00 invoice paid in full by a payment not yet committed (it holds the row)
    _pay(books, "INV-2026-000002", "730.00")

    # when dunning's write transaction reaches it on another host meanwhile
    def dun(s):
        return dunning.run_dunning(s, TODAY)
    run, waited = second_writer(db, books, dun)
    # then it waited for the payment and charged no interest on the 730.00 it paid (before:
    # 4.80 billed on an invoice paid at that moment, named in a reminder of a paid invoice)
    assert waited
    with db.read_session() as s:
        charged = {get_original(s, i).number: i.total_minor for i in fees(s)}
        assert charged == {"INV-2026-000001": 2_500}
        assert run.fees == [i.number for i in fees(s)]
        assert invariants.validate_all(s) == []


def test_the_fee_is_on_the_balance_as_it_is_when_charged_not_as_first_read(db, session
                                                                              ) -> None:
    # given interest at +30 on 3,650.00, an invoice this session read earlier
    _interest_books(session, "-3,1,7,14,30,45,60", "30:rate=10")
    invoice = session.exec(select(Invoice).where(Invoice.number == "INV-2026-000001")).one()
    assert invoice.balance_minor == 365_000
    session.commit()
    # when half of it is paid elsewhere, then dunning runs in this session
    with db.transaction() as other:
        _pay(other, "INV-2026-000001", "1825.00")
    dunning.run_dunning(session, TODAY - timedelta(days=30))
    session.commit()
    # then the interest is on the 1,825.00 still open: 1825 x 10% x 30/365 = 15.00 (before:
    # 30.00, on the balance of the earlier read), and the notice shows that balance
    assert {i.fee_level: i.total_minor for i in fees(session)} == {30: 1_500}
    [mail] = [m for m in session.exec(select(OutboxMessage)) if m.transport == "email"]
    context = mail.payload["context"]
    assert (context["invoice"]["amount_due_minor"], context["late_fee"]["amount_minor"]) == (
        182_500, 1_500)
    assert invariants.validate_all(session) == []


def test_interest_beyond_the_largest_amount_is_capped_there_and_audited(session) -> None:
    from models.limits import MAX_AMOUNT_MINOR

    # given 9,999,999,999,999.99 (the largest amount) 400 days overdue, 100 % a year at +30
    f.user(session, "UCOLL001", "collector")
    f.customer(session, collector="UCOLL001")
    policy.set_value(session, key="late_fees", value="30:rate=100", actor="test")
    f.invoice(session, "INV-2026-000001", total="9999999999999.99",
              due=TODAY - timedelta(days=400), issued=TODAY - timedelta(days=430))
    session.commit()
    # when dunning charges it: 10^15 x 400/365 is 1.1 x 10^15 minor units, 16 digits
    dunning.run_dunning(session, TODAY)
    session.commit()
    # then the fee is the largest amount the books hold (before: 1,095,890,410,958,903
    # minor units, an invoice no payment, credit note or API read could handle), said so
    [fee] = fees(session)
    assert fee.total_minor == fee.balance_minor == MAX_AMOUNT_MINOR
    [line] = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == fee.id)).all()
    assert line.line_total_minor == MAX_AMOUNT_MINOR and "capped" in line.description
    [capped] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "late_fee.capped")).all()
    assert (capped.data["computed_minor"], capped.data["charged_minor"]) == (
        1_095_890_410_958_903, MAX_AMOUNT_MINOR)
    assert invariants.validate_all(session) == []
