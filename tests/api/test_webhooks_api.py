"""`/api/v1/webhooks`: subscribe (the secret once), list, delete, and refusals by field."""

from __future__ import annotations

import time

import httpx

from tests.conftest import API_TOKEN


def test_subscribe_list_and_delete(api) -> None:
    # when
    created = api.post("/webhooks", json={"url": "https://erp.example/hooks/o2c",
                                          "events": ["order.created", "invoice.paid"],
                                          "description": "ERP sync"},
                       headers={"Idempotency-Key": "hook-1"})
    # then the answer carries the secret once
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["order.created", "invoice.paid"] and body["status"] == "active"
    listed = api.get("/webhooks").json()
    assert [h["id"] for h in listed["webhooks"]] == [body["id"]]
    assert "secret" not in listed["webhooks"][0]
    assert "revenue.period_closed" in listed["event_types"]
    # a retried POST with the same key gets the first answer, and creates nothing more
    again = api.post("/webhooks", json={"url": "https://erp.example/hooks/o2c",
                                        "events": ["order.created", "invoice.paid"],
                                        "description": "ERP sync"},
                     headers={"Idempotency-Key": "hook-1"})
    assert again.status_code == 201 and again.json() == body
    assert len(api.get("/webhooks").json()["webhooks"]) == 1
    # when deleted
    assert api.delete(f"/webhooks/{body['id']}").status_code == 204
    # then it is gone
    assert api.get("/webhooks").json()["webhooks"] == []
    assert api.delete(f"/webhooks/{body['id']}").status_code == 404
    assert api.get(f"/webhooks/{body['id']}/deliveries").status_code == 404


def test_refusals_name_the_field(api) -> None:
    cases = [
        ({"url": "http://erp.example/h", "events": ["order.created"]}, "url"),
        ({"url": "https://erp.example/h", "events": ["order.eaten"]}, "events"),
        ({"url": "https://erp.example/h", "events": []}, "events"),
        ({"url": "https://erp.example/h"}, "events"),
        ({"url": "https://erp.example/h", "events": ["order.created"], "secret": "x"},
         "secret"),
    ]
    for body, field in cases:
        answer = api.post("/webhooks", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"].split("[")[0].split(".")[0]
                         for e in answer.json()["errors"]], (body, answer.json())
    assert api.get("/webhooks").json()["webhooks"] == []


def test_the_token_is_required(server) -> None:
    url = f"{server.base_url}/api/v1/webhooks"
    assert httpx.get(url).status_code == 401
    assert httpx.post(url, json={"url": "https://x.example", "events": ["order.created"]},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200


def test_an_endpoint_inside_the_network_is_refused_with_a_clear_422(api) -> None:
    # when an API client points deliveries at the cloud's metadata service or this computer
    for url, said in (("https://169.254.169.254/latest/meta-data/",
                       "169.254.169.254 is a link-local address"),
                      ("http://localhost:8080/hooks", "localhost is a loopback name"),
                      ("https://[::ffff:10.0.0.1]/hooks", "10.0.0.1 is a private address")):
        answer = api.post("/webhooks", json={"url": url, "events": ["order.created"]})
        # then it is refused, naming the field and why, and nothing is stored
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["field"] == "url" and said in error["detail"], error
        assert "O2C_WEBHOOKS_ALLOW_PRIVATE" in error["detail"]
    assert api.get("/webhooks").json()["webhooks"] == []


def test_a_url_is_resolved_before_the_registration_takes_the_database(
        server, api, monkeypatch) -> None:
    from tests.support import factories as f
    from workflows import destinations

    # given a resolver during whose lookup another writer writes (on SQLite it would wait for
    # the write lock if the registration's transaction were open: an Idempotency-Key is
    # written before the subscription)
    waited: list[float] = []

    def resolve(host: str, port: int, *, timeout: float) -> list[str]:
        started = time.monotonic()
        with server.db.transaction() as s:
            f.user(s, "UWRITER1")
        waited.append(time.monotonic() - started)
        return ["93.184.216.34"]

    monkeypatch.setattr(destinations, "resolve", resolve)
    # when an endpoint is registered
    answer = api.post("/webhooks", json={"url": "https://erp.example/hooks/o2c",
                                         "events": ["order.created"]},
                      headers={"Idempotency-Key": "dns-outside-1"})
    # then its name was looked up once, while nothing of ours held the database
    assert answer.status_code == 201, answer.text
    assert len(waited) == 1 and waited[0] < 1, waited


def test_rotating_the_secret_answers_the_new_one_once(server, api) -> None:
    # given a subscription
    hook = api.post("/webhooks", json={"url": "https://erp.example/hooks/o2c",
                                       "events": ["order.created"]}).json()
    # when its secret is rotated (with an Idempotency-Key, retried)
    rotated = api.post(f"/webhooks/{hook['id']}/rotate-secret",
                       headers={"Idempotency-Key": "rotate-1"})
    again = api.post(f"/webhooks/{hook['id']}/rotate-secret",
                     headers={"Idempotency-Key": "rotate-1"})
    # then the answer carries the new secret and until when the old one still signs (24 h)
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != hook["secret"]
    assert again.json() == body  # the retry rotated nothing more
    with server.db.read_session() as s:
        from models import WebhookSubscription

        row = s.get(WebhookSubscription, hook["id"])
        assert (row.secret, row.previous_secret) == (body["secret"], hook["secret"])
        assert body["previous_secret_until"].startswith(
            row.previous_secret_until.strftime("%Y-%m-%dT%H:%M:%S"))
        assert abs((row.previous_secret_until - row.created_at).total_seconds()
                   - 24 * 3600) < 120
    # and an unknown subscription is a 404
    assert api.post("/webhooks/999/rotate-secret").status_code == 404
