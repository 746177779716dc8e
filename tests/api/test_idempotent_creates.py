"""Exactly once with honest answers (SPEC §4): a create's key (`external_id` or the
Idempotency-Key) replays the first answer for the same request, and refuses (409, naming the
key) another request sent under it — never the first one answered as if it were this one."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from sqlmodel import func, select

from api.idempotency import body_hash, request_of
from models import CreditNoteRequest, IdempotencyKey, Payment
from tests.api import test_back_office_api as backoffice
from tests.support.timetravel import frozen_at
from workflows.inputs import OrderIn, PaymentIn

TODAY = date(2026, 6, 16)
frozen_time = frozen_at(datetime.combine(TODAY, time(10), UTC), tick=True)
books = backoffice.books  # the fixture: users, the customer C-GLOBEX


def _invoice_with_two_lines(api) -> None:
    assert api.post("/invoices", json={
        "number": "ERP-88", "customer": "C-GLOBEX", "currency": "USD",
        "issue_date": TODAY.isoformat(), "due_date": (TODAY + timedelta(days=30)).isoformat(),
        "total": "200.00", "lines": [{"description": "A", "quantity": 1, "unit_price": "100.00"},
                                     {"description": "B", "quantity": 1,
                                      "unit_price": "100.00"}]}).status_code == 201


def test_a_credit_note_external_id_replays_its_request_and_refuses_another(books, api
                                                                           ) -> None:
    _invoice_with_two_lines(api)
    body = {"invoice": "ERP-88", "reason": "line A damaged", "external_id": "CN-X1",
            "lines": [{"line_no": 1, "quantity": 1}]}
    first = api.post("/credit-notes", json=body)
    assert first.status_code == 201, first.text
    # the same request again (line 1 has nothing left to credit now): the first one
    replay = api.post("/credit-notes", json=body)
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    # the same key crediting line 2 instead (the same amount): refused, naming the key
    other = api.post("/credit-notes", json={**body, "lines": [{"line_no": 2, "quantity": 1}]})
    assert other.status_code == 409, other.text
    assert "CN-X1" in other.json()["detail"]
    assert [e["field"] for e in other.json()["errors"]] == ["lines"]
    by_amount = api.post("/credit-notes", json={**body, "lines": None, "amount": "100.00"})
    assert by_amount.status_code == 409, by_amount.text
    # by an amount: "40.0" is "40.00"; another amount or reason is another credit note
    cn2 = {"invoice": "ERP-88", "reason": "goodwill", "external_id": "CN-X2", "amount": "40.00"}
    assert api.post("/credit-notes", json=cn2).status_code == 201
    assert api.post("/credit-notes", json={**cn2, "amount": "40.0"}).status_code == 200
    for changed in ({"amount": "40.01"}, {"reason": "goodwill, again"}):
        refused = api.post("/credit-notes", json={**cn2, **changed})
        assert refused.status_code == 409, (changed, refused.text)
        assert refused.json()["errors"][0]["field"] == next(iter(changed))
    # issued meanwhile, the replay is still the same note
    backoffice.decide(books, first.json()["id"], "UCREDIT1")
    after = api.post("/credit-notes", json=body)
    assert after.status_code == 200 and after.json()["id"] == first.json()["id"]
    assert after.json()["status"] == "issued"
    with books.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(CreditNoteRequest)).one() == 2


@pytest.mark.postgresql_only
@pytest.mark.parametrize("path, body, table", [
    ("/credit-notes", {"invoice": "ERP-88", "reason": "line A damaged", "external_id": "CN-RACE",
                       "lines": [{"line_no": 1, "quantity": 1}]}, CreditNoteRequest),
    ("/payments", {"amount": "75.00", "currency": "USD", "received_at": "2026-06-15T09:00:00Z",
                   "external_id": "BANK-RACE-1"}, Payment),
])
def test_one_money_create_sent_at_once_by_several_workers_is_one_record(
        books, api, path, body, table) -> None:
    # given an integration retrying on several workers (no Idempotency-Key: the external_id)
    _invoice_with_two_lines(api)
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(6)

    def post() -> None:
        with httpx.Client(base_url=f"{books.base_url}/api/v1", timeout=30,
                          headers={"Authorization": api.headers["Authorization"]}) as client:
            barrier.wait()
            answers.append(client.post(path, json=body))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then one is created, every other one answers with it
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    with books.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(table)).one() == 1


def test_amounts_under_an_idempotency_key_are_compared_by_value(books, api) -> None:
    body = {"amount": "75.0", "currency": "USD", "received_at": "2026-06-15T09:00:00Z"}
    first = api.post("/payments", json=body, headers={"Idempotency-Key": "pay-1"})
    assert first.status_code == 201, first.text
    # when the retry writes the amount as 75.00: the same request, the first answer
    again = api.post("/payments", json={**body, "amount": "75.00"},
                     headers={"Idempotency-Key": "pay-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # and another amount is another request: 409
    other = api.post("/payments", json={**body, "amount": "75.01"},
                     headers={"Idempotency-Key": "pay-1"})
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # a key recorded before (its body hashed as sent) still replays that body
    legacy = {**body, "amount": "80.00"}
    with books.db.transaction() as s:
        s.add(IdempotencyKey(scope="POST /api/v1/payments", key="pay-old",
                             request_hash=body_hash(PaymentIn.model_validate(legacy).model_dump(
                                 mode="json", exclude={"value_date"})),
                             response_status=201, response_body={"id": 999}))
    old = api.post("/payments", json=legacy, headers={"Idempotency-Key": "pay-old"})
    assert old.status_code == 201 and old.json() == {"id": 999}
    with books.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(Payment)).one() == 1


def test_nested_amounts_hash_by_value() -> None:
    order = {"customer": "C-1", "sales_rep": "USALES01", "currency": "USD",
             "lines": [{"sku": "WID-1", "quantity": 1, "unit_price": "10.0"}]}
    priced = {**order, "lines": [{**order["lines"][0], "unit_price": "10.00"}]}
    dearer = {**order, "lines": [{**order["lines"][0], "unit_price": "10.01"}]}
    hashes = [body_hash(request_of(OrderIn.model_validate(b))) for b in (order, priced, dearer)]
    assert hashes[0] == hashes[1] != hashes[2]
