"""`POST /shipments` through the real server: repeated partial shipments, and two posted at the
same moment for one order never over-ship (the review's PostgreSQL reproduction)."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import API_TOKEN


@pytest.fixture
def order_of_10(server, api) -> str:
    assert api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"]}).status_code \
        == 201
    assert api.post("/customers", json={
        "external_id": "C-GLOBEX", "name": "Globex", "currency": "USD",
        "credit_limit": "50000.00", "payment_terms": "NET30",
        "credit_reviewed": True}).status_code == 201
    assert api.post("/products", json={"sku": "WID-1", "name": "Widget", "unit_price": "10.00",
                                       "currency": "USD", "on_hand": 10}).status_code == 201
    created = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                        "currency": "USD",
                                        "lines": [{"sku": "WID-1", "quantity": 10}]})
    assert created.json()["status"] == "approved", created.text
    return created.json()["number"]


def shipment(number: str, qty: int, tracking: str) -> dict:
    return {"order": number, "carrier": "UPS", "tracking_number": tracking,
            "shipped_at": "2026-11-24T10:00:00Z", "lines": [{"sku": "WID-1", "quantity": qty}]}


def test_three_partial_shipments_ship_and_invoice_the_order(order_of_10, api) -> None:
    # when 10 ship as 3, 3, 4
    for qty, tracking in ((3, "1Z1"), (3, "1Z2"), (4, "1Z3")):
        answer = api.post("/shipments", json=shipment(order_of_10, qty, tracking))
        assert answer.status_code == 201, answer.text
    # then the order is invoiced with three invoices, and its history shows each shipment
    order = api.get(f"/orders/{order_of_10}").json()
    assert order["status"] == "invoiced"
    assert [i["total"] for i in order["invoices"]] == ["30.00", "30.00", "40.00"]
    assert [h["reason"] for h in order["history"] if h["action"] == "order.shipment"] == [
        "UPS 1Z1", "UPS 1Z2", "UPS 1Z3"]
    product = api.post("/products", json={"sku": "WID-1", "name": "Widget",
                                          "unit_price": "10.00", "currency": "USD",
                                          "on_hand": 0}).json()
    assert (product["on_hand"], product["reserved"]) == (0, 0)


def test_a_shipment_dated_after_today_is_a_422_naming_shipped_at(order_of_10, api) -> None:
    # when the ERP posts a shipment dated in the future (a typo'd year)
    body = {**shipment(order_of_10, 3, "1Z1"), "shipped_at": "2999-11-24T10:00:00Z"}
    answer = api.post("/shipments", json=body)
    # then it is refused naming shipped_at, and nothing shipped or was invoiced
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["shipped_at"]
    assert "2999-11-24 is in the future" in answer.json()["errors"][0]["detail"]
    order = api.get(f"/orders/{order_of_10}").json()
    assert (order["status"], order["invoices"]) == ("approved", [])


def test_two_shipments_posted_at_once_never_over_ship(server, order_of_10) -> None:
    # when two shipments of 6 are posted at the same moment (together 12 of 10)
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def post(tracking: str) -> None:
        with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=30,
                          headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
            start.wait()
            answers.append(client.post("/shipments",
                                       json=shipment(order_of_10, 6, tracking)))

    threads = [threading.Thread(target=post, args=(t,)) for t in ("1ZA", "1ZB")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then one ships, the other is refused with a clear error, and stock stays whole
    assert sorted(a.status_code for a in answers) == [201, 422], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 422).json()
    assert refused["errors"][0]["field"] == "lines[0].quantity"
    with httpx.Client(base_url=f"{server.base_url}/api/v1",
                      headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        order = client.get(f"/orders/{order_of_10}").json()
    assert order["status"] == "partially_shipped"
    assert len(order["invoices"]) == 1
    assert order["lines"][0]["shipped"] == 6


def test_cancelled_short_quantities_show_in_the_order(server, api) -> None:
    from workflows import fulfilment, orders

    # given an order of 10 with only 4 in stock (6 backordered)
    api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"]})
    api.post("/customers", json={"external_id": "C-1", "name": "Globex", "currency": "USD",
                                 "credit_limit": "50000.00", "payment_terms": "NET30",
                                 "credit_reviewed": True})
    api.post("/products", json={"sku": "WID-1", "name": "Widget", "unit_price": "10.00",
                                "currency": "USD", "on_hand": 4})
    created = api.post("/orders", json={"customer": "C-1", "sales_rep": "USALES01",
                                        "currency": "USD",
                                        "lines": [{"sku": "WID-1", "quantity": 10}]})
    number = created.json()["number"]
    # when the rep cancels the short quantity
    with server.db.transaction() as s:
        fulfilment.cancel_line(s, order=orders.get_order(s, number), line_no=1,
                               actor="USALES01", reason="customer takes 4")
    # then the order shows what was cancelled, by quantity and value
    body = api.get(f"/orders/{number}").json()
    assert body["status"] == "approved"
    assert body["lines"][0]["cancelled"] == 6 and body["cancelled"] == "60.00"
    assert body["total"] == "100.00"  # the total keeps describing what was ordered
