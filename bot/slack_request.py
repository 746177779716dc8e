"""What reaches the Bolt app from `POST /slack/events`: verified first, parsed second.

In order, each step refusing with a short warning line (never a traceback):

1. the headers have Slack's shape (`X-Slack-Request-Timestamp` a number of seconds,
   `X-Slack-Signature` `v0=` + 64 hex digits), else 401 without reading the body;
2. the body is read up to `MAX_BODY` bytes (the app's body limit answers 413 beyond it, while it
   streams in: a large body is never held in memory);
3. the signature is checked on those bytes (slack_sdk's `SignatureVerifier`, which also
   refuses a timestamp more than 5 minutes off; an HMAC of the raw bytes when they are not
   UTF-8, only to tell 400 from 401), else 401;
4. only then is it decoded (not UTF-8: 400) and parsed into a `BoltRequest` (unparsable: 400);
5. the parsed payload must have the shape our listeners and Bolt's own matchers rely on
   (`payload_problem`: `actions` a list of actions, a `view` with an id, a callback_id and a
   type, form values of the right kinds, ...), else 400. Genuine Slack never fails this; a
   replayed, stale or hand-made payload might, and must change nothing.

Values that have the right shape but mean nothing (a button value `x`, unreadable
`private_metadata`) are the listeners' business: they answer the user clearly
(`handlers.common.Malformed`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("o2c.slack")

# Slack's payloads are a few KB; the largest (a modal submission with every input filled in,
# form-encoded) stays well under this.
MAX_BODY = 1024 * 1024
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")

INTERACTIVE = {"block_actions", "view_submission", "view_closed", "block_suggestion",
               "shortcut", "message_action", "interactive_message", "dialog_submission"}


class Refused(Exception):
    """A request refused before Bolt sees it: `status` and a short `reason` for the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_headers(headers: Any) -> tuple[str, str]:
    """(timestamp, signature) when both have Slack's shape; else `Refused(401)`."""
    timestamp = headers.get("x-slack-request-timestamp") or ""
    signature = headers.get("x-slack-signature") or ""
    if not TIMESTAMP.fullmatch(timestamp):
        raise Refused(401, "missing or malformed X-Slack-Request-Timestamp")
    if not SIGNATURE.fullmatch(signature):
        raise Refused(401, "missing or malformed X-Slack-Signature")
    return timestamp, signature


def verify(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str) -> str:
    """The body as text once its signature is good; `Refused` otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # SignatureVerifier hashes text; Slack signs bytes. Tell a signed non-UTF-8 body (400)
        # from an unsigned one (401) on the raw bytes.
        signed = _raw_signature_ok(verifier, body, timestamp, signature)
        raise Refused(400 if signed else 401, "body is not UTF-8" + (
            "" if signed else " and not signed")) from None
    if not verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
        raise Refused(401, "bad signature or stale timestamp")
    return text


def _raw_signature_ok(verifier: SignatureVerifier, body: bytes, timestamp: str,
                      signature: str) -> bool:
    if abs(verifier.clock.now() - int(timestamp)) > 60 * 5:
        return False
    mac = hmac.new(verifier.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body,
                   hashlib.sha256)
    return hmac.compare_digest("v0=" + mac.hexdigest(), signature)


def parse(text: str, query: str, headers: dict) -> BoltRequest:
    """A BoltRequest for a verified body, or `Refused(400)` if it cannot be parsed or lacks
    the shape Bolt and the listeners rely on."""
    try:
        request = BoltRequest(body=text, query=query, headers=headers)
    except Exception as exc:
        raise Refused(400, f"unparsable payload ({type(exc).__name__})") from None
    problem = payload_problem(request.body)
    if problem:
        raise Refused(400, f"malformed payload: {problem}")
    return request


# -- the shape of a payload ---------------------------------------------------------------------
def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def _option_problem(option: Any) -> str | None:
    if not isinstance(option, dict) or not isinstance(option.get("value"), str):
        return "an option without a string value"
    return None


def _value_problem(entry: Any) -> str | None:
    """One action or one form input's state."""
    if not isinstance(entry, dict):
        return "a value that is not an object"
    for key in ("value", "selected_user", "selected_channel", "selected_conversation",
                "selected_time", "action_id", "block_id", "type", "action_ts"):
        if not _optional(entry.get(key), str):
            return f"{key} is not a string"
    if entry.get("selected_option") is not None:
        problem = _option_problem(entry["selected_option"])
        if problem:
            return problem
    options = entry.get("selected_options")
    if options is not None:
        if not isinstance(options, list):
            return "selected_options is not a list"
        for option in options:
            problem = _option_problem(option)
            if problem:
                return problem
    for key in ("selected_users", "selected_channels", "selected_conversations"):
        chosen = entry.get(key)
        if chosen is not None and not (isinstance(chosen, list)
                                       and all(isinstance(c, str) for c in chosen)):
            return f"{key} is not a list of strings"
    day = entry.get("selected_date")
    if day is not None and not _is_date(day):
        return "selected_date is not a date"
    return None


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _view_problem(view: Any) -> str | None:
    if not isinstance(view, dict):
        return "view is not an object"
    for key in ("id", "type", "callback_id"):
        if not isinstance(view.get(key), str):
            return f"view.{key} is missing or not a string"
    for key in ("private_metadata", "hash", "external_id", "root_view_id",
                "previous_view_id"):
        if not _optional(view.get(key), str):
            return f"view.{key} is not a string"
    if not _optional(view.get("blocks"), list):
        return "view.blocks is not a list"
    state = view.get("state")
    if state is None:
        return None
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not _optional(values, dict):
        return "view.state is not an object of values"
    for block in (values or {}).values():
        if not isinstance(block, dict):
            return "view.state.values holds a block that is not an object"
        for entry in block.values():
            problem = _value_problem(entry)
            if problem:
                return f"view.state: {problem}"
    return None


