"""Real amounts and hostile input through the REST API (issue 11), on SQLite and PostgreSQL:
amounts beyond 32 bits are stored and read back exactly; anything beyond the bounds of
`models.limits` (amounts, quantities, years, NUL, e-mail addresses, ids) is a 422 naming the
field and stores nothing; a database that is down is a 503 with Retry-After."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.db import Database
from models import Customer, Order, Payment, Product
from tests.api.test_api import CUSTOMER, count

BIG_LIMIT = "9999999999999.99"  # the bound in USD


def seed_rich(api, **user) -> None:
    """A rep, a customer with the largest credit limit, and a product for USD 100.00."""
    assert api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"],
                                            **user}).status_code == 201
    assert api.post("/customers", json={**CUSTOMER, "credit_limit": BIG_LIMIT}).status_code == 201
    assert api.post("/products", json={"sku": "WID-100", "name": "Widget", "unit_price": "100.00",
                                       "currency": "USD", "on_hand": 1_000_000}).status_code == 201


@pytest.fixture
def rich(server, api):
    seed_rich(api)


@pytest.fixture(scope="module")
def shared_company(shared_api) -> None:
    """What the tests on the module's shared server read (each leaves it as it was, see
    `reading_server`): `rich`'s rep, customer and product, and `company`'s timezone and
    product, for the tests of reports' and records' dates."""
    seed_rich(shared_api, timezone="America/New_York")
    assert shared_api.post("/products", json={"sku": "WID-1", "name": "Widget",
                                              "unit_price": "19.99", "currency": "USD",
                                              "on_hand": 100}).status_code == 201


@pytest.fixture
def reading(shared_company, reading_server, reading_api):
    """(server, api): the module's shared server, seeded, for a test that must not write."""
    return reading_server, reading_api


def problem_fields(response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json().get("errors", [])]


# -- amounts beyond 32 bits are stored exactly ---------------------------------------------------
@pytest.mark.parametrize("amount", ["21474836.48", "9000000000000.00", BIG_LIMIT])
def test_a_payment_beyond_32_bits_is_stored_and_read_back(api, amount) -> None:
    # when
    created = api.post("/payments", json={"amount": amount, "currency": "USD",
                                          "received_at": "2026-11-20T10:00:00Z"})
    # then
    assert created.status_code == 201, created.text
    assert created.json()["amount"] == amount
    again = api.get(f"/payments/{created.json()['id']}")
    assert again.json()["amount"] == amount
    assert again.json()["unapplied_amount"] == amount


def test_an_idr_credit_limit_of_a_billion_is_stored(api) -> None:
    body = {**CUSTOMER, "external_id": "C-JKT", "currency": "IDR",
            "credit_limit": "1000000000.00"}
    assert api.post("/customers", json=body).status_code == 201
    assert api.get("/customers/C-JKT").json()["credit_limit"] == "1000000000.00"


def test_an_order_of_214749_times_usd_100_is_priced_and_approved(rich, api, server) -> None:
    order = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                      "currency": "USD",
                                      "lines": [{"sku": "WID-100", "quantity": 214_749}]})
    assert order.status_code == 201, order.text
    assert order.json()["total"] == "21474900.00"
    assert order.json()["status"] == "approved"
    with server.db.read_session() as s:
        assert s.exec(select(Order.total_minor)).one() == 2_147_490_000
        assert s.exec(select(Product.reserved)).one() == 214_749


