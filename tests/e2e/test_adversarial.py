"""Hostile and broken traffic at `/slack/events`, and replays of everything that creates
something (issue 11: trust under attack).

* Unsigned junk of every kind (a junk signature, a timestamp `abc`, a non-ASCII signature, a
  non-UTF-8 body, no headers): 401, nothing parsed, one short log line, no traceback.
* Bodies over the 1 MiB limit: 413 while the body is still arriving (it is never read whole),
  on the Slack endpoint and the REST API alike.
* Signed but malformed payloads (`actions: null`, a view without `type`, bad
  `private_metadata`, a button value `x`, and every field of real payloads replaced by junk):
  a 400 or a clear answer, never a 500, nothing changed.
* Replays: every modal submission and every click that creates something, sent again once and
  then 10 times at the same moment, creates it once and is answered like the first time.

The 50-request log test and the memory test run a real `o2c serve` process and read its log
(uvicorn logs outside Python's root logger there); the rest use the in-process server.
"""

from __future__ import annotations

import datetime as dt
import json
import select as io_select
import socket
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import func, select

from blocks import ids
from models import (
    Approval,
    AuditEvent,
    CollectionActivity,
    InteractionReceipt,
    Order,
    OutboxMessage,
    Payment,
    Product,
    PromiseToPay,
)
from sandbox.driver import FORM, JSON, sign, slack_timestamp
from tests.conftest import ADMIN, API_TOKEN, SIGNING_SECRET
from tests.support import factories as f
from tests.support.processes import ServeProcess, o2c_env
from tests.support.slack import burst, prepared_click, prepared_submission, text_of
from tests.support.timetravel import frozen_at

WAIT = 15.0


TODAY = date(2026, 11, 24)  # a Tuesday
# time flows in these tests (the outbox retries), from noon UTC on TODAY
frozen_time = frozen_at(datetime.combine(TODAY, dt.time(12), UTC), tick=True)


def _today() -> date:
    return TODAY


