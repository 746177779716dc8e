"""Customer credit through the REST API: `POST /credit-notes/{number}/applications` applies
the credit a note left to another invoice of the same customer (keyed, 422 with the numbers,
403 without the role), and `GET /customers/{external_id}` says what is held for the customer
(unapplied payments and customer credit, per currency)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, CreditNote, Customer, Payment
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import credit_notes
from workflows.cash_application import record_payment
from workflows.inputs import CreditNoteIn, PaymentIn

TODAY = date(2026, 6, 16)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(10), UTC), tick=True)


@pytest.fixture
def books(server):
    """Globex: INV-1 (100.00) paid, then credited 30.00 (customer credit); INV-2 (200.00)
    open; 45.50 received on account (unapplied). Initech: INV-9 open."""
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, collector="UCOLL001")
        f.customer(s, "C-INITECH", "Initech")
        for number, who in (("INV-1", "C-GLOBEX"), ("INV-2", "C-GLOBEX"),
                            ("INV-9", "C-INITECH")):
            f.invoice(s, number, who, total="100.00" if number == "INV-1" else "200.00",
                      issued=TODAY - timedelta(days=20), due=TODAY + timedelta(days=10))
        for amount, reference, key in (("100.00", "INV-1", "pay-1"),
                                       ("45.50", "on account", "pay-2")):
            record_payment(s, PaymentIn(
                amount=amount, currency="USD", customer="C-GLOBEX", reference=reference,
                received_at=datetime.combine(TODAY - timedelta(days=2), time(9), UTC),
                external_id=key), actor="api")
        credit_notes.request_credit_note(s, CreditNoteIn(
            invoice="INV-1", reason="damaged", amount="30.00", source="erp"), actor="api",
            now=datetime.combine(TODAY, time(9), UTC))
        note = s.exec(select(CreditNote)).one().number
    return server, note


def test_credit_applied_through_the_api_once_per_key(books, api) -> None:
    server, note = books
    body = {"invoice": "INV-2", "amount": "30.00", "by": "UCOLL001"}
    # when the 30.00 of credit is applied to INV-2, twice under one key
    first = api.post(f"/credit-notes/{note}/applications", json=body,
                     headers={"Idempotency-Key": "apply-1"})
    again = api.post(f"/credit-notes/{note}/applications", json=body,
                     headers={"Idempotency-Key": "apply-1"})
    # then it was applied once: INV-2 owes 170.00, no credit is left
    assert first.status_code == 201, first.text
    answer = first.json()
    assert {k: answer[k] for k in ("credit_note", "credit_invoice", "invoice", "customer",
                                   "currency", "amount", "credit_left", "invoice_balance",
                                   "by", "key")} == {
        "credit_note": note, "credit_invoice": "INV-1", "invoice": "INV-2",
        "customer": "C-GLOBEX", "currency": "USD", "amount": "30.00", "credit_left": "0.00",
        "invoice_balance": "170.00", "by": "UCOLL001", "key": "apply-1"}
    assert again.status_code == 201 and again.json() == answer
    assert api.get("/invoices/INV-2").json()["balance"] == "170.00"
    # the same external_id under another Idempotency-Key replays too (200)
    keyed = api.post(f"/credit-notes/{note}/applications",
                     json={**body, "external_id": "apply-1"},
                     headers={"Idempotency-Key": "apply-2"})
    assert keyed.status_code == 200 and keyed.json()["invoice_balance"] == "170.00"
    with server.db.read_session() as s:
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer_credit.applied")).all()) == 1


def test_what_the_api_refuses(books, api) -> None:
    _, note = books
    url = f"/credit-notes/{note}/applications"

    def post(key: str | None = "k", **body):
        return api.post(url, json={"invoice": "INV-2", "amount": "30.00", "by": "UCOLL001",
                                   **body}, headers={"Idempotency-Key": key} if key else {})

    too_much = post(amount="30.01")
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0] == {
        "field": "amount", "detail": "INV-1 holds USD 30.00 of customer credit, not USD 30.01"}
    other = post(invoice="INV-9")
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "invoice"
    assert post(key=None).status_code == 422
    assert post(by="USALES01").status_code == 403
    assert api.post("/credit-notes/CN-2026-999999/applications",
                    json={"invoice": "INV-2", "amount": "1.00", "by": "UCOLL001"},
                    headers={"Idempotency-Key": "k2"}).status_code == 404
    assert post(amount=30).status_code == 422  # a number, not a decimal string
    assert api.get("/invoices/INV-2").json()["balance"] == "200.00"


def test_the_customer_says_what_is_held_for_it_per_currency(books, api) -> None:
    server, note = books
    # given Globex's 45.50 received on account and 30.00 of customer credit; and 12.00 EUR
    # from them on the books, applied to nothing (a bank line in another currency)
    with server.db.transaction() as s:
        globex = s.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
        s.add(Payment(external_id="pay-eur", customer_id=globex.id, amount_minor=1_200,
                      currency="EUR", received_at=datetime.combine(TODAY, time(9), UTC),
                      value_date=TODAY, unapplied_minor=1_200))
    # when the customer is read
    got = api.get("/customers/C-GLOBEX").json()
    # then its unapplied cash is there, per currency, apart from the balances
    assert got["unapplied"] == [
        {"currency": "EUR", "unapplied_payments": "12.00", "customer_credit": "0.00",
         "total": "12.00"},
        {"currency": "USD", "unapplied_payments": "45.50", "customer_credit": "30.00",
         "total": "75.50"}]
    assert got["balances"]["open"] == "200.00"
    assert api.get("/customers/C-INITECH").json()["unapplied"] == []
    # when the credit is applied to INV-2, it is no longer held (INV-2 owes 170.00)
    assert api.post(f"/credit-notes/{note}/applications", json={
        "invoice": "INV-2", "amount": "30.00", "by": "UCOLL001"},
        headers={"Idempotency-Key": "k"}).status_code == 201
    got = api.get("/customers/C-GLOBEX").json()
    assert [(h["currency"], h["unapplied_payments"], h["customer_credit"])
            for h in got["unapplied"]] == [("EUR", "12.00", "0.00"), ("USD", "45.50", "0.00")]
    assert got["balances"]["open"] == "170.00"
