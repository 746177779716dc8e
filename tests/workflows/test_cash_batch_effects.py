"""The batch path of cash application (`workflows.cash_runs.CashRun`: an API payment, a CSV
import of payments, a bank statement) has the effects one at a time has, once each: a short
payment's deduction card (`deductions.flag`), what is in dispute following the balance, a
pay-now session for the old balance expired (`payment_links.balance_changed`), `invoice.paid`
for an invoice it settles, `payment.received` / `payment.applied` for a payment it records,
and the CRM deal of the order it pays updated. Each test runs through each surface."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot.imports import import_csv
from models import (
    AuditEvent,
    CrmDeal,
    Deduction,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentLink,
    WebhookEvent,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import deductions, invariants, payment_links, webhooks
from workflows.bank_statements import import_statement
from workflows.inputs import InvoiceIn
from workflows.invoicing import ingest_erp_invoice

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a bank line's booking day at noon UTC
frozen_time = frozen_at(NOW, tick=True)
SURFACES = ["api", "csv", "bank"]


@pytest.fixture
def books(db):
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, sales_rep="USALES01")
        f.product(s, "WID-1", price="500.00")
        for number in ("INV-E-1", "INV-E-2"):
            f.invoice(s, number, total="1000.00", issued=date(2026, 11, 1),
                      due=date(2026, 12, 1))
    return db


def pay(surface: str, request: pytest.FixtureRequest, db, tmp_path: Path,
        lines: list[tuple[str, str]]) -> None:
    """Payments from Globex of (amount, remittance text), through `surface`."""
    if surface == "api":
        api = request.getfixturevalue("api")
        for n, (amount, reference) in enumerate(lines, start=1):
            answer = api.post("/payments", json={
                "amount": amount, "currency": "USD", "received_at": RECEIVED.isoformat(),
                "payer_name": "Globex Corporation", "reference": reference,
                "external_id": f"API-{n}"})
            assert answer.status_code == 201, answer.text
    elif surface == "csv":
        path = tmp_path / "payments.csv"
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["amount", "currency", "received_at", "payer_name", "reference",
                             "external_id"])
            writer.writerows([amount, "USD", RECEIVED.isoformat(), "Globex Corporation",
                              reference, f"CSV-{n}"]
                             for n, (amount, reference) in enumerate(lines, start=1))
        report = import_csv(db, "payments", path)
        assert report.errors == [] and report.count == len(lines)
    else:
        path = tmp_path / "statement.csv"
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["Booking date", "Payer name", "Remittance information", "Amount",
                             "Currency", "Transaction ID"])
            writer.writerows([RECEIVED.date().isoformat(), "GLOBEX CORPORATION", reference,
                              amount, "USD", f"TX-{n}"]
                             for n, (amount, reference) in enumerate(lines, start=1))
        with db.session() as s:
            report = import_statement(s, path, names=db.customer_names)
            assert report.errors == [] and report.created == len(lines)
            s.commit()


def invoice(s, number: str) -> Invoice:
    return s.exec(select(Invoice).where(Invoice.number == number)).one()


@pytest.mark.parametrize("surface", SURFACES)
def test_a_short_payment_gets_the_deduction_card_one_at_a_time_gives_it(
        surface, books, request, tmp_path) -> None:
    # when Globex pays 900.00 of INV-E-2's 1000.00 (short beyond the bank-fee tolerance)
    pay(surface, request, books, tmp_path, [("900.00", "INV-E-2")])
    # then the deduction is flagged as `deductions.flag` flags it: its card in the AR channel
    # (what `card_context` shows for it), the card's outbox id kept, its audit event
    with books.read_session() as s:
        deduction = s.exec(select(Deduction)).one()
        payment = s.exec(select(Payment)).one()
        assert (deduction.amount_minor, deduction.status, deduction.payment_id) == (
            10_000, "open", payment.id)
        cards = s.exec(select(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"deduction-card:{deduction.id}")).all()
        assert [c.id for c in cards] == [deduction.card_outbox_id]
        assert cards[0].payload == {"channel": "ar", "template": "deduction_card",
                                    "context": deductions.card_context(s, deduction)}
        assert cards[0].payload["context"]["invoice"]["balance_minor"] == 10_000
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "payment.deduction")).all()
        assert [(e.entity_id, e.data) for e in events] == [
            (str(deduction.invoice_id), {"amount_minor": 10_000, "payment_id": payment.id,
                                         "deduction_id": deduction.id})]
        assert invariants.validate_all(s) == []


@pytest.mark.parametrize("surface", SURFACES)
def test_what_is_in_dispute_follows_the_balance_down(surface, books, request,
                                                     tmp_path) -> None:
    # given 300.00 of INV-E-2 in dispute
    with books.transaction() as s:
        f.dispute(s, "INV-E-2", amount="300.00", now=NOW)
    # when Globex pays 900.00 of it
    pay(surface, request, books, tmp_path, [("900.00", "INV-E-2")])
    # then what is in dispute is at most what is open, as the back office's invariants say
    with books.read_session() as s:
        disputed = invoice(s, "INV-E-2")
        assert (disputed.balance_minor, disputed.disputed_minor, disputed.disputed) == (
            10_000, 10_000, True)
        assert invariants.validate_all(s) == []


@pytest.mark.parametrize("surface", SURFACES)
def test_a_pay_now_session_for_the_old_balance_is_expired(surface, books, request,
                                                          tmp_path) -> None:
    # given a Stripe checkout session open for INV-E-1's 1000.00
    with books.transaction() as s:
        token = payment_links.token_for(s, invoice(s, "INV-E-1"), ["a-pay-link-secret-" * 2])
        plan = payment_links.plan_checkout(s, token=token, now=NOW)
        assert payment_links.store_session(s, token=token, generation=plan.generation,
                                           session_id="cs_test_E1",
                                           url="https://checkout.stripe.test/cs_test_E1")
    # when Globex pays it by bank transfer (and 250.00 of INV-E-2)
    pay(surface, request, books, tmp_path, [("1000.00", "INV-E-1"), ("250.00", "INV-E-2")])
    # then the session is expired at Stripe, once, and forgotten here
    with books.read_session() as s:
        assert invoice(s, "INV-E-1").balance_minor == 0
        expiries = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "stripe")).all()
        assert [(m.method, m.dedupe_key, m.payload) for m in expiries] == [
            ("session.expire", "stripe-expire:cs_test_E1",
             {"session_id": "cs_test_E1", "invoice": "INV-E-1"})]
        row = s.exec(select(PaymentLink)).one()
        assert (row.session_id, row.session_url) == (None, None)


@pytest.mark.parametrize("surface", SURFACES)
def test_an_invoice_it_settles_is_announced_paid_once(surface, books, request,
                                                      tmp_path) -> None:
    # given a subscriber to invoice.paid
    with books.transaction() as s:
        webhooks.subscribe(s, url="https://erp.example/hooks", events=["invoice.paid"],
                           actor="api")
    # when Globex pays INV-E-1 in full and INV-E-2 in part
    pay(surface, request, books, tmp_path, [("1000.00", "INV-E-1"), ("400.00", "INV-E-2")])
    # then INV-E-1 is announced paid, once, keyed as one at a time keys it
    with books.read_session() as s:
        paid = invoice(s, "INV-E-1")
        found = s.exec(select(WebhookEvent)).all()
        assert [(e.type, e.key) for e in found] == [
            ("invoice.paid", f"invoice.paid:{paid.id}:{paid.paid_at.isoformat()}")]
        assert paid.paid_at == RECEIVED
        assert (found[0].data["invoice"]["number"], found[0].data["invoice"]["status"],
                found[0].data["invoice"]["balance"]) == ("INV-E-1", "paid", "0.00")
        assert len(s.exec(select(OutboxMessage).where(
            OutboxMessage.transport == "webhook")).all()) == 1


@pytest.mark.parametrize("surface", SURFACES)
def test_each_payment_it_records_is_announced_received_and_applied_once(
        surface, books, request, tmp_path) -> None:
    # given a subscriber to payment events
    with books.transaction() as s:
        webhooks.subscribe(s, url="https://dw.example/in",
                           events=["payment.received", "payment.applied"], actor="api")
    # when Globex pays INV-E-1, and sends money nothing explains
    pay(surface, request, books, tmp_path, [("1000.00", "INV-E-1"), ("123.45", "THANK YOU")])
    # then each payment is received once, and the one on an invoice is applied once
    with books.read_session() as s:
        applied, unexplained = s.exec(select(Payment).order_by(Payment.id)).all()
        assert unexplained.unapplied_minor == unexplained.amount_minor
        found = s.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert sorted((e.type, e.data["payment"]["id"], e.key) for e in found) == sorted([
            ("payment.received", applied.id, f"payment.received:{applied.id}"),
            ("payment.applied", applied.id, None),
            ("payment.received", unexplained.id, f"payment.received:{unexplained.id}")])
        applied_event = next(e for e in found if e.type == "payment.applied")
        assert applied_event.data["payment"]["allocations"] == [
            {"invoice": "INV-E-1", "amount": "1000.00"}]


@pytest.mark.parametrize("surface", SURFACES)
def test_the_crm_deal_of_the_order_it_pays_is_updated(surface, books, request,
                                                      tmp_path) -> None:
    # given an order that came from a HubSpot deal, invoiced (no webhook subscriber)
    with books.transaction() as s:
        order = f.order(s, lines=[("WID-1", 2)], now=NOW)
        s.add(CrmDeal(provider="hubspot", deal_id="D-1", order_id=order.id, status="imported"))
        ingest_erp_invoice(s, InvoiceIn(
            number="INV-E-3", customer="C-GLOBEX", currency="USD", issue_date=date(2026, 11, 2),
            due_date=date(2026, 12, 2), total="1000.00", order=order.number), actor="test")
        order_id = order.id
    # when Globex pays that invoice
    pay(surface, request, books, tmp_path, [("1000.00", "INV-E-3")])
    # then the deal is told about the invoice paid and the payment, once each
    with books.read_session() as s:
        updates = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "hubspot")
                         .order_by(OutboxMessage.id)).all()
        assert sorted(m.payload["event"] for m in updates) == [
            "invoice.paid", "payment.applied", "payment.received"]
        assert {(m.method, m.payload["deal_id"], m.payload["order_id"]) for m in updates} == {
            ("deal.update", "D-1", order_id)}


def test_a_csv_of_invoices_announces_each_invoice_issued_once(books, tmp_path) -> None:
    # given a subscriber to invoice.issued
    with books.transaction() as s:
        webhooks.subscribe(s, url="https://erp.example/hooks", events=["invoice.issued"],
                           actor="api")
    path = tmp_path / "invoices.csv"
    path.write_text("number,customer,currency,issue_date,due_date,total\n"
                    "INV-C-1,C-GLOBEX,USD,2026-11-02,2026-12-02,10.00\n"
                    "INV-C-2,C-GLOBEX,USD,2026-11-02,2026-12-02,20.00\n")
    # when the file is imported
    report = import_csv(books, "invoices", path)
    # then each invoice is announced once, keyed as one at a time keys it
    assert report.errors == [] and report.count == 2
    with books.read_session() as s:
        ids = {i.number: i.id for i in s.exec(select(Invoice))}
        found = s.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert sorted((e.type, e.key, e.data["invoice"]["number"]) for e in found) == [
            ("invoice.issued", f"invoice.issued:{ids['INV-C-1']}", "INV-C-1"),
            ("invoice.issued", f"invoice.issued:{ids['INV-C-2']}", "INV-C-2")]


def test_a_bank_line_longer_than_a_payment_may_be_is_that_lines_error(books,
                                                                       tmp_path) -> None:
    # given a statement whose second line has a payer name of 301 characters and whose third
    # has a reference of 2001
    path = tmp_path / "statement.csv"
    path.write_text("Date,Amount,Currency,Payer,Reference\n"
                    "2026-11-20,10.00,USD,Globex,INV-E-1\n"
                    f"2026-11-20,10.00,USD,{'G' * 301},INV-E-1\n"
                    f"2026-11-20,10.00,USD,Globex,{'R' * 2001}\n")
    # when it is imported
    with books.session() as s:
        report = import_statement(s, path, names=books.customer_names)
        s.rollback()
    # then each line is refused naming its field, and nothing is imported
    assert report.errors == ["row 3: payer_name: String should have at most 300 characters",
                             "row 4: reference: String should have at most 2000 characters"]
    with books.read_session() as s:
        assert s.exec(select(Payment)).all() == []
