"""Outbound webhooks across a crash: `o2c serve` killed (-9) while a delivery is in flight
loses nothing; the next server delivers the event with the same `webhook-id`."""

from __future__ import annotations

import time

import httpx
from sqlmodel import select

from bot.db import Database
from models import OutboxMessage
from tests.conftest import API_TOKEN
from tests.support import factories as f
from tests.support.processes import ServeProcess, o2c_env
from tests.support.receiver import Receiver, Step
from workflows import webhooks


def test_kill_9_during_a_delivery_loses_nothing(database_url, standin, tmp_path) -> None:
    db = Database(database_url)
    with Receiver([Step(200, hold=True), 200, 200]) as receiver:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s)
            f.product(s)
            hook = webhooks.subscribe(s, url=receiver.url, events=["order.created"],
                                      actor="api", allow_private=True)
        # given a server with a short lease, and a receiver that hangs on the first request
        env = o2c_env(database_url, standin.api_url, O2C_OUTBOX_LEASE_SECONDS="3",
                      O2C_WEBHOOKS_ALLOW_PRIVATE="1")  # the receiver is on 127.0.0.1
        first = ServeProcess(env, tmp_path / "first.log").start()
        try:
            created = httpx.post(f"{first.base_url}/api/v1/orders", headers={
                "Authorization": f"Bearer {API_TOKEN}"}, json={
                "customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
                "lines": [{"sku": "WID-1", "quantity": 2}]}, timeout=30)
            assert created.status_code == 201, created.text
            # when the server is killed while the receiver holds the request
            receiver.wait_for(1, timeout=20)
        finally:
            first.kill()
        with db.read_session() as s:
            [row] = s.exec(select(OutboxMessage).where(
                OutboxMessage.transport == "webhook")).all()
            assert row.status == "sending"  # claimed by a process that is gone
        # then the next server takes the row over after the lease and delivers it
        second = ServeProcess(env, tmp_path / "second.log").start()
        try:
            requests = receiver.wait_for(2, timeout=30)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with db.read_session() as s:
                    row = s.get(OutboxMessage, row.id)
                if row.status == "sent":
                    break
                time.sleep(0.1)
        finally:
            second.stop()  # its workers finish what they hold: nothing more can come after
    assert row.status == "sent"
    assert len(receiver.requests) == 2  # the one cut short, and the one that got through
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    assert requests[0].body == requests[1].body
    with db.read_session() as s:
        log = webhooks.deliveries(s, hook.id)
        assert [(d.ok, d.status_code) for d, _ in log] == [(True, 200)]  # the killed one
        # never got to write its attempt
    logs = (tmp_path / "second.log").read_text()
    assert "Traceback" not in logs, logs
    db.dispose()
