"""`POST /payments` takes the payment model every surface shares (`workflows.inputs.PaymentIn`),
whose optional `value_date` says when the money moved; a retry of a payment sent before that
field existed still replays its first answer."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlmodel import func, select

from api.idempotency import body_hash
from models import IdempotencyKey, Payment
from tests.support import factories as f
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)
PAYMENT = {"amount": "250.00", "currency": "USD", "received_at": "2026-11-20T09:00:00+00:00",
           "reference": "INV-VD-1", "customer": "C-GLOBEX", "external_id": "BANK-VD-1"}


def test_a_payment_counts_from_its_value_date(server, api) -> None:
    # given an open invoice
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-VD-1", total="250.00", issued=date(2026, 11, 1),
                  due=date(2026, 12, 1))
    # when the bank says the money moved two days before it was booked as received
    answer = api.post("/payments", json={**PAYMENT, "value_date": "2026-11-18"})
    # then the payment and its allocation count from that day
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["value_date"] == "2026-11-18"
    assert [(a["invoice"], a["value_date"]) for a in body["allocations"]] == [
        ("INV-VD-1", "2026-11-18")]


def test_a_retry_sent_before_value_date_existed_replays_its_answer(server, api) -> None:
    # given a payment answered before the upgrade: its key stored with the hash of the body as
    # it was canonicalised then (every field of the old model, no value_date)
    old_body = {"amount": "250.00", "currency": "USD",
                "received_at": "2026-11-20T09:00:00Z", "payer_name": None,
                "reference": "INV-VD-1", "customer": "C-GLOBEX", "method": None,
                "external_id": "BANK-VD-1"}
    first = {"id": 41, "status": "applied"}
    with server.db.transaction() as s:
        s.add(IdempotencyKey(scope="POST /api/v1/payments", key="retry-1",
                             request_hash=body_hash(old_body), response_status=201,
                             response_body=first))
    # when the client retries it after the upgrade
    again = api.post("/payments", json=PAYMENT, headers={"Idempotency-Key": "retry-1"})
    # then it gets the first answer, and nothing is recorded twice
    assert again.status_code == 201, again.text
    assert again.json() == first and again.headers["idempotent-replayed"] == "true"
    with server.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(Payment)).one() == 0
