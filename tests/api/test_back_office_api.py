"""The back office through the REST API and the real server (issue 14): disputes, credit notes
(by amount, by lines, an ERP's), tiers, late fees, the reports — with problem details, 409s on a
second decision, refusals audited, and nothing stored when refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import func, select

from bot.clock import Clock
from bot.jobs import run_job
from models import AuditEvent, CreditNote, CreditNoteRequest, Dispute, InvoiceLine
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, policy

TODAY = date(2026, 6, 16)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(10), UTC), tick=True)


@pytest.fixture
def books(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.user(s, "UADMIN01", "admin")
        f.user(s, "UNOBODY1")
        f.customer(s, collector="UCOLL001", sales_rep="USALES01")
        f.invoice(s, "INV-2026-000101", total="1000.00", due=TODAY - timedelta(days=10),
                  issued=TODAY - timedelta(days=40))
        f.invoice(s, "INV-2026-000102", total="500.00", due=TODAY + timedelta(days=20),
                  issued=TODAY - timedelta(days=10))
    return server


def decide(server, request_id: int, user: str, approve: bool = True) -> str:
    with server.db.transaction() as s:
        approval_id = s.get(CreditNoteRequest, request_id).approval_id
        return approvals.decide(session=s, approval_id=approval_id, user_id=user,
                                approve=approve, now=Clock().now(),
                                note=None if approve else "no").outcome


def test_dispute_open_get_resolve_and_the_aging_in_dispute(books, api) -> None:
    # when a dispute is opened for 400.00 of the invoice
    opened = api.post("/invoices/INV-2026-000101/disputes",
                      json={"reason": "damaged", "amount": "400.00", "note": "3 broken",
                            "opened_by": "UCOLL001"})
    # then it is open, held, and shown apart in aging and on the customer
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert (dispute["status"], dispute["amount"], dispute["in_dispute"], dispute["owner"]) == (
        "open", "400.00", "400.00", "USALES01")
    invoice = api.get("/invoices/INV-2026-000101").json()
    assert (invoice["in_dispute"], invoice["amount_due"]) == ("400.00", "600.00")
    aging = api.get("/reports/aging").json()["currencies"]["USD"]
    assert aging["in_dispute"]["1-30"] == "400.00" and aging["overdue"] == "600.00"
    assert api.get("/customers/C-GLOBEX").json()["balances"]["in_dispute"] == "400.00"
    # when someone without the role resolves it, then the owner rejects it, then again
    refused = api.post(f"/disputes/{dispute['id']}/resolve",
                       json={"outcome": "rejected", "by": "UNOBODY1", "note": "no"})
    assert refused.status_code == 403
    no_reason = api.post(f"/disputes/{dispute['id']}/resolve",
                         json={"outcome": "rejected", "by": "USALES01"})
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "note"
    rejected = api.post(f"/disputes/{dispute['id']}/resolve",
                        json={"outcome": "rejected", "by": "USALES01",
                              "note": "signed delivery note"})
    late = api.post(f"/disputes/{dispute['id']}/resolve",
                    json={"outcome": "accepted", "by": "UCOLL001"})
    # then it was rejected once; dunning may resume; the refusal is audited
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert late.status_code == 409 and "USALES01" in late.json()["detail"]
    assert api.get("/invoices/INV-2026-000101").json()["in_dispute"] == "0.00"
    got = api.get(f"/disputes/{dispute['id']}").json()
    assert [h["action"] for h in got["history"]] == [
        "dispute.opened", "refused.dispute.rejected", "dispute.rejected"]
    with books.db.read_session() as s:
        assert s.exec(select(AuditEvent.actor).where(
            AuditEvent.action == "refused.dispute.rejected")).all() == ["UNOBODY1"]


def test_bad_dispute_input_stores_nothing(books, api) -> None:
    for body, field in (({"reason": "weather"}, "reason"),
                        ({"reason": "pricing", "amount": "1000.01"}, "amount"),
                        ({"reason": "pricing", "amount": "-1"}, "amount"),
                        ({"reason": "pricing", "opened_by": "bob"}, "opened_by")):
        answer = api.post("/invoices/INV-2026-000101/disputes", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["field"] == field
    assert api.post("/invoices/NOPE/disputes", json={"reason": "tax"}).status_code == 404
    assert api.get("/disputes/999").status_code == 404
    with books.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(Dispute)).one() == 0


def test_accepting_a_dispute_asks_for_a_credit_note_issued_after_approval(books, api) -> None:
    dispute = api.post("/invoices/INV-2026-000101/disputes",
                       json={"reason": "pricing", "amount": "100.00"}).json()
    accepted = api.post(f"/disputes/{dispute['id']}/resolve",
                        json={"outcome": "accepted", "by": "USALES01",
                              "credit_amount": "80.00", "note": "agreed"}).json()
    assert accepted["credit_note"]["status"] == "pending_approval"
    request_id = accepted["credit_note"]["id"]
    pending = api.get(f"/credit-notes/{request_id}").json()
    assert (pending["number"], pending["amount"], pending["dispute"]) == (
        None, "80.00", dispute["id"])
    decide(books, request_id, "UCREDIT1")
    issued = api.get(f"/credit-notes/{request_id}").json()
    assert issued["status"] == "issued" and issued["number"].startswith("CN-2026-")
    assert api.get(f"/credit-notes/{issued['number']}").json()["id"] == request_id
    invoice = api.get("/invoices/INV-2026-000101").json()
    assert (invoice["balance"], invoice["in_dispute"]) == ("920.00", "0.00")
    assert [n["number"] for n in invoice["credit_notes"]] == [issued["number"]]


def test_credit_notes_by_amount_lines_and_from_an_erp(books, api) -> None:
    # given an invoice with lines
    assert api.post("/invoices", json={
        "number": "ERP-77", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": TODAY.isoformat(), "due_date": (TODAY + timedelta(days=30)).isoformat(),
        "total": "900.00", "lines": [{"description": "A", "quantity": 6, "unit_price": "100.00"},
                                     {"description": "B", "quantity": 3,
                                      "unit_price": "100.00"}]}).status_code == 201
    # when credited by lines, idempotently
    body = {"invoice": "ERP-77", "reason": "short shipped", "external_id": "REQ-1",
            "lines": [{"line_no": 1, "quantity": 1}, {"line_no": 2, "amount": "50.00"}]}
    first = api.post("/credit-notes", json=body, headers={"Idempotency-Key": "k1"})
    replay = api.post("/credit-notes", json=body, headers={"Idempotency-Key": "k1"})
    again = api.post("/credit-notes", json=body)  # same external id, no key
    assert first.status_code == 201 and replay.json() == first.json()
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert first.json()["amount"] == "150.00" and first.json()["status"] == "pending_approval"
    # and an ERP's own credit note is issued at once, with its date
    erp = api.post("/credit-notes", json={"invoice": "ERP-77", "reason": "ERP CN 5512",
                                          "amount": "20.00", "source": "erp",
                                          "issue_date": TODAY.isoformat()})
    assert erp.status_code == 201 and erp.json()["status"] == "issued"
    assert erp.json()["issue_date"] == TODAY.isoformat()
    # then more than the total less earlier (and pending) notes is refused, naming the field
    too_much = api.post("/credit-notes", json={"invoice": "ERP-77", "reason": "x",
                                               "amount": "730.01"})
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount"
    for bad, field in (({"invoice": "ERP-77", "reason": "x"}, "amount"),
                       ({"invoice": "ERP-77", "reason": "x", "amount": "1.00",
                         "lines": [{"line_no": 1, "quantity": 1}]}, "amount"),
                       ({"invoice": "ERP-77", "reason": "x",
                         "lines": [{"line_no": 3, "quantity": 1}]}, "lines[0].line_no"),
                       ({"invoice": "ERP-77", "reason": "x", "amount": "1.00",
                         "issue_date": TODAY.isoformat()}, "issue_date")):
        refused = api.post("/credit-notes", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    decide(books, first.json()["id"], "UCREDIT1")
    issued = api.get(f"/credit-notes/{first.json()['id']}").json()
    assert [(li["line_no"], li["amount"]) for li in issued["lines"]] == [(1, "100.00"),
                                                                         (2, "50.00")]
    with books.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(CreditNote)).one() == 2
        assert s.exec(select(func.count()).select_from(InvoiceLine)).one() == 2


def test_a_tier_needs_a_second_decision(books, api) -> None:
    with books.db.transaction() as s:
        policy.set_value(s, key="approval_tiers", value="credit_note:300:admin", actor="test")
    asked = api.post("/credit-notes", json={"invoice": "INV-2026-000101", "reason": "goodwill",
                                            "amount": "400.00", "requested_by": "UCOLL001"})
    request_id = asked.json()["id"]
    assert decide(books, request_id, "UCREDIT1") == "first_approved"
    assert api.get(f"/credit-notes/{request_id}").json()["status"] == "pending_approval"
    assert decide(books, request_id, "UADMIN01") == "approved"
    answer = api.get(f"/credit-notes/{request_id}").json()
    assert answer["status"] == "issued"
    actions = [h["action"] for h in answer["history"]]
    assert actions[:3] == ["credit_note.requested", "approval.requested",
                           "approval.first_approved"]
    assert "approval.approved" in actions


def test_late_fees_by_the_dunning_job_and_the_kpis(books, api) -> None:
    with books.db.transaction() as s:
        policy.set_value(s, key="late_fees", value="7:fee=25.00", actor="test")
    dispute = api.post("/invoices/INV-2026-000102/disputes", json={"reason": "tax"}).json()
    # when the dunning job runs twice (in the server's process; `o2c run dunning` is the same
    # job: tests/e2e/test_dunning.py)
    for _ in range(2):
        summary = run_job("dunning", books.deps, TODAY)
    # then one fee invoice refers to the overdue invoice, once
    invoice = api.get("/invoices/INV-2026-000101").json()
    [fee] = invoice["late_fees"]
    assert (fee["level"], fee["amount"], summary["late_fees"]) == (7, "25.00", 0)
    charged = api.get(f"/invoices/{fee['number']}").json()
    assert (charged["fee_for"], charged["fee_level"], charged["total"]) == (
        "INV-2026-000101", 7, "25.00")
    # and the KPIs count the dispute, the accuracy and the rest
    kpis = api.get("/reports/kpis").json()
    assert kpis["disputes"]["invoices_disputed"] == 1
    assert kpis["disputes"]["rate_pct"] == "50.00"
    assert kpis["deductions_outstanding"] == {"count": 0, "amount": "0.00",
                                              "amount_currency": "USD"}
    assert kpis["in_dispute"] == {"USD": "500.00"}
    assert dispute["status"] == "open"
    csv = api.get("/reports/kpis", params={"format": "csv"}).text
    assert "disputes.rate_pct,50.00" in csv
