"""Drive the bot like Slack does: signed slash commands, clicks, modal submissions and events.

Why: end-to-end tests must reach the bot through the same door as production -- ``POST
/slack/events`` with Slack's body formats and ``X-Slack-Signature`` -- so request verification,
payload parsing and ack timing are all exercised. Payload shapes follow Slack's interaction
payload reference (bolt-python's scenario tests use the same shapes). With a
:class:`~sandbox.webapi.SlackWebAPI` attached, the driver also plays the Slack client: it mints
trigger_ids and response_urls the stand-in honours, reads the current message/view before
acting (so stale or missing buttons fail loudly), and applies ``view_submission`` answers to
the stand-in's modal stack.

Every sending method accepts the keyword options ``timestamp=`` (forge a stale request),
``signature=`` (forge a bad one), ``retry_num=``/``retry_reason=`` (Slack's retry headers) and
``headers=`` (extra headers), and returns the ``httpx.Response``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from sandbox.elements import (
    ElementNotFound,
    block_action,
    find_element,
    initial_state,
    is_empty,
    iter_elements,
    state_value,
)
from sandbox.webapi import SlackWebAPI, to_slack_message

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_SEND_OPTIONS = frozenset({"timestamp", "signature", "retry_num", "retry_reason", "headers"})
_STATELESS = ("button", "overflow", "workflow_button")


def slack_timestamp() -> int:
    """Slack's clock: the `X-Slack-Request-Timestamp` it would send now (tests forge stale
    requests from it)."""
    return int(time.time())


class InvalidViewResponse(AssertionError):
    """The bot answered a view_submission with something Slack would refuse."""

    def __init__(self, problems: list[str], response: httpx.Response) -> None:
        super().__init__("bot's view_submission answer rejected: " + "; ".join(problems))
        self.problems, self.response = problems, response


def sign(signing_secret: str, timestamp: str, body: str) -> str:
    """Slack's request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def _is_view(source: dict) -> bool:
    return source.get("type") in ("modal", "home") and "ts" not in source