def _actions_problem(actions: Any) -> str | None:
    if not isinstance(actions, list) or not actions:
        return "actions is not a non-empty list"
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
            return "an action without an action_id"
        problem = _value_problem(action)
        if problem:
            return f"action: {problem}"
    return None


def _strings_problem(obj: dict, what: str, required: tuple[str, ...],
                     optional: tuple[str, ...] = ()) -> str | None:
    """`required` keys of `obj` must be strings, `optional` ones strings when present."""
    for key in required:
        if not isinstance(obj.get(key), str):
            return f"{what}.{key} is missing or not a string"
    for key in optional:
        if not _optional(obj.get(key), str):
            return f"{what}.{key} is not a string"
    return None


# the fields of the events we subscribe to (manifest.yml) that listeners read
MESSAGE_FIELDS = ("text", "user", "thread_ts", "subtype", "bot_id", "channel_type")
LINK_SHARED_FIELDS = ("user", "message_ts", "unfurl_id", "source")


def _event_problem(body: dict) -> str | None:
    event = body.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return "event is missing or has no type"
    if not _optional(body.get("event_id"), str):
        return "event_id is not a string"
    if event["type"] == "app_home_opened":
        if not isinstance(event.get("user"), str):
            return "app_home_opened without a user"
        if not _optional(event.get("tab"), str) or not _optional(event.get("view"), dict):
            return "app_home_opened with a malformed tab or view"
    elif event["type"] == "message":
        return _strings_problem(event, "message", ("channel", "ts"), MESSAGE_FIELDS)
    elif event["type"] == "link_shared":
        links = event.get("links")
        if not isinstance(links, list) or not all(
                isinstance(link, dict) and isinstance(link.get("url"), str) for link in links):
            return "link_shared without a list of links"
        return _strings_problem(event, "link_shared", ("channel",), LINK_SHARED_FIELDS)
    elif event["type"] == "function_executed":  # a Workflow Builder step
        function = event.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("callback_id"), str):
            return "function_executed without a function's callback_id"
        if not _optional(event.get("inputs"), dict):
            return "function_executed.inputs is not an object"
        return _strings_problem(event, "function_executed", ("function_execution_id",))
    return None


def _holds_nul(value: Any, depth: int = 0) -> bool:
    """Does any text in the payload hold a NUL character (which PostgreSQL cannot store)?"""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 32:  # Slack's payloads are shallow; a deeper one is junk
        return True
    if isinstance(value, dict):
        return any(_holds_nul(k, depth + 1) or _holds_nul(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v, depth + 1) for v in value)
    return False


def payload_problem(body: Any) -> str | None:
    """What is wrong with a parsed Slack payload, or None when it has the expected shape."""
    if not isinstance(body, dict):
        return "not an object"
    if _holds_nul(body):  # Slack never sends one: refused whole, before any listener
        return "a NUL character in the text"
    kind = body.get("type")
    if "command" in body and kind is None:  # a slash command (form fields: all strings)
        for key in ("command", "user_id", "text"):
            if not isinstance(body.get(key), str):
                return f"{key} is missing or not a string"
        return None
    if not isinstance(kind, str):
        return "no type"
    for key in ("team", "channel", "container", "enterprise", "message", "state"):
        if not _optional(body.get(key), dict):
            return f"{key} is not an object"
    for key in ("trigger_id", "response_url", "api_app_id", "token"):
        if not _optional(body.get(key), str):
            return f"{key} is not a string"
    if body.get("response_url") is not None and not _is_url(body["response_url"]):
        return "response_url is not an http(s) URL"
    if body.get("type") == "block_actions" and (body.get("container") or {}).get(
            "type") == "message" and body.get("response_url") is None:
        return "a click on a message without a response_url"
    if kind in INTERACTIVE:
        user = body.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            return "user is missing or has no id"
    if kind == "block_actions":
        problem = _actions_problem(body.get("actions"))
        if problem:
            return problem
        if body.get("view") is not None:
            return _view_problem(body["view"])
    elif kind in ("view_submission", "view_closed"):
        return _view_problem(body.get("view"))
    elif kind == "block_suggestion":
        if not isinstance(body.get("action_id"), str) or not _optional(body.get("value"), str):
            return "block_suggestion without an action_id"
        if body.get("view") is not None:
            return _view_problem(body["view"])
    elif kind == "message_action":  # a message shortcut: the message it was used on
        problem = _strings_problem(body.get("message") or {}, "message", (),
                                   ("text", "ts", "user"))
        return problem or _strings_problem(body.get("channel") or {}, "channel", (), ("id",))
    elif kind == "event_callback":
        return _event_problem(body)
    elif kind == "url_verification" and not isinstance(body.get("challenge"), str):
        return "url_verification without a challenge"
    return None


class PayloadShape(Middleware):
    """The same check inside Bolt, first of our middlewares: Socket Mode requests do not come
    through the HTTP endpoint."""

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Any
                ) -> BoltResponse | None:
        problem = payload_problem(req.body)
        if problem:
            log.warning("refused a Slack request: malformed payload: %s", problem)
            return BoltResponse(status=400, body="")
        return next()
