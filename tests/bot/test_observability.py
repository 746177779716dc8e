"""Issue 18: `/metrics` (Prometheus), the request id that follows a Slack request into its
answer and its outbox rows, JSON log lines, and `/readyz` when migrations are behind."""

from __future__ import annotations

import json
import logging

import httpx
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import select

from bot import observability
from bot.migrate import alembic_config
from models import OutboxMessage
from tests.conftest import ADMIN
from workflows import outbox


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in /metrics")


def test_a_slash_command_is_timed_and_answered_under_its_request_id(server, slack, standin
                                                                    ) -> None:
    # given
    before = len(standin.api.responses)
    # when: /o2c kpi with the id a proxy put on it
    response = slack.slash(ADMIN, "kpi", headers={"X-Request-Id": "req-kpi-0001"})
    standin.api.wait_for(lambda: [r for r in standin.api.responses[before:]
                                  if r["user"] == ADMIN] or None, 10, "the answer")
    # then: the ack carries the id, and /metrics counts the ack and the answer
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "req-kpi-0001"
    metrics = standin.api.wait_for(lambda: (text := httpx.get(
        f"{server.base_url}/metrics").text) and "o2c_slack_answer_seconds_count" in text
        and text, 10, "the answer's metrics")
    assert _sample(metrics, "o2c_slack_ack_seconds_count", kind="command", command="kpi") >= 1
    assert _sample(metrics, "o2c_slack_answer_seconds_count", kind="command",
                   command="kpi") >= 1
    assert "# TYPE o2c_outbox_depth gauge" in metrics
    assert "# TYPE o2c_outbox_oldest_age_seconds gauge" in metrics
    # and an unknown subcommand is labelled "other", not by what was typed
    slack.slash(ADMIN, "zzz-not-a-command")
    text = httpx.get(f"{server.base_url}/metrics").text
    assert "zzz-not-a-command" not in text


def test_outbox_rows_queued_under_a_request_id_carry_it(db) -> None:
    # given
    observability.stamp_outbox_rows()
    # when: a workflow queues a post while answering request "req-0002", and one outside
    with observability.request_scope("req-0002"), db.transaction() as session:
        outbox.post_to_channel(session, channel="ar", template="plain",
                               context={"text": "hello"}, dedupe_key="obs:1")
    with db.transaction() as session:
        outbox.post_to_channel(session, channel="ar", template="plain",
                               context={"text": "hello"}, dedupe_key="obs:2")
    # then
    with db.read_session() as session:
        rows = session.exec(select(OutboxMessage.dedupe_key, OutboxMessage.request_id)
                            .order_by(OutboxMessage.id)).all()
    assert [tuple(r) for r in rows] == [("obs:1", "req-0002"), ("obs:2", None)]


def test_json_log_lines_name_the_request() -> None:
    # given
    formatter = observability.JsonFormatter()
    record = logging.LogRecord("o2c.test", logging.INFO, __file__, 1, "sent %s", ("it",), None)
    # when
    with observability.request_scope("req-0003"):
        line = json.loads(formatter.format(record))
    # then
    assert line["message"] == "sent it" and line["request_id"] == "req-0003"
    assert line["level"] == "INFO" and line["logger"] == "o2c.test"


def test_readyz_is_not_ready_while_migrations_are_behind(server, database_url) -> None:
    # given: the database one revision behind this code
    script = ScriptDirectory.from_config(alembic_config(database_url))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    with server.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
    try:
        # when
        behind = httpx.get(f"{server.base_url}/readyz")
    finally:
        with server.db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    ready = httpx.get(f"{server.base_url}/readyz")
    # then
    assert behind.status_code == 503 and behind.json()["needs"] == head
    assert ready.status_code == 200 and ready.json()["schema"] == head


def test_failing_webhook_deliveries_are_counted_by_reason(db, database_url) -> None:
    from tests.bot.test_webhook_delivery import given_an_order_event, integrations_worker
    from tests.support.receiver import Receiver

    def failures(reason: str) -> float:
        text = observability.exposition()[0].decode()
        try:
            return _sample(text, "o2c_webhook_failures_total", reason=reason)
        except AssertionError:
            return 0.0

    before = {r: failures(r) for r in ("http_5xx", "connection")}
    with Receiver([503]) as receiver:
        # given an order event for a receiver that answers 503
        given_an_order_event(db, receiver.url)
        # when the worker tries to deliver it
        integrations_worker(db, database_url).run_once()
        receiver.wait_for(1)
    # then /metrics counts one failure by its reason, apart from the deliveries
    assert failures("http_5xx") == before["http_5xx"] + 1
    assert failures("connection") == before["connection"]
    # and an attempt that gets no answer at all is a connection failure
    assert observability.webhook_failure_reason(None) == "connection"
    assert observability.webhook_failure_reason(None, timed_out=True) == "timeout"
    assert observability.webhook_failure_reason(429) == "http_429"
    assert observability.webhook_failure_reason(302) == "http_3xx"


def test_access_log_lines_do_not_carry_the_customers_link_tokens() -> None:
    # given the server's logging, and uvicorn's access lines for a customer's links
    observability.configure_logging("text")
    access = logging.getLogger("uvicorn.access")
    paths = {"/c/12.SECRETMAC/invoices/INV-1?x=1": "/c/<link>/invoices/INV-1?x=1",
             "/c/backorder/7.SECRETMAC/wait": "/c/backorder/<link>/wait",
             "/pay/SECRETPAYTOKEN/done": "/pay/<link>/done",
             "/c/static/customer.css": "/c/static/customer.css",
             "/api/v1/orders": "/api/v1/orders"}
    for path, shown in paths.items():
        record = access.makeRecord("uvicorn.access", logging.INFO, __file__, 1,
                                   '%s - "%s %s HTTP/%s" %d',
                                   ("10.0.0.1:5000", "GET", path, "1.1", 200), None)
        # when it is logged
        assert all(f.filter(record) for f in access.filters)
        # then the path is there without the token (a log shipped elsewhere opens no page)
        assert record.getMessage() == f'10.0.0.1:5000 - "GET {shown} HTTP/1.1" 200'
        assert "SECRET" not in record.getMessage()


def test_an_unexpected_error_on_a_pay_page_is_logged_without_its_token(caplog) -> None:
    # given the API's error handling, and a customer's pay page that fails unexpectedly
    import asyncio

    from fastapi import FastAPI

    from api import problems

    app = FastAPI()
    problems.install(app)

    @app.get("/pay/{token}")
    def page(token: str) -> None:
        raise RuntimeError("boom")

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://o2c") as client:
            return await client.get("/pay/SECRETPAYTOKEN0123456789abcdef")

    # when it is asked for
    with caplog.at_level(logging.ERROR, logger="o2c"):
        answer = asyncio.run(ask())
    # then the error is logged by route (a log shipped elsewhere opens no customer's page)
    assert answer.status_code == 500
    logged = [r.getMessage() for r in caplog.records if "unhandled" in r.getMessage()]
    assert logged and all("/pay/<link>" in line for line in logged)
    assert "SECRETPAYTOKEN" not in caplog.text
