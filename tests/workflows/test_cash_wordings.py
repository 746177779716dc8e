"""Zero wrong applications on payments in the bank's own wording (Hypothesis).

Books and payments come from the benchmark's labelled generator (`bench/cashapp_data.py`)
restricted to the wordings of issue 20 — "PAYMENT FROM <NAME>", "ACH CREDIT <NAME> CCD",
"WIRE TRANSFER <NAME>", the name only in the remittance field, payer lines naming nobody,
purely numeric invoice numbers in lists, with a bank fee or a partial payment — with the
sizes and the seed drawn by Hypothesis. Whatever the data, the engine may leave a payment for
a person but never applies money where the label (what a careful clerk would do) does not:
every automatic allocation is to a labelled invoice for the labelled amount. AR invariants hold
afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from bench.cashapp_data import BANK_WORDING_CASES, Dataset, generate
from models import Allocation, Invoice, Payment
from tests.support import factories as f
from tests.support.examples import examples
from workflows import invariants, masterdata
from workflows.cash_application import payment_allocations, record_payment
from workflows.cash_runs import CashRun
from workflows.inputs import CustomerIn, InvoiceIn, PaymentIn
from workflows.invoicing import ingest_erp_invoices

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)


def load(session, data: Dataset) -> None:
    for c in data.customers:
        masterdata.upsert_customer(session, CustomerIn(
            external_id=c.external_id, name=c.name, currency=c.currency,
            credit_limit="100000.00", payment_terms=c.terms, credit_reviewed=True),
            actor="test")
    session.flush()
    stored = ingest_erp_invoices(session, [InvoiceIn(  # (as a CSV import: one call)
        number=inv.number, customer=inv.customer, currency=inv.currency,
        issue_date=inv.issue_date, due_date=inv.due_date,
        total=f"{inv.total_minor // 100}.{inv.total_minor % 100:02d}",
        payment_terms=inv.terms) for inv in data.invoices], actor="test")
    assert all(isinstance(i, int) for i in stored)
    session.commit()


def automatic(session) -> dict[str, dict[str, int]]:
    """external id -> {invoice number: minor units} the engine applied by itself."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for ext, number, amount in session.exec(
            select(Payment.external_id, Invoice.number, Allocation.amount_minor)
            .join(Allocation, Allocation.payment_id == Payment.id)
            .join(Invoice, Invoice.id == Allocation.invoice_id)
            .where(Allocation.method != "manual")).all():
        out[ext][number] = out[ext].get(number, 0) + amount
    return out


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), customers=st.integers(15, 40),
       invoices_per_customer=st.integers(6, 12), payments=st.integers(10, 30),
       one_file=st.booleans())
def test_no_payment_in_the_banks_wording_is_ever_applied_wrongly(
        db_factory, seed, customers, invoices_per_customer, payments, one_file) -> None:
    data = generate(seed, customers=customers, invoices=customers * invoices_per_customer,
                    payments=payments, cases=BANK_WORDING_CASES)
    with db_factory.fresh() as database, database.session() as session:
        load(session, data)
        # as one bank statement (one run, in chunks), or one API call at a time
        chunks = [data.payments] if one_file else [[p] for p in data.payments]
        for chunk in chunks:
            run = CashRun(session, actor="test", source="bank", chunk=7)
            tickets = [run.add(PaymentIn(
                amount=p.amount, currency=p.currency, received_at=p.received_at,
                payer_name=p.payer_name, reference=p.reference, customer=p.customer,
                external_id=p.external_id)) for p in chunk]
            run.flush()
            assert [t.error for t in tickets if t.error] == []
            session.commit()
        # then
        applied = automatic(session)
        for p in data.payments:
            for number, amount in applied.get(p.external_id, {}).items():
                assert p.expected.get(number) == amount, (
                    f"{p.case} {p.external_id}: applied {amount} to {number}, label "
                    f"{p.expected} ({p.note or 'auto-matchable'}); payer "
                    f"{p.payer_name!r}, reference {p.reference!r}")
        assert invariants.validate_all(session) == []


def test_an_exact_number_and_amount_are_decisive_unless_the_payer_names_another_customer(
        session) -> None:
    # given Initech's invoices of 500.00 and two customers the bank may name
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.customer(session, "C-INITECH", "Initech LLC")
    f.invoice(session, "INV-2026-000901", "C-INITECH", total="500.00")
    f.invoice(session, "INV-2026-000902", "C-INITECH", total="500.00")
    session.commit()

    def pay(payer: str | None, number: str) -> Payment:
        payment, _ = record_payment(session, PaymentIn(
            amount="500.00", currency="USD", received_at=RECEIVED, payer_name=payer,
            reference=f"INVOICE {number}"), actor="test")
        session.commit()
        return payment

    # when the bank's payer line names nobody we know, or only its own wording
    for payer, number in (("ACH CREDIT J SMITH HOLDINGS CCD", "INV-2026-000901"),
                          ("WIRE", "INV-2026-000902")):
        payment = pay(payer, number)
        # then the number and the amount decide
        assert [(inv.number, a.amount_minor) for a, inv in payment_allocations(
            session, payment.id)] == [(number, 50_000)], payer
    # but when the payer line clearly names another customer, a person decides
    f.invoice(session, "INV-2026-000903", "C-INITECH", total="500.00")
    session.commit()
    asked = pay("PAYMENT FROM GLOBEX CORPORATION", "INV-2026-000903")
    assert asked.status == "needs_review" and payment_allocations(session, asked.id) == []
