"""AR invariants under random sequences of invoices, payments, Apply clicks, credit notes and
write-offs (Hypothesis): a payment's allocations never exceed it; an invoice's balance is
total - allocations - credit notes - write-offs and never negative; re-sending a payment
(same external id) changes nothing.

The back office (issue 14) joins in: disputes opened and resolved, credit notes requested and
decided (above a tier, twice), write-offs requested and decided, deductions disputed, written
off or billed back, dunning runs charging late fees and writing off small balances. After
every step every invariant of `workflows.invariants` holds (`validate_all`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import (
    Allocation,
    AuditEvent,
    CreditNote,
    Deduction,
    Invoice,
    OutboxMessage,
    Payment,
    WriteOff,
)
from models.limits import MAX_AMOUNT_MINOR
from tests.support import factories as f
from tests.support.amounts import INT32_MAX, amount_text, minor_amounts
from tests.support.examples import examples
from workflows import (
    approvals,
    credit_notes,
    deductions,
    disputes,
    dunning,
    invariants,
    policy,
    write_offs,
)
from workflows.cash_application import apply_suggestion, record_payment, write_off
from workflows.errors import DomainError
from workflows.inputs import DisputeOpenIn, PaymentIn
from workflows.invoicing import issue_credit_note

CUSTOMERS = [("C-GLOBEX", "Globex Corporation", "NET30"),
             ("C-ACME", "Acme Industries Inc", "2/10 NET30"),
             ("C-ACME-EU", "Acme Industries Europe GmbH", "NET30")]
PAYERS = [None, "GLOBEX CORP", "ACME INDUSTRIES", "ACME INDUSTRIES EUROPE", "J SMITH",
          "ACH CREDIT GLOBEX CORP CCD", "PAYMENT FROM ACME INDUSTRIES", "WIRE"]
TODAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # when people act (no wall clock)
FORMATS = ["{n}", "inv {y}/{s}", "INV{y}{z}", "payment {n} thanks", "{n}, {m}", "garbage"]

# everyday amounts, plus amounts from 32-bit overflow up to the bound (tests/support/amounts)
cents = st.one_of(st.integers(min_value=1, max_value=300_000), st.integers(1, 300_000),
                  minor_amounts(INT32_MAX - 1, MAX_AMOUNT_MINOR))
invoice_op = st.tuples(st.just("invoice"), st.integers(0, 2), cents, st.integers(0, 20))
pay_op = st.tuples(st.just("pay"), st.one_of(cents, st.sampled_from([10_000, 25_000, 98_000])),
                   st.integers(0, 30), st.sampled_from(FORMATS), st.integers(0, len(PAYERS) - 1),
                   st.sampled_from([None, None, "E1", "E2"]), st.integers(0, 15))
apply_op = st.tuples(st.just("apply"), st.integers(0, 30), st.integers(1, 3),
                     st.sampled_from(["UCOLL001", "USALES01"]))
credit_op = st.tuples(st.just("credit"), st.integers(0, 30), cents)
write_off_op = st.tuples(st.just("write_off"), st.integers(0, 30), cents)
# the back office
small = st.one_of(st.none(), st.integers(min_value=1, max_value=200_000))
dispute_op = st.tuples(st.just("dispute"), st.integers(0, 30), small,
                       st.sampled_from(["pricing", "damaged", "other"]))
resolve_op = st.tuples(st.just("resolve"), st.integers(0, 30),
                       st.sampled_from(["accepted", "rejected", "withdrawn"]), small)
# what is asked: a share (1-120 %) of what can be; then decided at once, or left waiting
request_op = st.tuples(st.just("request"), st.integers(0, 30), st.integers(1, 120),
                       st.sampled_from(["credit_note", "write_off", "fee_waiver"]),
                       st.sampled_from([None, True, False]))
decide_op = st.tuples(st.just("decide"), st.integers(0, 30), st.booleans(),
                      st.sampled_from(["UCREDIT1", "UADMIN01", "UCOLL001"]))
deduction_op = st.tuples(st.just("deduction"), st.integers(0, 30),
                         st.sampled_from(["dispute", "write_off", "bill_back"]))
dunning_op = st.tuples(st.just("dunning"), st.integers(0, 45))
# a few invoices first, so that the steps after them have something to work on
operations = st.tuples(
    st.lists(invoice_op, min_size=1, max_size=3),
    st.lists(st.one_of(invoice_op, pay_op, pay_op, pay_op, apply_op, credit_op, write_off_op,
                       dispute_op, dispute_op, resolve_op, resolve_op, request_op, request_op,
                       decide_op, decide_op, decide_op, deduction_op, dunning_op),
             min_size=1, max_size=16)).map(lambda parts: parts[0] + parts[1])

TABLES = (Payment, Allocation, WriteOff, Deduction, CreditNote, AuditEvent, OutboxMessage)
BACK_OFFICE_POLICY = {"late_fees": "1:fee=5.00,14:fee=2.50+rate=10",
                      "approval_tiers": "credit_note:1000:admin,write_off:1000:admin",
                      "small_balance_write_off": "1.00"}


def snapshot(session) -> tuple:
    counts = tuple(session.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                   for t in TABLES)
    balances = tuple(session.execute(sa.select(Invoice.number, Invoice.balance_minor)
                                     .order_by(Invoice.id)).all())
    return counts, balances


def reference(fmt: str, numbers: list[str], pick: int) -> str:
    if not numbers:
        return fmt.replace("{n}", "INV-2026-999999")
    n = numbers[pick % len(numbers)]
    m = numbers[(pick + 1) % len(numbers)]
    _, year, serial = n.split("-")
    return fmt.format(n=n, m=m, y=year, s=int(serial), z=serial)


def run(session, ops: list[tuple]) -> None:
    numbers: list[str] = []
    payments: list[int] = []
    sent: dict[str, tuple] = {}
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UADMIN01", "admin")
    for external_id, name, terms in CUSTOMERS:
        f.customer(session, external_id, name, terms=terms, sales_rep="USALES01",
                   collector="UCOLL001")
    for key, value in BACK_OFFICE_POLICY.items():
        policy.set_value(session, key=key, value=value, actor="test")
    session.commit()
    for op in ops:
        kind = op[0]
        try:
            if kind == "invoice":
                _, who, total, age = op
                number = f"INV-2026-{len(numbers) + 1:06d}"
                f.invoice(session, number, CUSTOMERS[who][0], total=amount_text(total, "USD"),
                          issued=TODAY - timedelta(days=age),
                          due=TODAY - timedelta(days=age) + timedelta(days=30))
                numbers.append(number)
            elif kind == "pay":
                _, amount, pick, fmt, payer, external_id, day = op
                data = PaymentIn(amount=amount_text(amount, "USD"), currency="USD",
                                 received_at=datetime(2026, 11, 5, tzinfo=UTC)
                                 + timedelta(days=day),
                                 payer_name=PAYERS[payer],
                                 reference=reference(fmt, numbers, pick),
                                 external_id=external_id)
                if external_id in sent:  # a re-import: nothing may change
                    data = sent[external_id]
                    before = snapshot(session)
                    _, created = record_payment(session, data, actor="test")
                    session.flush()
                    assert not created and snapshot(session) == before
                else:
                    payment, _ = record_payment(session, data, actor="test")
                    payments.append(payment.id)
                    if external_id:
                        sent[external_id] = data
            elif kind == "apply" and payments:
                _, which, rank, actor = op
                apply_suggestion(session, payment_id=payments[which % len(payments)],
                                 rank=rank, actor=actor, now=NOW)
            elif kind == "credit" and numbers:
                _, which, amount = op
                issue_credit_note(session, invoice_number=numbers[which % len(numbers)],
                                  amount=amount_text(amount, "USD"), reason="test", actor="test",
                                  now=NOW)
            elif kind == "write_off" and numbers:
                _, which, amount = op
                inv = session.execute(sa.select(Invoice).where(
                    Invoice.number == numbers[which % len(numbers)])).scalar_one()
                write_off(session, invoice=inv, amount_minor=amount, reason="bad_debt",
                          actor="test", now=NOW)
            else:
                back_office(session, op, numbers)
            session.commit()
        except DomainError:  # refused (role, already applied, more than is open): undone
            session.rollback()
        assert invariants.validate_all(session) == []


def _pick(session, model, which: int, *where):
    """One of the rows (those still waiting for something first, so steps mostly act)."""
    rows = session.execute(sa.select(model).where(*where).order_by(model.id)).scalars().all()
    if not rows and where:
        rows = session.execute(sa.select(model).order_by(model.id)).scalars().all()
    return rows[which % len(rows)] if rows else None


def back_office(session, op: tuple, numbers: list[str]) -> None:
    """One back-office step of the random sequence (refusals raise DomainError)."""
    from models import Approval, Dispute

    kind = op[0]
    all_numbers = numbers + list(session.execute(sa.select(Invoice.number).where(
        Invoice.source == "fee").order_by(Invoice.id)).scalars())
    if kind == "dispute" and numbers:
        _, which, amount, reason = op
        disputes.open_dispute(session, numbers[which % len(numbers)], DisputeOpenIn(
            reason=reason,
            amount=amount_text(amount, "USD") if amount else None), actor="UCOLL001", now=NOW)
    elif kind == "resolve":
        _, which, outcome, credit = op
        dispute = _pick(session, Dispute, which, Dispute.status == "open")
        if dispute is not None:
            disputes.resolve(session, dispute_id=dispute.id, outcome=outcome, by="USALES01",
                             now=NOW, note="checked",
                             credit_amount=amount_text(credit, "USD")
                             if credit and outcome == "accepted" else None)
    elif kind == "request" and all_numbers:
        _, which, share, what, decision = op
        number = all_numbers[which % len(all_numbers)]
        invoice = session.execute(sa.select(Invoice).where(Invoice.number == number)).scalar_one()
        if what == "credit_note":
            amount = max(credit_notes.creditable(session, invoice) * share // 100, 1)
            request, _ = credit_notes.request_credit_note(session, credit_notes.CreditNoteIn(
                invoice=number, reason="test", amount=amount_text(amount, "USD")),
                actor="UCOLL001", now=NOW)
        elif what == "write_off":
            amount = max(invoice.balance_minor * share // 100, 1)
            request = write_offs.request_write_off(session, invoice_number=number,
                                                   reason="test", actor="UCOLL001", now=NOW,
                                                   amount=amount_text(amount, "USD"))
        else:
            request = write_offs.waive_fee(session, invoice_number=number, reason="test",
                                           actor="UCOLL001", now=NOW)
        approval_id = getattr(request, "approval_id", None)
        if decision is not None and approval_id is not None:
            for who in ("UCREDIT1", "UADMIN01"):  # the second only above a tier
                outcome = approvals.decide(session=session, approval_id=approval_id,
                                           user_id=who, approve=decision, now=NOW,
                                           note=None if decision else "no").outcome
                if outcome != approvals.FIRST_APPROVED:
                    break
    elif kind == "decide":
        _, which, approve, who = op
        approval = _pick(session, Approval, which, Approval.status == "pending")
        if approval is not None:
            approvals.decide(session=session, approval_id=approval.id, user_id=who,
                             approve=approve, now=NOW, note=None if approve else "no")
    elif kind == "deduction":
        _, which, action = op
        deduction = _pick(session, Deduction, which, Deduction.status == "open")
        if deduction is None:
            return
        if action == "dispute":
            deductions.open_dispute(session, deduction_id=deduction.id, reason="pricing",
                                    note=None, actor="UCOLL001", now=NOW)
        elif action == "write_off":
            deductions.write_off(session, deduction_id=deduction.id, reason="test",
                                 actor="UCOLL001", now=NOW)
        else:
            deductions.bill_back(session, deduction_id=deduction.id, actor="UCOLL001",
                                 now=NOW)
    elif kind == "dunning":
        _, days = op
        as_of = TODAY + timedelta(days=days)
        write_offs.write_off_small_balances(session, as_of=min(as_of, TODAY), now=NOW)
        dunning.run_dunning(session, as_of)


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_ar_invariants_hold_after_every_operation(db_factory, ops) -> None:
    with db_factory.fresh() as database, database.session() as session:
        run(session, ops)


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=cents, fmt=st.sampled_from(FORMATS), payer=st.integers(0, len(PAYERS) - 1),
       totals=st.lists(cents, min_size=1, max_size=5))
def test_resending_any_payment_changes_nothing(db_factory, amount, fmt, payer, totals) -> None:
    with db_factory.fresh() as database, database.session() as session:
        f.customer(session, "C-GLOBEX", "Globex Corporation")
        numbers = [f.invoice(session, f"INV-2026-{i + 1:06d}", total=amount_text(t, "USD"),
                             issued=TODAY - timedelta(days=3)).number
                   for i, t in enumerate(totals)]
        data = PaymentIn(amount=amount_text(amount, "USD"), currency="USD",
                         received_at=datetime(2026, 11, 19, tzinfo=UTC),
                         payer_name=PAYERS[payer], reference=reference(fmt, numbers, 0),
                         external_id="BANK-STMT-1:42")
        first, created = record_payment(session, data, actor="test")
        session.commit()
        before = snapshot(session)
        # when
        again, created_again = record_payment(session, data, actor="test")
        session.commit()
        # then
        assert created and not created_again and again.id == first.id
        assert snapshot(session) == before
        assert invariants.validate_all(session) == []
