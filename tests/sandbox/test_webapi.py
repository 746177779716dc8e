"""The Slack stand-in answers a real slack_sdk WebClient like Slack, records calls, injects
faults and keeps workspace state tests (and later a UI) can inspect."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.webapi import Fault, SlackWebAPI, StandInServer
from tests.sandbox.conftest import BOT_TOKEN

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "Order *SO-1* needs approval"}}
BUTTON_BLOCKS = [SECTION, {"type": "actions", "block_id": "act", "elements": [
    {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "OK"},
     "value": "SO-1"}]}]
QTY_INPUT = {"type": "input", "block_id": "qty",
             "label": {"type": "plain_text", "text": "Quantity"},
             "element": {"type": "number_input", "action_id": "v", "is_decimal_allowed": False}}
MODAL = {"type": "modal", "callback_id": "order", "title": {"type": "plain_text", "text": "Order"},
         "submit": {"type": "plain_text", "text": "Save"}, "private_metadata": "SO-1",
         "blocks": [QTY_INPUT]}


def _error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


# -- round trips ---------------------------------------------------------------------------

def test_api_url_has_trailing_slash_so_webclient_joins_method_names(stand_in, client):
    # given a stand-in's api_url
    assert stand_in.api_url == f"{stand_in.base_url}/api/"
    # when the WebClient calls auth.test
    answer = client.auth_test()
    # then it reached /api/auth.test and got Slack's shape
    assert answer["ok"] and answer["user_id"] == "U0BOT" and answer["team_id"] == "T0001"
    assert [c.method for c in stand_in.api.calls] == ["auth.test"]


def test_post_message_resolves_channel_by_id_name_and_hash_name(api, client):
    # when posting by ID, by bare name and by #name
    answers = [client.chat_postMessage(channel=ref, text="hi", blocks=BUTTON_BLOCKS)
               for ref in ("C1", "approvals", "#approvals")]
    # then all land in C1 with unique increasing ts and Slack's response shape
    assert {a["channel"] for a in answers} == {"C1"}
    stamps = [a["ts"] for a in answers]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)
    message = answers[0]["message"]
    assert message["type"] == "message" and message["user"] == "U0BOT"
    assert message["bot_id"] == "B0BOT" and message["text"] == "hi"
    assert message["blocks"][1]["elements"][0]["action_id"] == "approve"
    assert message["blocks"][0]["block_id"]  # Slack fills in missing block_ids
    stored = api.messages("#approvals")
    assert [m["ts"] for m in stored] == stamps
    assert stored[0]["channel"] == "C1" and stored[0]["edited"] is False


def test_post_message_to_unknown_channel_is_channel_not_found(client):
    error = _error(lambda: client.chat_postMessage(channel="#nope", text="x"))
    assert error.response["error"] == "channel_not_found"


def test_post_to_user_id_goes_to_their_dm_like_conversations_open(api, client):
    # when the bot posts with channel=<user id> and opens a DM
    posted = client.chat_postMessage(channel="U1", text="your order shipped")
    opened = client.conversations_open(users="U1")
    # then both name the same stable DM channel
    assert posted["channel"] == opened["channel"]["id"] == "DU1"
    assert opened["already_open"] is True
    assert [m["text"] for m in api.dm_messages("U1")] == ["your order shipped"]
    assert api.messages("U1") == api.dm_messages("U1")
    info = client.conversations_info(channel="DU1")["channel"]
    assert info["is_im"] and info["user"] == "U1"


def test_post_to_a_dm_id_before_it_was_opened(api, client):
    assert client.chat_postMessage(channel="DU2", text="hi")["channel"] == "DU2"
    assert [m["text"] for m in api.dm_messages("U2")] == ["hi"]


def test_concurrent_posts_get_unique_timestamps(api, stand_in):
    # given several bot threads posting at once
    def post_many() -> None:
        client = WebClient(token="xoxb-test", base_url=stand_in.api_url)
        for i in range(15):
            client.chat_postMessage(channel="C1", text=str(i))

    threads = [threading.Thread(target=post_many) for _ in range(6)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every post was stored once, with a unique, ordered ts
    stamps = [m["ts"] for m in api.messages("C1")]
    assert len(stamps) == len(set(stamps)) == 90 == len(api.calls)
    assert stamps == sorted(stamps, key=lambda ts: tuple(map(int, ts.split("."))))


def test_conversations_open_unknown_user_and_info_of_channel(client):
    assert _error(lambda: client.conversations_open(users="U404")).response["error"] == (
        "user_not_found")
    info = client.conversations_info(channel="C1")["channel"]
    assert info["name"] == "approvals" and info["is_channel"] and not info["is_private"]


def test_chat_update_edits_in_place_and_keeps_history(api, client):
    # given a posted message with blocks
    ts = client.chat_postMessage(channel="C1", text="v1", blocks=BUTTON_BLOCKS)["ts"]
    # when updated with text only
    answer = client.chat_update(channel="C1", ts=ts, text="v2")
    # then Slack's shape; blocks kept (Slack retains omitted blocks); history records v1
    assert answer["ts"] == ts and answer["text"] == "v2"
    assert answer["message"]["edited"]["user"] == "U0BOT"
    message = api.message("C1", ts)
    assert message["text"] == "v2" and message["edited"] is True
    assert message["blocks"][1]["block_id"] == "act"
    assert [h["text"] for h in message["history"]] == ["v1"]
    # and updating with blocks=[] removes them
    client.chat_update(channel="C1", ts=ts, text="v3", blocks=[])
    assert api.message("C1", ts)["blocks"] == []


def test_chat_update_unknown_ts_is_message_not_found(client):
    error = _error(lambda: client.chat_update(channel="C1", ts="1.000001", text="x"))
    assert error.response["error"] == "message_not_found"


def test_post_ephemeral_delete_permalink_and_reaction(api, client):
    # when
    eph = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    ts = client.chat_postMessage(channel="C1", text="hello")["ts"]
    link = client.chat_getPermalink(channel="C1", message_ts=ts)
    client.reactions_add(channel="C1", timestamp=ts, name="white_check_mark")
    # then
    assert eph["message_ts"] and [e["text"] for e in api.ephemerals("U1")] == ["only you"]
    assert api.ephemerals("U2") == []
    assert link["permalink"].endswith(f"/archives/C1/p{ts.replace('.', '')}")
    assert api.message("C1", ts)["reactions"] == [
        {"name": "white_check_mark", "users": ["U0BOT"], "count": 1}]
    assert _error(lambda: client.reactions_add(channel="C1", timestamp=ts,
                                               name="white_check_mark")).response["error"] == (
        "already_reacted")
    # and deleting removes it
    assert client.chat_delete(channel="C1", ts=ts)["ts"] == ts
    assert api.messages("C1") == []
    assert _error(lambda: client.chat_delete(channel="C1", ts=ts)).response["error"] == (
        "message_not_found")


def test_post_ephemeral_to_unknown_user(client):
    error = _error(lambda: client.chat_postEphemeral(channel="C1", user="U404", text="x"))
    assert error.response["error"] == "user_not_found"


def test_thread_replies_are_linked_to_parent(api, client):
    parent = client.chat_postMessage(channel="C1", text="parent")["ts"]
    client.chat_postMessage(channel="C1", text="reply", thread_ts=parent)
    assert [m["text"] for m in api.thread("C1", parent)] == ["reply"]
    assert api.message("C1", parent)["reply_count"] == 1


def test_users_info_and_lookup_by_email_shapes(client):
    user = client.users_info(user="U1")["user"]
    assert user == {
        "id": "U1", "team_id": "T0001", "name": "alice", "deleted": False,
        "real_name": "Alice Doe", "tz": "America/New_York", "tz_label": "Eastern Time",
        "tz_offset": -18000, "is_admin": False, "is_owner": False, "is_bot": False,
        "is_app_user": False,
        "profile": {"real_name": "Alice Doe", "display_name": "alice",
                    "real_name_normalized": "Alice Doe", "display_name_normalized": "alice",
                    "team": "T0001", "email": "alice@example.com"}}
    assert client.users_lookupByEmail(email="BOB@example.com")["user"]["id"] == "U2"
    assert _error(lambda: client.users_info(user="U404")).response["error"] == "user_not_found"
    assert _error(lambda: client.users_lookupByEmail(email="x@y.z")).response["error"] == (
        "users_not_found")


# -- views and triggers --------------------------------------------------------------------

def test_views_open_push_update_and_publish(api, client):
    # when a modal is opened with an issued trigger
    view = client.views_open(trigger_id=api.issue_trigger("U1"), view=MODAL)["view"]
    # then Slack's full view object comes back and the user's stack holds it
    assert view["id"].startswith("V") and view["root_view_id"] == view["id"]
    assert view["state"] == {"values": {}} and view["callback_id"] == "order"
    assert view["private_metadata"] == "SO-1" and view["hash"]
    assert [v["id"] for v in api.views_for("U1")] == [view["id"]]
    # when another is pushed, then stacked on top
    pushed = client.views_push(trigger_id=api.issue_trigger("U1"), view=MODAL)["view"]
    assert pushed["previous_view_id"] == view["id"] and pushed["root_view_id"] == view["id"]
    assert len(api.views_for("U1")) == 2
    # when updated with the current hash, then same id, new hash; stale hash conflicts
    updated = client.views_update(view_id=view["id"], hash=view["hash"],
                                  view={**MODAL, "private_metadata": "SO-2"})["view"]
    assert updated["id"] == view["id"] and api.view(view["id"])["private_metadata"] == "SO-2"
    assert _error(lambda: client.views_update(view_id=view["id"], hash="stale",
                                              view=MODAL)).response["error"] == "hash_conflict"
    assert _error(lambda: client.views_update(view_id="VNOPE", view=MODAL)).response[
        "error"] == "not_found"
    # and the home tab is published per user
    home = client.views_publish(user_id="U1", view={"type": "home", "blocks": [SECTION]})
    assert api.home_view("U1")["id"] == home["view"]["id"]


def test_views_open_rejects_unknown_reused_and_expired_triggers():
    # given a short trigger lifetime
    with StandInServer(SlackWebAPI(trigger_ttl=0.2)) as server:
        client = WebClient(token="xoxb-test", base_url=server.api_url)
        used, stale = server.api.issue_trigger("U1"), server.api.issue_trigger("U1")
        client.views_open(trigger_id=used, view=MODAL)
        time.sleep(0.3)
        # then
        for trigger, code in (("1.2.bogus", "invalid_trigger_id"), (used, "exchanged_trigger_id"),
                              (stale, "expired_trigger_id")):
            error = _error(lambda t=trigger: client.views_open(trigger_id=t, view=MODAL))
            assert error.response["error"] == code


def test_non_strict_triggers_accept_any_non_empty_trigger():
    with StandInServer(SlackWebAPI(strict_triggers=False)) as server:
        client = WebClient(token="xoxb-test", base_url=server.api_url)
        assert client.views_open(trigger_id="anything", view=MODAL)["ok"]
        assert _error(lambda: client.views_open(trigger_id="", view=MODAL)).response[
            "error"] == "invalid_arguments"


def test_invalid_view_answers_invalid_arguments_with_messages(api, client):
    view = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    error = _error(lambda: client.views_open(trigger_id=api.issue_trigger("U1"), view=view))
    assert error.response["error"] == "invalid_arguments"
    assert error.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"]


# -- protocol details ----------------------------------------------------------------------

def test_form_encoded_body_with_json_string_fields_and_token_param(api, stand_in):
    # when a form body carries blocks as a JSON string and the token as a param
    response = httpx.post(stand_in.api_url + "chat.postMessage", data={
        "token": "xoxb-test", "channel": "C1", "text": "t", "blocks": json.dumps(BUTTON_BLOCKS)})
    # then it is parsed like Slack does
    assert response.status_code == 200 and response.json()["ok"]
    assert api.calls[-1].params["blocks"][1]["block_id"] == "act"
    assert "token" not in api.calls[-1].params


def test_unknown_method_is_http_200_unknown_method(stand_in):
    response = httpx.post(stand_in.api_url + "chat.teleport", headers={
        "Authorization": "Bearer xoxb-test"})
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": "unknown_method"}


def test_missing_or_wrong_token_is_invalid_auth(stand_in):
    wrong = WebClient(token="xoxb-wrong", base_url=stand_in.api_url)
    assert _error(wrong.auth_test).response["error"] == "invalid_auth"
    missing = httpx.post(stand_in.api_url + "auth.test")
    assert missing.json() == {"ok": False, "error": "invalid_auth"}
    assert [c.ok for c in stand_in.api.calls] == [False, False]


def test_other_paths_are_404(stand_in):
    assert httpx.get(stand_in.base_url + "/nothing").status_code == 404


# -- faults --------------------------------------------------------------------------------

def test_rate_limit_fault_surfaces_as_slack_api_error_with_retry_after(api, client):
    # given
    api.inject("chat.postMessage", Fault(status=429, retry_after=2))
    # when
    error = _error(lambda: client.chat_postMessage(channel="C1", text="x"))
    # then
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "2"
    assert error.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]  # fault consumed


def test_faults_are_consumed_in_order_and_recorded(api, client):
    # given
    api.inject("chat.postMessage", Fault(status=503), Fault(error="channel_not_found"),
               Fault(delay=0.3))
    # when / then: 503, then ok:false at HTTP 200, then a slow success
    unavailable = _error(lambda: client.chat_postMessage(channel="C1", text="a")).response
    assert unavailable.status_code == 503 and unavailable["error"] == "service_unavailable"
    error = _error(lambda: client.chat_postMessage(channel="C1", text="b"))
    assert error.response.status_code == 200 and error.response["error"] == "channel_not_found"
    started = time.monotonic()
    assert client.chat_postMessage(channel="C1", text="c")["ok"]
    assert time.monotonic() - started >= 0.3
    calls = api.calls_to("chat.postMessage")
    assert [(c.status, c.ok) for c in calls] == [(503, False), (200, False), (200, True)]
    assert calls[0].fault == Fault(status=503)
    assert api.pending_faults("chat.postMessage") == []
    assert [m["text"] for m in api.messages("C1")] == ["c"]


def test_a_late_answer_comes_after_the_call_was_done_and_recorded(api, stand_in):
    # given a Slack that answers 1 s after posting, and a client that waits 0.3 s
    api.inject("chat.postMessage", Fault(delay_after=1.0))
    impatient = WebClient(token=BOT_TOKEN, base_url=stand_in.api_url, timeout=0.3,
                          retry_handlers=[])
    # when
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C1", text="posted anyway")
    # then the message is there and the call recorded, though the client saw nothing
    assert [m["text"] for m in api.messages("C1")] == ["posted anyway"]
    assert [c.ok for c in api.calls_to("chat.postMessage")] == [True]


def test_an_applied_failure_posts_and_still_answers_the_failure(api, client):
    api.inject("chat.postMessage", Fault(status=503, applied=True))
    error = _error(lambda: client.chat_postMessage(channel="C1", text="posted, then 503"))
    assert error.response.status_code == 503
    assert [m["text"] for m in api.messages("C1")] == ["posted, then 503"]


def test_history_lists_top_level_messages_newest_first_with_metadata_on_request(api, client):
    # given three posts (one with metadata) and a thread reply
    marker = {"event_type": "o2c_outbox", "event_payload": {"outbox_id": 7}}
    first = client.chat_postMessage(channel="C1", text="one")
    client.chat_postMessage(channel="C1", text="two", metadata=marker)
    client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])
    client.chat_postMessage(channel="C1", text="three")
    # when
    page = client.conversations_history(channel="C1", limit=2)
    rest = client.conversations_history(channel="C1", limit=2,
                                        cursor=page["response_metadata"]["next_cursor"])
    with_metadata = client.conversations_history(channel="C1", include_all_metadata=True,
                                                 oldest=first["ts"])
    # then
    assert [m["text"] for m in page["messages"]] == ["three", "two"] and page["has_more"]
    assert [m["text"] for m in rest["messages"]] == ["one"] and not rest["has_more"]
    assert "metadata" not in page["messages"][1]
    assert [m["text"] for m in with_metadata["messages"]] == ["three", "two"]
    assert with_metadata["messages"][1]["metadata"] == marker
    assert _error(lambda: client.conversations_history(channel="CNOPE")).response[
        "error"] == "channel_not_found"
    bad = _error(lambda: client.chat_postMessage(channel="C1", text="x",
                                                  metadata={"event_type": "x"}))
    assert bad.response["error"] == "invalid_metadata_format"


def test_history_of_a_dm_opened_with_conversations_open(api, client):
    client.chat_postMessage(channel="U1", text="hello")
    dm = client.conversations_open(users="U1")["channel"]["id"]
    assert [m["text"] for m in client.conversations_history(channel=dm)["messages"]] == [
        "hello"]


def test_wait_for_calls_returns_matching_calls_or_lists_what_arrived(api, client):
    # given
    client.chat_postMessage(channel="C1", text="one")
    # then
    found = api.wait_for_calls("chat.postMessage", where=lambda c: c.params["text"] == "one")
    assert len(found) == 1
    with pytest.raises(AssertionError, match=r"(?s)2 chat\.postMessage.*#0 chat\.postMessage"):
        api.wait_for_calls("chat.postMessage", count=2, timeout=0.2)


def test_wait_for_wakes_up_when_another_thread_calls(api, stand_in):
    # given a call made from another thread shortly
    client = WebClient(token="xoxb-test", base_url=stand_in.api_url)
    threading.Timer(0.1, lambda: client.chat_postMessage(channel="C1", text="later")).start()
    # then wait_for returns the predicate's value
    messages = api.wait_for(lambda: api.messages("C1"), timeout=3)
    assert messages[0]["text"] == "later"


def test_reset_forgets_activity_but_keeps_directory(api, client):
    client.chat_postMessage(channel="U1", text="x")
    api.inject("auth.test", Fault(status=500))
    api.reset()
    assert api.calls == [] and api.messages("C1") == [] and api.dm_messages("U1") == []
    assert client.auth_test()["ok"] and client.users_info(user="U1")["ok"]
    assert "DU1" not in {c["id"] for c in api.channels()}


# -- response URLs -------------------------------------------------------------------------

def _respond(url: str, **payload) -> httpx.Response:
    return httpx.post(url, json=payload)


def test_response_url_defaults_to_ephemeral_and_in_channel_posts_visibly(api):
    url = api.new_response_url("U1", "C1")
    assert _respond(url, text="just you").json() == {"ok": True}
    _respond(url, text="everyone", response_type="in_channel")
    assert [e["text"] for e in api.ephemerals("U1", "C1")] == ["just you"]
    assert [m["text"] for m in api.messages("C1")] == ["everyone"]
    assert [r["effect"] for r in api.responses] == ["ephemeral", "in_channel"]


def test_response_url_replace_and_delete_original_message(api, client):
    # given a bot message the interaction came from
    ts = client.chat_postMessage(channel="C1", text="pending", blocks=BUTTON_BLOCKS)["ts"]
    url = api.new_response_url("U1", "C1", message_ts=ts)
    # when replaced (replace swaps everything: no blocks given -> none left)
    _respond(url, text="approved", replace_original=True)
    # then
    message = api.message("C1", ts)
    assert message["text"] == "approved" and message["blocks"] == [] and message["edited"]
    # when deleted
    _respond(url, delete_original=True)
    assert api.messages("C1") == [] and api.responses[-1]["effect"] == "deleted"


def test_response_url_replace_original_of_an_ephemeral(api, client):
    client.chat_postEphemeral(channel="C1", user="U1", text="pick one")
    eph = api.ephemerals("U1")[0]
    url = api.new_response_url("U1", "C1", message_ts=eph["ts"], is_ephemeral=True)
    _respond(url, text="picked", replace_original=True)
    assert [e["text"] for e in api.ephemerals("U1")] == ["picked"]


def test_response_url_replace_without_original_becomes_ephemeral(api):
    url = api.new_response_url("U1", "C1")
    _respond(url, text="hello", replace_original=True)
    assert [e["text"] for e in api.ephemerals("U1")] == ["hello"]
    assert api.responses[0]["effect"] == "ephemeral"


def test_response_url_limits_and_validation(api):
    url = api.new_response_url("U1", "C1")
    invalid = _respond(url, blocks=[{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}])
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_blocks"
    assert _respond(url).json()["error"] == "no_text"
    for _ in range(5):
        assert _respond(url, text="ok").status_code == 200
    assert _respond(url, text="sixth").json() == {"ok": False, "error": "used_url"}
    assert _respond(url.rsplit("/", 1)[0] + "/unknown", text="x").status_code == 404
