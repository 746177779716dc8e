"""Customer credit applied to another open invoice of the same customer
(`workflows.customer_credit`): the money behind the credit moves from the credited invoice to
the other one, never more than the credit nor than the other invoice's undisputed open
balance, once per key, once under concurrency; AR, credit and payments agree to the cent."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from models import (
    Allocation,
    AuditEvent,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    WriteOff,
    money,
)
from tests.support import factories as f
from tests.support.examples import examples
from tests.support.meanwhile import in_thread
from tests.support.timetravel import frozen_at
from workflows import credit_notes, customer_credit, invariants, refunds, statements
from workflows.cash_application import record_payment
from workflows.errors import Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import CreditNoteIn, PaymentIn

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


def credited(session: Session, *, credit: str = "30.00") -> tuple[str, Payment]:
    """Globex: INV-1 (100.00) paid in full on 20 November, then credited `credit` (an ERP's
    note, issued at once): all of it customer credit. INV-2 (200.00) open. Initech: INV-9
    open; Globex's INV-E in EUR open. A collector UCOLL001."""
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    f.customer(session)
    f.customer(session, "C-INITECH", "Initech")
    for number, total, who in (("INV-1", "100.00", "C-GLOBEX"), ("INV-2", "200.00", "C-GLOBEX"),
                               ("INV-9", "200.00", "C-INITECH")):
        f.invoice(session, number, who, total=total, issued=date(2026, 11, 2),
                  due=date(2026, 12, 2))
    # an invoice in another currency (an ERP's, from before the customer's currency changed)
    globex = session.exec(select(Invoice).where(Invoice.number == "INV-1")).one().customer_id
    session.add(Invoice(number="INV-E", customer_id=globex, source="erp", currency="EUR",
                        issue_date=date(2026, 11, 2), due_date=date(2026, 12, 2),
                        subtotal_minor=20_000, total_minor=20_000, balance_minor=20_000))
    session.flush()
    payment, _ = record_payment(session, PaymentIn(
        amount="100.00", currency="USD", received_at=datetime(2026, 11, 20, tzinfo=UTC),
        customer="C-GLOBEX", reference="INV-1", external_id="pay-1"), actor="api")
    request, _ = credit_notes.request_credit_note(session, CreditNoteIn(
        invoice="INV-1", reason="damaged", amount=credit, source="erp"), actor="api",
        now=NOW)
    note = credit_notes.credit_note_view(session, str(request.id)).note
    assert note.customer_credit_minor == int(credit.replace(".", ""))
    return note.number, payment


def invoice(session: Session, number: str) -> Invoice:
    found = session.exec(select(Invoice).where(Invoice.number == number)).one()
    session.refresh(found)
    return found


def apply(session: Session, note: str, target: str = "INV-2", amount: str = "30.00", *,
          key: str = "k-1", by: str = "UCOLL001"):
    return customer_credit.apply_customer_credit(session, credit_note=note, invoice=target,
                                                 amount=amount, by=by, key=key, now=NOW)


def test_credit_applied_settles_the_other_invoice_and_is_used_up(session) -> None:
    # given 30.00 of customer credit on paid INV-1, and INV-2 owing 200.00
    note, payment = credited(session)
    # when a collector applies it to INV-2
    done = apply(session, note)
    # then INV-2 owes 170.00, INV-1 stays settled, and no credit is left
    assert (done.amount_minor, done.credit_left_minor, done.invoice_balance_minor,
            done.created) == (3_000, 0, 17_000, True)
    assert invoice(session, "INV-2").balance_minor == 17_000
    assert invoice(session, "INV-1").balance_minor == 0
    customer_id = invoice(session, "INV-1").customer_id
    assert credit_notes.customer_credit_minor(session, customer_id) == 0
    # the payment's money moved: 70.00 on INV-1, 30.00 on INV-2, nothing unapplied
    session.refresh(payment)
    moved = sorted((a.invoice_id, a.amount_minor, a.method) for a in session.exec(
        select(Allocation).where(Allocation.payment_id == payment.id)))
    one, two = invoice(session, "INV-1").id, invoice(session, "INV-2").id
    assert moved == sorted([(one, 10_000, "reference"), (one, -3_000, "customer_credit"),
                            (two, 3_000, "customer_credit")])
    assert (payment.amount_minor, payment.unapplied_minor) == (10_000, 0)
    [used] = session.exec(select(WriteOff)).all()
    assert (used.invoice_id, used.amount_minor, used.reason) == (one, 3_000, "customer_credit")
    # audited, and the AR channel told (under the key)
    [event] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "customer_credit.applied")).all()
    assert (event.actor, event.data["amount_minor"], event.data["credit_note"],
            event.data["invoice"]) == ("UCOLL001", 3_000, note, "INV-2")
    [told] = session.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == "customer-credit:k-1")).all()
    assert "USD 30.00" in told.payload["context"]["text"]
    assert invariants.validate_all(session) == []


