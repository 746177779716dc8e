"""The REST API through the real server: auth, idempotency, problem details, nothing stored on
refusal, and the records with their balances."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlmodel import func, select

from api import routes
from models import Customer, IdempotencyKey, Invoice, Order, Payment, Product
from tests.support import factories as f
from workflows.cash_application import record_payment, write_off
from workflows.inputs import PaymentIn
from workflows.kpis import flat

CUSTOMER = {"external_id": "C-GLOBEX", "name": "Globex Corporation", "currency": "USD",
            "credit_limit": "50000.00", "payment_terms": "NET30", "credit_reviewed": True,
            "billing_email": "ap@globex.example"}


def count(db, model) -> int:
    with db.read_session() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def seed_company(api) -> None:
    assert api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"],
                                            "timezone": "America/New_York"}).status_code == 201
    assert api.post("/customers", json=CUSTOMER).status_code == 201
    assert api.post("/products", json={"sku": "WID-1", "name": "Widget", "unit_price": "19.99",
                                       "currency": "USD", "on_hand": 100}).status_code == 201


@pytest.fixture
def company(server, api):
    seed_company(api)


@pytest.fixture(scope="module")
def shared_company(shared_api) -> None:
    seed_company(shared_api)


@pytest.fixture
def reading(shared_company, reading_server, reading_api):
    """(server, api): `company` on the module's shared server, for a test that only reads or
    is refused (it fails if it leaves any row of any table otherwise, see `reading_server`)."""
    return reading_server, reading_api


def order_body(**overrides) -> dict:
    body = {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
            "lines": [{"sku": "WID-1", "quantity": 3, "discount_pct": "10"}]}
    body.update(overrides)
    return body


def test_requests_without_the_bearer_token_are_refused(server) -> None:
    with httpx.Client(base_url=f"{server.base_url}/api/v1") as client:
        # when
        missing = client.post("/customers", json=CUSTOMER)
        wrong = client.post("/customers", json=CUSTOMER,
                            headers={"Authorization": "Bearer nope"})
    # then
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"] == "Bearer"
    assert count(server.db, Customer) == 0


def test_order_roundtrip_with_balances_and_history(company, api) -> None:
    # when
    created = api.post("/orders", json=order_body())
    # then
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "approved"
    assert body["total"] == "53.97"  # 3 x 19.99 = 59.97 less 10 % = 53.973 -> 53.97
    fetched = api.get(f"/orders/{body['number']}").json()
    assert [h["to"] for h in fetched["history"] if h["action"] == "order.transition"] == [
        "draft", "approved"]
    # when it ships, it is invoiced and the customer owes it
    shipped = api.post("/shipments", json={"order": body["number"], "carrier": "UPS",
                                           "tracking_number": "1Z999",
                                           "shipped_at": "2026-11-20T10:00:00Z"})
    assert shipped.status_code == 201, shipped.text
    assert shipped.json()["order_status"] == "invoiced"
    invoice = api.get(f"/invoices/{shipped.json()['invoice']}").json()
    assert invoice["total"] == "53.97" and invoice["due_date"] == "2026-12-20"
    customer = api.get("/customers/C-GLOBEX").json()
    assert customer["balances"]["open"] == "53.97"
    # and a payment naming the invoice settles it
    paid = api.post("/payments", json={"amount": "53.97", "currency": "USD",
                                       "received_at": "2026-11-22T09:00:00Z",
                                       "reference": f"Payment for {invoice['number']}"})
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "applied"
    assert api.get(f"/orders/{body['number']}").json()["status"] == "paid"


def test_same_idempotency_key_and_body_returns_the_first_answer(company, api, server) -> None:
    # when
    first = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "k-1"})
    again = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "k-1"})
    # then
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(server.db, Order) == 1


def test_idempotency_key_reused_with_another_body_is_409(company, api, server) -> None:
    api.post("/orders", json=order_body(), headers={"Idempotency-Key": "k-2"})
    # when
    other = api.post("/orders", json=order_body(lines=[{"sku": "WID-1", "quantity": 9}]),
                     headers={"Idempotency-Key": "k-2"})
    # then
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert other.json()["instance"] == "/api/v1/orders"  # like every other problem
    assert count(server.db, Order) == 1


def test_two_idempotency_keys_in_one_request_are_refused(company, api, server) -> None:
    # when a request carries the header twice (a proxy adding its own, a client bug)
    both = api.post("/orders", json=order_body(),
                    headers=[("Idempotency-Key", "k-a"), ("Idempotency-Key", "k-b")])
    # then it is refused and stores nothing, not an order kept under only one of them (its
    # retry under the other key would have been a second order)
    assert both.status_code == 422
    assert both.json()["errors"] == [{"field": "Idempotency-Key",
                                      "detail": "send one Idempotency-Key header, not 2"}]
    assert count(server.db, Order) == count(server.db, IdempotencyKey) == 0
    # and each key alone still works
    assert api.post("/orders", json=order_body(),
                    headers={"Idempotency-Key": "k-b"}).status_code == 201


@pytest.mark.parametrize("key", ["café".encode(), "€-1".encode(), b"k\x7f", b"tab\tkey"])
def test_an_idempotency_key_outside_printable_ascii_is_a_422_saying_so(reading, key) -> None:
    server, api = reading
    # when a key holds bytes beyond printable ASCII (HTTP headers arrive as latin-1: "café"
    # in UTF-8 was stored as "cafÃ©" while "€-1" was refused, both as "not printable")
    response = api.post("/orders", json=order_body(), headers=[(b"Idempotency-Key", key)])
    # then every one is refused alike, naming the header, and nothing is stored
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{
        "field": "Idempotency-Key",
        "detail": "must be 1-255 printable ASCII characters (e.g. a UUID)"}]
    assert count(server.db, Order) == count(server.db, IdempotencyKey) == 0


def test_idempotency_keys_are_case_sensitive_and_scoped_to_their_route(company, api,
                                                                        server) -> None:
    # keys are opaque strings (as Stripe's and the IETF draft's): "k-case" and "K-CASE" are
    # two keys, so two requests; each replays only under its own spelling
    lower = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "k-case"})
    upper = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "K-CASE"})
    again = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "K-CASE"})
    assert (lower.status_code, upper.status_code, again.status_code) == (201, 201, 201)
    assert lower.json()["number"] != upper.json()["number"] == again.json()["number"]
    assert again.headers["idempotent-replayed"] == "true"
    assert count(server.db, Order) == 2
    # and a key belongs to its route: the same key on another route is another request
    payment = api.post("/payments", json={"amount": "10.00", "currency": "USD",
                                          "received_at": "2026-11-20T10:00:00Z"},
                       headers={"Idempotency-Key": "k-case"})
    assert payment.status_code == 201 and "idempotent-replayed" not in payment.headers
    assert count(server.db, IdempotencyKey) == 3


def test_a_field_sent_as_null_is_another_body_than_the_field_left_out(server, api) -> None:
    # given a customer with 20 % tax, updated under a key with the rate left out (kept)
    assert api.post("/customers", json={**CUSTOMER, "tax_rate_pct": "20"}).status_code == 201
    kept = api.post("/customers", json=CUSTOMER, headers={"Idempotency-Key": "k-3"})
    assert kept.status_code == 200
    # when the same key comes with the rate sent as null (reset it)
    reset = api.post("/customers", json={**CUSTOMER, "tax_rate_pct": None},
                     headers={"Idempotency-Key": "k-3"})
    # then it is another request, not a replay of the first answer
    assert reset.status_code == 409, reset.text
    assert "idempotent-replayed" not in reset.headers
    with server.db.read_session() as s:
        assert s.exec(select(Customer.tax_rate_bp)).one() == 2000
    # and each, sent again under its own key, replays its own first answer
    assert api.post("/customers", json=CUSTOMER, headers={"Idempotency-Key": "k-3"}
                    ).headers["idempotent-replayed"] == "true"
    assert api.post("/customers", json={**CUSTOMER, "tax_rate_pct": None},
                    headers={"Idempotency-Key": "k-4"}).status_code == 200
    assert api.post("/customers", json={**CUSTOMER, "tax_rate_pct": None},
                    headers={"Idempotency-Key": "k-4"}).headers["idempotent-replayed"] == "true"
    with server.db.read_session() as s:
        assert s.exec(select(Customer.tax_rate_bp)).one() == 0


def test_a_body_without_fields_sent_as_their_default_hashes_as_before() -> None:
    # (a request retried across the upgrade that added the markers still replays)
    from api.idempotency import SENT_AS_DEFAULT, body_hash, request_of
    from workflows.inputs import CustomerIn, OrderIn

    plain = CustomerIn.model_validate(CUSTOMER)
    assert request_of(plain) == plain.model_dump(mode="json")
    # (amounts hash by value since; the hash as sent, accepted too, is the one of then)
    assert body_hash(request_of(plain), as_sent=True) == body_hash(
        plain.model_dump(mode="json"), as_sent=True)
    nulled = CustomerIn.model_validate({**CUSTOMER, "tax_rate_pct": None, "collector": None})
    assert request_of(nulled)[SENT_AS_DEFAULT] == ["collector", "tax_rate_pct"]
    order = OrderIn.model_validate(order_body(lines=[{"sku": "WID-1", "quantity": 2,
                                                      "discount_pct": None}]))
    assert request_of(order)[SENT_AS_DEFAULT] == ["lines[0].discount_pct"]


def test_concurrent_duplicates_create_one_order(company, server) -> None:
    # given
    results: list[httpx.Response] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=30,
                          headers={"Authorization": "Bearer test-api-token-s3cret",
                                   "Idempotency-Key": "same-key"}) as client:
            barrier.wait()
            results.append(client.post("/orders", json=order_body()))

    # when
    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["number"] for r in results}) == 1
    assert count(server.db, Order) == 1
    assert count(server.db, IdempotencyKey) == 1


@pytest.mark.parametrize("body, field", [
    (order_body(customer="C-NOPE"), "customer"),
    (order_body(currency="EUR"), "currency"),
    (order_body(lines=[{"sku": "WID-1", "quantity": -2}]), "lines[0].quantity"),
    (order_body(lines=[{"sku": "WID-1", "quantity": 1.5}]), "lines[0].quantity"),
    (order_body(lines=[{"sku": "NOPE", "quantity": 1}]), "lines[0].sku"),
    (order_body(lines=[{"sku": "WID-1", "quantity": 1, "unit_price": 10.5}]),
     "lines[0].unit_price"),
    (order_body(lines=[]), "lines"),
    (order_body(sales_rep="bob"), "sales_rep"),
    (order_body(colour="blue"), "colour"),
    ({"customer": "C-GLOBEX"}, "sales_rep"),
])
def test_bad_order_names_the_field_and_stores_nothing(reading, body, field) -> None:
    server, api = reading
    # when
    response = api.post("/orders", json=body, headers={"Idempotency-Key": f"bad-{field}"})
    # then
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert count(server.db, Order) == 0
    assert count(server.db, IdempotencyKey) == 0  # a refused request stores nothing


def test_malformed_json_is_400(reading) -> None:
    server, api = reading
    response = api.post("/orders", content=b'{"customer": ', headers={
        "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["title"] == "Malformed JSON"
    assert count(server.db, Order) == 0


def test_float_amounts_are_refused(reading) -> None:
    server, api = reading
    response = api.post("/payments", json={"amount": 10.10, "currency": "USD",
                                           "received_at": "2026-11-22T09:00:00Z"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "amount"
    assert count(server.db, Payment) == 0


def test_naive_timestamps_and_too_many_decimals_are_refused(reading) -> None:
    _, api = reading
    naive = api.post("/payments", json={"amount": "10.00", "currency": "USD",
                                        "received_at": "2026-11-22T09:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "received_at"
    jpy = api.post("/payments", json={"amount": "10.50", "currency": "JPY",
                                      "received_at": "2026-11-22T09:00:00Z"})
    assert jpy.status_code == 422 and jpy.json()["errors"][0]["field"] == "amount"


def test_a_resent_payment_is_answered_with_the_first(company, api, server) -> None:
    body = {"amount": "75.00", "currency": "USD", "received_at": "2026-11-22T09:00:00Z",
            "payer_name": "GLOBEX CORP", "external_id": "BANK-2026-11-22:7"}
    first = api.post("/payments", json=body)
    # when the bank (or the ERP) sends it again, its time written in another offset
    again = api.post("/payments", json={**body, "received_at": "2026-11-22T10:00:00+01:00"})
    # then
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert count(server.db, Payment) == 1


def test_the_same_external_id_with_other_money_is_409_naming_the_fields(
        company, api, server) -> None:
    body = {"amount": "75.00", "currency": "USD", "received_at": "2026-11-22T09:00:00Z",
            "external_id": "BANK-2026-11-22:7"}
    first = api.post("/payments", json=body)
    assert first.status_code == 201, first.text
    # when
    amount = api.post("/payments", json={**body, "amount": "57.00"})
    moved = api.post("/payments", json={**body, "currency": "EUR",
                                         "received_at": "2026-11-23T09:00:00Z"})
    # then
    assert (amount.status_code, moved.status_code) == (409, 409)
    assert amount.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in amount.json()["errors"]] == ["amount"]
    assert "75.00" in amount.json()["errors"][0]["detail"]
    assert "BANK-2026-11-22:7" in amount.json()["detail"]
    assert [e["field"] for e in moved.json()["errors"]] == ["currency", "received_at"]
    assert count(server.db, Payment) == 1
    assert api.get(f"/payments/{first.json()['id']}").json()["amount"] == "75.00"


def test_customer_post_is_an_upsert_and_erp_invoice_is_immutable(company, api, server) -> None:
    updated = api.post("/customers", json={**CUSTOMER, "credit_limit": "60000.00"})
    assert updated.status_code == 200 and updated.json()["credit_limit"] == "60000.00"
    invoice = {"number": "ERP-77", "customer": "C-GLOBEX", "currency": "USD",
               "issue_date": "2026-10-01", "due_date": "2026-10-31", "total": "120.00"}
    assert api.post("/invoices", json=invoice).status_code == 201
    again = api.post("/invoices", json={**invoice, "total": "99.00"})
    assert again.status_code == 409
    assert api.get("/invoices/ERP-77").json()["total"] == "120.00"


def test_reports_aging_and_kpis(company, api, server) -> None:
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        f.invoice(s, "INV-A", total="100.00", due=today - timedelta(days=40))
        f.invoice(s, "INV-B", total="50.00", due=today + timedelta(days=5))
    aging = api.get("/reports/aging").json()
    assert aging["currencies"]["USD"]["buckets"]["31-60"] == "100.00"
    assert aging["currencies"]["USD"]["total"] == "150.00"
    csv = api.get("/reports/aging?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1].startswith("USD,50.00,0.00,100.00")
    kpis = api.get("/reports/kpis").json()
    assert kpis["currency"] == "USD" and kpis["ar"] == "150.00"
    assert api.get("/reports/kpis?format=csv").text.startswith("kpi,value")


def test_the_aging_csv_says_what_the_json_says_per_currency_never_summed(company, api,
                                                                          server) -> None:
    # given open invoices in dollars and in yen, part of one in dispute
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        f.customer(s, "C-TOKYO", "Tokyo KK", currency="JPY", credit_limit="9000000")
        f.invoice(s, "INV-U1", total="1234.56", due=today - timedelta(days=40))
        f.invoice(s, "INV-U2", total="0.01", due=today + timedelta(days=3))
        f.invoice(s, "INV-Y1", "C-TOKYO", total="500000", currency="JPY",
                  due=today - timedelta(days=95))
    assert api.post("/invoices/INV-U1/disputes", json={"reason": "pricing", "amount": "34.56"}
                    ).status_code == 201
    # when
    data = api.get("/reports/aging").json()["currencies"]
    rows = list(csv.reader(io.StringIO(api.get("/reports/aging?format=csv").text)))
    # then one row per currency, each cell the JSON's string, to the cent (or yen), each
    # saying the day it is of (a saved file still says when; no known_at asked: empty)
    day = today.isoformat()
    assert rows == [
        ["currency", "current", "1-30", "31-60", "61-90", "90+", "total", "in_dispute",
         "as_of", "known_at"],
        ["JPY", "0", "0", "0", "0", "500000", "500000", "0", day, ""],
        ["USD", "0.01", "0.00", "1234.56", "0.00", "0.00", "1234.57", "34.56", day, ""]]
    for cur, *cells, _, _ in rows[1:]:
        assert cells == [*data[cur]["buckets"].values(), data[cur]["total"],
                         str(sum(Decimal(v) for v in data[cur]["in_dispute"].values()))]
    # and a past day as known then says both
    past = list(csv.reader(io.StringIO(api.get(
        "/reports/aging?format=csv&as_of=2026-01-31&known_at=2026-02-01T09:00:00Z").text)))
    assert [row[-2:] for row in past] == [["as_of", "known_at"]] + [
        ["2026-01-31", "2026-02-01T09:00:00+00:00"]] * (len(past) - 1)


def test_the_kpi_csv_says_what_the_json_says_and_leaves_a_missing_figure_empty(
        company, api, server) -> None:
    # given 100.00 USD open, no payment received (no match rate), and a day before any invoice
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        f.invoice(s, "INV-A", total="100.00", due=today - timedelta(days=40))
    for as_of in (today, today - timedelta(days=400)):
        # when
        data = api.get("/reports/kpis", params={"as_of": str(as_of)}).json()
        text = api.get("/reports/kpis", params={"as_of": str(as_of), "format": "csv"}).text
        rows = dict(csv.reader(io.StringIO(text)))
        # then every figure is the JSON's to the cent, and a figure the JSON has as null is
        # an empty cell, not Python's "None"
        assert "None" not in rows.values()
        assert rows == {"kpi": "value", **{k: "" if v is None else str(v)
                                          for k, v in flat(data).items()
                                          if k != "known_at"}}
    assert rows["currency"] == rows["ar"] == rows["dso"] == ""
    assert (data["currency"], data["ar"]) == (None, None)


def test_an_invoice_reconciles_from_its_answer_with_its_write_offs(company, api,
                                                                   server) -> None:
    # given 100.00 invoiced, 60.00 paid on it, the 40.00 left written off as bad debt
    with server.db.transaction() as s:
        invoice = f.invoice(s, "INV-W", total="100.00")
        record_payment(s, PaymentIn(amount="60.00", currency="USD",
                                    received_at=server.deps.clock.now()),
                       actor="test", apply_to=["INV-W"])
    with server.db.transaction() as s:
        write_off(s, invoice=s.get(Invoice, invoice.id), amount_minor=4000, reason="bad_debt",
                  actor="UFIN01", now=server.deps.clock.now())
    # when
    body = api.get("/invoices/INV-W").json()
    # then the answer shows where the balance went: total - allocations - credit notes -
    # write-offs = balance
    assert (body["total"], body["balance"]) == ("100.00", "0.00")
    assert [a["amount"] for a in body["allocations"]] == ["60.00"]
    assert body["write_offs"] == [{"amount": "40.00", "reason": "bad_debt", "payment": None,
                                   "value_date": str(server.deps.clock.business_today())}]
    settled = (sum(Decimal(a["amount"]) for a in body["allocations"])
               + sum(Decimal(n["applied_to_invoice"]) for n in body["credit_notes"])
               + sum(Decimal(w["amount"]) for w in body["write_offs"]))
    assert Decimal(body["total"]) - settled == Decimal(body["balance"])


def test_a_customer_says_how_many_invoices_are_open_beyond_those_it_lists(
        company, api, server, monkeypatch) -> None:
    # given three open invoices and an answer that lists two
    monkeypatch.setattr(routes, "OPEN_INVOICES_LISTED", 2, raising=False)
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        for n, due in enumerate((5, 10, 15)):
            f.invoice(s, f"INV-O{n}", total="10.00", due=today + timedelta(days=due))
    # when
    body = api.get("/customers/C-GLOBEX").json()
    # then the list is cut, and the answer says so: a reconciliation of the open balance
    # (30.00) against the listed invoices (20.00) knows one is missing
    assert [i["number"] for i in body["open_invoices"]] == ["INV-O0", "INV-O1"]
    assert (body["open_invoice_count"], body["balances"]["open"]) == (3, "30.00")


def test_unknown_records_are_404_problems(reading) -> None:
    _, api = reading
    for path in ("/orders/SO-1", "/invoices/NOPE", "/payments/999"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["status"] == 404


def test_put_user_validates_roles_and_timezone(reading) -> None:
    _, api = reading
    bad_role = api.put("/users/U123ABC", json={"name": "X", "roles": ["king"]})
    assert bad_role.status_code == 422 and bad_role.json()["errors"][0]["field"] == "roles"
    bad_tz = api.put("/users/U123ABC", json={"name": "X", "roles": [], "timezone": "Mars/Base"})
    assert bad_tz.status_code == 422 and bad_tz.json()["errors"][0]["field"] == "timezone"


def test_openapi_and_health(reading) -> None:
    server, _ = reading
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        spec = client.get("/openapi.json").json()
        assert "/api/v1/orders" in spec["paths"]
        assert "/slack/events" not in spec["paths"]


def test_erp_invoice_lines_by_amount_and_its_own_terms(company, api) -> None:
    # given an ERP invoice whose lines carry amounts only, and no payment terms
    body = {"number": "ERP-900", "customer": "C-GLOBEX", "currency": "USD",
            "issue_date": "2026-10-01", "due_date": "2026-10-15", "total": "150.00",
            "lines": [{"description": "Consulting", "amount": "100.00"},
                      {"description": "Travel", "amount": "50.00"}]}
    # when
    created = api.post("/invoices", json=body)
    # then: stored, with terms from its own dates (not the customer's)
    assert created.status_code == 201, created.text
    assert created.json()["payment_terms"] == "NET14"
    with_terms = api.post("/invoices", json={**body, "number": "ERP-901", "lines": None,
                                             "payment_terms": "2/10 NET30"})
    assert with_terms.json()["payment_terms"] == "2/10 NET30"
    bad = api.post("/invoices", json={**body, "number": "ERP-902",
                                      "lines": [{"description": "Nothing"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "lines[0]"


def test_an_erp_invoice_for_a_cancelled_order_is_a_422_naming_its_state(
        company, api, server) -> None:
    # given an order that was cancelled
    from workflows import orders

    placed = api.post("/orders", json=order_body())
    assert placed.status_code == 201, placed.text
    number = placed.json()["number"]
    with server.db.transaction() as s:
        orders.cancel_order(s, orders.get_order(s, number), actor="USALES01",
                            reason="changed mind", now=server.deps.clock.now())
    # when the ERP sends an invoice for it
    refused = api.post("/invoices", json={
        "number": "ERP-950", "customer": "C-GLOBEX", "currency": "USD", "order": number,
        "issue_date": "2026-10-01", "due_date": "2026-10-31", "total": "53.97"})
    # then it is refused, naming the order's state, and nothing is stored
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"field": "order", "detail": f"order {number} is cancelled; an invoice cannot bill it"}]
    assert api.get("/invoices/ERP-950").status_code == 404


def test_customer_resend_keeps_what_it_leaves_out_and_audits_changes(company, api, server) -> None:
    from models import AuditEvent

    # given a reviewed customer with a billing contact (see CUSTOMER)
    # when the ERP re-sends only the required fields, with a higher limit
    resent = api.post("/customers", json={"external_id": "C-GLOBEX", "name": "Globex Corporation",
                                           "currency": "USD", "credit_limit": "75000.00",
                                           "payment_terms": "NET30"})
    # then what it left out is kept, and the change is audited with old and new values
    assert resent.status_code == 200
    body = resent.json()
    assert body["credit_reviewed"] is True and body["billing_email"] == "ap@globex.example"
    assert body["credit_limit"] == "75000.00"
    with server.db.read_session() as s:
        update = s.exec(select(AuditEvent).where(AuditEvent.action == "customer.updated")).one()
    assert update.data["changes"] == {"credit_limit_minor": [5000000, 7500000]}
    # when a field is sent as null, it is cleared; an identical re-send changes nothing
    cleared = api.post("/customers", json={**CUSTOMER, "billing_email": None})
    assert cleared.json()["billing_email"] is None
    again = api.post("/customers", json={**CUSTOMER, "billing_email": None})
    assert again.status_code == 200
    with server.db.read_session() as s:
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.updated")).all()) == 2


def test_a_changed_address_is_named_in_the_audit_without_its_text(company, api, server) -> None:
    from models import AuditEvent

    # when the ERP moves the customer's billing address (where invoices are sent)
    moved = api.post("/customers", json={**CUSTOMER, "billing_address": "9 Elm St, Shelbyville"})
    assert moved.status_code == 200, moved.text
    # then the audit says which field changed (its long text is not copied there)
    with server.db.read_session() as s:
        update = s.exec(select(AuditEvent).where(AuditEvent.action == "customer.updated")).one()
    assert update.data["changes"] == {"billing_address": "changed"}


def test_product_resend_keeps_what_it_leaves_out_and_audits_changes(company, api,
                                                                    server) -> None:
    from models import AuditEvent, Product

    # given a subscription product with its own discount cap, cost, SSP and term
    full = {"sku": "SUB-1", "name": "Support plan", "unit_price": "1200.00",
            "currency": "USD", "on_hand": 0, "max_discount_pct": "5", "revenue_type":
            "subscription", "cost": "300.00", "service_months": 12, "ssp": "1000.00"}
    assert api.post("/products", json=full).status_code == 201
    # when the ERP's stock sync re-sends only the required fields, with a new price
    resent = api.post("/products", json={"sku": "SUB-1", "name": "Support plan",
                                          "unit_price": "1300.00", "currency": "USD",
                                          "on_hand": 0})
    # then what it left out is kept (still a subscription, recognised ratably), and the
    # price change is audited with old and new values
    assert resent.status_code == 200, resent.text
    body = resent.json()
    assert (body["revenue_type"], body["max_discount_pct"], body["ssp"]) == (
        "subscription", "5.00", "1000.00")
    with server.db.read_session() as s:
        product = s.exec(select(Product).where(Product.sku == "SUB-1")).one()
        assert (product.cost_minor, product.service_months, product.unit_price_minor) == (
            30000, 12, 130000)
        update = s.exec(select(AuditEvent).where(AuditEvent.action == "product.updated")).one()
    assert update.data["changes"] == {"unit_price_minor": [120000, 130000]}
    # when a field is sent as null, it is cleared; an identical re-send changes nothing
    cleared = api.post("/products", json={**full, "unit_price": "1300.00",
                                          "max_discount_pct": None})
    assert cleared.json()["max_discount_pct"] is None
    again = api.post("/products", json={**full, "unit_price": "1300.00",
                                        "max_discount_pct": None})
    assert again.status_code == 200
    with server.db.read_session() as s:
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "product.updated")).all()) == 2
    # when the currency changes and the SSP kept would be read in the new one, it is refused
    moved = api.post("/products", json={"sku": "SUB-1", "name": "Support plan",
                                         "unit_price": "180000", "currency": "JPY",
                                         "on_hand": 0, "cost": "45000"})
    assert moved.status_code == 422, moved.text
    assert moved.json()["errors"] == [{"field": "ssp", "detail": "is stored in USD; send it "
                                       "in JPY (or null) with the new currency"}]
    assert api.post("/products", json={"sku": "SUB-1", "name": "Support plan",
                                        "unit_price": "180000", "currency": "JPY",
                                        "on_hand": 0, "cost": "45000", "ssp": "150000"}
                    ).json()["ssp"] == "150000"


def test_put_user_racing_another_put_of_the_same_new_user_is_not_a_500(server, api) -> None:
    from models import User, UserRole

    # given another request creating the same new user, not yet committed
    answers: list[httpx.Response] = []
    with server.db.session() as other:
        other.add(User(slack_user_id="UNEW0001", name="Nina"))
        other.flush()
        other.add(UserRole(user_id="UNEW0001", role="sales", granted_by="api"))
        other.flush()
        # when the same PUT arrives meanwhile (on PostgreSQL it waits on the new row's key;
        # on SQLite on the write lock)
        put = threading.Thread(target=lambda: answers.append(api.put(
            "/users/UNEW0001", json={"name": "Nina", "roles": ["sales", "collector"]})))
        put.start()
        put.join(timeout=1.0)
        other.commit()
    put.join()
    # then it answers as a PUT of an existing user would, and holds exactly what it says
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["roles"] == ["collector", "sales"]
    with server.db.read_session() as s:
        assert set(s.exec(select(UserRole.role).where(UserRole.user_id == "UNEW0001"))) == {
            "sales", "collector"}


def test_idempotency_keys_are_forgotten_after_the_retention_not_before(company, api,
                                                                      server) -> None:
    from bot import jobs
    from models.base import utcnow

    # given three keys: one past the retention (30 days by default), one just within it, one new
    retention = timedelta(hours=server.deps.settings.o2c_idempotency_retention_hours)
    assert retention == timedelta(days=30)
    for key in ("k-old", "k-within", "k-new"):
        assert api.post("/orders", json=order_body(),
                        headers={"Idempotency-Key": key}).status_code == 201
    with server.db.transaction() as s:
        for key, age in (("k-old", retention + timedelta(hours=1)),
                         ("k-within", retention - timedelta(hours=1))):
            row = s.get(IdempotencyKey, ("POST /api/v1/orders", key))
            row.created_at = utcnow() - age
            s.add(row)
    # when the hourly job runs
    summary = jobs.run_job("idempotency-keys", server.deps, None)
    # then only the key past the retention is forgotten
    assert summary["forgotten"] == 1
    with server.db.read_session() as s:
        assert sorted(r.key for r in s.exec(select(IdempotencyKey))) == ["k-new", "k-within"]
    # and a retry within the window still gets its first answer, changing nothing
    for key in ("k-within", "k-new"):
        again = api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
        assert again.headers["idempotent-replayed"] == "true"
    assert count(server.db, Order) == 3
    assert jobs.JOBS["idempotency-keys"].cron == {"minute": "50"}


def test_the_idempotency_retention_is_a_setting_of_at_least_a_day(monkeypatch) -> None:
    from bot.settings import SettingsError, load_settings

    monkeypatch.setenv("O2C_IDEMPOTENCY_RETENTION_HOURS", "48")
    assert load_settings().o2c_idempotency_retention_hours == 48
    monkeypatch.setenv("O2C_IDEMPOTENCY_RETENTION_HOURS", "1")
    with pytest.raises(SettingsError, match="O2C_IDEMPOTENCY_RETENTION_HOURS"):
        load_settings()


@pytest.mark.parametrize("path, body, model", [
    ("/customers", {**CUSTOMER, "external_id": "C-NEW"}, Customer),
    ("/products", {"sku": "NEW-1", "name": "New", "unit_price": "5.00", "currency": "USD",
                   "on_hand": 10}, Product),
])
def test_master_data_posted_at_once_by_two_syncs_is_one_record(server, path, body,
                                                               model) -> None:
    # given two ERP workers pushing the same new record at the same moment, each with its
    # own Idempotency-Key (they are two requests, not a retry)
    results: list[httpx.Response] = []
    barrier = threading.Barrier(6)

    def post(n: int) -> None:
        with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=30,
                          headers={"Authorization": "Bearer test-api-token-s3cret",
                                   "Idempotency-Key": f"worker-{n}"}) as client:
            barrier.wait()
            results.append(client.post(path, json=body))

    # when
    threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then one record; one request created it, the others found it as sent (no 409 to retry)
    assert sorted(r.status_code for r in results) == [200] * 5 + [201], [r.text for r in results]
    assert count(server.db, model) == 1
