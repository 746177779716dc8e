"""The Slack stand-in: an in-memory, thread-safe Slack workspace behind a fake Web API.

Why: end-to-end tests point the real bot's ``WebClient(base_url=SLACK_API_URL)`` at
:class:`StandInServer` and then assert on which Web API calls arrived and on the state they
produced (messages, ephemerals, modals, home tabs, response_url posts). Everything answers in
Slack's response shapes and error codes so the bot's error handling is exercised for real;
faults (429 with Retry-After, 5xx, ``ok: false`` errors, delays) can be queued per method.

The core (:class:`SlackWebAPI`) is framework-free: :meth:`SlackWebAPI.dispatch_http` maps a raw
HTTP request to ``(status, headers, body)`` so any server (the bundled ``http.server`` one in
:mod:`sandbox.server`, re-exported here as :class:`StandInServer`, or a later browser sandbox)
can front it. One ``RLock`` guards all state; a ``Condition`` on it lets
tests block until calls arrive.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.blockkit import validate_blocks, validate_message, validate_view
from sandbox.functions import FunctionsMixin
from sandbox.interactions import InteractionMixin
from sandbox.methods import WebMethodsMixin, decode_json_fields, err
from sandbox.oauth import OAuthMixin
from sandbox.server import StandInServer

__all__ = ["Call", "Fault", "SlackWebAPI", "StandInServer", "to_slack_message", "validate_blocks",
           "validate_message", "validate_view"]

log = logging.getLogger("sandbox")
# How long `wait_for` waits by default: a condition that holds returns at once, so this only
# bounds a failing wait; generous, as a loaded machine (CI's suites side by side on two cores)
# may take seconds to deliver what an idle one delivers in milliseconds.
WAIT = 30.0

INTERNAL_MESSAGE_KEYS = frozenset({"channel", "edited", "edited_ts", "history", "is_ephemeral",
                                   "recipient", "unfurls"})


@dataclass(frozen=True)
class Fault:
    """A canned failure for the next call of a method (see :meth:`SlackWebAPI.inject`).

    ``Fault(status=429, retry_after=2)`` -> HTTP 429, ``Retry-After: 2``, ``ratelimited``;
    ``Fault(status=503)`` -> HTTP 503; ``Fault(error="channel_not_found")`` -> HTTP 200 with
    ``ok: false``; ``Fault(delay=1.5)`` -> sleep, then answer normally (combine with the others
    to delay a failure). ``Fault(delay_after=12)`` -> do the call (post the message, record it),
    then wait before answering: a client that times out saw nothing although Slack did it.
    ``Fault(status=503, delay_after=0)`` with ``applied=True`` does the call and still answers
    503. ``body`` overrides the response body entirely.
    """

    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: dict | None = None
    delay_after: float = 0.0
    applied: bool = False  # with a failure: carry the call out anyway, then answer the failure

    @property
    def replaces_answer(self) -> bool:
        return self.status != 200 or self.error is not None or self.body is not None

    def response(self) -> tuple[int, dict, dict]:
        headers: dict[str, str] = {}
        if self.status == 429:
            after = 1 if self.retry_after is None else self.retry_after
            headers["Retry-After"] = str(int(after)) if float(after).is_integer() else str(after)
            default = "ratelimited"
        elif self.status >= 500:
            default = "service_unavailable" if self.status == 503 else "internal_error"
        elif self.status >= 400:
            default = "invalid_request"
        else:
            default = "fatal_error"
        return self.status, headers, self.body if self.body is not None else err(
            self.error or default)


@dataclass(frozen=True)
class Call:
    """One recorded Web API request: decoded params (token removed) and what was answered."""

    method: str
    params: dict
    ok: bool
    response: dict
    status: int
    at: float
    fault: Fault | None = None
    # the workspace (or Grid org) of the token it was made with (OAuth installs), else None
    token_team: str | None = None


def to_slack_message(record: dict) -> dict:
    """A stored message record (see :meth:`SlackWebAPI.messages`) in Slack's message shape:
    internal keys dropped, ``edited`` as Slack's ``{"user", "ts"}`` object when edited."""
    msg = {k: copy.deepcopy(v) for k, v in record.items()
           if k not in INTERNAL_MESSAGE_KEYS and v is not None}
    if record.get("edited"):
        msg["edited"] = {"user": record["user"], "ts": record["edited_ts"]}
    return msg