def test_part_of_the_credit_leaves_the_rest(session) -> None:
    note, _ = credited(session)
    done = apply(session, note, amount="12.34")
    assert (done.credit_left_minor, done.invoice_balance_minor) == (1_766, 18_766)
    done = apply(session, note, amount="17.66", key="k-2")
    assert (done.credit_left_minor, done.invoice_balance_minor) == (0, 17_000)
    assert invariants.validate_all(session) == []


@pytest.mark.parametrize(("target", "amount", "field", "words"), [
    ("INV-2", "30.01", "amount", "INV-1 holds USD 30.00 of customer credit, not USD 30.01"),
    ("INV-9", "10.00", "invoice", "INV-9 is another customer's"),
    ("INV-E", "10.00", "invoice", "INV-E is in EUR; the credit of"),
    ("INV-1", "10.00", "invoice", "itself"),
    ("INV-2", "0", "amount", ""),
    ("INV-2", "abc", "amount", ""),
])
def test_what_is_refused_changes_nothing(session, target, amount, field, words) -> None:
    note, _ = credited(session)
    with pytest.raises(ValidationFailed) as refused:
        apply(session, note, target, amount)
    assert refused.value.errors[0].field == field
    assert words in str(refused.value)
    assert invoice(session, "INV-2").balance_minor == 20_000
    assert credit_notes.customer_credit_of(session, invoice(session, "INV-1").id) == 3_000


def test_never_more_than_the_other_invoice_has_open(session) -> None:
    # given 80.00 of credit and INV-3 owing only 50.00
    note, _ = credited(session, credit="80.00")
    f.invoice(session, "INV-3", total="50.00", issued=date(2026, 11, 2), due=date(2026, 12, 2))
    with pytest.raises(ValidationFailed) as refused:
        apply(session, note, "INV-3", "80.00")
    assert "INV-3 has USD 50.00 open to settle, not USD 80.00" in str(refused.value)
    # 50.00 of it settles INV-3 (paid), 30.00 stays credit
    done = apply(session, note, "INV-3", "50.00")
    assert (done.invoice_balance_minor, done.credit_left_minor) == (0, 3_000)
    assert invoice(session, "INV-3").paid_at is not None
    assert invariants.validate_all(session) == []


def test_not_on_the_part_a_dispute_holds(session) -> None:
    # given INV-2 (200.00) with 180.00 of it in dispute: 20.00 undisputed
    note, _ = credited(session)
    f.dispute(session, "INV-2", amount="180.00", now=NOW)
    with pytest.raises(ValidationFailed) as refused:
        apply(session, note, amount="30.00")
    assert ("INV-2 has USD 20.00 open to settle (USD 180.00 of its USD 200.00 is in "
            "dispute), not USD 30.00") in str(refused.value)
    done = apply(session, note, amount="20.00")
    assert done.invoice_balance_minor == 18_000
    assert invoice(session, "INV-2").disputed_minor == 18_000
    assert invariants.validate_all(session) == []


def test_only_a_collector_or_credit_approver_applies_it(session) -> None:
    note, _ = credited(session)
    with pytest.raises(PermissionDenied):
        apply(session, note, by="USALES01")
    with pytest.raises(ValidationFailed):
        apply(session, note, by="api")
    assert invoice(session, "INV-2").balance_minor == 20_000


