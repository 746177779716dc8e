"""Helpers for end-to-end tests: send a command and wait for the bot's answer."""

from __future__ import annotations

import json

from sandbox.driver import SlackDriver
from sandbox.webapi import SlackWebAPI


def ask(slack: SlackDriver, api: SlackWebAPI, user_id: str, text: str,
        timeout: float = 10.0) -> dict:
    """`/o2c <text>` as `user_id`; returns the payload of the ephemeral answer."""
    before = len(api.responses)
    response = slack.slash(user_id, text)
    assert response.status_code == 200, response.text
    answers = api.wait_for(
        lambda: [r for r in api.responses[before:] if r["user"] == user_id] or None,
        timeout, f"an answer to /o2c {text}")
    payload = answers[0]["payload"]
    assert payload.get("response_type", "ephemeral") == "ephemeral"
    return payload


def text_of(payload: dict) -> str:
    """Everything a user could read in a message payload, as one string."""
    return json.dumps(payload, ensure_ascii=False)


def everything_sent(api: SlackWebAPI) -> str:
    """Every Web API call and response_url post the bot made, as one string."""
    parts = [json.dumps(c.params, ensure_ascii=False) for c in api.calls]
    parts += [json.dumps(r["payload"], ensure_ascii=False) for r in api.responses]
    return "\n".join(parts)
