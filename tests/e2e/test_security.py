"""Request verification, Events API retries, and escaping of user-supplied text (SPEC §5.1,
§5.2, §5.6)."""

from __future__ import annotations

import time

from sqlmodel import func, select

from models import AuditEvent, SlackEventReceipt, UserRole
from sandbox.driver import slack_timestamp
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, everything_sent

EVIL = "<!channel> <https://x.example|Bank>"


def audit_count(db) -> int:
    with db.read_session() as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


def test_bad_signature_is_401_and_changes_nothing(server, slack, standin) -> None:
    # given
    before = audit_count(server.db)
    # when
    response = slack.slash(ADMIN, "role add <@UCOLL001> collector", signature="v0=" + "0" * 64)
    # then
    assert response.status_code == 401
    time.sleep(0.3)
    with server.db.read_session() as s:
        assert s.get(UserRole, ("UCOLL001", "collector")) is None
    assert audit_count(server.db) == before
    assert standin.api.responses == []


def test_stale_timestamp_is_401_and_changes_nothing(server, slack, standin) -> None:
    # given: correctly signed, but six minutes old (a replay)
    old = slack_timestamp() - 6 * 60
    before = audit_count(server.db)
    # when
    response = slack.slash(ADMIN, "role add <@UCOLL001> collector", timestamp=old)
    # then
    assert response.status_code == 401
    time.sleep(0.3)
    with server.db.read_session() as s:
        assert s.get(UserRole, ("UCOLL001", "collector")) is None
    assert audit_count(server.db) == before


def test_url_verification_is_answered_with_its_challenge_only_when_signed(server, slack
                                                                         ) -> None:
    # when Slack checks the Request URL (signed), then someone else does (unsigned, stale)
    answer = slack.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    unsigned = slack.url_verification("x", signature="v0=" + "0" * 64)
    stale = slack.url_verification("x", timestamp=slack_timestamp() - 6 * 60)
    # then only Slack's gets the challenge back
    assert answer.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in answer.text
    assert (unsigned.status_code, stale.status_code) == (401, 401)


def test_event_retries_are_processed_once(server, slack, standin) -> None:
    # given
    event = {"type": "app_home_opened", "user": "USALES01", "channel": "D0USALES01",
             "tab": "home", "event_ts": "1700000000.000100"}
    # when: the original delivery, then Slack's retry of the same event_id
    first = slack.event(event, event_id="Ev0RETRY1")
    retry = slack.event(event, event_id="Ev0RETRY1", retry_num=1, retry_reason="http_timeout")
    # then
    assert first.status_code == 200 and retry.status_code == 200
    standin.api.wait_for_calls("views.publish")
    time.sleep(0.5)
    assert len(standin.api.calls_to("views.publish")) == 1
    with server.db.read_session() as s:
        assert s.exec(select(func.count()).select_from(SlackEventReceipt)).one() == 1
    assert "Your roles" in str(standin.api.home_view("USALES01"))


def test_a_retried_direct_message_is_answered_once(server, slack, standin) -> None:
    # given a person's message to the bot in its DM (it answers with a pointer to help)
    channel = standin.api.ensure_conversation("DUSALES01")
    event = {"type": "message", "channel": channel, "user": "USALES01", "text": "hello?",
             "ts": "1700000000.000200", "channel_type": "im"}
    # when: the original delivery, then Slack's retries of the same event_id
    first = slack.event(event, event_id="Ev0RETRYDM")
    retries = [slack.event(event, event_id="Ev0RETRYDM", retry_num=n,
                           retry_reason="http_timeout") for n in (1, 2)]
    # then it is answered once
    assert [r.status_code for r in (first, *retries)] == [200, 200, 200]
    standin.api.wait_for_calls("chat.postMessage")
    time.sleep(0.5)
    posts = standin.api.calls_to("chat.postMessage")
    assert len(posts) == 1 and "/o2c help" in posts[0].params["text"]


def test_hostile_customer_name_is_escaped_everywhere(server, slack, standin, api) -> None:
    # given: a customer whose name tries to ping the channel and forge a link
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.product(s, "WID-1", price="10.00")
    created = api.post("/customers", json={
        "external_id": "C-EVIL", "name": EVIL, "currency": "USD", "credit_limit": "100.00",
        "payment_terms": "NET30", "credit_reviewed": False})
    assert created.status_code == 201
    order = api.post("/orders", json={"customer": "C-EVIL", "sales_rep": "USALES01",
                                      "currency": "USD", "notes": EVIL,
                                      "lines": [{"sku": "WID-1", "quantity": 1}]})
    assert order.status_code == 201, order.text
    order = order.json()
    with server.db.transaction() as s:
        f.invoice(s, "INV-EVIL-1", "C-EVIL", total="20.00")
    # when: every surface that shows the name is exercised
    ask(slack, standin.api, "USALES01", f"order {order['number']}")
    ask(slack, standin.api, "USALES01", "orders C-EVIL")
    ask(slack, standin.api, "USALES01", "customer C-EVIL")
    ask(slack, standin.api, "USALES01", "customer channel")  # fuzzy: candidates list
    ask(slack, standin.api, "USALES01", "ar")
    ask(slack, standin.api, "USALES01", f"order {EVIL}")
    standin.api.wait_for_calls("chat.postMessage", count=2)  # the rep's DM and the card
    # then: the raw control sequences appear nowhere the bot sent
    sent = everything_sent(standin.api)
    assert "&lt;!channel&gt;" in sent
    assert "<!channel>" not in sent
    assert "<https://x.example|Bank>" not in sent