# -- beyond the bounds: 422 naming the field, nothing stored ------------------------------------
PAYMENT = {"amount": "10.00", "currency": "USD", "received_at": "2026-11-20T10:00:00Z"}
REFUSED = [
    ("/payments", {**PAYMENT, "amount": "10000000000000.00"}, "amount"),
    ("/payments", {**PAYMENT, "amount": "１２３.45"}, "amount"),
    ("/payments", {**PAYMENT, "amount": "1e5"}, "amount"),
    ("/payments", {**PAYMENT, "amount": "NaN"}, "amount"),
    ("/payments", {**PAYMENT, "amount": "10.001"}, "amount"),
    ("/payments", {**PAYMENT, "currency": "JPY", "amount": "10.50"}, "amount"),
    ("/payments", {**PAYMENT, "received_at": "0001-01-01T00:00+14:00"}, "received_at"),
    ("/payments", {**PAYMENT, "received_at": "9999-12-31T23:59:59-12:00"}, "received_at"),
    ("/payments", {**PAYMENT, "reference": "INV-1\x00"}, "reference"),
    ("/customers", {**CUSTOMER, "credit_limit": "10000000000000.00"}, "credit_limit"),
    ("/customers", {**CUSTOMER, "billing_email": "ap@globex.example\r\nBcc: all@x.example"},
     "billing_email"),
    ("/customers", {**CUSTOMER, "billing_email": "not an address"}, "billing_email"),
    ("/customers", {**CUSTOMER, "name": "Glo\x00bex"}, "name"),
    # an early-payment discount is taken without asking: 0.10 would settle 1,000.00
    ("/customers", {**CUSTOMER, "payment_terms": "99.99/999 NET30"}, "payment_terms"),
    ("/invoices", {"number": "INV-X", "customer": "C-GLOBEX", "currency": "USD",
                   "issue_date": "2026-11-02", "due_date": "2026-12-02", "total": "1000.00",
                   "payment_terms": "50/10 NET30"}, "payment_terms"),
    ("/products", {"sku": "W", "name": "W", "unit_price": "1.00", "currency": "USD",
                   "on_hand": 2**63}, "on_hand"),
    ("/products", {"sku": "W", "name": "W", "unit_price": "1.00", "currency": "USD",
                   "on_hand": 1_000_000_001}, "on_hand"),
    ("/invoices", {"number": "INV-X", "customer": "C-GLOBEX", "currency": "USD",
                   "issue_date": "9999-12-31", "due_date": "9999-12-31", "total": "1.00"},
     "issue_date"),
    ("/shipments", {"order": "SO-1", "carrier": "UPS", "tracking_number": "1Z",
                    "shipped_at": "9999-12-31T00:00:00Z"}, "shipped_at"),
    # one line each: they go into the customer's e-mail subject
    ("/shipments", {"order": "SO-1", "carrier": "UPS\r\nBcc: all@x.example",
                    "tracking_number": "1Z", "shipped_at": "2026-11-20T10:00:00Z"}, "carrier"),
    ("/shipments", {"order": "SO-1", "carrier": "UPS", "tracking_number": "1Z\n2",
                    "shipped_at": "2026-11-20T10:00:00Z"}, "tracking_number"),
    ("/orders", {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
                 "order_date": "0001-01-01", "lines": [{"sku": "WID-100", "quantity": 1}]},
     "order_date"),
    # a number is not a date, though pydantic would read it as seconds since 1970
    ("/orders", {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
                 "order_date": 0, "lines": [{"sku": "WID-100", "quantity": 1}]},
     "order_date"),
    ("/shipments", {"order": "SO-1", "carrier": "UPS", "tracking_number": "1Z",
                    "shipped_at": "0"}, "shipped_at"),
    ("/orders", {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
                 "lines": [{"sku": "WID-100", "quantity": 1_000_000_001}]},
     "lines[0].quantity"),
    # quantity x unit price beyond the bound, though each is within it
    ("/orders", {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
                 "lines": [{"sku": "WID-100", "quantity": 1,
                            "unit_price": "10.00"},
                           {"sku": "WID-100", "quantity": 1_000_000,
                            "unit_price": "9999999999.99"}]},
     "lines[1].quantity"),
]


# a key of spaces only identifies nothing (it would be stored as the record's id)
ORDER = {"customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
         "lines": [{"sku": "WID-100", "quantity": 1}]}
