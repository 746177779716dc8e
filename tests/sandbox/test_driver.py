"""The driver sends requests signed and shaped exactly like Slack's, and mirrors the Slack
client on the stand-in; proven against slack_sdk's verifier and a real bolt App."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from sandbox.driver import InvalidViewResponse, SlackDriver, sign, slack_timestamp
from sandbox.elements import ElementNotFound

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "Order SO-1"}}
APPROVE = {"type": "button", "action_id": "approve", "style": "primary",
           "text": {"type": "plain_text", "text": "Approve"}, "value": "SO-1"}
PICK = {"type": "static_select", "action_id": "terms",
        "placeholder": {"type": "plain_text", "text": "Terms"},
        "options": [{"text": {"type": "plain_text", "text": "Net 30"}, "value": "net30"},
                    {"text": {"type": "plain_text", "text": "Net 60"}, "value": "net60"}]}
BLOCKS = [SECTION, {"type": "actions", "block_id": "decide", "elements": [APPROVE, PICK]}]


def _input(block_id: str, element: dict, optional: bool = False) -> dict:
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": block_id},
            "element": {"action_id": "v", **element}}


FORM_VIEW = {
    "type": "modal", "callback_id": "order_form", "private_metadata": "SO-1",
    "title": {"type": "plain_text", "text": "New order"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [
        _input("customer", {"type": "plain_text_input"}),
        _input("qty", {"type": "number_input", "is_decimal_allowed": False}),
        _input("terms", {"type": "static_select", "options": PICK["options"]}),
        _input("owner", {"type": "users_select"}),
        _input("regions", {"type": "multi_static_select", "options": PICK["options"]},
               optional=True),
        _input("due", {"type": "datepicker", "initial_date": "2025-01-31"}),
        _input("flags", {"type": "checkboxes", "options": PICK["options"]}, optional=True),
        _input("account", {"type": "external_select"}, optional=True),
    ],
}
FILLED = {"customer": {"v": "ACME"}, "qty": {"v": 12}, "terms": {"v": "net60"},
          "owner": {"v": "U2"}}


def payload_of(request: dict) -> dict:
    return json.loads(dict(parse_qsl(request["body"]))["payload"])


@pytest.fixture
def driver(recorder, api, signing_secret):
    with SlackDriver(recorder.url, signing_secret, api=api) as d:
        yield d


def _post(api, client, blocks=BLOCKS) -> dict:
    ts = client.chat_postMessage(channel="C1", text="Order SO-1", blocks=blocks)["ts"]
    return api.message("C1", ts)


def _open(api, client, view=FORM_VIEW, user="U1") -> dict:
    return client.views_open(trigger_id=api.issue_trigger(user), view=view)["view"]


# -- signing -------------------------------------------------------------------------------

def test_requests_are_signed_like_slack(driver, recorder, signing_secret):
    # when
    driver.slash("U1", "new order")
    # then slack_sdk's own verifier accepts the signature
    sent = recorder.last
    verifier = SignatureVerifier(signing_secret)
    assert verifier.is_valid(sent["body"], sent["headers"]["x-slack-request-timestamp"],
                             sent["headers"]["x-slack-signature"])
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert sent["path"] == "/slack/events"
    assert sign(signing_secret, "1", "b") == verifier.generate_signature(timestamp="1", body="b")


def test_forged_stale_and_retried_requests(driver, recorder, signing_secret):
    verifier = SignatureVerifier(signing_secret)
    # when a stale timestamp is forged, then it is signed correctly yet too old
    driver.url_verification("c", timestamp=slack_timestamp() - 600)
    stale = recorder.last["headers"]
    assert stale["x-slack-signature"] == sign(signing_secret, stale["x-slack-request-timestamp"],
                                              recorder.last["body"])
    assert not verifier.is_valid(recorder.last["body"], stale["x-slack-request-timestamp"],
                                 stale["x-slack-signature"])
    # when a signature is forged, then it is sent verbatim and fails verification
    driver.url_verification("c", signature="v0=deadbeef")
    forged = recorder.last["headers"]
    assert forged["x-slack-signature"] == "v0=deadbeef"
    assert not verifier.is_valid(recorder.last["body"], forged["x-slack-request-timestamp"],
                                 "v0=deadbeef")
    # when sent as a retry, then Slack's retry headers are present
    driver.event({"type": "app_mention", "user": "U1", "text": "hi"}, event_id="Ev1",
                 retry_num=1, retry_reason="http_timeout")
    assert recorder.last["headers"]["x-slack-retry-num"] == "1"
    assert recorder.last["headers"]["x-slack-retry-reason"] == "http_timeout"
    with pytest.raises(TypeError, match="unknown send option"):
        driver.slash("U1", "x", retries=1)


# -- payload shapes ------------------------------------------------------------------------

def test_slash_command_has_exactly_slacks_fields(driver, recorder, api):
    # when
    driver.slash("U1", "status SO-1", channel_id="C1", channel_name="approvals")
    # then
    fields = parse_qsl(recorder.last["body"])
    assert [k for k, _ in fields] == [
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name",
        "command", "text", "api_app_id", "is_enterprise_install", "response_url", "trigger_id"]
    values = dict(fields)
    assert values["user_name"] == "alice" and values["command"] == "/o2c"
    assert values["text"] == "status SO-1" and values["is_enterprise_install"] == "false"
    assert values["response_url"].startswith(api.base_url + "/response/")
    assert len(values["trigger_id"].split(".")) == 3


def test_click_on_message_sends_block_actions_in_slacks_shape(driver, recorder, api, client):
    # given a bot message with a button
    message = _post(api, client)
    # when
    driver.click("U1", message, "approve")
    # then
    payload = payload_of(recorder.last)
    assert set(payload) == {
        "type", "user", "api_app_id", "token", "container", "trigger_id", "team", "enterprise",
        "is_enterprise_install", "channel", "message", "state", "response_url", "actions"}
    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": "U1", "username": "alice", "name": "alice",
                               "team_id": "T0001"}
    assert payload["container"] == {"type": "message", "message_ts": message["ts"],
                                    "channel_id": "C1", "is_ephemeral": False}
    assert payload["channel"] == {"id": "C1", "name": "approvals"}
    assert payload["message"]["ts"] == message["ts"]
    assert payload["message"]["blocks"] == message["blocks"]
    assert "history" not in payload["message"] and "channel" not in payload["message"]
    [action] = payload["actions"]
    assert set(action) == {"type", "action_id", "block_id", "text", "value", "style",
                           "action_ts"}
    assert (action["type"], action["block_id"], action["value"]) == ("button", "decide", "SO-1")
    assert action["text"] == APPROVE["text"]


def test_click_can_override_value_and_pick_select_options(driver, recorder, api, client):
    message = _post(api, client)
    driver.click("U1", message, "approve", value="SO-9")
    assert payload_of(recorder.last)["actions"][0]["value"] == "SO-9"
    # when a select option is chosen
    driver.click("U1", message, "terms", selected="net60")
    payload = payload_of(recorder.last)
    # then selected_option carries the option and the message state reflects it
    option = {"text": {"type": "plain_text", "text": "Net 60"}, "value": "net60"}
    assert payload["actions"][0]["selected_option"] == option
    assert payload["state"]["values"]["decide"]["terms"] == {"type": "static_select",
                                                             "selected_option": option}
    with pytest.raises(ElementNotFound, match="options: \\['net30', 'net60'\\]"):
        driver.click("U1", message, "terms", selected="net90")


def test_click_on_missing_action_lists_what_is_there(driver, api, client):
    message = _post(api, client)
    with pytest.raises(ElementNotFound, match=r"'reject'.*decide/approve \(button\)"):
        driver.click("U1", message, "reject")


def test_click_on_updated_message_uses_the_current_version(driver, api, client):
    # given a message whose button was removed by an update
    message = _post(api, client)
    client.chat_update(channel="C1", ts=message["ts"], text="done", blocks=[SECTION])
    # then the stale dict cannot be clicked, as in Slack
    with pytest.raises(ElementNotFound):
        driver.click("U1", message, "approve")


def test_click_on_ephemeral_omits_message_and_marks_container(driver, recorder, api, client):
    client.chat_postEphemeral(channel="C1", user="U1", text="choose", blocks=BLOCKS)
    [ephemeral] = api.ephemerals("U1")
    driver.click("U1", ephemeral, "approve")
    payload = payload_of(recorder.last)
    assert "message" not in payload and payload["container"]["is_ephemeral"] is True
    # and the response_url can replace that ephemeral
    httpx.post(payload["response_url"], json={"replace_original": True, "text": "chosen"})
    assert [e["text"] for e in api.ephemerals("U1")] == ["chosen"]


def test_click_in_modal_uses_view_container_and_records_state(driver, recorder, api, client):
    view = _open(api, client, {**FORM_VIEW, "blocks": [
        *FORM_VIEW["blocks"], {"type": "actions", "block_id": "more", "elements": [PICK]}]})
    driver.click("U1", view, "terms", selected="net30")
    payload = payload_of(recorder.last)
    assert set(payload) == {"type", "user", "api_app_id", "token", "container", "trigger_id",
                            "team", "enterprise", "is_enterprise_install", "view", "actions"}
    assert payload["container"] == {"type": "view", "view_id": view["id"]}
    assert payload["view"]["state"]["values"]["more"]["terms"]["selected_option"]["value"] == (
        "net30")
    assert api.view(view["id"])["state"]["values"]["more"]["terms"]["selected_option"]


def test_submit_view_builds_slacks_state_values(driver, recorder, api, client):
    # given an open modal
    view = _open(api, client)
    # when submitted
    driver.submit_view("U1", view, {**FILLED, "regions": {"v": ["net30", "net60"]},
                                    "flags": {"v": ["net30"]}, "account": {"v": "ACC-7"},
                                    "due": {"v": dt.date(2025, 2, 1)}})
    # then
    payload = payload_of(recorder.last)
    assert set(payload) == {"type", "user", "api_app_id", "token", "team", "trigger_id", "view",
                            "response_urls", "is_enterprise_install", "enterprise"}
    assert payload["type"] == "view_submission" and payload["response_urls"] == []
    sent = payload["view"]
    assert (sent["id"], sent["callback_id"], sent["private_metadata"]) == (
        view["id"], "order_form", "SO-1")
    assert sent["root_view_id"] == view["id"] and sent["hash"] == view["hash"]
    net30 = {"text": {"type": "plain_text", "text": "Net 30"}, "value": "net30"}
    net60 = {"text": {"type": "plain_text", "text": "Net 60"}, "value": "net60"}
    assert sent["state"]["values"] == {
        "customer": {"v": {"type": "plain_text_input", "value": "ACME"}},
        "qty": {"v": {"type": "number_input", "value": "12"}},
        "terms": {"v": {"type": "static_select", "selected_option": net60}},
        "owner": {"v": {"type": "users_select", "selected_user": "U2"}},
        "regions": {"v": {"type": "multi_static_select", "selected_options": [net30, net60]}},
        "due": {"v": {"type": "datepicker", "selected_date": "2025-02-01"}},
        "flags": {"v": {"type": "checkboxes", "selected_options": [net30]}},
        "account": {"v": {"type": "external_select", "selected_option": {
            "text": {"type": "plain_text", "text": "ACC-7", "emoji": True}, "value": "ACC-7"}}},
    }


def test_submit_view_fills_untouched_inputs_and_checks_required(driver, recorder, api, client):
    view = _open(api, client)
    driver.submit_view("U1", view, FILLED)
    values = payload_of(recorder.last)["view"]["state"]["values"]
    assert values["due"]["v"] == {"type": "datepicker", "selected_date": "2025-01-31"}
    assert values["regions"]["v"] == {"type": "multi_static_select", "selected_options": []}
    assert values["account"]["v"] == {"type": "external_select", "selected_option": None}
    # when a required input is left empty, then Slack's client would not submit
    other = _open(api, client)
    with pytest.raises(ValueError, match="required input 'customer'"):
        driver.submit_view("U1", other, {"qty": {"v": 1}})
    with pytest.raises(ElementNotFound, match="no element nope/v"):
        driver.submit_view("U1", other, {"nope": {"v": 1}})


def test_view_submission_answers_drive_the_modal_stack(driver, recorder, api, client):
    view = _open(api, client)
    # errors keep it open
    recorder.reply = (200, {"Content-Type": "application/json"},
                      b'{"response_action":"errors","errors":{"qty":"Must be positive"}}')
    response = driver.submit_view("U1", view, FILLED)
    assert response.json()["response_action"] == "errors"
    assert api.view_errors(view["id"]) == {"qty": "Must be positive"}
    assert [v["id"] for v in api.views_for("U1")] == [view["id"]]
    # an answer Slack refuses changes nothing; the next valid answer replaces the errors
    recorder.reply = (200, {}, b'{"response_action":"errors","errors":{"nope":"x"}}')
    with pytest.raises(InvalidViewResponse):
        driver.submit_view("U1", view, FILLED)
    assert api.view_errors(view["id"]) == {"qty": "Must be positive"}
    recorder.reply = (200, {}, b'{"response_action":"errors","errors":{"customer":"Unknown"}}')
    driver.submit_view("U1", view, FILLED)
    assert api.view_errors(view["id"]) == {"customer": "Unknown"}
    # update replaces it in place
    new = {"type": "modal", "title": {"type": "plain_text", "text": "Done"},
           "blocks": [SECTION]}
    recorder.reply = (200, {}, json.dumps({"response_action": "update", "view": new}).encode())
    driver.submit_view("U1", view, FILLED)
    assert api.views_for("U1")[0]["title"]["text"] == "Done"
    # push stacks, an empty 200 closes only the top, clear closes all
    recorder.reply = (200, {}, json.dumps({"response_action": "push", "view": new}).encode())
    driver.submit_view("U1", api.view(view["id"]), {})
    top = api.views_for("U1")[-1]
    assert len(api.views_for("U1")) == 2
    recorder.reply = (200, {}, b"")
    driver.submit_view("U1", top, {})
    assert [v["id"] for v in api.views_for("U1")] == [view["id"]]
    recorder.reply = (200, {}, b'{"response_action":"clear"}')
    driver.submit_view("U1", api.view(view["id"]), {})
    assert api.views_for("U1") == []


def test_view_submission_answer_slack_would_refuse_raises(driver, recorder, api, client):
    view = _open(api, client)
    recorder.reply = (200, {}, b'{"response_action":"errors","errors":{"nope":"x"}}')
    with pytest.raises(InvalidViewResponse, match="not an input block_id"):
        driver.submit_view("U1", view, FILLED)


def test_close_view_sends_view_closed_only_when_asked(driver, recorder, api, client):
    quiet = _open(api, client)
    assert driver.close_view("U1", quiet) is None and recorder.requests == []
    assert api.views_for("U1") == []
    noisy = _open(api, client, {**FORM_VIEW, "notify_on_close": True})
    driver.close_view("U1", noisy)
    payload = payload_of(recorder.last)
    assert set(payload) == {"type", "user", "api_app_id", "token", "team", "view", "is_cleared",
                            "is_enterprise_install", "enterprise"}
    assert payload["type"] == "view_closed" and payload["view"]["id"] == noisy["id"]


def test_block_suggestion_shape(driver, recorder, api, client):
    view = _open(api, client)
    driver.block_suggestion("U1", view, "v", "AC")
    payload = payload_of(recorder.last)
    assert payload["type"] == "block_suggestion" and payload["value"] == "AC"
    assert payload["action_id"] == "v" and payload["block_id"] == "customer"
    assert payload["container"] == {"type": "view", "view_id": view["id"]}


def test_event_envelope_and_helpers(driver, recorder, api):
    # when
    driver.event({"type": "app_mention", "user": "U1", "text": "<@U0BOT> hi", "channel": "C1"},
                 event_id="Ev123")
    # then
    envelope = json.loads(recorder.last["body"])
    assert recorder.last["headers"]["content-type"] == "application/json"
    assert {"token", "team_id", "api_app_id", "event", "type", "event_id", "event_time",
            "authorizations", "is_ext_shared_channel"} <= set(envelope)
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev123"
    assert envelope["authorizations"][0]["user_id"] == "U0BOT"
    assert envelope["event"]["event_ts"]
    # app_home_opened / message / url_verification
    driver.app_home_opened("U1")
    home = json.loads(recorder.last["body"])["event"]
    assert (home["type"], home["user"], home["channel"], home["tab"]) == (
        "app_home_opened", "U1", "DU1", "home")
    driver.message("U1", "C1", "hello bot")
    event = json.loads(recorder.last["body"])["event"]
    assert event["type"] == "message" and event["channel_type"] == "channel"
    assert api.message("C1", event["ts"])["text"] == "hello bot"
    driver.url_verification("chal")
    assert json.loads(recorder.last["body"]) == {"token": "legacy-token", "challenge": "chal",
                                                 "type": "url_verification"}


# -- a real bolt App end to end ------------------------------------------------------------

def test_bolt_round_trip_slash_click_update(api, bolt_app, serve_bolt, signing_secret):
    # given a bolt app whose WebClient points at the stand-in
    @bolt_app.command("/o2c")
    def on_command(ack, command, client):
        ack()
        client.chat_postMessage(channel=command["channel_id"], text=f"Order {command['text']}",
                                blocks=[SECTION, {"type": "actions", "elements": [
                                    {**APPROVE, "value": command["text"]}]}])

    @bolt_app.action("approve")
    def on_approve(ack, body, client):
        ack()
        order, user = body["actions"][0]["value"], body["user"]["id"]
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"],
                           text=f"Approved {order} by <@{user}>", blocks=[])

    server = serve_bolt(bolt_app)
    with SlackDriver(server.url, signing_secret, api=api) as driver:
        # when a user runs the command and clicks the button
        sent = driver.slash("U1", "SO-42", channel_id="C1", channel_name="approvals")
        assert sent.status_code == 200
        api.wait_for_calls("chat.postMessage")
        [message] = api.messages("C1")
        assert driver.click("U1", message, "approve").status_code == 200
        api.wait_for_calls("chat.update")
    # then the stand-in shows the updated message
    updated = api.message("C1", message["ts"])
    assert updated["text"] == "Approved SO-42 by <@U1>" and updated["edited"] is True
    assert updated["history"][0]["text"] == "Order SO-42"


def test_bolt_round_trip_modal_errors_then_success(api, bolt_app, serve_bolt, signing_secret):
    # given a command that opens a modal whose submission is validated
    @bolt_app.command("/o2c")
    def on_command(ack, body, client):
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=FORM_VIEW)

    @bolt_app.view("order_form")
    def on_submit(ack, view, body, client, respond):
        qty = int(view["state"]["values"]["qty"]["v"]["value"])
        if qty <= 0:
            ack(response_action="errors", errors={"qty": "Must be positive"})
            return
        ack()
        client.chat_postMessage(channel=body["user"]["id"], text=f"Created order for {qty}")

    server = serve_bolt(bolt_app)
    with SlackDriver(server.url, signing_secret, api=api) as driver:
        driver.slash("U1", "new")
        [opened] = api.wait_for(lambda: api.views_for("U1"))
        # when submitted with a bad then a good quantity
        rejected = driver.submit_view("U1", opened, {**FILLED, "qty": {"v": 0}})
        accepted = driver.submit_view("U1", opened, FILLED)
        api.wait_for(lambda: api.dm_messages("U1"))
    # then
    assert rejected.json() == {"response_action": "errors", "errors": {"qty": "Must be positive"}}
    assert accepted.status_code == 200 and api.views_for("U1") == []
    assert api.view_errors(opened["id"]) == {}  # the accepted answer cleared them
    assert api.dm_messages("U1")[0]["text"] == "Created order for 12"


def test_bolt_rejects_forged_and_stale_requests(api, bolt_app, serve_bolt, signing_secret):
    bolt_app.command("/o2c")(lambda ack: ack())
    server = serve_bolt(bolt_app)
    with SlackDriver(server.url, signing_secret, api=api) as driver:
        assert driver.slash("U1", "x").status_code == 200
        assert driver.slash("U1", "x", signature="v0=00").status_code == 401
        assert driver.slash("U1", "x", timestamp=slack_timestamp() - 3600).status_code == 401


def test_bolt_respond_replaces_the_clicked_message(api, client, bolt_app, serve_bolt,
                                                   signing_secret):
    @bolt_app.action("approve")
    def on_approve(ack, respond):
        ack()
        respond(text="Approved", replace_original=True)

    server = serve_bolt(bolt_app)
    message = _post(api, client)
    with SlackDriver(server.url, signing_secret, api=api) as driver:
        driver.click("U1", message, "approve")
        api.wait_for(lambda: api.responses)
    assert api.message("C1", message["ts"])["text"] == "Approved"
    assert api.responses[0]["effect"] == "replaced"