def parse_body(content_type: str, body: bytes) -> dict:
    """Decode a JSON or form-urlencoded request body into a dict (anything else -> {})."""
    if not body:
        return {}
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    if "x-www-form-urlencoded" in content_type or not content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {}


class SlackWebAPI(WebMethodsMixin, InteractionMixin, OAuthMixin, FunctionsMixin):
    """In-memory Slack workspace answering the Web API methods o2c-bot uses.

    Thread-safe: every public method may be called from test code while server threads serve
    the bot. Query methods return deep copies, never live state.
    """

    METHODS = {**WebMethodsMixin.METHODS, **FunctionsMixin.FUNCTION_METHODS}

    def __init__(self, bot_token: str = "xoxb-test", team_id: str = "T0001",  # noqa: S107
                 bot_user_id: str = "U0BOT", *, bot_id: str = "B0BOT", app_id: str = "A0O2C",
                 team_domain: str = "o2c-sandbox", strict_triggers: bool = True,
                 trigger_ttl: float = 3.0, base_url: str = "http://127.0.0.1",
                 history_limit: int = 1000) -> None:
        self.bot_token, self.team_id, self.bot_user_id = bot_token, team_id, bot_user_id
        # conversations.history's largest page (Slack: 1000; 15 for non-Marketplace apps)
        self.history_limit = history_limit
        self.bot_id, self.app_id, self.team_domain = bot_id, app_id, team_domain
        self.strict_triggers, self.trigger_ttl = strict_triggers, trigger_ttl
        self.base_url = base_url  # StandInServer sets this; used to mint response URLs
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calling_team: str | None = None  # the calling token's workspace (in a call)
        self._version = 0
        self._users: dict[str, dict] = {}
        self._channels: dict[str, dict] = {}
        self._reset_oauth()
        self._reset_activity()
        self.add_user(bot_user_id, "o2c-bot", real_name="O2C Bot", is_bot=True)
        self.add_channel("C0GENERAL", "general")  # every workspace has #general

    # -- directory ------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, real_name: str | None = None, tz: str = "UTC",
                 tz_offset: int = 0, email: str | None = None, is_admin: bool = False, *,
                 tz_label: str | None = None, is_bot: bool = False,
                 locale: str = "en-US", deleted: bool = False) -> dict:
        """Add a workspace member (`deleted`: one deactivated since); users.info/lookupByEmail
        answer with this Slack user."""
        real_name = real_name or name
        profile = {"real_name": real_name, "display_name": name,
                   "real_name_normalized": real_name, "display_name_normalized": name,
                   "team": self.team_id}
        if email:
            profile["email"] = email
        label = tz_label or ("Coordinated Universal Time" if tz in ("UTC", "Etc/UTC") else tz)
        user = {"id": user_id, "team_id": self.team_id, "name": name, "deleted": deleted,
                "real_name": real_name, "tz": tz, "tz_label": label, "tz_offset": tz_offset,
                "is_admin": is_admin, "is_owner": False, "is_bot": is_bot, "is_app_user": False,
                "profile": profile, "locale": locale}
        with self._lock:
            self._users[user_id] = user
            self._bump()
        return copy.deepcopy(user)

    def add_channel(self, channel_id: str, name: str, is_private: bool = False) -> dict:
        """Add a channel; chat.* accept its ID, ``name`` or ``#name``."""
        channel = {"id": channel_id, "name": name.lstrip("#"), "is_private": is_private,
                   "is_im": False, "created": int(time.time())}
        with self._lock:
            self._channels[channel_id] = channel
            self._bump()
        return dict(channel)

    def ensure_conversation(self, channel_id: str, name: str | None = None) -> str:
        """Make sure an interaction's channel exists (the driver calls this): a ``D``+user ID
        opens that DM, an unknown ``C``/``G`` ID becomes a channel called ``name``."""
        with self._lock:
            if channel_id not in self._channels:
                if channel_id.startswith("D") and channel_id[1:] in self._users:
                    self._open_dm(channel_id[1:])
                else:
                    self.add_channel(channel_id, name or channel_id.lower(),
                                     is_private=channel_id.startswith("G"))
            return channel_id

    def users(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._users.values()))

    def channels(self) -> list[dict]:
        """All conversations, including DMs opened so far (``is_im``)."""
        with self._lock:
            return copy.deepcopy(list(self._channels.values()))

    def _open_dm(self, user_id: str) -> str:
        channel_id = "D" + user_id
        self._channels.setdefault(channel_id, {
            "id": channel_id, "name": user_id, "is_private": True, "is_im": True,
            "user": user_id, "created": int(time.time())})
        return channel_id

    def _resolve_channel(self, ref: Any, *, for_post: bool = False) -> str | None:
        """Resolve an ID, ``name`` or ``#name`` (and, when posting, a user ID -> their DM)."""
        if not isinstance(ref, str) or not ref:
            return None
        if ref in self._channels:
            return ref
        name = ref[1:] if ref.startswith("#") else ref
        for channel_id, channel in self._channels.items():
            if not channel.get("is_im") and channel["name"] == name:
                return channel_id
        if for_post and ref in self._users:
            return self._open_dm(ref)
        if for_post and ref.startswith("D") and ref[1:] in self._users:
            return self._open_dm(ref[1:])  # every user's DM exists in Slack
        return None

    # -- requests, recording, faults ------------------------------------------------------

    def inject(self, method: str, *faults: Fault) -> None:
        """Queue faults answered, in order, by the next calls of ``method``."""
        with self._lock:
            self._faults.setdefault(method, deque()).extend(faults)

    def pending_faults(self, method: str) -> list[Fault]:
        with self._lock:
            return list(self._faults.get(method, ()))

    def call(self, method: str, params: dict | None = None, *,
             token: str | None = None) -> tuple[int, dict, dict]:
        """Answer one Web API call in-process; returns ``(http_status, headers, body)``."""
        params = decode_json_fields(dict(params or {}))
        supplied = token if token is not None else params.get("token")
        params.pop("token", None)
        with self._lock:
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)  # outside the lock: other calls keep flowing
        with self._lock:
            issued = self._tokens.get(supplied) if isinstance(supplied, str) else None
            # the workspace of the installation calling (OAuth): its views are stamped so
            self._calling_team = issued["team_id"] if issued else None
            try:
                status, headers, body = self._answer(method, params, supplied, fault)
            finally:
                self._calling_team = None
            recorded = {k: v for k, v in params.items() if k != "client_secret"}
            team = (issued["team_id"] or issued["enterprise_id"]) if issued else None
            self._calls.append(Call(method, copy.deepcopy(recorded), bool(body.get("ok")),
                                    copy.deepcopy(body), status, time.time(), fault, team))
            self._bump()
        if fault is not None and fault.delay_after:
            time.sleep(fault.delay_after)  # done and recorded; the answer comes late
        return status, headers, body

    def _answer(self, method: str, params: dict, token: Any,
                fault: Fault | None) -> tuple[int, dict, dict]:
        if fault is not None and fault.replaces_answer:
            if fault.applied:
                self._answer(method, params, token, None)
            return fault.response()
        if method == "oauth.v2.access":  # authenticated by the app's client id and secret
            return 200, {}, self.m_oauth_v2_access(params)
        if method == "auth.revoke":  # the app gives an installation's token back
            return 200, {}, (self.revoke_token(token) if self.token_valid(token)
                             else err("invalid_auth"))
        if method not in self.METHODS:
            return 200, {}, err("unknown_method")
        if token != self.bot_token and not self.token_valid(token):
            return 200, {}, err("token_revoked" if token in self._tokens else "invalid_auth")
        if method == "auth.test":
            return 200, {}, self.auth_test_for(token)
        try:
            return 200, {}, getattr(self, self.METHODS[method])(params)
        except Exception:  # a stand-in bug must not kill the server thread
            log.exception("stand-in failed answering %s %r", method, params)
            return 200, {}, err("internal_error")

    def dispatch_http(self, http_method: str, path: str, headers: dict,
                      body: bytes) -> tuple[int, dict, bytes]:
        """Route a raw HTTP request: ``/api/<method>``, ``POST /response/<id>``, else 404."""
        url = urlsplit(path)
        lower = {k.lower(): v for k, v in headers.items()}
        content_type = lower.get("content-type", "")
        json_headers = {"Content-Type": "application/json; charset=utf-8"}
        if url.path.startswith("/api/") and http_method in ("GET", "POST"):
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            params.update(parse_body(content_type, body))
            auth = lower.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            if auth.lower().startswith("basic "):  # oauth.v2.access: the app's credentials
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(
                    ":")
                params.setdefault("client_id", client_id)
                params.setdefault("client_secret", secret)
            status, extra, answer = self.call(url.path[5:], params, token=token)
            return status, {**json_headers, **extra}, json.dumps(answer).encode()
        if url.path.startswith("/response/") and http_method == "POST":
            payload = parse_body(content_type, body)
            if isinstance(payload.get("payload"), str):
                payload = parse_body("application/json", payload["payload"].encode())
            status, answer = self.post_response(url.path[len("/response/"):], payload)
            return status, json_headers, json.dumps(answer).encode()
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found"

    @property
    def calls(self) -> list[Call]:
        """Every recorded Web API call, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def describe_calls(self) -> str:
        """A readable listing of recorded calls, used in timeout assertion messages."""
        lines = []
        for i, c in enumerate(self.calls):
            params = json.dumps(c.params, default=str)
            params = params if len(params) <= 160 else params[:157] + "..."
            outcome = "ok" if c.ok else c.response.get("error")
            lines.append(f"  #{i} {c.method} -> {c.status} {outcome} {params}")
        return "\n".join(lines) or "  (no Web API calls recorded)"

    def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT,
                 description: str = "condition") -> Any:
        """Block until ``predicate()`` is truthy and return its value.

        The predicate runs outside the lock, re-evaluated whenever state changes (and every
        0.25s). Raises AssertionError listing the recorded calls on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._version
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {description}; "
                                     f"recorded calls:\n{self.describe_calls()}")
            with self._changed:
                if self._version == seen:
                    self._changed.wait(min(remaining, 0.25))

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = WAIT,
                       where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Wait until at least ``count`` calls to ``method`` (matching ``where``) arrived."""
        def matching() -> list[Call] | None:
            found = [c for c in self.calls_to(method) if where is None or where(c)]
            return found if len(found) >= count else None
        what = f"{count} {method} call(s)" + (" matching `where`" if where else "")
        return self.wait_for(matching, timeout, what)

    @property
    def version(self) -> int:
        """A counter bumped on every state change (a UI long-polls on it)."""
        with self._lock:
            return self._version

    def reset(self) -> None:
        """Forget all activity (calls, faults, messages, views, triggers, responses) but keep
        the users and channels that were added, so one server can serve many tests."""
        with self._lock:
            self._reset_activity()
            self._bump()

    def _reset_activity(self) -> None:
        self._calls: list[Call] = []
        self._faults: dict[str, deque] = {}
        self._messages: dict[str, list[dict]] = {}
        self._ephemerals: list[dict] = []
        self._views: dict[str, dict] = {}
        self._view_owner: dict[str, str | None] = {}
        self._view_errors: dict[str, dict] = {}
        self._stacks: dict[str | None, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._triggers: dict[str, dict] = {}
        self._response_urls: dict[str, dict] = {}
        self._responses: list[dict] = []
        self._unfurls: list[dict] = []  # chat.unfurl by unfurl_id (the composer's previews)
        self._reset_functions()
        self._last_ts = 0
        self._channels = {k: v for k, v in self._channels.items()
                          if not v.get("is_im") and not v.get("is_mpim")}

    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    # -- messages -------------------------------------------------------------------------

    def _next_ts(self) -> str:
        """Slack-style ``"<seconds>.<micros>"`` timestamps, unique and increasing."""
        self._last_ts = max(int(time.time() * 1_000_000), self._last_ts + 1)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"

    @staticmethod
    def _stamp_ids(blocks: list) -> list:
        """Copy blocks, filling in block_id/action_id where absent, as Slack does on store."""
        blocks = copy.deepcopy(blocks)
        for i, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            digest = hashlib.sha1(f"{i}:{json.dumps(block, sort_keys=True)}".encode(),
                                  usedforsecurity=False)
            block.setdefault("block_id", digest.hexdigest()[:5])
            elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
            elements += [block[k] for k in ("accessory", "element") if isinstance(block.get(k),
                                                                                   dict)]
            for j, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") not in ("image", None):
                    el.setdefault("action_id", f"{block['block_id']}-{j}")
        return blocks

    def _new_record(self, channel: str, user: str, p: dict, **extra: Any) -> dict:
        record = {"type": "message", "ts": self._next_ts(), "channel": channel, "user": user,
                  "text": p.get("text") or "", "blocks": self._stamp_ids(p.get("blocks") or []),
                  "thread_ts": p.get("thread_ts") or None, "team": self.team_id,
                  "edited": False, "history": [], "is_ephemeral": False, **extra}
        if user == self.bot_user_id:
            record.update(bot_id=self.bot_id, app_id=self.app_id)
        for key in ("attachments", "metadata"):
            if p.get(key):
                record[key] = copy.deepcopy(p[key])
        return record

    def _store_message(self, channel: str, user: str, p: dict) -> dict:
        record = self._new_record(channel, user, p)
        self._messages.setdefault(channel, []).append(record)
        parent = self._find_message(channel, record["thread_ts"])
        if parent is not None and parent is not record:
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = record["ts"]
            users = parent.setdefault("reply_users", [])
            if user not in users:
                users.append(user)
        return record

    def _store_ephemeral(self, channel: str, recipient: str, p: dict) -> dict:
        record = self._new_record(channel, self.bot_user_id, p, is_ephemeral=True,
                                  recipient=recipient)
        self._ephemerals.append(record)
        return record

    def _revise(self, record: dict, content: dict) -> None:
        """Apply an edit, keeping the prior version in ``history`` (for UI and assertions)."""
        prior = {k: copy.deepcopy(record.get(k)) for k in ("text", "blocks", "attachments")}
        prior["ts"] = record.get("edited_ts") or record["ts"]
        record["history"].append(prior)
        record["text"] = content.get("text") or ""
        record["blocks"] = self._stamp_ids(content.get("blocks") or [])
        if content.get("attachments"):
            record["attachments"] = copy.deepcopy(content["attachments"])
        else:
            record.pop("attachments", None)
        record["edited"], record["edited_ts"] = True, self._next_ts()

    def _find_message(self, channel: str, ts: Any) -> dict | None:
        return next((m for m in self._messages.get(channel, ()) if m["ts"] == ts), None)

    @staticmethod
    def slack_message(record: dict) -> dict:
        """A stored record in Slack's message shape (as in API answers and action payloads)."""
        return to_slack_message(record)

    def add_message(self, channel: str, user: str, text: str, blocks: list | None = None,
                    thread_ts: str | None = None) -> dict:
        """Seed a message written by a human (e.g. before sending the matching event)."""
        with self._lock:
            channel_id = self._resolve_channel(channel, for_post=True)
            if channel_id is None:
                raise KeyError(f"unknown channel {channel!r}")
            record = self._store_message(channel_id, user, {
                "text": text, "blocks": blocks, "thread_ts": thread_ts})
            self._bump()
            return copy.deepcopy(record)

    def _conversation(self, channel: str) -> str | None:
        found = self._resolve_channel(channel)
        if found is None and "D" + channel in self._channels:
            found = "D" + channel
        return found

    def messages(self, channel: str) -> list[dict]:
        """Current messages of a channel (ID, name, ``#name``; a user ID means their DM).

        Each is the stored record: Slack's message fields plus ``channel``, ``edited`` (bool),
        ``history`` (prior versions, oldest first) and ``is_ephemeral`` False.
        """
        with self._lock:
            channel_id = self._conversation(channel)
            return copy.deepcopy(self._messages.get(channel_id, [])) if channel_id else []

    def message(self, channel: str, ts: str) -> dict | None:
        with self._lock:
            found = self._find_message(self._conversation(channel) or "", ts)
            return copy.deepcopy(found)

    def thread(self, channel: str, thread_ts: str) -> list[dict]:
        """Replies posted with ``thread_ts`` (the parent excluded)."""
        return [m for m in self.messages(channel)
                if m["thread_ts"] == thread_ts and m["ts"] != thread_ts]

    def dm_messages(self, user_id: str) -> list[dict]:
        return self.messages("D" + user_id)

    def ephemerals(self, user_id: str | None = None, channel: str | None = None) -> list[dict]:
        """Ephemeral messages still visible (``recipient`` is the user who sees them)."""
        with self._lock:
            channel_id = self._conversation(channel) if channel else None
            return copy.deepcopy([e for e in self._ephemerals
                                  if user_id in (None, e["recipient"])
                                  and channel_id in (None, e["channel"])])

    # -- views ----------------------------------------------------------------------------

    def view(self, view_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._views.get(view_id))

    def views_for(self, user_id: str | None) -> list[dict]:
        """The user's open modal stack, root first (empty when no modal is open)."""
        with self._lock:
            return copy.deepcopy([self._views[v] for v in self._stacks.get(user_id, [])])

    def home_view(self, user_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._views.get(self._homes.get(user_id, "")))

    def view_errors(self, view_id: str) -> dict:
        """Field errors the bot last answered with ``response_action: errors`` for a view."""
        with self._lock:
            return dict(self._view_errors.get(view_id, {}))

    def issue_trigger(self, user_id: str | None = None) -> str:
        """Mint a trigger_id (valid once, for ``trigger_ttl`` seconds) as Slack does per
        interaction; views.open/push accept only these when ``strict_triggers``."""
        trigger_id = (f"{secrets.randbelow(10**11):011d}.{secrets.randbelow(10**9):09d}."
                      f"{secrets.token_hex(16)}")
        with self._lock:
            self._triggers[trigger_id] = {"issued": time.monotonic(), "user": user_id,
                                          "used": False}
        return trigger_id

    def snapshot(self) -> dict:
        """Whole-workspace state for a UI: channels, messages, ephemerals, modals, homes."""
        with self._lock:
            return copy.deepcopy({
                "channels": list(self._channels.values()), "users": list(self._users.values()),
                "messages": self._messages, "ephemerals": self._ephemerals,
                "modals": {u: [self._views[v] for v in s] for u, s in self._stacks.items()},
                "homes": {u: self._views[v] for u, v in self._homes.items()},
                "responses": self._responses})
