"""Slack Web API method handlers of the stand-in (mixed into :class:`sandbox.webapi.SlackWebAPI`).

Why a separate module: :mod:`sandbox.webapi` owns state, recording, faults and HTTP; this file
holds only "what Slack answers" for each supported method, in Slack's exact response shapes and
error codes, so both stay small enough to review. Every handler runs with the workspace lock
held, receives decoded params (``blocks``/``view`` already parsed from JSON strings) and returns
the response body dict.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import time
from typing import Any

from sandbox.blockkit import validate_message, validate_view

JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "unfurls")


def decode_json_fields(params: dict) -> dict:
    """Form bodies carry ``blocks``/``attachments``/``view`` as JSON strings; Slack parses them."""
    for key in JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def err(code: str, **extra: Any) -> dict:
    """A Slack error body: ``{"ok": false, "error": code, ...}``."""
    return {"ok": False, "error": code, **extra}


def truthy(value: Any) -> bool:
    """Form bodies carry booleans as strings; Slack accepts true/1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def invalid_arguments(messages: list[str]) -> dict:
    return err("invalid_arguments", response_metadata={"messages": messages})


def invalid_blocks(errors: list[str]) -> dict:
    return err("invalid_blocks", errors=errors,
               response_metadata={"messages": ["[ERROR] " + e for e in errors]})


def message_error(code: str, errors: list[str]) -> dict:
    return invalid_blocks(errors) if code == "invalid_blocks" else err(code)