def test_the_same_key_applies_once(session) -> None:
    note, _ = credited(session)
    first = apply(session, note, amount="10.00")
    again = apply(session, note, amount="10.00")
    assert again.created is False
    assert (again.amount_minor, again.invoice_balance_minor, again.credit_left_minor) == (
        first.amount_minor, first.invoice_balance_minor, first.credit_left_minor)
    assert invoice(session, "INV-2").balance_minor == 19_000
    with pytest.raises(Conflict) as clash:
        apply(session, note, amount="20.00")
    assert "k-1 was already used to apply USD 10.00" in str(clash.value)
    assert invoice(session, "INV-2").balance_minor == 19_000


def test_a_refund_after_it_reopens_the_invoice_the_credit_paid(session) -> None:
    # given the 30.00 of credit applied to INV-2
    note, payment = credited(session)
    apply(session, note)
    # when the whole payment (100.00) is refunded
    refunds.refund_payment(session, payment=session.get(Payment, payment.id),
                           amount_minor=10_000, external_id="re-1", value_date=TODAY,
                           actor="test")
    # then INV-2 owes its 200.00 again and INV-1 its 70.00 net of the note; no credit left
    assert invoice(session, "INV-2").balance_minor == 20_000
    assert invoice(session, "INV-1").balance_minor == 7_000
    assert credit_notes.customer_credit_of(session, invoice(session, "INV-1").id) == 0
    assert invariants.validate_all(session) == []


