"""Helpers for end-to-end tests: send a command and wait for the bot's answer."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from sandbox.driver import SlackDriver
from sandbox.webapi import SlackWebAPI


def ask(slack: SlackDriver, api: SlackWebAPI, user_id: str, text: str,
        timeout: float = 10.0, **slash: str) -> dict:
    """`/o2c <text>` as `user_id` (`slash`: `channel_id`, ...); returns the payload of the
    ephemeral answer."""
    before = len(api.responses)
    response = slack.slash(user_id, text, **slash)
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


def prepared_click(slack: SlackDriver, user_id: str, source: dict, action_id: str,
                   **kwargs: object) -> str:
    """The form body of a click, built exactly as `slack.click` would send it but not sent:
    send it (several times, from several threads) with `slack.send(body, FORM)`, which signs
    each request afresh — a replay or a burst of identical clicks."""
    captured: dict = {}

    def capture(payload: dict, opts: dict) -> None:
        captured["body"] = urlencode({"payload": json.dumps(payload)})

    slack._send_payload = capture  # instance attribute shadows the method for one call
    try:
        slack.click(user_id, source, action_id, **kwargs)
    finally:
        del slack._send_payload
    return captured["body"]


def ephemeral_texts(api: SlackWebAPI, user_id: str) -> list[str]:
    """What each ephemeral (chat.postEphemeral or response_url) shown to the user says."""
    return [json.dumps(e["blocks"] or e["text"], ensure_ascii=False)
            for e in api.ephemerals(user_id)]


def prepared_submission(slack: SlackDriver, user_id: str, view: dict, values: dict,
                        **kwargs: object) -> str:
    """The form body of a modal submission, built exactly as `slack.submit_view` would send it
    but not sent (the stand-in's modal is left open): send it with `slack.send(body, FORM)`,
    as often and from as many threads as a replay or a burst needs."""
    import httpx

    captured: dict = {}

    def capture(payload: dict, opts: dict) -> httpx.Response:
        captured["body"] = urlencode({"payload": json.dumps(payload)})
        return httpx.Response(503)  # "not answered": the stand-in leaves the modal open

    slack._send_payload = capture  # instance attribute shadows the method for one call
    try:
        slack.submit_view(user_id, view, values, **kwargs)
    finally:
        del slack._send_payload
    return captured["body"]


def burst(slack: SlackDriver, body: str, copies: int = 10) -> list[int]:
    """Send `copies` of one signed body at the same moment (threads behind a barrier);
    returns the HTTP statuses."""
    import threading

    from sandbox.driver import FORM

    start = threading.Barrier(copies)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        status = slack.send(body, FORM).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def refusals_audited(db, api: SlackWebAPI, count: int, timeout: float = 10.0) -> list[tuple]:
    """The refusals in the audit log as sorted (actor, action, entity type, entity id), once
    there are `count` of them: a refusal in an ack (a form's checks, a select's options) is
    audited after the answer (`handlers.common.checking(in_ack=True)`)."""
    from sqlmodel import select

    from models import AuditEvent

    def found() -> list[tuple] | None:
        with db.read_session() as s:
            rows = s.exec(select(AuditEvent).where(AuditEvent.action.startswith("refused."))
                          ).all()
        return sorted((e.actor, e.action, e.entity_type, e.entity_id) for e in rows) \
            if len(rows) >= count else None

    return api.wait_for(found, timeout, f"{count} refusal(s) audited")
