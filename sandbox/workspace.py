"""The sandbox workspace: what the browser page sees, and what it does, on top of the stand-in.

Why a layer between the page and the stand-in: the page speaks in "user X clicked element Y of
message Z"; this module turns that into exactly what Slack would send -- signed requests to the
bot's own ``POST /slack/events`` through :class:`~sandbox.driver.SlackDriver` -- and assembles
the state the page renders (the stand-in's snapshot plus each user's roles from the database).
It never calls a listener directly: the bot is reached only over HTTP, as in production.

Every method may run in any thread (the web layer calls them from the thread pool). None holds
the stand-in's lock while the bot is called: the stand-in's own methods take it briefly.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from bot import jobs
from models import Role, User, UserRole
from sandbox.driver import InvalidViewResponse, SlackDriver
from sandbox.elements import ElementNotFound, iter_elements, state_value
from sandbox.webapi import SlackWebAPI
from workflows.users import has_role
from workflows.workcalendar import zone_or_utc

log = logging.getLogger("sandbox.web")

# The channels the bot posts to, by logical name (settings say which channel each one is).
LOGICAL_CHANNELS = ("approvals", "alerts", "ar")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
ROLE_ORDER = [Role.SALES, Role.CREDIT_APPROVER, Role.DISCOUNT_APPROVER, Role.COLLECTOR,
              Role.ADMIN]


TEXT_MAX = 4000  # what the sandbox's message box takes, like Slack's
MENTION = re.compile(r"(?<![<\w])@([A-Za-z][\w.-]{0,79})")


class ActionFailed(Exception):
    """A page action that cannot be done; ``status`` is the HTTP status the page gets."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def dm_channel(user_id: str) -> str:
    """The stand-in's id for a user's DM with the bot."""
    return "D" + user_id


def handle_of(name: str, user_id: str) -> str:
    """A Slack-style handle (``sam.sales``) from a display name."""
    return re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".") or user_id.lower()


