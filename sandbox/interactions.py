"""What Slack does *after* the bot answers an interaction: response_url posts and modal changes.

Why: a slash command or button click hands the bot a ``response_url`` and modals change
according to the bot's HTTP reply to ``view_submission``. These rules are easy to get subtly
wrong in the bot (e.g. expecting ``replace_original`` to work for slash-command responses), so
the stand-in reproduces them. Mixed into :class:`sandbox.webapi.SlackWebAPI`; the driver calls
:meth:`apply_view_response`, :meth:`set_view_state` and :meth:`close_view` to mirror the Slack
client.

response_url rules implemented (per Slack's "handling user interaction" docs):

* ``delete_original: true`` deletes the message (or ephemeral) the interaction came from;
* ``replace_original: true`` replaces it entirely (text, blocks, attachments) when known;
  without a known original the post becomes a new ephemeral for the user;
* otherwise ``response_type: "in_channel"`` posts a visible bot message (``thread_ts`` kept)
  and the default ``"ephemeral"`` posts an ephemeral to the user;
* a URL works 5 times within 30 minutes, then ``used_url`` / ``expired_url`` (HTTP 404);
  invalid content answers HTTP 400 with the chat.postMessage error code.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from sandbox.blockkit import validate_message, validate_view
from sandbox.methods import decode_json_fields, err, message_error, truthy

RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0


class InteractionMixin:
    """response_url endpoint state and modal lifecycle after interactions."""

    def new_response_url(self, user_id: str, channel_id: str, message_ts: str | None = None, *,
                         is_ephemeral: bool = False, thread_ts: str | None = None) -> str:
        """Mint a response_url for an interaction by ``user_id`` in ``channel_id``.

        ``message_ts`` names the message the interaction came from (enables replace/delete);
        ``is_ephemeral`` says that message is one of the user's ephemerals.
        """
        url_id = secrets.token_urlsafe(12)
        with self._lock:
            self._response_urls[url_id] = {
                "user": user_id, "channel": channel_id, "message_ts": message_ts,
                "is_ephemeral": is_ephemeral, "thread_ts": thread_ts, "uses": 0,
                "created": time.monotonic()}
        return f"{self.base_url}/response/{url_id}"

    @property
    def responses(self) -> list[dict]:
        """Every accepted response_url post, oldest first: ``url_id, user, channel,
        message_ts, payload, effect`` (deleted/replaced/in_channel/ephemeral), ``ts``, ``at``."""
        with self._lock:
            return copy.deepcopy(self._responses)

    def _original(self, info: dict) -> dict | None:
        ts = info["message_ts"]
        if not ts:
            return None
        if info["is_ephemeral"]:
            return next((e for e in self._ephemerals
                         if e["ts"] == ts and e["recipient"] == info["user"]), None)
        return self._find_message(info["channel"], ts)

    def post_response(self, url_id: str, payload: dict) -> tuple[int, dict]:
        """Handle a POST to a response_url; returns ``(http_status, body)``."""
        payload = decode_json_fields(dict(payload or {}))
        with self._lock:
            info = self._response_urls.get(url_id)
            if info is None or time.monotonic() - info["created"] > RESPONSE_URL_TTL:
                return 404, err("expired_url")
            if info["uses"] >= RESPONSE_URL_USES:
                return 404, err("used_url")
            original = self._original(info)
            result: dict | None = original
            if truthy(payload.get("delete_original")):
                if original is None:
                    return 404, err("message_not_found")
                if original["is_ephemeral"]:
                    self._ephemerals.remove(original)
                else:
                    self._messages[original["channel"]].remove(original)
                effect = "deleted"
            else:
                code, errors = validate_message(payload)
                if code:
                    return 400, message_error(code, errors)
                if truthy(payload.get("replace_original")) and original is not None:
                    self._revise(original, payload)
                    effect = "replaced"
                elif payload.get("response_type") == "in_channel":
                    thread_ts = payload.get("thread_ts") or info["thread_ts"]
                    result = self._store_message(info["channel"], self.bot_user_id,
                                                 {**payload, "thread_ts": thread_ts})
                    effect = "in_channel"
                else:
                    result = self._store_ephemeral(info["channel"], info["user"], payload)
                    effect = "ephemeral"
            info["uses"] += 1
            self._responses.append({
                "url_id": url_id, "user": info["user"], "channel": info["channel"],
                "message_ts": info["message_ts"], "payload": copy.deepcopy(payload),
                "effect": effect, "ts": result["ts"] if result else None, "at": time.time()})
            self._bump()
        return 200, {"ok": True}

    # -- modals driven by the Slack client ------------------------------------------------

    def set_view_state(self, view_id: str, block_id: str, action_id: str,
                       value: dict) -> None:
        """Record an element's state in ``view.state.values`` (as the Slack client does while
        the user edits a modal)."""
        with self._lock:
            self._views[view_id]["state"]["values"].setdefault(block_id, {})[action_id] = value
            self._bump()

    def tamper_view(self, view_id: str, **fields: Any) -> None:
        """Overwrite fields of a stored view (e.g. ``private_metadata``): what a forged or
        corrupted submission of it would carry. For adversarial tests."""
        with self._lock:
            self._views[view_id].update(copy.deepcopy(fields))
            self._bump()

    def close_view(self, user_id: str | None, view_id: str | None = None, *,
                   clear: bool = False) -> list[dict]:
        """Close the top modal (or ``view_id`` and those above it), or all with ``clear``.
        Returns the closed views."""
        with self._lock:
            owner = self._view_owner.get(view_id, user_id) if view_id else user_id
            stack = self._stacks.get(owner, [])
            if clear or not stack:
                cut = 0
            elif view_id in stack:
                cut = stack.index(view_id)
            else:
                cut = len(stack) - 1
            closed = [copy.deepcopy(self._views[v]) for v in stack[cut:]]
            del stack[cut:]
            self._bump()
            return closed

    def apply_view_response(self, user_id: str | None, view_id: str, status: int,
                            body: Any) -> list[str]:
        """Apply the bot's HTTP answer to a ``view_submission`` like the Slack client.

        Empty 200 closes the submitted view; ``clear`` closes the stack; ``update``/``push``
        replace/stack a view; ``errors`` keeps it open (see :meth:`view_errors`). Non-200
        leaves everything open. Returns problems Slack would reject the answer for.
        """
        if status != 200:
            return []
        body = body if isinstance(body, dict) else {}
        action = body.get("response_action")
        with self._lock:
            current = self._views.get(view_id)
            if current is None:
                return [f"unknown view {view_id}"]
            owner = self._view_owner.get(view_id, user_id)
            stack = self._stacks.setdefault(owner, [])
            problems: list[str] = []
            earlier_errors = self._view_errors.pop(view_id, None)  # a new answer replaces them
            if action is None:
                if view_id in stack:
                    del stack[stack.index(view_id):]
            elif action == "clear":
                stack.clear()
            elif action == "errors":
                problems = self._check_field_errors(current, body.get("errors"))
                if not problems:
                    self._view_errors[view_id] = dict(body["errors"])
            elif action in ("update", "push"):
                view = body.get("view")
                problems = validate_view(view)
                if not problems and view.get("type") != "modal":
                    problems = ["[ERROR] must be a valid enum value [json-pointer:/view/type]"]
                if not problems and action == "update":
                    self._store_view(view, owner, view_id=view_id,
                                     previous=current["previous_view_id"],
                                     root=current["root_view_id"], keep_state=current)
                    self._view_errors.pop(view_id, None)
                elif not problems and len(stack) >= 3:
                    problems = ["push_limit_reached"]
                elif not problems:
                    stored = self._store_view(view, owner, previous=stack[-1] if stack else None,
                                              root=stack[0] if stack else None)
                    stack.append(stored["id"])
            else:
                problems = [f"unknown response_action {action!r}"]
            if problems and earlier_errors:  # Slack refused the answer: nothing changes
                self._view_errors.setdefault(view_id, earlier_errors)
            self._bump()
            return problems

    @staticmethod
    def _check_field_errors(view: dict, errors: Any) -> list[str]:
        """Slack only accepts ``errors`` keyed by block_ids of input blocks in the view."""
        if not isinstance(errors, dict) or not errors:
            return ["errors must be a non-empty object keyed by input block_id"]
        inputs = {b.get("block_id") for b in view["blocks"] if b.get("type") == "input"}
        return [f"errors names {key!r}, which is not an input block_id of the view"
                for key in errors if key not in inputs]