def count(server, model, *where) -> int:
    with server.db.read_session() as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def settled(check, what: str) -> None:
    """`check()` comes true once the work after the acks is done (it runs after them, in lazy
    listeners), and is still true a moment later, when every copy's work is done too."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    time.sleep(0.5)
    assert check(), f"{what}: changed again afterwards"


def changes(server) -> dict:
    """Everything a request could have created or recorded."""
    return {model.__name__: count(server, model) for model in (
        AuditEvent, Order, Payment, PromiseToPay, CollectionActivity, OutboxMessage,
        InteractionReceipt)}


def errors_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= 40 or r.exc_info]


@pytest.fixture
def company(server):
    today = _today()
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation", collector="UCOLL001",
                   sales_rep="USALES01", billing_email="ap@globex.example")
        f.customer(s, "C-NEW", "Newco", reviewed=False, sales_rep="USALES01")
        f.customer(s, "C-CLEAN", "Initech", sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=1000)
        f.invoice(s, "INV-OLD-1", "C-GLOBEX", total="500.00", due=today - timedelta(days=20))
        f.invoice(s, "INV-OLD-2", "C-GLOBEX", total="300.00", due=today - timedelta(days=40))
    return server


def customer_id(server, external_id: str = "C-GLOBEX") -> int:
    from models import Customer

    with server.db.read_session() as s:
        return s.exec(select(Customer.id).where(Customer.external_id == external_id)).one()


def open_view(slack, api, user: str, text: str) -> dict:
    assert slack.slash(user, text).status_code == 200
    return api.wait_for(lambda: (api.views_for(user) or [None])[-1], WAIT, f"/o2c {text}")


def worklist(slack, api) -> dict:
    """`/o2c worklist` as the collector: the ephemeral answer, with the account buttons."""
    seen = len(api.ephemerals("UCOLL001"))
    assert slack.slash("UCOLL001", "worklist").status_code == 200
    return api.wait_for(lambda: next((e for e in api.ephemerals("UCOLL001")[seen:]
                                      if "worklist" in e["text"].lower()), None), WAIT,
                        "the worklist")


def replay(slack, body: str) -> tuple[int, str, list[int]]:
    """Send a body, send it again, then 10 copies at once; (first status, first answer, the
    statuses of all the copies)."""
    first = slack.send(body, FORM)
    again = slack.send(body, FORM)
    statuses = [again.status_code, *burst(slack, body, 10)]
    return first.status_code, first.text, statuses


# -- unsigned junk ------------------------------------------------------------------------------
def junk_requests() -> dict[str, tuple[bytes, dict]]:
    now = str(slack_timestamp())
    zeros = "v0=" + "0" * 64
    form = {"Content-Type": FORM}
    return {
        "junk signature": (b"payload=x", {**form, "X-Slack-Request-Timestamp": now,
                                          "X-Slack-Signature": zeros}),
        "timestamp abc": (b"payload=x", {**form, "X-Slack-Request-Timestamp": "abc",
                                         "X-Slack-Signature": zeros}),
        "non-ASCII signature": (b"payload=x", {**form, "X-Slack-Request-Timestamp": now,
                                               "X-Slack-Signature": "v0=\u00e9".encode(
                                                   "latin-1")}),
        "non-UTF-8 body": (b"payload=\xff\xfe\xfa", {**form, "X-Slack-Request-Timestamp": now,
                                                     "X-Slack-Signature": zeros}),
        "no headers": (b"payload=x", form),
        "huge timestamp": (b"payload=x", {**form, "X-Slack-Request-Timestamp": "9" * 40,
                                          "X-Slack-Signature": zeros}),
        "signature of another body": (b"payload=x", {
            **form, "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": sign(SIGNING_SECRET, now, "payload=y")}),
    }


def test_unsigned_junk_is_refused_before_parsing(company, slack, caplog) -> None:
    # given
    before = changes(company)
    events = slack.events_url
    for name, (body, headers) in junk_requests().items():
        # when
        response = httpx.post(events, content=body, headers=headers)
        # then
        assert response.status_code == 401, name
    assert changes(company) == before
    refusals = [r for r in caplog.records if "refused a Slack request" in r.getMessage()]
    assert len(refusals) == len(junk_requests())
    assert all(r.levelname == "WARNING" and not r.exc_info and len(r.getMessage()) < 200
               for r in refusals)
    assert errors_logged(caplog) == []


def test_signed_but_unparsable_bodies_are_400(company, slack, caplog) -> None:
    before = changes(company)
    for body, kind in [("payload=x", FORM), (urlencode({"payload": "[1, 2]"}), FORM),
                       ("[1, 2]", JSON), ('"text"', JSON), ("{", JSON), ("", FORM)]:
        assert slack.send(body, kind).status_code == 400, body
    # a correctly signed body that is not UTF-8
    now = str(slack_timestamp())
    raw = b"payload=\xff\xfe"
    mac = __import__("hmac").new(SIGNING_SECRET.encode(), b"v0:" + now.encode() + b":" + raw,
                                 "sha256").hexdigest()
    response = httpx.post(slack.events_url, content=raw, headers={
        "Content-Type": FORM, "X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + mac})
    assert response.status_code == 400
    assert changes(company) == before
    assert errors_logged(caplog) == []


def _send_partially(url: str, path: str, declared: int | None, limit_sent: int
                    ) -> tuple[str, int]:
    """POST to `path` declaring `declared` bytes (None: chunked), sending at most `limit_sent`
    bytes of body while watching for an early answer. Returns (status line, bytes sent)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    sock = socket.create_connection((host, port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += (f"Content-Length: {declared}\r\n" if declared is not None
             else "Transfer-Encoding: chunked\r\n")
    head += f"Authorization: Bearer {API_TOKEN}\r\n"  # what the API needs
    # what Slack sends (a signature of the right shape, so the body is read to check it)
    head += f"X-Slack-Request-Timestamp: {slack_timestamp()}\r\n"
    head += f"X-Slack-Signature: v0={'0' * 64}\r\n\r\n"
    sock.sendall(head.encode())
    sent, chunk = 0, b"x" * 65536
    answer = b""
    try:
        while sent < limit_sent:
            data = chunk if declared is not None else (
                f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if io_select.select([sock], [], [], 0.01)[0]:
                break  # the server answered before the body was all there
            if not io_select.select([], [sock], [], 2.0)[1]:
                break  # the server stopped reading
            try:
                sock.sendall(data)
            except OSError:
                break  # the server hung up
            sent += len(chunk)
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    finally:
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(), sent


@pytest.mark.parametrize("path", ["/slack/events", "/api/v1/orders"])
def test_a_body_over_the_limit_is_413_before_it_is_read(server, path) -> None:
    twenty_mb = 20 * 1024 * 1024
    # a declared 20 MB body: refused on its Content-Length, after a few KB at most
    status, sent = _send_partially(server.base_url, path, twenty_mb, twenty_mb)
    assert status.startswith("HTTP/1.1 413 ") and sent < twenty_mb // 4, (status, sent)
    # a chunked body: refused once 1 MiB has arrived, long before 20 MB
    status, sent = _send_partially(server.base_url, path, None, twenty_mb)
    assert status.startswith("HTTP/1.1 413 ") and sent < twenty_mb // 4, (status, sent)


def test_fifty_junk_requests_leave_a_short_log_and_flat_memory(database_url, standin,
                                                               tmp_path) -> None:
    # given a real server process and its log
    log_path = tmp_path / "serve.log"
    server = ServeProcess(o2c_env(database_url, standin.api_url, O2C_OUTBOX_WORKER="false"),
                          log_path).start()
    try:
        rss = _rss_kb(server.proc.pid)
        start = log_path.stat().st_size
        requests = list(junk_requests().values())
        # when 50 junk requests arrive, then a 300 MB body
        for n in range(50):
            body, headers = requests[n % len(requests)]
            assert httpx.post(f"{server.base_url}/slack/events", content=body,
                              headers=headers).status_code == 401
        status, sent = _send_partially(server.base_url, "/slack/events", 300 * 1024 * 1024,
                                       300 * 1024 * 1024)
        time.sleep(0.5)
        # then: one short line per refusal, no traceback, and the memory did not grow
        grown = log_path.read_text()[start:]
        print(f"50 junk requests: {len(grown)} bytes of log; a 300 MB body: {status!r} after "
              f"{sent} bytes sent, server RSS {rss} -> {_rss_kb(server.proc.pid)} KB")
        assert status.startswith("HTTP/1.1 413 "), status
        assert "Traceback" not in grown and "Exception" not in grown, grown[-3000:]
        assert len(grown) < 50 * 300, len(grown)  # was ~8 KB of traceback per request
        assert _rss_kb(server.proc.pid) - rss < 30_000
    finally:
        server.stop()


def _rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- signed but malformed -----------------------------------------------------------------------
def _interaction(kind: str, **fields: object) -> str:
    payload = {"type": kind, "user": {"id": "UCOLL001", "name": "cole"}, "team": {"id": "T0001"},
               "api_app_id": "A0O2C", "token": "legacy-token", **fields}
    return urlencode({"payload": json.dumps(payload)})


def test_signed_malformed_payloads_get_a_400_and_change_nothing(company, slack,
                                                                caplog) -> None:
    before = changes(company)
    view = {"id": "V0BROKEN", "callback_id": ids.PROMISE_MODAL, "state": {"values": {}}}
    bodies = {
        "actions null": _interaction("block_actions", actions=None),
        "actions empty": _interaction("block_actions", actions=[]),
        "action without id": _interaction("block_actions", actions=[{"value": "1"}]),
        "view without type": _interaction("view_submission", view=view),
        "view without id": _interaction("view_submission", view={"type": "modal",
                                                                 "callback_id": "x"}),
        "state values junk": _interaction("view_submission", view={
            **view, "type": "modal", "state": {"values": {"b": "x"}}}),
        "selected_date junk": _interaction("view_submission", view={
            **view, "type": "modal", "state": {"values": {"b": {"a": {
                "type": "datepicker", "selected_date": "soon"}}}}}),
        "user missing": _interaction("block_actions", user=None,
                                     actions=[{"action_id": "collections_snooze"}]),
        "event without type": json.dumps({"type": "event_callback", "event_id": "Ev1",
                                          "event": {"user": "U1"}}),
        "app_home_opened without user": json.dumps({
            "type": "event_callback", "event_id": "Ev2",
            "event": {"type": "app_home_opened", "tab": "home"}}),
        "event not an object": json.dumps({"type": "event_callback", "event": "x"}),
        "command without user": urlencode({"command": "/o2c", "text": "help"}),
        # PostgreSQL cannot store a NUL: refused whole, wherever it hides
        "NUL in a command": urlencode({"command": "/o2c", "user_id": "USALES01",
                                       "text": "role add <@USALES02> admin\x00"}),
        "NUL in a modal's text": _interaction("view_submission", view={
            **view, "type": "modal", "state": {"values": {"b": {"a": {
                "type": "plain_text_input", "value": "wire on Thursday\x00"}}}}}),
        "NUL in a key": _interaction("block_actions", actions=[
            {"action_id": "collections_snooze", "value": "1", "x\x00": "y"}]),
    }
    for name, body in bodies.items():
        kind = JSON if body.startswith("{") else FORM
        assert slack.send(body, kind).status_code == 400, name
    assert changes(company) == before
    assert errors_logged(caplog) == []


def test_damaged_values_get_a_clear_answer_and_change_nothing(company, slack, standin,
                                                              caplog) -> None:
    api = standin.api
    before = changes(company)
    # a click whose button value is not an id, on each button that takes one
    account = worklist(slack, api)
    seen = len(api.responses)
    for action in ("collections_log_call", "collections_promise", "collections_snooze",
                   "collections_reminder"):
        assert slack.click("UCOLL001", account, action, value="x").status_code == 200
    api.wait_for(lambda: len(api.responses) >= seen + 4, WAIT, "four answers")
    texts = [text_of(r["payload"]) for r in api.responses[seen:]]
    assert all("came back damaged" in t for t in texts), texts
    # a promise and a call modal whose private_metadata is unreadable
    for action, callback, block in (("collections_promise", ids.PROMISE_MODAL,
                                     ids.PROMISE_AMOUNT_BLOCK),
                                    ("collections_log_call", ids.CALL_MODAL,
                                     ids.CALL_NOTE_BLOCK)):
        slack.click("UCOLL001", account, action, block_id=f"collections_account:"
                    f"{customer_id(company)}")
        modal = api.wait_for(lambda cb=callback: [v for v in api.views_for("UCOLL001")
                                                  if v["callback_id"] == cb] or None, WAIT)[0]
        api.tamper_view(modal["id"], private_metadata="{not json")
        values = ({ids.PROMISE_AMOUNT_BLOCK: {ids.PROMISE_AMOUNT_INPUT: "10.00"},
                   ids.PROMISE_DATE_BLOCK: {ids.PROMISE_DATE_INPUT: _today()}}
                  if callback == ids.PROMISE_MODAL else
                  {ids.CALL_NOTE_BLOCK: {ids.CALL_NOTE_INPUT: "hello"}})
        response = slack.submit_view("UCOLL001", modal, values)
        # then the modal stays open with a clear message on its first field
        assert response.status_code == 200
        assert "came back damaged" in api.view_errors(modal["id"])[block]
        api.close_view("UCOLL001", modal["id"])
    assert changes(company) == before
    assert errors_logged(caplog) == []


# Real payloads, each field replaced by junk: never a 500, never a traceback.
JUNK = (None, "x", 7, [], {}, [None], {"x": None})


def _paths(value: object, prefix: tuple = (), depth: int = 3) -> list[tuple]:
    found = []
    if isinstance(value, dict) and depth:
        for key, inner in value.items():
            found.append((*prefix, key))
            found.extend(_paths(inner, (*prefix, key), depth - 1))
    elif isinstance(value, list) and value and depth:
        found.append((*prefix, 0))
        found.extend(_paths(value[0], (*prefix, 0), depth - 1))
    return found


def _with(payload: dict, path: tuple, junk: object) -> dict:
    copy = json.loads(json.dumps(payload))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = junk
    return copy


def test_every_field_of_real_payloads_replaced_by_junk_is_never_a_500(company, slack,
                                                                      standin, caplog) -> None:
    api = standin.api
    # given real payloads: a click on an account button and a promise modal submission
    account = worklist(slack, api)
    block = f"collections_account:{customer_id(company)}"
    click = json.loads(httpx.QueryParams(prepared_click(
        slack, "UCOLL001", account, "collections_snooze", block_id=block))["payload"])
    slack.click("UCOLL001", account, "collections_promise", block_id=block)
    modal = api.wait_for(lambda: (api.views_for("UCOLL001") or [None])[-1], WAIT)
    submission = json.loads(httpx.QueryParams(prepared_submission(
        slack, "UCOLL001", modal, {ids.PROMISE_AMOUNT_BLOCK: {ids.PROMISE_AMOUNT_INPUT: "1"},
                                   ids.PROMISE_DATE_BLOCK: {ids.PROMISE_DATE_INPUT: _today()
                                                            + timedelta(days=400)}}))["payload"])
    before = changes(company)
    statuses = set()
    for payload in (click, submission):
        for path in _paths(payload):
            for junk in JUNK[:3] if len(path) > 2 else JUNK:
                body = urlencode({"payload": json.dumps(_with(payload, path, junk))})
                status = slack.send(body, FORM).status_code
                statuses.add(status)
                assert status in (200, 400, 404), (path, junk, status)  # 404: no listener
    # then: nothing crashed; the only changes are snoozes (a junk field the click ignores)
    assert {200, 400} <= statuses
    assert errors_logged(caplog) == []
    after = changes(company)
    assert after["Order"] == before["Order"] and after["Payment"] == before["Payment"]
    assert after["PromiseToPay"] == before["PromiseToPay"]  # the date is too far: refused


# -- replays: each submission and each creating click once ------------------------------------
def line(row: int, product: str | None = None, quantity: object = None) -> dict:
    return {f"order_line_{row}_product": {"order_product_select": product},
            f"order_line_{row}_quantity": {"order_quantity_input": quantity},
            f"order_line_{row}_discount": {"order_discount_input": None}}


def test_replayed_order_entry_makes_one_order_one_dm_one_reservation(company, slack,
                                                                     standin) -> None:
    api = standin.api
    # given a filled-in order modal, submitted once
    modal = open_view(slack, api, "USALES01", "new")
    body = prepared_submission(slack, "USALES01", modal, {
        "order_customer": {"order_customer_select": "C-CLEAN"}, **line(0, "WID-1", 3),
        **line(1)})
    # when it is sent, sent again, then sent ten times at once
    first, answer, statuses = replay(slack, body)
    # then every copy is answered like the first (an empty 200 closes the modal)
    assert first == 200 and answer == "" and statuses == [200] * 11

    def one_order() -> bool:
        with company.db.read_session() as s:
            orders = s.exec(select(Order).where(Order.source == "slack")).all()
            reserved = s.exec(select(Product.reserved).where(Product.sku == "WID-1")).one()
            dms = s.exec(select(OutboxMessage).where(
                OutboxMessage.payload["template"].as_string() == "order_status")).all()
        return len(orders) == 1 and reserved == 3 and len(dms) == 1

    settled(one_order, "one order, one reservation, one DM")
    with company.db.read_session() as s:
        orders = s.exec(select(Order).where(Order.source == "slack")).all()
    assert count(company, AuditEvent, AuditEvent.entity_type == "order",
                 AuditEvent.entity_id == str(orders[0].id)) == count(
        company, AuditEvent, AuditEvent.entity_type == "order")  # one order's history only
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                          if orders[0].number in m["text"]] or None, WAIT, "the DM")
    time.sleep(0.5)
    assert len([m for m in api.dm_messages("USALES01") if orders[0].number in m["text"]]) == 1


def test_replayed_payment_submission_records_one_payment(company, slack, standin) -> None:
    modal = open_view(slack, standin.api, "UCOLL001", "pay")
    body = prepared_submission(slack, "UCOLL001", modal, {
        ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "500.00"},
        ids.PAY_CUSTOMER_BLOCK: {ids.PAY_CUSTOMER: {"text": "Globex", "value": "C-GLOBEX"}},
        ids.PAY_REFERENCE_BLOCK: {ids.PAY_REFERENCE: "INV-OLD-1"},
        ids.PAY_DATE_BLOCK: {ids.PAY_DATE: _today()}})
    first, answer, statuses = replay(slack, body)
    assert first == 200 and answer == "" and statuses == [200] * 11
    settled(lambda: count(company, Payment) == 1, "one payment")
    assert count(company, AuditEvent, AuditEvent.action == "payment.received") == 1