REFUSED += [
    ("/orders", {**ORDER, "external_id": "   "}, "external_id"),
    ("/orders", {**ORDER, "external_id": "\u00a0\t"}, "external_id"),
    ("/orders", {**ORDER, "customer": "  "}, "customer"),
    ("/orders", {**ORDER, "lines": [{"sku": " ", "quantity": 1}]}, "lines[0].sku"),
    ("/payments", {**PAYMENT, "external_id": "  "}, "external_id"),
    ("/payments", {**PAYMENT, "customer": "  "}, "customer"),
    ("/customers", {**CUSTOMER, "external_id": "   "}, "external_id"),
    ("/products", {"sku": "   ", "name": "W", "unit_price": "1.00", "currency": "USD",
                   "on_hand": 1}, "sku"),
    ("/invoices", {"number": "  ", "customer": "C-GLOBEX", "currency": "USD",
                   "issue_date": "2026-11-02", "due_date": "2026-12-02", "total": "1.00"},
     "number"),
    ("/credit-notes", {"invoice": "INV-X", "reason": "r", "amount": "1.00",
                       "external_id": "  "}, "external_id"),
]


def test_a_key_of_spaces_is_refused_naming_it(reading) -> None:
    _, api = reading
    response = api.post("/orders", json={**ORDER, "external_id": "   "})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "external_id",
                                          "detail": "must not be blank"}]


@pytest.mark.parametrize(("path", "body", "field"), REFUSED,
                         ids=[f"{p} {f}" for p, _, f in REFUSED])
def test_out_of_bounds_input_is_a_422_naming_the_field(reading, path, body, field) -> None:
    server, api = reading
    # given what is stored before
    tables = (Payment, Customer, Product, Order)
    before = [count(server.db, t) for t in tables]
    # when
    response = api.post(path, json=body)
    # then
    assert response.status_code == 422, response.text
    assert field in problem_fields(response)
    assert [count(server.db, t) for t in tables] == before


def test_an_order_whose_total_exceeds_the_bound_is_refused_naming_the_lines(reading) -> None:
    _, api = reading
    # each line's quantity x price is within the bound; together they are not
    line = {"sku": "WID-100", "quantity": 1, "unit_price": "6000000000000.00"}
    response = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                         "currency": "USD", "lines": [line, line]})
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["lines"]


def test_an_amount_at_the_bound_in_each_kind_of_currency(api) -> None:
    for currency, amount in (("JPY", "999999999999999"), ("KWD", "999999999999.999"),
                             ("USD", BIG_LIMIT)):
        response = api.post("/payments", json={**PAYMENT, "currency": currency,
                                               "amount": amount})
        assert response.status_code == 201, response.text
        assert response.json()["amount"] == amount


@pytest.mark.parametrize("report", ["aging", "kpis"])
@pytest.mark.parametrize(("as_of", "status"), [("0001-01-01", 422), ("9999-12-31", 422),
                                               ("0", 422), ("20261130", 422),
                                               ("1900-01-01", 200), ("2999-12-31", 200)])
def test_report_dates_at_the_extremes(reading, report, as_of, status) -> None:
    _, api = reading
    response = api.get(f"/reports/{report}", params={"as_of": as_of})
    assert response.status_code == status, response.text
    if status == 422:
        assert problem_fields(response) == ["as_of"]


@pytest.mark.parametrize("path", ["/payments/1234567890123456789012", "/payments/2147483648",
                                  "/payments/0", "/customers/C%00X", "/orders/SO-1%00",
                                  "/invoices/%00"])
def test_ids_beyond_the_columns_and_nul_keys_are_422_not_500(reading, path) -> None:
    _, api = reading
    response = api.get(path)
    assert response.status_code == 422, response.text
    assert problem_fields(response)


@pytest.mark.parametrize(("path", "body"), [
    (f"/invoices/{'I' * 200}/disputes", {"reason": "pricing"}),
    (f"/orders/{'S' * 200}/lines/200/cancellation", {"reason": "moved"})])