class WebMethodsMixin:
    """Handlers named after Slack methods; dispatched by :meth:`SlackWebAPI.call`."""

    METHODS = {
        "auth.test": "m_auth_test",
        "chat.postMessage": "m_chat_post_message",
        "chat.update": "m_chat_update",
        "chat.postEphemeral": "m_chat_post_ephemeral",
        "chat.delete": "m_chat_delete",
        "chat.getPermalink": "m_chat_get_permalink",
        "conversations.open": "m_conversations_open",
        "conversations.info": "m_conversations_info",
        "conversations.history": "m_conversations_history",
        "users.info": "m_users_info",
        "users.lookupByEmail": "m_users_lookup_by_email",
        "views.open": "m_views_open",
        "views.update": "m_views_update",
        "views.push": "m_views_push",
        "views.publish": "m_views_publish",
        "reactions.add": "m_reactions_add",
        "chat.unfurl": "m_chat_unfurl",
    }

    # -- auth / users ---------------------------------------------------------------------

    def m_auth_test(self, p: dict) -> dict:
        return {"ok": True, "url": f"https://{self.team_domain}.slack.com/",
                "team": "O2C Sandbox", "user": "o2c-bot", "team_id": self.team_id,
                "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def m_users_info(self, p: dict) -> dict:
        user = copy.deepcopy(self._users.get(p.get("user") or ""))
        if not user:
            return err("user_not_found")
        locale = user.pop("locale", None)
        if truthy(p.get("include_locale")):  # Slack says the locale only when asked
            user["locale"] = locale
        return {"ok": True, "user": user}

    def m_users_lookup_by_email(self, p: dict) -> dict:
        email = (p.get("email") or "").lower()
        for user in self._users.values():
            if email and (user["profile"].get("email") or "").lower() == email:
                found = copy.deepcopy(user)
                found.pop("locale", None)
                return {"ok": True, "user": found}
        return err("users_not_found")

    # -- conversations --------------------------------------------------------------------

    def m_conversations_open(self, p: dict) -> dict:
        if p.get("channel"):
            channel = self._resolve_channel(p["channel"])
            return {"ok": True, "channel": {"id": channel}} if channel else err(
                "channel_not_found")
        users = p.get("users") or ""
        ids = [u.strip() for u in (users if isinstance(users, list) else users.split(","))]
        ids = [u for u in ids if u]
        if not ids:
            return err("users_list_not_supplied")
        if any(u not in self._users for u in ids):
            return err("user_not_found")
        if len(ids) == 1:
            existed = "D" + ids[0] in self._channels
            channel = self._open_dm(ids[0])
        else:
            members = sorted(set(ids) | {self.bot_user_id})
            channel = "G" + "".join(m[1:5] for m in members)
            existed = channel in self._channels
            self._channels.setdefault(channel, {
                "id": channel, "name": "mpdm-" + "--".join(members), "is_private": True,
                "is_im": False, "is_mpim": True, "members": members, "created": int(time.time())})
        body: dict = {"ok": True, "channel": {"id": channel}}
        if existed:
            body.update(no_op=True, already_open=True)
        if truthy(p.get("return_im")):
            body["channel"] = self._channel_info(channel)
        return body

    def m_conversations_info(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"))
        return {"ok": True, "channel": self._channel_info(channel)} if channel else err(
            "channel_not_found")

    def m_conversations_history(self, p: dict) -> dict:
        """Top-level messages, newest first, between ``oldest`` and ``latest`` (exclusive
        unless ``inclusive``), ``limit`` per page (at most ``history_limit``) with a cursor.
        Message ``metadata`` is only included with ``include_all_metadata`` (as in Slack)."""
        channel = p.get("channel")
        if not isinstance(channel, str) or channel not in self._channels:
            return err("channel_not_found")
        try:
            oldest = float(p.get("oldest") or 0)
            latest = float(p.get("latest")) if p.get("latest") else float("inf")
            limit = int(p.get("limit") or 100)
            offset = int(p.get("cursor") or 0)
        except (TypeError, ValueError):
            return err("invalid_arguments")
        limit = max(1, min(limit, self.history_limit))
        inclusive = truthy(p.get("inclusive"))

        def within(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        found = [m for m in reversed(self._messages.get(channel, []))
                 if (m.get("thread_ts") in (None, m["ts"])) and within(float(m["ts"]))]
        page = found[offset:offset + limit]
        with_metadata = truthy(p.get("include_all_metadata"))
        messages = []
        for record in page:
            message = self.slack_message(record)
            if not with_metadata:
                message.pop("metadata", None)
            messages.append(message)
        more = offset + limit < len(found)
        return {"ok": True, "messages": messages, "has_more": more, "pin_count": 0,
                "response_metadata": {"next_cursor": str(offset + limit) if more else ""}}

    def _channel_info(self, channel_id: str) -> dict:
        ch = self._channels[channel_id]
        if ch.get("is_im"):
            return {"id": channel_id, "created": ch["created"], "is_im": True,
                    "is_org_shared": False, "user": ch["user"], "is_user_deleted": False,
                    "priority": 0}
        return {"id": channel_id, "name": ch["name"], "name_normalized": ch["name"],
                "is_channel": not ch["is_private"] and not ch.get("is_mpim"),
                "is_group": ch["is_private"] and not ch.get("is_mpim"), "is_im": False,
                "is_mpim": bool(ch.get("is_mpim")), "is_private": ch["is_private"],
                "created": ch["created"], "is_archived": False,
                "is_general": ch["name"] == "general", "is_member": True,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0}}

    # -- chat -----------------------------------------------------------------------------

    def m_chat_post_message(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"), for_post=True)
        if channel is None:
            return err("channel_not_found")
        code, errors = validate_message(p)
        if code:
            return message_error(code, errors)
        metadata = p.get("metadata")
        if metadata is not None and not (
                isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
                and isinstance(metadata.get("event_payload"), dict)):
            return err("invalid_metadata_format")
        record = self._store_message(channel, self.bot_user_id, p)
        return {"ok": True, "channel": channel, "ts": record["ts"],
                "message": self.slack_message(record)}

    def _own_message(self, p: dict, verb: str) -> tuple[str, dict] | dict:
        """The bot's message named by `channel` + `ts`, or Slack's error for it."""
        channel = self._resolve_channel(p.get("channel"))
        if channel is None:
            return err("channel_not_found")
        record = self._find_message(channel, p.get("ts"))
        if record is None:
            return err("message_not_found")
        if record["user"] != self.bot_user_id:
            return err(f"cant_{verb}_message")
        return channel, record

    def m_chat_update(self, p: dict) -> dict:
        found = self._own_message(p, "update")
        if isinstance(found, dict):
            return found
        channel, record = found
        if all(p.get(k) is None for k in ("text", "blocks", "attachments")):
            return err("no_text")
        merged = {k: p[k] if p.get(k) is not None else record.get(k)
                  for k in ("text", "blocks", "attachments")}
        code, errors = validate_message(merged)
        if code:
            return message_error(code, errors)
        self._revise(record, merged)
        return {"ok": True, "channel": channel, "ts": record["ts"], "text": record["text"],
                "message": self.slack_message(record)}

    def m_chat_post_ephemeral(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"), for_post=True)
        if channel is None:
            return err("channel_not_found")
        if p.get("user") not in self._users:
            return err("user_not_found")
        code, errors = validate_message(p)
        if code:
            return message_error(code, errors)
        record = self._store_ephemeral(channel, p["user"], p)
        return {"ok": True, "message_ts": record["ts"]}

    def m_chat_unfurl(self, p: dict) -> dict:
        """Previews of the links in a message (``channel`` + ``ts``, or ``unfurl_id`` +
        ``source`` while it is being written): ``unfurls`` maps each URL to its blocks; they
        are kept on the message record under ``unfurls``."""
        unfurls = p.get("unfurls")
        if not isinstance(unfurls, dict) or not unfurls:
            return err("invalid_unfurls_format")
        for url, preview in unfurls.items():
            if not isinstance(preview, dict):
                return err("invalid_unfurls_format")
            code, errors = validate_message({"text": url, **preview})
            if code:
                return message_error(code, errors)
        if p.get("unfurl_id") and p.get("source"):
            self._unfurls.append({"unfurl_id": p["unfurl_id"], "unfurls": copy.deepcopy(unfurls)})
            return {"ok": True}
        channel = self._resolve_channel(p.get("channel"))
        if channel is None:
            return err("channel_not_found")
        record = self._find_message(channel, p.get("ts"))
        if record is None:
            return err("cannot_find_message")
        record.setdefault("unfurls", {}).update(copy.deepcopy(unfurls))
        return {"ok": True}

    def m_chat_delete(self, p: dict) -> dict:
        found = self._own_message(p, "delete")
        if isinstance(found, dict):
            return found
        channel, record = found
        self._messages[channel].remove(record)
        return {"ok": True, "channel": channel, "ts": record["ts"]}

    def m_chat_get_permalink(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"))
        if channel is None:
            return err("channel_not_found")
        record = self._find_message(channel, p.get("message_ts"))
        if record is None:
            return err("message_not_found")
        link = (f"https://{self.team_domain}.slack.com/archives/{channel}/"
                f"p{record['ts'].replace('.', '')}")
        return {"ok": True, "channel": channel, "permalink": link}

    def m_reactions_add(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"))
        if channel is None:
            return err("channel_not_found")
        name = (p.get("name") or "").strip(":")
        if not name:
            return err("invalid_name")
        record = self._find_message(channel, p.get("timestamp"))
        if record is None:
            return err("message_not_found")
        reactions = record.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if self.bot_user_id in reaction["users"]:
            return err("already_reacted")
        reaction["users"].append(self.bot_user_id)
        reaction["count"] += 1
        return {"ok": True}

    # -- views ----------------------------------------------------------------------------

    def _take_trigger(self, trigger_id: Any) -> tuple[dict | None, str | None]:
        """Validate a trigger like Slack: single use, short-lived. Returns (error, user)."""
        if not trigger_id:
            return invalid_arguments(["[ERROR] missing required field: trigger_id"]), None
        entry = self._triggers.get(trigger_id)
        if not self.strict_triggers:
            return None, entry["user"] if entry else None
        if entry is None:
            return err("invalid_trigger_id"), None
        if entry["used"]:
            return err("exchanged_trigger_id"), None
        if time.monotonic() - entry["issued"] > self.trigger_ttl:
            return err("expired_trigger_id"), None
        entry["used"] = True
        return None, entry["user"]

    def _checked_view(self, p: dict, kind: str) -> tuple[dict | None, dict | None]:
        view = p.get("view")
        if not isinstance(view, dict):
            return None, invalid_arguments(["[ERROR] must provide an object [json-pointer:/view]"])
        errors = validate_view(view)
        if view.get("type") != kind:
            errors.append("[ERROR] must be a valid enum value [json-pointer:/view/type]")
        return (None, invalid_arguments(errors)) if errors else (view, None)

    def m_views_open(self, p: dict) -> dict:
        view, problem = self._checked_view(p, "modal")
        if problem:
            return problem
        problem, user = self._take_trigger(p.get("trigger_id"))
        if problem:
            return problem
        stored = self._store_view(view, user)
        self._stacks[user] = [stored["id"]]
        return {"ok": True, "view": copy.deepcopy(stored)}

    def m_views_push(self, p: dict) -> dict:
        view, problem = self._checked_view(p, "modal")
        if problem:
            return problem
        problem, user = self._take_trigger(p.get("trigger_id"))
        if problem:
            return problem
        stack = self._stacks.setdefault(user, [])
        if len(stack) >= 3:
            return err("push_limit_reached")
        previous = stack[-1] if stack else None
        stored = self._store_view(view, user, previous=previous,
                                  root=stack[0] if stack else None)
        stack.append(stored["id"])
        return {"ok": True, "view": copy.deepcopy(stored)}

    def m_views_update(self, p: dict) -> dict:
        current = self._views.get(p.get("view_id") or "")
        if current is None and p.get("external_id"):
            current = next((v for v in self._views.values()
                            if v.get("external_id") == p["external_id"]), None)
        if current is None:
            return err("not_found")
        if p.get("hash") and p["hash"] != current["hash"]:
            return err("hash_conflict")
        view, problem = self._checked_view(p, current["type"])
        if problem:
            return problem
        owner = self._view_owner.get(current["id"])
        stored = self._store_view(view, owner, view_id=current["id"],
                                  previous=current["previous_view_id"],
                                  root=current["root_view_id"], keep_state=current)
        return {"ok": True, "view": copy.deepcopy(stored)}

    def m_views_publish(self, p: dict) -> dict:
        user = p.get("user_id")
        if user not in self._users:
            return err("user_not_found")
        view, problem = self._checked_view(p, "home")
        if problem:
            return problem
        current = self._views.get(self._homes.get(user, ""))
        if current and p.get("hash") and p["hash"] != current["hash"]:
            return err("hash_conflict")
        stored = self._store_view(view, user, view_id=current["id"] if current else None,
                                  keep_state=current)
        self._homes[user] = stored["id"]
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _store_view(self, view: dict, user: str | None, *, view_id: str | None = None,
                    previous: str | None = None, root: str | None = None,
                    keep_state: dict | None = None) -> dict:
        """Build the full view object Slack returns, store it and remember whose it is."""
        view_id = view_id or "V" + secrets.token_hex(5).upper()
        blocks = self._stamp_ids(view.get("blocks") or [])
        values: dict = {}
        if keep_state:
            live = {b.get("block_id") for b in blocks}
            values = {k: v for k, v in keep_state["state"]["values"].items() if k in live}
        # the workspace of the installation that opened it (an update keeps the view's)
        team = (keep_state or {}).get("team_id") or self._calling_team or self.team_id
        stored = {
            "id": view_id, "team_id": team, "type": view["type"], "blocks": blocks,
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""), "state": {"values": values},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": truthy(view.get("clear_on_close")),
            "notify_on_close": truthy(view.get("notify_on_close")),
            "previous_view_id": previous, "root_view_id": root or view_id,
            "app_id": self.app_id, "external_id": view.get("external_id", ""),
            "app_installed_team_id": team, "bot_id": self.bot_id,
        }
        if view["type"] == "modal":
            stored.update(title=view.get("title"), close=view.get("close"),
                          submit=view.get("submit"))
        self._views[view_id] = stored
        self._view_owner[view_id] = user
        return stored
