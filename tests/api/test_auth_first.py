"""SPEC §5.1 for the REST API: a caller without the bearer token reaches no parser — whatever
the body, the answer is 401, and nothing is stored. The tests share one server (`reading_server`:
each must leave every table as it found it)."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import func, select

from models import Customer
from tests.conftest import API_TOKEN


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {API_TOKEN}",
                                           "Bearer", f"bearer {API_TOKEN}x"])
def test_no_token_is_a_401_before_the_body_is_parsed(reading_server, authorization) -> None:
    server = reading_server
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    for body in (b'{"junk": ', b"\xff\xfe not json", b'{"external_id": "C-1"}'):
        # when
        answer = httpx.post(f"{server.base_url}/api/v1/customers", content=body,
                            headers=headers)
        # then: refused as unauthenticated, not as malformed
        assert answer.status_code == 401, (body, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["title"] == "Unauthorized"
    with server.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(Customer)).one() == 0


def test_with_the_token_the_same_junk_is_a_400(reading_server) -> None:
    server = reading_server
    answer = httpx.post(f"{server.base_url}/api/v1/customers", content=b'{"junk": ',
                        headers={"content-type": "application/json",
                                 "authorization": f"Bearer {API_TOKEN}"})
    assert answer.status_code == 400 and answer.json()["title"] == "Malformed JSON"


def test_health_and_openapi_need_no_token(reading_server) -> None:
    server = reading_server
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/openapi.json", timeout=30).status_code == 200