def test_a_post_with_an_idempotency_key_to_the_longest_path_is_answered(reading, path,
                                                                         body) -> None:
    _, api = reading
    # the key's scope ("POST " and the path) is stored before the workflow looks for the
    # invoice or order: on PostgreSQL a path longer than its column was a 500
    response = api.post(path, json=body, headers={"Idempotency-Key": "long-1"})
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("known_at", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
                                      "2999-12-31T23:00:00-12:00", "1899-12-31"])
@pytest.mark.parametrize("path", ["/reports/aging", "/reports/kpis", "/customers/C-GLOBEX"])
def test_known_at_beyond_the_years_is_a_422_in_utc_too(reading, path, known_at) -> None:
    _, api = reading
    response = api.get(path, params={"known_at": known_at})
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["known_at"]


def test_known_at_is_read_in_utc(reading) -> None:
    _, api = reading
    # 2999-12-31T23:00-00:30 is 2999-12-31T23:30Z: within the years
    response = api.get("/reports/aging", params={"known_at": "2999-12-31T23:00:00-00:30"})
    assert response.status_code == 200, response.text


def test_an_unknown_id_within_range_is_a_404(reading) -> None:
    _, api = reading
    assert api.get("/payments/2147483647").status_code == 404


def test_user_email_is_validated_and_normalised(api) -> None:
    bad = api.put("/users/USALES09", json={"name": "S", "roles": [], "email": "s@x\n.example"})
    assert bad.status_code == 422 and problem_fields(bad) == ["email"]
    good = api.put("/users/USALES09", json={"name": "S", "roles": [],
                                            "email": " sam@Example.COM "})
    assert good.status_code == 201 and good.json()["email"] == "sam@example.com"


# -- the database is down: 503 with Retry-After ---------------------------------------------------
def unreachable(server) -> Database:
    """Point the running server at a database that refuses connections, as during a restart."""
    url = ("sqlite:////nonexistent-o2c-dir/o2c.db" if server.db.is_sqlite
           else "postgresql://o2c@127.0.0.1:9/o2c")
    return Database(url)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/payments/1", None), ("GET", "/reports/aging", None),
    ("POST", "/payments", PAYMENT), ("POST", "/customers", CUSTOMER)])
def test_while_the_database_is_down_the_api_answers_503_with_retry_after(reading, method,
                                                                         path, body) -> None:
    server, api = reading
    working = server.deps.db
    server.deps.db = unreachable(server)
    try:
        response = api.request(method, path, json=body,
                               headers={"Idempotency-Key": "k-1"} if body else {})
        ready = api.get(f"{server.base_url}/readyz")
    finally:
        server.deps.db.dispose()
        server.deps.db = working
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Service unavailable"
    assert ready.status_code == 503 and ready.headers["retry-after"].isdigit()
    # and once it is back, the same request goes through
    assert api.get(f"{server.base_url}/readyz").status_code == 200


@pytest.mark.parametrize(("path", "body", "field", "most"), [
    ("/payments", {**PAYMENT, "customer": "C" * 100_000}, "customer", 100),
    ("/invoices", {"number": "INV-X", "customer": "C-GLOBEX", "currency": "USD",
                   "issue_date": "2026-11-02", "due_date": "2026-12-02", "total": "1.00",
                   "order": "S" * 100_000}, "order", 32)])
def test_a_record_named_beyond_its_column_is_a_short_422(reading, path, body, field,
                                                         most) -> None:
    server, api = reading
    # a key longer than any stored one (the column's length) names no record: refused by its
    # length, not looked up and echoed back (100,000 characters, twice, in the problem)
    response = api.post(path, json=body)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["errors"] == [{"field": field,
                                          "detail": f"String should have at most {most} "
                                                    "characters"}]
    assert len(response.content) < 1000
    assert count(server.db, Payment) == 0