def _account_modal(slack, api, server, action: str, callback: str) -> dict:
    account = worklist(slack, api)
    slack.click("UCOLL001", account, action,
                block_id=f"collections_account:{customer_id(server)}")
    return api.wait_for(lambda: [v for v in api.views_for("UCOLL001")
                                 if v["callback_id"] == callback] or None, WAIT)[0]


def test_replayed_promise_and_call_submissions_record_once(company, slack, standin) -> None:
    api = standin.api
    promise = _account_modal(slack, api, company, "collections_promise", ids.PROMISE_MODAL)
    body = prepared_submission(slack, "UCOLL001", promise, {
        ids.PROMISE_AMOUNT_BLOCK: {ids.PROMISE_AMOUNT_INPUT: "400.00"},
        ids.PROMISE_DATE_BLOCK: {ids.PROMISE_DATE_INPUT: _today() + timedelta(days=5)}})
    first, answer, statuses = replay(slack, body)
    assert first == 200 and answer == "" and statuses == [200] * 11

    def statuses_of_promises() -> list[str]:
        with company.db.read_session() as s:
            return [p.status for p in s.exec(select(PromiseToPay)).all()]

    # not 11 cancelled ones behind it
    settled(lambda: statuses_of_promises() == ["open"], "one open promise")
    api.close_view("UCOLL001", promise["id"])
    call = _account_modal(slack, api, company, "collections_log_call", ids.CALL_MODAL)
    body = prepared_submission(slack, "UCOLL001", call, {
        ids.CALL_NOTE_BLOCK: {ids.CALL_NOTE_INPUT: "AP will pay Friday"}})
    first, answer, statuses = replay(slack, body)
    assert first == 200 and answer == "" and statuses == [200] * 11
    settled(lambda: count(company, CollectionActivity, CollectionActivity.kind == "call") == 1,
            "one call")
    assert count(company, CollectionActivity, CollectionActivity.kind == "promise") == 1