class SlackDriver:
    """Sends Slack-shaped, Slack-signed requests to the bot's events endpoint."""

    def __init__(self, events_url: str, signing_secret: str, api: SlackWebAPI | None = None,
                 team_id: str = "T0001", api_app_id: str = "A0O2C", *,
                 team_domain: str = "o2c-sandbox",
                 verification_token: str = "legacy-token",  # noqa: S107 - not a secret
                 bot_user_id: str | None = None, timeout: float = 10.0,
                 enterprise_id: str | None = None) -> None:
        self.events_url, self.signing_secret, self.api = events_url, signing_secret, api
        self.team_id, self.api_app_id, self.team_domain = team_id, api_app_id, team_domain
        self.enterprise_id = enterprise_id  # the workspace's Enterprise Grid org, if any
        self.verification_token = verification_token
        self.bot_user_id = bot_user_id or (api.bot_user_id if api else "U0BOT")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def send(self, body: str, content_type: str, *, timestamp: int | str | None = None,
             signature: str | None = None, retry_num: int | None = None,
             retry_reason: str | None = None, headers: dict | None = None) -> httpx.Response:
        """POST a raw body, signed like Slack (or with the forged ``timestamp``/``signature``)."""
        ts = str(slack_timestamp() if timestamp is None else timestamp)
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature or sign(self.signing_secret, ts, body)}
        if retry_num is not None:
            sent["X-Slack-Retry-Num"] = str(retry_num)
            sent["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        elif retry_reason is not None:
            sent["X-Slack-Retry-Reason"] = retry_reason
        sent.update(headers or {})
        return self._http.post(self.events_url, content=body.encode(), headers=sent)

    def _send_payload(self, payload: dict, opts: dict) -> httpx.Response:
        return self.send(urlencode({"payload": json.dumps(payload)}), FORM, **self._opts(opts))

    @staticmethod
    def _opts(opts: dict) -> dict:
        unknown = set(opts) - _SEND_OPTIONS
        if unknown:
            raise TypeError(f"unknown send option(s): {sorted(unknown)}")
        return opts

    # -- Slack-side context ---------------------------------------------------------------

    def _user(self, user_id: str) -> dict:
        known = {u["id"]: u for u in self.api.users()} if self.api else {}
        name = known[user_id]["name"] if user_id in known else user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _team(self) -> dict:
        team = {"id": self.team_id, "domain": self.team_domain}
        if self.enterprise_id:
            team["enterprise_id"] = self.enterprise_id
        return team

    def _enterprise(self) -> dict | None:
        return {"id": self.enterprise_id, "name": "Grid"} if self.enterprise_id else None

    def _trigger(self, user_id: str) -> str:
        if self.api:
            return self.api.issue_trigger(user_id)
        return f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"

    def _response_url(self, user_id: str, channel_id: str, **kw: Any) -> str:
        if self.api:
            return self.api.new_response_url(user_id, channel_id, **kw)
        return f"https://hooks.slack.com/actions/{self.team_id}/1/{secrets.token_urlsafe(16)}"

    def _channel(self, channel_id: str) -> dict:
        if channel_id.startswith("D"):
            return {"id": channel_id, "name": "directmessage"}
        known = {c["id"]: c for c in self.api.channels()} if self.api else {}
        name = known[channel_id]["name"] if channel_id in known else channel_id.lower()
        return {"id": channel_id, "name": name}

    def _interaction(self, kind: str, user_id: str) -> dict:
        return {"type": kind, "user": self._user(user_id), "api_app_id": self.api_app_id,
                "token": self.verification_token}

    def _fresh(self, source: dict) -> dict:
        """What the user currently sees: re-read ``source`` from the stand-in when attached."""
        if not isinstance(source, dict):
            raise TypeError("source must be a message or view dict")
        if not _is_view(source) and "channel" not in source:
            raise ValueError("message source needs 'channel' (use api.messages() entries)")
        if self.api is None:
            return copy.deepcopy(source)
        if _is_view(source):
            current = self.api.view(source.get("id", ""))
        elif source.get("is_ephemeral"):
            current = next((e for e in self.api.ephemerals(source.get("recipient"))
                            if e["ts"] == source.get("ts")), None)
        else:
            current = self.api.message(source["channel"], source.get("ts", ""))
        if current is None:
            raise ElementNotFound(f"{'view' if _is_view(source) else 'message'} is no longer "
                                  "shown in the stand-in (closed, deleted or replaced)")
        return current

    # -- interactions ---------------------------------------------------------------------

    def slash(self, user_id: str, text: str, command: str = "/o2c",
              channel_id: str = "C0GENERAL", channel_name: str = "general",
              **opts: Any) -> httpx.Response:
        """A slash command, form-encoded with exactly Slack's fields."""
        if channel_id.startswith("D") and channel_name == "general":
            channel_name = "directmessage"
        if self.api:
            self.api.ensure_conversation(channel_id, channel_name)
        fields = {
            "token": self.verification_token, "team_id": self.team_id,
            "team_domain": self.team_domain, "channel_id": channel_id,
            "channel_name": channel_name, "user_id": user_id,
            "user_name": self._user(user_id)["name"], "command": command, "text": text,
            "api_app_id": self.api_app_id, "is_enterprise_install": "false",
            "response_url": self._response_url(user_id, channel_id),
            "trigger_id": self._trigger(user_id),
        }
        if self.enterprise_id:
            fields.update(enterprise_id=self.enterprise_id, enterprise_name="Grid")
        return self.send(urlencode(fields), FORM, **self._opts(opts))

    def click(self, user_id: str, source: dict, action_id: str, value: Any = None,
              selected: Any = None, block_id: str | None = None,
              **opts: Any) -> httpx.Response:
        """A ``block_actions`` payload for ``user_id`` acting on an element of ``source``.

        ``source`` is a stored message (``api.messages()``/``api.ephemerals()`` entry) or a
        view. Buttons send their own value unless ``value`` overrides it; selects, pickers and
        inputs need ``selected`` (option value(s), user/channel IDs, dates ...).
        """
        source = self._fresh(source)
        block, element = find_element(source.get("blocks") or [], action_id, block_id)
        action = block_action(element, block.get("block_id"), value, selected)
        state: dict = {}
        if element.get("type") not in _STATELESS:
            entry = state_value(element, selected if selected is not None else value)
            state = {block.get("block_id"): {element.get("action_id"): entry}}
        payload = self._interaction("block_actions", user_id)
        if _is_view(source):
            if self.api and state:
                self.api.set_view_state(source["id"], block.get("block_id"),
                                        element.get("action_id"), entry)
                source = self._fresh(source)
            payload.update(container={"type": "view", "view_id": source["id"]},
                           trigger_id=self._trigger(user_id), team=self._team(),
                           enterprise=self._enterprise(), is_enterprise_install=False,
                           view=copy.deepcopy(source))
        else:
            ephemeral = bool(source.get("is_ephemeral"))
            channel_id = source["channel"]
            payload.update(container={"type": "message", "message_ts": source["ts"],
                                      "channel_id": channel_id, "is_ephemeral": ephemeral},
                           trigger_id=self._trigger(user_id), team=self._team(),
                           enterprise=self._enterprise(), is_enterprise_install=False,
                           channel=self._channel(channel_id))
            if not ephemeral:  # Slack omits the message for ephemeral sources
                payload["message"] = to_slack_message(source)
            payload["state"] = {"values": state}
            payload["response_url"] = self._response_url(
                user_id, channel_id, message_ts=source["ts"], is_ephemeral=ephemeral,
                thread_ts=source.get("thread_ts"))
        payload["actions"] = [action]
        return self._send_payload(payload, opts)

    def message_shortcut(self, user_id: str, message: dict, callback_id: str,
                         **opts: Any) -> httpx.Response:
        """A message shortcut on ``message`` (an ``api.messages()`` entry, or any dict with
        ``channel``, ``ts`` and ``text``), as Slack sends ``message_action``."""
        channel = message["channel"]
        shown = {k: v for k, v in message.items() if k not in ("channel", "history")}
        payload = {**self._interaction("message_action", user_id), "callback_id": callback_id,
                   "team": self._team(), "channel": self._channel(channel),
                   "is_enterprise_install": False, "enterprise": self._enterprise(),
                   "action_ts": f"{time.time():.6f}", "message_ts": message["ts"],
                   "message": shown, "trigger_id": self._trigger(user_id),
                   "response_url": self._response_url(user_id, channel)}
        return self._send_payload(payload, opts)

    def global_shortcut(self, user_id: str, callback_id: str, **opts: Any) -> httpx.Response:
        """A global shortcut (from the composer or search), as Slack sends ``shortcut``."""
        payload = {**self._interaction("shortcut", user_id), "callback_id": callback_id,
                   "team": self._team(), "is_enterprise_install": False,
                   "enterprise": self._enterprise(),
                   "action_ts": f"{time.time():.6f}", "trigger_id": self._trigger(user_id)}
        return self._send_payload(payload, opts)

    def block_suggestion(self, user_id: str, source: dict, action_id: str, value: str,
                         block_id: str | None = None, **opts: Any) -> httpx.Response:
        """An external_select options request (``block_suggestion``) for typed ``value``."""
        source = self._fresh(source)
        block, _ = find_element(source.get("blocks") or [], action_id, block_id)
        payload = self._interaction("block_suggestion", user_id)
        if _is_view(source):
            payload["container"] = {"type": "view", "view_id": source["id"]}
        else:
            payload["container"] = {"type": "message", "message_ts": source["ts"],
                                    "channel_id": source["channel"],
                                    "is_ephemeral": bool(source.get("is_ephemeral"))}
        payload.update(action_id=action_id, block_id=block.get("block_id"), value=value,
                       team=self._team(), enterprise=self._enterprise(),
                       is_enterprise_install=False)
        if _is_view(source):
            payload["view"] = copy.deepcopy(source)
        else:
            payload["channel"] = self._channel(source["channel"])
            payload["message"] = to_slack_message(source)
        return self._send_payload(payload, opts)

    def submit_view(self, user_id: str, view: dict, values: dict | None = None, *,
                    check_required: bool = True, **opts: Any) -> httpx.Response:
        """A ``view_submission`` with ``values`` = ``{block_id: {action_id: python value}}``.

        Untouched inputs submit their initial value (or empty) as Slack does; with
        ``check_required`` a required input left empty raises ValueError (Slack's client would
        not submit). With the stand-in attached the bot's answer is applied to the modal stack
        (empty 200 closes, ``clear``, ``update``, ``push``, ``errors`` keeps it open) and an
        answer Slack would refuse raises :class:`InvalidViewResponse`.
        """
        view = self._fresh(view)
        index = {(b.get("block_id"), e.get("action_id")): e
                 for b, e in iter_elements(view.get("blocks") or [])}
        state = copy.deepcopy((view.get("state") or {}).get("values") or {})
        for block_id, actions in (values or {}).items():
            for action_id, value in actions.items():
                if (block_id, action_id) not in index:
                    present = ", ".join(f"{b}/{a}" for b, a in index) or "none"
                    raise ElementNotFound(f"no element {block_id}/{action_id} in view "
                                          f"{view.get('id')}; present: {present}")
                entry = state_value(index[(block_id, action_id)], value)
                state.setdefault(block_id, {})[action_id] = entry
                if self.api:
                    self.api.set_view_state(view["id"], block_id, action_id, entry)
        for block in view.get("blocks") or []:
            if block.get("type") != "input" or not isinstance(block.get("element"), dict):
                continue
            element = block["element"]
            entry = state.setdefault(block["block_id"], {}).setdefault(
                element.get("action_id"), initial_state(element))
            if check_required and not block.get("optional") and is_empty(entry):
                raise ValueError(f"required input {block['block_id']!r} left empty; Slack's "
                                 "client would refuse to submit (pass check_required=False)")
        view["state"] = {"values": state}
        payload = self._interaction("view_submission", user_id)
        payload.update(team=self._team(), trigger_id=self._trigger(user_id),
                       view=copy.deepcopy(view), response_urls=[],
                       is_enterprise_install=False, enterprise=self._enterprise())
        response = self._send_payload(payload, opts)
        if self.api:
            problems = self.api.apply_view_response(user_id, view["id"], response.status_code,
                                                    _json_or_none(response))
            if problems:
                raise InvalidViewResponse(problems, response)
        return response

    def close_view(self, user_id: str, view: dict, *, is_cleared: bool = False,
                   force: bool = False, **opts: Any) -> httpx.Response | None:
        """The user closes a modal. Slack sends ``view_closed`` only when the view set
        ``notify_on_close``; otherwise this just closes it in the stand-in and returns None
        (``force=True`` sends anyway)."""
        view = self._fresh(view)
        if self.api:
            self.api.close_view(user_id, view["id"], clear=is_cleared)
        if not view.get("notify_on_close") and not force:
            return None
        payload = self._interaction("view_closed", user_id)
        payload.update(team=self._team(), view=copy.deepcopy(view), is_cleared=is_cleared,
                       is_enterprise_install=False, enterprise=self._enterprise())
        return self._send_payload(payload, opts)

    # -- Events API -----------------------------------------------------------------------

    def event(self, event: dict, event_id: str | None = None, **opts: Any) -> httpx.Response:
        """Wrap ``event`` in Slack's ``event_callback`` envelope and send it as JSON."""
        now = time.time()
        event = {**event, "event_ts": event.get("event_ts") or f"{now:.6f}"}
        envelope = {
            "token": self.verification_token, "team_id": self.team_id,
            "context_team_id": self.team_id, "context_enterprise_id": self.enterprise_id,
            "api_app_id": self.api_app_id, "event": event, "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(now),
            "authorizations": [{"enterprise_id": self.enterprise_id, "team_id": self.team_id,
                                "user_id": self.bot_user_id, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_urlsafe(24),
        }
        return self.send(json.dumps(envelope), JSON, **self._opts(opts))

    def function_executed(self, callback_id: str, inputs: dict, *,
                          outputs: tuple[str, ...] = (), execution_id: str | None = None,
                          **opts: Any) -> tuple[str, httpx.Response]:
        """Workflow Builder runs the app's step ``callback_id``: an execution opened in the
        stand-in (when attached), then ``function_executed``; returns its id and the answer."""
        if execution_id is None:
            execution_id = (self.api.start_function(callback_id, inputs, outputs) if self.api
                            else "Fx" + secrets.token_hex(5).upper())
        event = {"type": "function_executed",
                 "function": {"id": "Fn" + callback_id.upper()[:8], "callback_id": callback_id,
                              "title": callback_id, "app_id": self.api_app_id,
                              "type": "app"},
                 "inputs": inputs, "function_execution_id": execution_id,
                 "workflow_execution_id": "Wx" + secrets.token_hex(5).upper(),
                 "bot_access_token": "xwfp-" + secrets.token_hex(8)}
        return execution_id, self.event(event, **opts)

    def app_home_opened(self, user_id: str, tab: str = "home", **opts: Any) -> httpx.Response:
        channel = self.api.ensure_conversation("D" + user_id) if self.api else "D" + user_id
        event: dict = {"type": "app_home_opened", "user": user_id, "channel": channel,
                       "tab": tab}
        home = self.api.home_view(user_id) if self.api else None
        if home:
            event["view"] = home
        return self.event(event, **opts)

    def message(self, user_id: str, channel: str, text: str, thread_ts: str | None = None,
                **opts: Any) -> httpx.Response:
        """A user posts ``text``: stored in the stand-in (when attached), then the
        ``message`` event is sent."""
        if self.api:
            record = self.api.add_message(channel, user_id, text, thread_ts=thread_ts)
            channel, ts = record["channel"], record["ts"]
        else:
            ts = f"{time.time():.6f}"
        kind = {"D": "im", "G": "group"}.get(channel[:1], "channel")
        event = {"type": "message", "channel": channel, "user": user_id, "text": text,
                 "ts": ts, "event_ts": ts, "channel_type": kind, "team": self.team_id,
                 "client_msg_id": str(uuid.uuid4())}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event(event, **opts)

    def url_verification(self, challenge: str, **opts: Any) -> httpx.Response:
        body = {"token": self.verification_token, "challenge": challenge,
                "type": "url_verification"}
        return self.send(json.dumps(body), JSON, **self._opts(opts))


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        return None
