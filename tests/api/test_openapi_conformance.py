"""Every answer the REST API really gives is the one `/openapi.json` describes: an order-to-cash
run through the real server (the `api` fixture), its refusals included, and each response held
to the document the server serves — the status code is declared for its operation, the content
type is the declared one (`application/problem+json` for every error), the declared headers are
there, and the body validates against the declared schema (schemathesis' conformance checks)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
import schemathesis
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.test_bounds import unreachable
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)
NOON = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOON, tick=True)
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
PREFIX = "/api/v1"


def conformance(schema, response: httpx.Response) -> list[str]:
    """What is wrong with `response` by the document, [] when nothing."""
    method, path = response.request.method, response.request.url.path
    operation = schema.find_operation_by_path(method, path)
    if operation is None:
        return [f"{method} {path}: no such operation in /openapi.json"]
    names = re.findall(r"{(\w+)}", operation.path)
    pattern = "^" + re.sub(r"\\{\w+\\}", "([^/]+)", re.escape(operation.path)) + "$"
    values = re.match(pattern, path).groups()
    case = operation.Case(path_parameters=dict(zip(names, values, strict=True)))
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as failed:
        return [f"{method} {path} {response.status_code}: {failure.title}: "
                f"{failure.message[:300]}" for failure in failed.exceptions]
    return []


@pytest.fixture
def answers(api) -> list[httpx.Response]:
    """Every response the `api` client receives, read whole."""
    kept: list[httpx.Response] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        kept.append(response)

    api.event_hooks = {"request": [], "response": [keep]}
    return kept


@pytest.fixture
def schema(server, api):
    return schemathesis.openapi.from_dict(api.get(f"{server.base_url}/openapi.json").json())


def created(response: httpx.Response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def order_to_cash(api) -> None:
    """Master data, orders (approved and pending), a partial shipment, an ERP invoice,
    payments (applied, re-sent, uncertain, dated in a closed month), lookups and reports."""
    created(api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"],
                                             "timezone": "America/New_York"}))
    created(api.put("/users/USALES01", json={"name": "Sam S", "roles": ["sales"]}), 200)
    created(api.put("/users/UCOLL001", json={"name": "Cole", "roles": ["collector"],
                                             "email": "cole@example.com"}))
    globex = {"external_id": "C-GLOBEX", "name": "Globex", "currency": "USD",
              "credit_limit": "50000.00", "payment_terms": "2/10 NET30",
              "credit_reviewed": True, "collector": "UCOLL001", "sales_rep": "USALES01",
              "tax_rate_pct": "8.25", "billing_email": "ap@globex.example"}
    created(api.post("/customers", json=globex))
    created(api.post("/customers", json={**globex, "credit_limit": "60000.00"}), 200)
    created(api.post("/customers", json={"external_id": "C-EU", "name": "Euro GmbH",
                                          "currency": "EUR", "credit_limit": "0",
                                          "payment_terms": "NET30"}))
    product = {"sku": "WID-1", "name": "Widget", "unit_price": "19.99", "currency": "USD",
               "on_hand": 100, "max_discount_pct": "15"}
    created(api.post("/products", json=product))
    created(api.post("/products", json={**product, "on_hand": 120}), 200)
    created(api.post("/products", json={"sku": "SVC-1", "name": "Support", "unit_price": "50",
                                        "currency": "USD", "on_hand": 0,
                                        "revenue_type": "service"}))
    created(api.post("/products", json={"sku": "CLOUD", "name": "Cloud seat",
                                        "unit_price": "100.00", "currency": "USD",
                                        "on_hand": 0, "revenue_type": "subscription",
                                        "ssp": "110.00"}))
    # orders: one approved at once, one over the discount policy (pending, with approvals)
    order = created(api.post("/orders", json={
        "customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
        "external_id": "CRM-1", "notes": "rush", "lines": [
            {"sku": "WID-1", "quantity": 10, "discount_pct": "5"}]}))
    assert order["status"] == "approved", order
    pending = created(api.post("/orders", json={
        "customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
        "lines": [{"sku": "WID-1", "quantity": 2, "discount_pct": "40"}]}))
    assert pending["status"] == "pending_approval" and pending["approvals"], pending
    shipment = created(api.post("/shipments", json={
        "order": order["number"], "carrier": "UPS", "tracking_number": "1Z1",
        "shipped_at": NOON.isoformat(), "lines": [{"sku": "WID-1", "quantity": 4}]}))
    created(api.post(f"/shipments/{shipment['id']}/events", json={
        "kind": "delivered", "occurred_at": NOON.isoformat(), "pod_signed_by": "J. Doe"}))
    created(api.get(f"/orders/{order['number']}"), 200)
    # subscriptions billed monthly for a year: one cancelled, one renewed
    term = {"sku": "CLOUD", "quantity": 1, "service_start": "2027-01-01",
            "service_end": "2027-12-31", "billing": "monthly"}
    subs = [created(api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                              "currency": "USD", "lines": [term]}))
            for _ in range(2)]
    created(api.post(f"/orders/{subs[0]['number']}/lines/1/cancellation",
                     json={"reason": "budget"}), 200)
    created(api.post(f"/orders/{subs[1]['number']}/lines/1/renewal", json={}))
    created(api.get(f"/orders/{pending['number']}"), 200)
    created(api.get(f"/invoices/{shipment['invoice']}"), 200)
    # an ERP invoice issued in September, and October closed
    created(api.post("/invoices", json={
        "number": "ERP-9", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": "2026-09-01", "due_date": "2026-10-01", "total": "300.00",
        "lines": [{"description": "Consulting", "quantity": 2, "unit_price": "100.00"},
                  {"description": "Travel", "amount": "100.00"}]}))
    created(api.post("/invoices", json={
        "number": "ERP-10", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": "2026-09-01", "due_date": "2026-10-01", "total": "120.00"}))
    created(api.post("/invoices", json={
        "number": "ERP-11", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": "2026-09-01", "due_date": "2026-10-01", "total": "120.00"}))
    # the back office: a dispute opened, read and withdrawn; an ERP's own credit note
    for number in ("ERP-12", "ERP-13"):
        created(api.post("/invoices", json={
            "number": number, "customer": "C-GLOBEX", "currency": "USD",
            "issue_date": "2026-09-02", "due_date": "2026-10-02", "total": "555.00"}))
    dispute = created(api.post("/invoices/ERP-12/disputes", json={
        "reason": "pricing", "amount": "20.00", "opened_by": "UCOLL001"}))
    created(api.get(f"/disputes/{dispute['id']}"), 200)
    created(api.post(f"/disputes/{dispute['id']}/resolve", json={
        "outcome": "withdrawn", "by": "UCOLL001"}), 200)
    note = created(api.post("/credit-notes", json={
        "invoice": "ERP-13", "reason": "goodwill", "amount": "10.00", "source": "erp",
        "external_id": "ERP-CN-1"}))
    created(api.get(f"/credit-notes/{note['number']}"), 200)
    again = created(api.post("/invoices/ERP-12/disputes", json={"reason": "quantity"}))
    assert api.post(f"/disputes/{again['id']}/resolve", json={
        "outcome": "rejected", "by": "UNOBODY1", "note": "no"}).status_code == 403
    # an outbound webhook subscription: made (its secret shown once), listed, its log, removed
    hook = created(api.post("/webhooks", json={"url": "https://erp.example/hooks",
                                               "events": ["invoice.issued"]}))
    assert hook["secret"].startswith("whsec_"), hook
    assert "secret" not in created(api.get("/webhooks"), 200)["webhooks"][0]
    created(api.get(f"/webhooks/{hook['id']}/deliveries"), 200)
    rotated = created(api.post(f"/webhooks/{hook['id']}/rotate-secret"))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
    created(api.post("/periods/2026-10/close"))
    created(api.post("/periods/2026-09/close"), 200)
    created(api.get("/periods"), 200)
    # payments: applied (valued in the closed October: booked in November), re-sent,
    # uncertain (two invoices fit), unknown
    paid = created(api.post("/payments", json={
        "amount": "300.00", "currency": "USD", "received_at": "2026-10-15T10:00:00+02:00",
        "reference": "ERP-9", "customer": "C-GLOBEX", "external_id": "BANK-1",
        "method": "wire"}))
    assert paid["allocations"] and paid["allocations"][0]["booked_in_open_period"], paid
    created(api.post("/payments", json={
        "amount": "300.00", "currency": "USD", "received_at": "2026-10-15T10:00:00+02:00",
        "reference": "ERP-9", "customer": "C-GLOBEX", "external_id": "BANK-1"}), 200)
    uncertain = created(api.post("/payments", json={
        "amount": "120.00", "currency": "USD", "received_at": NOON.isoformat(),
        "payer_name": "GLOBEX", "external_id": "BANK-2"}))
    assert uncertain["suggestions"], uncertain
    created(api.post("/payments", json={
        "amount": "7.00", "currency": "USD", "received_at": NOON.isoformat(),
        "value_date": (TODAY - timedelta(days=1)).isoformat()}))
    created(api.get(f"/payments/{paid['id']}"), 200)
    created(api.get(f"/payments/{uncertain['id']}"), 200)
    # customer credit: an ERP's note on the paid ERP-9, applied to ERP-10
    paid_note = created(api.post("/credit-notes", json={
        "invoice": "ERP-9", "reason": "rebate", "amount": "20.00", "source": "erp"}))
    assert paid_note["customer_credit"] == "20.00", paid_note
    created(api.post(f"/credit-notes/{paid_note['number']}/applications", json={
        "invoice": "ERP-10", "amount": "20.00", "by": "UCOLL001"},
        headers={"Idempotency-Key": "credit-1"}))
    # lookups and reports, today and as the books knew them
    created(api.get("/customers/C-GLOBEX"), 200)
    created(api.get("/customers/C-GLOBEX", params={"as_of": "2026-10-31",
                                                   "known_at": "2026-11-01"}), 200)
    created(api.get("/reports/revenue"), 200)
    revenue_csv = api.get("/reports/revenue", params={"format": "csv"})
    assert revenue_csv.status_code == 200 and revenue_csv.text.count("\n") > 1, revenue_csv.text
    for report in ("aging", "kpis"):
        created(api.get(f"/reports/{report}"), 200)
        created(api.get(f"/reports/{report}", params={
            "as_of": "2026-10-31", "known_at": NOON.isoformat()}), 200)
        csv = api.get(f"/reports/{report}", params={"format": "csv"})
        assert csv.status_code == 200 and csv.text.count("\n") > 1, csv.text


def refusals(server, api) -> None:
    """One of each problem the document declares."""
    assert api.get("/periods", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.post("/orders", json={}, headers={"Authorization": ""}).status_code == 401
    for path in ("/orders/SO-NOPE", "/invoices/NOPE", "/payments/999999",
                 "/customers/C-NOPE"):
        assert api.get(path).status_code == 404
    assert api.post("/shipments", json={"order": "SO-NOPE", "carrier": "UPS",
                                        "tracking_number": "1", "shipped_at":
                                        NOON.isoformat()}).status_code == 404
    assert api.post("/shipments/999999/events", json={
        "kind": "in_transit", "occurred_at": NOON.isoformat()}).status_code == 404
    assert api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                     "currency": "USD", "lines": [
                                         {"sku": "WID-1", "quantity": 0}]}).status_code == 422
    assert api.post("/customers", json={"name": 1}).status_code == 422
    assert api.put("/users/nobody", json={"name": "x", "roles": []}).status_code == 422
    assert api.get("/payments/0").status_code == 422
    assert api.get("/reports/aging", params={"known_at": "soon"}).status_code == 422
    assert api.get("/reports/kpis", params={"format": "xml"}).status_code == 422
    typo = api.get("/reports/aging", params={"asof": "2026-10-31"})  # would mean today
    assert typo.status_code == 422 and typo.json()["errors"] == [
        {"field": "asof", "detail": "unknown query parameter"}]
    assert api.post("/periods/2026-13/close").status_code == 422
    assert api.post("/payments", content=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post("/invoices", content=b" " * (1024 * 1024 + 1),
                    headers={"Content-Type": "application/json"}).status_code == 413
    # 409: an invoice again, a payment's id claimed by other money, a key with another body
    assert api.post("/invoices", json={
        "number": "ERP-9", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": "2026-09-01", "due_date": "2026-10-01",
        "total": "300.00"}).status_code == 409
    assert api.post("/payments", json={
        "amount": "301.00", "currency": "USD", "received_at": "2026-10-15T10:00:00+02:00",
        "external_id": "BANK-1"}).status_code == 409
    key = {"Idempotency-Key": "conformance-1"}
    product = {"sku": "KEYED", "name": "Keyed", "unit_price": "1.00", "currency": "USD",
               "on_hand": 1}
    assert api.post("/products", json=product, headers=key).status_code == 201
    replayed = api.post("/products", json=product, headers=key)
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert api.post("/products", json={**product, "on_hand": 2},
                    headers=key).status_code == 409
    # 503 while the database is unreachable, for a read and a write
    working = server.deps.db
    server.deps.db = unreachable(server)
    try:
        assert api.get("/orders/SO-1").status_code == 503
        assert api.post("/payments", json={"amount": "1.00", "currency": "USD",
                                           "received_at": NOON.isoformat()}).status_code == 503
    finally:
        server.deps.db.dispose()
        server.deps.db = working


def test_every_real_answer_is_the_one_the_openapi_document_describes(
        server, api, answers, schema) -> None:
    # when an order-to-cash run and its refusals go through the API
    order_to_cash(api)
    refusals(server, api)
    # then every answer conforms to the document
    mine = [r for r in answers if r.request.url.path.startswith(PREFIX)]
    assert [problem for r in mine for problem in conformance(schema, r)] == []
    # and the run saw every operation succeed, and every declared kind of problem
    succeeded = {(o.method.upper(), o.path) for r in mine if r.status_code < 300
                 for o in [schema.find_operation_by_path(r.request.method, r.request.url.path)]}
    operations = {(o.method.upper(), o.path)
                  for o in (result.ok() for result in schema.get_all_operations())}
    assert operations - succeeded == set()
    assert {r.status_code for r in mine} == {200, 201, 204, 400, 401, 403, 404, 409, 413, 422, 503}
    errors = [r for r in mine if r.status_code >= 400]
    assert all(r.headers["content-type"] == "application/problem+json" for r in errors)


def test_a_wrong_answer_is_caught(schema) -> None:
    """The check above can fail: an undeclared status, a body off its schema and a problem
    sent as plain JSON are each reported."""
    def answer(status: int, body: object, path: str = "/periods",
               content_type: str = "application/json") -> httpx.Response:
        response = httpx.Response(status, json=body, headers={"Content-Type": content_type},
                                  request=httpx.Request("GET", f"http://o2c.test{PREFIX}{path}"))
        response.read()
        response.elapsed = timedelta(0)
        return response

    assert conformance(schema, answer(200, {"closed_through": None, "closes": []})) == []
    assert conformance(schema, answer(418, {}))
    assert conformance(schema, answer(200, {"closed_through": 5, "closes": []}))
    assert conformance(schema, answer(404, {"title": "Not found", "status": 404},
                                      path="/orders/SO-1"))
    assert conformance(schema, answer(404, {"title": "Not found", "status": 404},
                                      path="/orders/SO-1",
                                      content_type="application/problem+json")) == []
    assert conformance(schema, answer(404, {"status": 404}, path="/orders/SO-1",
                                      content_type="application/problem+json"))