def _card(api, number: str) -> dict:
    return api.wait_for(lambda: [m for m in api.messages("CAPPROVAL") if number in m["text"]]
                        or None, WAIT, "the approval card")[0]


def _new_customer_order(server, slack, api) -> str:
    with server.db.transaction() as s:
        number = f.order(s, "C-NEW", lines=[("WID-1", 1)]).number
    server.deps.notify_outbox()
    return number


@pytest.mark.parametrize("button,callback,block,action,decision", [
    (ids.REJECT, ids.REJECT_MODAL, ids.REJECT_REASON_BLOCK, ids.REJECT_REASON_INPUT,
     "rejected"),
    (ids.APPROVE_WITH_NOTE, ids.APPROVE_NOTE_MODAL, ids.APPROVE_NOTE_BLOCK,
     ids.APPROVE_NOTE_INPUT, "approved")])
def test_replayed_decision_modals_decide_once_and_say_nothing_more(
        company, slack, standin, button, callback, block, action, decision) -> None:
    api = standin.api
    number = _new_customer_order(company, slack, api)
    slack.click("UCREDIT1", _card(api, number), button)
    modal = api.wait_for(lambda: [v for v in api.views_for("UCREDIT1")
                                  if v["callback_id"] == callback] or None, WAIT)[0]
    body = prepared_submission(slack, "UCREDIT1", modal, {block: {action: "checked <b>"}})
    first, answer, statuses = replay(slack, body)
    assert first == 200 and answer == "" and statuses == [200] * 11

    def decided() -> bool:
        with company.db.read_session() as s:
            status = s.exec(select(Approval)).one().status
        return status == decision and count(
            company, AuditEvent, AuditEvent.action == f"approval.{decision}") == 1

    settled(decided, f"one {decision} decision")
    assert api.ephemerals("UCREDIT1") == []  # a replay is not told "already decided"