def test_two_applications_at_once_spend_the_credit_once(db, monkeypatch) -> None:
    # given 30.00 of credit, committed
    with db.transaction() as s:
        note, _ = credited(s)
    # and two applications of 20.00 (two keys) that would both read 30.00 of credit before
    # either writes, unless one waits for the other (each waits up to 1.5 s for the other)
    meet = threading.Barrier(2, timeout=1.5)
    credit_of = customer_credit.customer_credit_of

    def slow_credit_of(*args, **kwargs):
        found = credit_of(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return found

    monkeypatch.setattr(customer_credit, "customer_credit_of", slow_credit_of)

    def spend(key: str) -> object:
        try:
            with db.transaction() as s:
                return apply(s, note, amount="20.00", key=key)
        except ValidationFailed as refused:  # counted below
            return refused

    # when both run at the same moment, in two sessions
    running = [in_thread(lambda key=key: spend(key)) for key in ("a", "b")]
    outcomes = [result() for result in running]
    # then one applied 20.00 and the other was refused: 10.00 of credit left, INV-2 at 180.00
    refused = [o for o in outcomes if isinstance(o, ValidationFailed)]
    assert len(outcomes) == 2 and len(refused) == 1
    assert "holds USD 10.00 of customer credit, not USD 20.00" in str(refused[0])
    with db.read_session() as s:
        assert invoice(s, "INV-2").balance_minor == 18_000
        assert credit_notes.customer_credit_of(s, invoice(s, "INV-1").id) == 1_000
        assert invariants.validate_all(s) == []


def test_the_statement_shows_the_credit_used_on_the_other_invoice(session) -> None:
    from workflows import statements

    # given the 30.00 of credit applied to INV-2 on 2 December
    note, _ = credited(session)
    apply(session, note)
    globex = session.get(Invoice, invoice(session, "INV-1").id).customer_id
    from models import Customer

    # when December's statement is made
    found = statements.statement(session, session.get(Customer, globex),
                                 start=date(2026, 12, 1), end=date(2026, 12, 31))
    # then it says where the credit went, and Globex owes INV-2's 170.00 with no credit held
    assert sorted((line.reference, line.amount_minor, line.credit_minor)
                  for line in found.lines if line.reference != note + " on INV-1") == [
        ("customer credit applied to INV-2", -3_000, 0),
        ("customer credit moved off INV-1", 3_000, 0),
        ("customer credit used, set against INV-1", -3_000, -3_000)]
    # (INV-E's EUR 200.00, an invoice of this test's own making, is not on the USD statement)
    assert (found.closing_minor, found.customer_credit_minor) == (17_000, 0)


@settings(max_examples=examples(10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(credit=st.integers(1, 10_000), asked=st.integers(1, 25_000),
       refunded=st.integers(0, 10_000))
def test_any_application_then_refund_keeps_ar_credit_and_payments_to_the_cent(
        db_factory, credit, asked, refunded) -> None:
    with db_factory.fresh() as database, database.session() as session:
        # given INV-1 (100.00) paid and credited `credit`; INV-2 owes 200.00
        note, payment = credited(session, credit=money.to_str(credit, "USD"))
        # when `asked` of the credit is applied to INV-2 (refused beyond the credit)
        try:
            apply(session, note, amount=money.to_str(asked, "USD"))
            applied = asked
        except ValidationFailed:
            applied = 0
        assert applied == (asked if asked <= credit else 0)
        # and then `refunded` of the payment goes back
        if refunded:
            refunds.refund_payment(session, payment=session.get(Payment, payment.id),
                                   amount_minor=refunded, external_id="re", value_date=TODAY,
                                   actor="test")
        # then the books agree: what the customer owes less what we hold for them is the
        # invoices less the note less the money they kept with us
        one, two = invoice(session, "INV-1"), invoice(session, "INV-2")
        held = credit_notes.customer_credit_of(session, one.id)
        assert one.balance_minor + two.balance_minor - held == (
            30_000 - credit - (10_000 - refunded))
        assert held >= 0
        assert invariants.validate_all(session) == []


def test_a_payment_whose_credit_was_applied_is_not_corrected_behind_it(session) -> None:
    # given INV-1 paid by payment 1 and credited 30.00, all of it applied to INV-2 (the
    # payment's money: -30.00 on INV-1, the credit used there, +30.00 on INV-2)
    from workflows.cash_application import correct_application

    note, payment = credited(session)
    customer_credit.apply_customer_credit(session, credit_note=note, invoice="INV-2",
                                          amount="30.00", by="UCOLL001", key="k-1", now=NOW)
    session.commit()
    # when a collector corrects the payment onto INV-2 alone
    with pytest.raises(Conflict) as refused:
        correct_application(session, payment_id=payment.id, invoices=["INV-2"],
                            actor="UCOLL001", now=NOW)
    session.rollback()
    # then it is refused with a reason (not a database error, not the 30.00 of credit given
    # a second time on money taken off INV-1): nothing moved
    assert "customer credit" in str(refused.value).lower()
    balances = {i.number: i.balance_minor for i in session.exec(select(Invoice)).all()}
    assert (balances["INV-1"], balances["INV-2"]) == (0, 17_000)
    assert credit_notes.customer_credit_of(session, session.exec(
        select(Invoice.id).where(Invoice.number == "INV-1")).one()) == 0
    assert sorted(a.amount_minor for a in session.exec(select(Allocation)).all()) == [
        -3_000, 3_000, 10_000]
    assert invariants.validate_all(session) == []


def test_a_refund_dated_before_the_credit_moved_is_booked_when_it_moved(session) -> None:
    # given INV-1's 30.00 of customer credit (paid 20 November) applied to INV-2 today
    note, payment = credited(session)
    customer_credit.apply_customer_credit(session, credit_note=note, invoice="INV-2",
                                          amount="30.00", by="UCOLL001", key="k-1", now=NOW)
    # when the payment is refunded with a value date of 25 November (a provider's refund
    # reported late), before the credit moved
    refund, _ = refunds.refund_payment(session, payment=payment, amount_minor=10_000,
                                       external_id="re-1", value_date=date(2026, 11, 25),
                                       actor="test")
    # then it is booked no earlier than the money it takes back was on INV-2: today. Dated
    # 25 November, it took 30.00 off INV-2 from that day, while INV-2 had that money only
    # from today: from 25 November to 1 December INV-2 showed 230.00 open of its 200.00 and
    # INV-1 (paid) 70.00 open
    assert refund.value_date == TODAY
    assert {a.value_date for a in session.exec(select(Allocation).where(
        Allocation.method == "refund"))} == {TODAY}
    globex = session.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
    month = statements.statement(session, globex,
                                start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert [(i.number, i.total_minor) for i in month.open_invoices] == [("INV-2", 20_000)]
    assert month.closing_minor == 20_000
    assert invariants.validate_all(session) == []