def _tz_offset(tz: str) -> tuple[str, int]:
    try:
        zone = ZoneInfo(tz or "UTC")
    except Exception:
        return "UTC", 0
    offset = datetime.now(UTC).astimezone(zone).utcoffset()
    return tz or "UTC", int(offset.total_seconds()) if offset else 0


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Workspace:
    """The Slack workspace the page shows: the stand-in's state, driven through the driver."""

    def __init__(self, api: SlackWebAPI, driver: SlackDriver, deps: Any) -> None:
        self.api, self.driver, self.deps = api, driver, deps

    # -- directory ------------------------------------------------------------------------

    def ensure_channels(self) -> dict[str, str]:
        """Create the approvals/alerts/AR channels the settings name; returns logical -> id.

        A setting holding a channel id (``C0APPROVAL``) becomes that channel, named after its
        logical name; a setting holding a name (``approvals``) becomes a channel of that name.
        """
        settings = self.deps.settings
        found: dict[str, str] = {}
        for logical in LOGICAL_CHANNELS:
            value = getattr(settings, f"o2c_{logical}_channel").lstrip("#")
            existing = {c["id"]: c for c in self.api.channels()}
            if CHANNEL_ID.match(value):
                if value not in existing:
                    self.api.add_channel(value, logical)
                found[logical] = value
                continue
            named = next((c["id"] for c in existing.values() if c["name"] == value), None)
            if named is None:
                named = self.api.add_channel("C0" + re.sub(r"[^A-Z0-9]", "", value.upper())[:9]
                                             + "X", value)["id"]
            found[logical] = named
        return found

    def sync_directory(self) -> int:
        """Add every user of the database the stand-in does not know yet (name, time zone).

        Called at start and on each state read, so users created later (REST API, seed) show
        up in the user switcher. Returns how many were added.
        """
        known = {u["id"] for u in self.api.users()}
        try:
            with self.deps.db.read_session() as session:
                rows = [(u.slack_user_id, u.name, u.timezone, u.email)
                        for u in session.exec(select(User)).all()]
        except SQLAlchemyError:  # not migrated yet: nothing to show
            log.debug("sandbox: users table not readable yet", exc_info=True)
            return 0
        added = 0
        for user_id, name, tz, email in rows:
            if user_id in known:
                continue
            tz, offset = _tz_offset(tz)
            self.api.add_user(user_id, handle_of(name or user_id, user_id),
                              real_name=name or user_id, tz=tz, tz_offset=offset, email=email)
            added += 1
        return added

    def _roles(self) -> dict[str, list[str]]:
        try:
            with self.deps.db.read_session() as session:
                rows = session.exec(select(UserRole.user_id, UserRole.role)).all()
        except SQLAlchemyError:
            return {}
        held: dict[str, list[str]] = {}
        for user_id, role in rows:
            held.setdefault(user_id, []).append(role)
        rank = {r: i for i, r in enumerate(ROLE_ORDER)}
        return {u: sorted(r, key=lambda x: rank.get(x, 99)) for u, r in held.items()}

    # -- what the page renders ------------------------------------------------------------

    def state(self) -> dict:
        """Everything the page shows, for every user (the page filters per selected user)."""
        self.sync_directory()
        version = self.api.version
        snap = self.api.snapshot()
        roles = self._roles()
        rank = {r: i for i, r in enumerate(ROLE_ORDER)}

        def order(u: dict) -> tuple:
            held = roles.get(u["id"], [])
            return (min((rank.get(r, 99) for r in held), default=99), u["real_name"])

        users = [{"id": u["id"], "name": u["name"], "real_name": u["real_name"], "tz": u["tz"],
                  "roles": roles.get(u["id"], [])}
                 for u in sorted((u for u in snap["users"] if not u["is_bot"]), key=order)]
        messages = {ch: [{k: v for k, v in m.items() if k != "history"} for m in msgs]
                    for ch, msgs in snap["messages"].items()}
        modals = {user: [{**view, "errors": self.api.view_errors(view["id"])} for view in stack]
                  for user, stack in snap["modals"].items() if user}
        return {
            "version": version,
            "bot": {"id": self.api.bot_user_id, "name": "o2c-bot"},
            "users": users,
            "channels": [c for c in snap["channels"] if not c.get("is_im")],
            "messages": messages,
            "ephemerals": [{k: v for k, v in e.items() if k != "history"}
                           for e in snap["ephemerals"]],
            "modals": modals,
            "homes": snap["homes"],
        }

    def jobs(self) -> list[dict]:
        return [{"name": j.name, "summary": j.summary}
                for j in sorted(jobs.JOBS.values(), key=lambda j: j.name)]

    # -- what the page does (always through signed requests) --------------------------------

    def _user(self, user_id: str) -> str:
        if user_id == self.api.bot_user_id or user_id not in {u["id"] for u in self.api.users()}:
            raise ActionFailed(404, f"unknown sandbox user {user_id!r}")
        return user_id

    def _channel(self, user_id: str, channel: str) -> tuple[str, str]:
        if channel == dm_channel(user_id):
            return channel, "directmessage"
        for c in self.api.channels():
            if c["id"] == channel and not c.get("is_im"):
                return channel, c["name"]
        raise ActionFailed(404, f"unknown channel {channel!r}")

    @staticmethod
    def _answered(response: httpx.Response) -> dict:
        if response.status_code == 404:
            raise ActionFailed(502, "The bot has no listener for this (it answered HTTP 404).")
        if response.status_code >= 400:
            raise ActionFailed(502, f"The bot answered HTTP {response.status_code}.")
        return {"ok": True, "status": response.status_code}

    def _send(self, call: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        try:
            return call(*args, **kwargs)
        except ElementNotFound as exc:
            raise ActionFailed(409, f"That is no longer on screen: {exc}") from None
        except InvalidViewResponse as exc:
            raise ActionFailed(502, str(exc)) from None
        except httpx.HTTPError as exc:
            raise ActionFailed(502, f"Could not reach the bot: {type(exc).__name__}") from None

    def slash(self, user_id: str, channel: str, text: str) -> dict:
        """``/o2c ...`` typed in the message box of ``channel``. As Slack does for a command
        with ``should_escape``, ``@name`` of a workspace member becomes ``<@U…|name>``."""
        user_id = self._user(user_id)
        self._check_length(text)
        channel, name = self._channel(user_id, channel)
        command, _, rest = text.strip().partition(" ")
        if command != "/o2c":
            raise ActionFailed(400, f"{command} is not a command of this workspace; try /o2c help")
        response = self._send(self.driver.slash, user_id, self.escape_mentions(rest.strip()),
                              channel_id=channel, channel_name=name)
        return self._answered(response)

    @staticmethod
    def _check_length(text: str) -> None:
        if len(text) > TEXT_MAX:
            raise ActionFailed(400, f"That is too long ({len(text)} characters): a message or "
                               f"command holds at most {TEXT_MAX}.")

    def escape_mentions(self, text: str) -> str:
        """``@sam`` -> ``<@U0SALES01|sam>`` for a member whose name (or first name) it is, as
        Slack sends a command's text with ``should_escape``; anything else stays as typed."""
        people: dict[str, tuple[str, str]] = {}
        for u in self.api.users():
            if u.get("is_bot"):
                continue
            for key in (u.get("name") or "", (u.get("real_name") or "").split(" ")[0]):
                if key:
                    people.setdefault(key.lower(), (u["id"], u.get("name") or key))

        def mention(match: re.Match) -> str:
            found = people.get(match.group(1).lower())
            return f"<@{found[0]}|{found[1]}>" if found else match.group(0)

        return MENTION.sub(mention, text)

    def post(self, user_id: str, channel: str, text: str) -> dict:
        """A plain message: stored in the channel, and the ``message`` event sent to the bot
        (which may ignore it, as bots usually do)."""
        user_id = self._user(user_id)
        self._check_length(text)
        channel, _ = self._channel(user_id, channel)
        if not text.strip():
            raise ActionFailed(400, "nothing to send")
        self._send(self.driver.message, user_id, channel, text)
        return {"ok": True}

    def _source(self, user_id: str, surface: dict) -> dict:
        kind = surface.get("kind")
        found: dict | None = None
        if kind == "message":
            found = self.api.message(surface.get("channel") or "", surface.get("ts") or "")
        elif kind == "ephemeral":
            found = next((e for e in self.api.ephemerals(user_id)
                          if e["ts"] == surface.get("ts")), None)
        elif kind == "view":
            view_id = surface.get("view_id")
            mine = [v["id"] for v in self.api.views_for(user_id)]
            home = self.api.home_view(user_id)
            if view_id in mine or (home and home["id"] == view_id):
                found = self.api.view(view_id)
        if found is None:
            raise ActionFailed(404, "That message or view is gone.")
        return found

    def _keep_drafts(self, view: dict, values: dict) -> None:
        """Record what the user typed into a modal so far (Slack sends it with each action)."""
        index = {(b.get("block_id"), e.get("action_id")): e
                 for b, e in iter_elements(view.get("blocks") or [])}
        for block_id, actions in (values or {}).items():
            for action_id, value in (actions or {}).items():
                element = index.get((block_id, action_id))
                if element is None:
                    continue
                try:
                    entry = state_value(element, value)
                except (ValueError, ElementNotFound) as exc:
                    raise ActionFailed(400, str(exc)) from None
                self.api.set_view_state(view["id"], block_id, action_id, entry)

    def click(self, user_id: str, surface: dict, action_id: str, *, block_id: str | None = None,
              value: Any = None, selected: Any = None, values: dict | None = None) -> dict:
        """A click on a button, or a choice in a select/date picker, of a message or view."""
        user_id = self._user(user_id)
        source = self._source(user_id, surface)
        if values and surface.get("kind") == "view":
            self._keep_drafts(source, values)
            source = self._source(user_id, surface)
        try:
            response = self._send(self.driver.click, user_id, source, action_id, value=value,
                                  selected=selected, block_id=block_id)
        except ValueError as exc:
            raise ActionFailed(400, str(exc)) from None
        return self._answered(response)

    def suggest(self, user_id: str, surface: dict, action_id: str, value: str,
                block_id: str | None = None) -> dict:
        """Options of an external select for what the user typed (``block_suggestion``)."""
        user_id = self._user(user_id)
        source = self._source(user_id, surface)
        response = self._send(self.driver.block_suggestion, user_id, source, action_id, value,
                              block_id=block_id)
        self._answered(response)
        try:
            body = response.json() if response.content.strip() else {}
        except ValueError:
            body = {}
        return {"options": body.get("options") or [],
                "option_groups": body.get("option_groups") or []}

    def submit(self, user_id: str, view_id: str, values: dict) -> dict:
        """The modal's submit button: a ``view_submission`` with every input's value."""
        user_id = self._user(user_id)
        view = self._source(user_id, {"kind": "view", "view_id": view_id})
        try:
            response = self._send(self.driver.submit_view, user_id, view, values or {})
        except ValueError as exc:
            raise ActionFailed(400, str(exc)) from None
        result = self._answered(response)
        result["errors"] = self.api.view_errors(view_id)
        return result

    def close(self, user_id: str, view_id: str) -> dict:
        user_id = self._user(user_id)
        view = self._source(user_id, {"kind": "view", "view_id": view_id})
        response = self._send(self.driver.close_view, user_id, view)
        return self._answered(response) if response is not None else {"ok": True}

    def page_loaded(self) -> dict:
        """The page was (re)loaded: like a reloaded Slack client it shows no modal, so the
        modals left open are closed in the stand-in (the bot hears nothing of it)."""
        closed = 0
        for user, stack in self.api.snapshot()["modals"].items():
            if stack:
                closed += len(self.api.close_view(user, clear=True))
        return {"ok": True, "closed": closed}

    def open_home(self, user_id: str) -> dict:
        """The user opened the bot's App Home tab (``app_home_opened``)."""
        user_id = self._user(user_id)
        return self._answered(self._send(self.driver.app_home_opened, user_id))

    def _admin(self, user_id: str) -> User:
        user_id = self._user(user_id)
        with self.deps.db.read_session() as session:
            allowed = has_role(session, user_id, Role.ADMIN)
            user = session.get(User, user_id)
        if not allowed or user is None:
            raise ActionFailed(403, "Time travel is for admins: switch to a user with the "
                               "admin role.")
        return user

    def clock(self) -> dict:
        """What the app's clock says (the page shows it while travelling)."""
        clock = self.deps.clock
        return {"now": clock.now().isoformat(timespec="minutes"), "travelled": clock.travelled}

    def time_travel(self, user_id: str, job: str, as_of: date, at: time = time(9)) -> dict:
        """Move the app's one clock to ``as_of`` at ``at`` in the admin's own time zone (time
        keeps flowing from there; every command, click and job then runs as of that moment),
        run a scheduled job as of that day, then wake the outbox. Admins only."""
        user = self._admin(user_id)
        if job not in jobs.JOBS:
            raise ActionFailed(404, f"no job called {job!r}")
        moment = datetime.combine(as_of, at, tzinfo=zone_or_utc(user.timezone))
        self.deps.clock.travel_to(moment)
        log.info("sandbox time travel: %s runs %s as of %s (clock at %s)", user.slack_user_id,
                 job, as_of, moment.isoformat())
        try:
            summary = jobs.run_job(job, self.deps, as_of)
        except Exception as exc:
            log.exception("job %s failed (sandbox time travel)", job)
            raise ActionFailed(500, f"{job} failed: {type(exc).__name__}") from None
        finally:
            self.deps.notify_outbox()  # whatever it committed before failing goes out too
        return {"ok": True, "job": job, "as_of": as_of.isoformat(), "clock": self.clock(),
                "summary": _json_safe(summary)}

    def back_to_now(self, user_id: str) -> dict:
        """Stop travelling: the app's clock is the real one again."""
        self._admin(user_id)
        self.deps.clock.travel_to(None)
        return {"ok": True, "clock": self.clock()}