def test_replayed_clicks_that_create_change_once_and_answer_alike(company, slack,
                                                                  standin) -> None:
    api = standin.api
    account = worklist(slack, api)
    block = f"collections_account:{customer_id(company)}"
    # Snooze: one snooze, and every copy is told the same date
    body = prepared_click(slack, "UCOLL001", account, "collections_snooze", block_id=block)
    # (a response_url takes 5 answers, as in Slack: the other copies' answers are dropped)
    seen = len(api.responses)
    _, _, statuses = replay(slack, body)
    assert statuses == [200] * 11
    api.wait_for(lambda: len(api.responses) >= seen + 5, WAIT, "five answers")
    answers = {text_of(r["payload"]) for r in api.responses[seen:]}
    assert len(answers) == 1 and "snoozed until" in answers.pop()
    assert count(company, CollectionActivity, CollectionActivity.kind == "snooze") == 1
    # Send reminder: one e-mail queued; the copies are told it already went
    body = prepared_click(slack, "UCOLL001", account, "collections_reminder", block_id=block)
    seen = len(api.responses)
    _, _, statuses = replay(slack, body)
    assert statuses == [200] * 11
    api.wait_for(lambda: len(api.responses) >= seen + 5, WAIT, "five more answers")
    reminders = [text_of(r["payload"]) for r in api.responses[seen:]]
    assert sum("Reminder queued" in t for t in reminders) <= 1
    assert all("Reminder queued" in t or "already went" in t for t in reminders), reminders
    with company.db.read_session() as s:
        emails = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).all()
    assert len(emails) == 1
    assert count(company, CollectionActivity, CollectionActivity.kind == "reminder") == 1
    # Approve on an approval card: one decision; the copies are told it is decided
    number = _new_customer_order(company, slack, api)
    body = prepared_click(slack, "UCREDIT1", _card(api, number), "approval_approve")
    _, _, statuses = replay(slack, body)
    assert statuses == [200] * 11
    settled(lambda: count(company, AuditEvent, AuditEvent.action == "approval.approved") == 1,
            "one approval")
    # Credit hold on the customer card: one change, one audit entry
    assert slack.slash(ADMIN, "customer C-GLOBEX").status_code == 200
    card = api.wait_for(lambda: [e for e in api.ephemerals(ADMIN) if "Globex" in text_of(e)]
                        or None, WAIT, "the customer card")[0]
    body = prepared_click(slack, ADMIN, card, "customer_credit_hold")
    _, _, statuses = replay(slack, body)
    assert statuses == [200] * 11
    settled(lambda: count(company, AuditEvent, AuditEvent.action == "customer.credit_hold")
            == 1, "one credit hold")


