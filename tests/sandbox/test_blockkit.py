"""Every Block Kit rule the stand-in enforces: one passing and one failing surface each, plus
the way chat.postMessage / views.open report failures (Slack's error shapes)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from sandbox.blockkit import validate_blocks, validate_message, validate_view


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def section(text: str = "x", **extra) -> dict:
    return {"type": "section", "text": mrkdwn(text), **extra}


def button(text: str = "Go", action_id: str = "go", **extra) -> dict:
    return {"type": "button", "text": plain(text), "action_id": action_id, **extra}


def actions(*elements: dict, **extra) -> dict:
    return {"type": "actions", "elements": list(elements), **extra}


def select(n_options: int, text: str = "opt") -> dict:
    return {"type": "static_select", "action_id": "pick", "placeholder": plain("Pick"),
            "options": [{"text": plain(text), "value": f"v{i}"} for i in range(n_options)]}


def modal(**extra) -> dict:
    return {"type": "modal", "title": plain("Order"), "blocks": [section()], **extra}


# (rule, surface, passing blocks, failing blocks, expected error)
BLOCK_RULES = [
    ("message block count", "message", [section()] * 50, [section()] * 51,
     "no more than 50 items allowed [json-pointer:/blocks]"),
    ("modal block count", "modal", [section()] * 100, [section()] * 101,
     "no more than 100 items allowed [json-pointer:/blocks]"),
    ("section text length", "message", [section("a" * 3000)], [section("a" * 3001)],
     "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"),
    ("section field count", "message",
     [{"type": "section", "fields": [mrkdwn("f")] * 10}],
     [{"type": "section", "fields": [mrkdwn("f")] * 11}],
     "no more than 10 items allowed [json-pointer:/blocks/0/fields]"),
    ("section field length", "message",
     [{"type": "section", "fields": [mrkdwn("f" * 2000)]}],
     [{"type": "section", "fields": [mrkdwn("f" * 2001)]}],
     "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]"),
    ("header length", "message", [{"type": "header", "text": plain("h" * 150)}],
     [{"type": "header", "text": plain("h" * 151)}],
     "must be less than 151 characters [json-pointer:/blocks/0/text/text]"),
    ("header needs plain_text", "message", [{"type": "header", "text": plain("h")}],
     [{"type": "header", "text": mrkdwn("h")}],
     "must be a valid enum value [json-pointer:/blocks/0/text/type]"),
    ("button text length", "message", [actions(button("b" * 75))],
     [actions(button("b" * 76))],
     "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]"),
    ("button text plain_text", "message", [actions(button())],
     [actions({**button(), "text": mrkdwn("Go")})],
     "must be a valid enum value [json-pointer:/blocks/0/elements/0/text/type]"),
    ("button value length", "message", [actions(button(value="v" * 2000))],
     [actions(button(value="v" * 2001))],
     "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]"),
    ("action_id length", "message", [actions(button(action_id="a" * 255))],
     [actions(button(action_id="a" * 256))],
     "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]"),
    ("duplicate action_id in a block", "message",
     [actions(button(action_id="a"), button(action_id="b"))],
     [actions(button(action_id="a"), button(action_id="a"))],
     "duplicate action_id: a [json-pointer:/blocks/0/elements/1/action_id]"),
    ("block_id length", "message", [section(block_id="b" * 255)], [section(block_id="b" * 256)],
     "must be less than 256 characters [json-pointer:/blocks/0/block_id]"),
    ("duplicate block_id", "message", [section(block_id="a"), section(block_id="b")],
     [section(block_id="a"), section(block_id="a")],
     "duplicate block_id: a [json-pointer:/blocks/1/block_id]"),
    ("actions element count", "message",
     [actions(*[button(action_id=f"a{i}") for i in range(25)])],
     [actions(*[button(action_id=f"a{i}") for i in range(26)])],
     "no more than 25 items allowed [json-pointer:/blocks/0/elements]"),
    ("context element count", "message", [{"type": "context", "elements": [mrkdwn("c")] * 10}],
     [{"type": "context", "elements": [mrkdwn("c")] * 11}],
     "no more than 10 items allowed [json-pointer:/blocks/0/elements]"),
    ("static_select option count", "message", [actions(select(100))], [actions(select(101))],
     "no more than 100 items allowed [json-pointer:/blocks/0/elements/0/options]"),
    ("option text length", "message", [actions(select(1, "o" * 75))],
     [actions(select(1, "o" * 76))],
     "must be less than 76 characters [json-pointer:/blocks/0/elements/0/options/0/text/text]"),
    ("text object type", "message", [section()],
     [{"type": "section", "text": {"type": "markdown", "text": "x"}}],
     "must be a valid enum value [json-pointer:/blocks/0/text/type]"),
    ("input label plain_text", "modal",
     [{"type": "input", "label": plain("L"), "element": {"type": "plain_text_input",
                                                          "action_id": "v"}}],
     [{"type": "input", "label": mrkdwn("L"), "element": {"type": "plain_text_input",
                                                           "action_id": "v"}}],
     "must be a valid enum value [json-pointer:/blocks/0/label/type]"),
    ("unknown block type", "message", [{"type": "divider"}], [{"type": "sparkles"}],
     "must be a valid enum value [json-pointer:/blocks/0/type]"),
    ("empty text", "message", [section("x")], [section("")],
     "must be more than 0 characters [json-pointer:/blocks/0/text/text]"),
]


@pytest.mark.parametrize(("rule", "surface", "good", "bad", "expected"), BLOCK_RULES,
                         ids=[r[0] for r in BLOCK_RULES])
def test_block_rule(rule, surface, good, bad, expected):
    # given / when / then
    assert validate_blocks(good, surface) == []
    assert expected in validate_blocks(bad, surface)


# (rule, passing view, failing view, expected error)
VIEW_RULES = [
    ("title length", modal(title=plain("t" * 24)), modal(title=plain("t" * 25)),
     "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"),
    ("title plain_text", modal(), modal(title=mrkdwn("Order")),
     "[ERROR] must be a valid enum value [json-pointer:/view/title/type]"),
    ("submit length", modal(submit=plain("s" * 24)), modal(submit=plain("s" * 25)),
     "[ERROR] must be less than 25 characters [json-pointer:/view/submit/text]"),
    ("close length", modal(close=plain("c" * 24)), modal(close=plain("c" * 25)),
     "[ERROR] must be less than 25 characters [json-pointer:/view/close/text]"),
    ("private_metadata length", modal(private_metadata="m" * 3000),
     modal(private_metadata="m" * 3001),
     "[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]"),
    ("submit required with inputs",
     modal(submit=plain("Save"), blocks=[{"type": "input", "label": plain("L"), "element": {
         "type": "plain_text_input", "action_id": "v"}}]),
     modal(blocks=[{"type": "input", "label": plain("L"), "element": {
         "type": "plain_text_input", "action_id": "v"}}]),
     "[ERROR] must provide submit when the view contains input blocks [json-pointer:/view]"),
    ("home block count", {"type": "home", "blocks": [section()] * 100},
     {"type": "home", "blocks": [section()] * 101},
     "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"),
]


@pytest.mark.parametrize(("rule", "good", "bad", "expected"), VIEW_RULES,
                         ids=[r[0] for r in VIEW_RULES])
def test_view_rule(rule, good, bad, expected):
    assert validate_view(good) == []
    assert expected in validate_view(bad)


def test_message_needs_text_or_blocks():
    assert validate_message({"text": "hi"}) == (None, [])
    assert validate_message({"blocks": [section()]}) == (None, [])
    assert validate_message({"channel": "C1"}) == ("no_text", [])


def test_post_message_with_invalid_blocks_answers_like_slack(client, api):
    # when
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x", blocks=[section("a" * 3001)])
    # then
    body = caught.value.response.data
    assert body["error"] == "invalid_blocks"
    assert body["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    assert api.messages("C1") == []


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_post_message_without_text_or_blocks_is_no_text(client):
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1")
    assert caught.value.response["error"] == "no_text"


def test_update_and_ephemeral_are_validated_too(client):
    ts = client.chat_postMessage(channel="C1", text="x")["ts"]
    bad = [{"type": "header", "text": plain("h" * 151)}]
    for call in (lambda: client.chat_update(channel="C1", ts=ts, text="t", blocks=bad),
                 lambda: client.chat_postEphemeral(channel="C1", user="U1", text="t",
                                                   blocks=bad)):
        with pytest.raises(SlackApiError) as caught:
            call()
        assert caught.value.response["error"] == "invalid_blocks"


def test_unknown_surface_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown surface"):
        validate_blocks([], "sidebar")