def test_replayed_modal_opening_clicks_open_one_modal_without_an_error(company, slack,
                                                                       standin, caplog) -> None:
    api = standin.api
    account = worklist(slack, api)
    body = prepared_click(slack, "UCOLL001", account, "collections_log_call",
                          block_id=f"collections_account:{customer_id(company)}")
    _, _, statuses = replay(slack, body)
    assert statuses == [200] * 11
    time.sleep(0.5)
    opened = [c for c in api.calls_to("views.open") if c.ok]
    assert len(opened) == 1
    assert not any("went wrong" in text_of(r["payload"]) for r in api.responses)
    assert errors_logged(caplog) == []


def test_replayed_backorder_choices_and_apply_clicks_change_once(server, slack, standin,
                                                                 api) -> None:
    sandbox = standin.api
    issued = _today() - timedelta(days=20)
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-SHORT", "Shortco", sales_rep="USALES01")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.product(s, "GIZMO", price="10.00", on_hand=6)
        f.invoice(s, "INV-A", total="250.00", issued=issued, due=issued + timedelta(days=30))
        f.invoice(s, "INV-B", total="250.00", issued=issued, due=issued + timedelta(days=30))
        number = f.order(s, "C-SHORT", lines=[("GIZMO", 10)]).number
    server.deps.notify_outbox()
    # given the backorder notice in the rep's DM
    dm = sandbox.wait_for(lambda: next((m for m in sandbox.dm_messages("USALES01")
                                        if m["text"] == f"Order {number} is short of stock"),
                                       None), WAIT, "the backorder DM")
    # when each choice is clicked, replayed, then sent 10 times at once (each click's
    # response_url takes 5 answers: once they are in, its first copy has been handled); and
    # the Wait click is replayed again after Ship partial was chosen
    bodies = {}
    for action, where in (("backorder_wait", None), ("backorder_ship_partial", None),
                          ("backorder_wait", None), ("backorder_cancel_line", "backorder_line:1")):
        seen = len(sandbox.responses)
        if action in bodies:  # its response_url is used up: no answer can come any more
            assert replay(slack, bodies[action])[2] == [200] * 11
            time.sleep(1.0)
            continue
        bodies[action] = prepared_click(slack, "USALES01", dm, action, block_id=where)
        assert replay(slack, bodies[action])[2] == [200] * 11
        sandbox.wait_for(lambda s=seen: len(sandbox.responses) >= s + 5, WAIT, "5 answers")
        answers = {text_of(r["payload"]) for r in sandbox.responses[seen:]}
        assert len(answers) == 1, answers  # every copy is told what the first was told
    # then each choice is recorded and told to billing once
    assert count(server, AuditEvent, AuditEvent.action == "order.backorder_choice") == 2
    assert count(server, AuditEvent, AuditEvent.action == "order.line_cancelled") == 1
    with server.db.read_session() as s:
        told = [r.payload["context"].get("choice") for r in s.exec(select(OutboxMessage))
                if r.payload.get("template") == "backorder_notice"
                and r.payload["context"].get("audience") == "billing"
                and r.payload["context"].get("choice")]
    assert sorted(told) == ["cancel_line", "ship_partial"]
    # given a payment the engine was unsure about, and its suggestion card
    paid = api.post("/payments", json={"amount": "250.00", "currency": "USD",
                                       "received_at": f"{TODAY.isoformat()}T12:00:00+00:00",
                                       "payer_name": "GLOBEX CORP", "external_id": "BANK-1"})
    assert paid.status_code == 201, paid.text
    card = sandbox.wait_for(lambda: next((m for m in sandbox.messages("CAR000001")
                                          if "BANK-1" in text_of(m) or "250.00" in m["text"]),
                                         None), WAIT, "the suggestion card")
    updates_before = len(sandbox.calls_to("chat.update"))  # the rep's backorder notice
    # when Apply is clicked, replayed, then sent 10 times at once
    body = prepared_click(slack, "UCOLL001", card, ids.CASHAPP_APPLY,
                          block_id=f"cashapp:{paid.json()['id']}:1")
    assert replay(slack, body)[2] == [200] * 11
    # then the payment is applied once and the card updated once
    from models import Allocation

    settled(lambda: count(server, Allocation) == 1, "one allocation")
    sandbox.wait_for(lambda: len(sandbox.calls_to("chat.update")) > updates_before, WAIT,
                     "the card update")
    time.sleep(0.5)
    assert len(sandbox.calls_to("chat.update")) == updates_before + 1


def test_a_decision_modal_with_damaged_metadata_decides_nothing(company, slack,
                                                                 standin, caplog) -> None:
    api = standin.api
    number = _new_customer_order(company, slack, api)
    slack.click("UCREDIT1", _card(api, number), ids.REJECT)
    modal = api.wait_for(lambda: (api.views_for("UCREDIT1") or [None])[-1], WAIT)
    for damaged in ("{not json", '{"approval_id": "x"}', "[]"):
        api.tamper_view(modal["id"], private_metadata=damaged)
        response = slack.submit_view("UCREDIT1", modal, {
            ids.REJECT_REASON_BLOCK: {ids.REJECT_REASON_INPUT: "no"}})
        assert response.status_code == 200
        assert "came back damaged" in api.view_errors(modal["id"])[ids.REJECT_REASON_BLOCK]
    with company.db.read_session() as s:
        assert s.exec(select(Approval)).one().status == "pending"
    assert errors_logged(caplog) == []


def test_a_replayed_command_cannot_undo_a_later_one(company, slack, standin) -> None:
    from urllib.parse import parse_qs

    from models import UserRole

    api = standin.api
    captured: list[str] = []
    send = slack.send

    def keep(body: str, content_type: str, **opts):
        captured.append(body)
        return send(body, content_type, **opts)

    slack.send = keep
    # given an admin who grants a role, then takes it back
    for text in ("role add <@UNOBODY1> collector", "role remove <@UNOBODY1> collector",
                 "policy set max_discount_pct 20", "policy set max_discount_pct 25"):
        seen = len(api.responses)
        assert slack.slash(ADMIN, text).status_code == 200
        api.wait_for(lambda s=seen: len(api.responses) > s, WAIT, text)
    slack.send = send
    grant, _, first_policy, _ = captured
    assert parse_qs(grant)["text"] == ["role add <@UNOBODY1> collector"]
    # when the old "add" and the old policy change are replayed, once and 10 times at once
    for body in (grant, first_policy):
        assert replay(slack, body)[2] == [200] * 11
    time.sleep(1.0)
    # then neither came back
    with company.db.read_session() as s:
        assert s.get(UserRole, ("UNOBODY1", "collector")) is None
    assert count(company, AuditEvent, AuditEvent.action == "role.granted",
                 AuditEvent.entity_id == "UNOBODY1") == 1
    from models import Policy

    with company.db.read_session() as s:
        assert s.get(Policy, "max_discount_pct").value == "25"
    assert count(company, AuditEvent, AuditEvent.action.like("policy%")) == 2


def test_signed_events_and_shortcuts_of_the_wrong_shape_get_a_400(company, slack,
                                                                  caplog) -> None:
    """The fields the message shortcut and the `message` / `link_shared` / `function_executed`
    listeners read have their shape checked before any listener runs, like a click's or a
    form's: a signed payload with a number where Slack puts text is refused (400), never a
    traceback (before or after the ack)."""
    before = changes(company)
    message = {"type": "message", "channel": "C0GENERAL", "user": "USALES01",
               "ts": "1795521602.000100"}
    shortcut = {"callback_id": ids.SHORTCUT_DISPUTE, "trigger_id": "1.2.abc",
                "channel": {"id": "C0GENERAL"},
                "response_url": "https://hooks.slack.com/actions/T0001/1/x"}
    bodies = {
        "shortcut message text a number": _interaction(
            "message_action", **shortcut, message={"text": 7, "ts": "1.2", "user": "U1"}),
        "shortcut message user a list": _interaction(
            "message_action", **shortcut, message={"text": "INV-1", "ts": "1.2",
                                                   "user": ["U1"]}),
        "message text a list": json.dumps({"type": "event_callback", "event_id": "Ev3",
                                           "event": {**message, "text": ["INV-OLD-1"]}}),
        "message channel missing": json.dumps({
            "type": "event_callback", "event_id": "Ev4",
            "event": {**message, "channel": None, "text": "about INV-OLD-1"}}),
        "step without an execution id": json.dumps({
            "type": "event_callback", "event_id": "Ev6",
            "event": {"type": "function_executed", "inputs": {},
                      "function": {"callback_id": "look_up_customer_balance"}}}),
        "step function not an object": json.dumps({
            "type": "event_callback", "event_id": "Ev7",
            "event": {"type": "function_executed", "function_execution_id": "Fx1",
                      "function": "look_up_customer_balance", "inputs": {}}}),
        "step inputs not an object": json.dumps({
            "type": "event_callback", "event_id": "Ev8",
            "event": {"type": "function_executed", "function_execution_id": "Fx2",
                      "function": {"callback_id": "look_up_customer_balance"}, "inputs": ["x"]}}),
        "link_shared links not objects": json.dumps({
            "type": "event_callback", "event_id": "Ev5",
            "event": {"type": "link_shared", "channel": "C0GENERAL", "user": "USALES01",
                      "message_ts": "1.2", "links": ["https://o2c.example/invoices/X"]}}),
    }
    statuses = {}
    for name, body in bodies.items():
        statuses[name] = slack.send(body, JSON if body.startswith("{") else FORM).status_code
    assert statuses == dict.fromkeys(bodies, 400)
    time.sleep(1)  # (a listener that ran would fail after its ack)
    assert changes(company) == before
    assert errors_logged(caplog) == []
