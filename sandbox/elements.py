"""Find interactive elements in Block Kit and turn user input into Slack's payload values.

Why: the driver must send exactly what Slack sends when a user clicks, selects or submits, and
that depends on the element type (``selected_option`` vs ``selected_user`` vs ``value`` ...).
Looking elements up by ``action_id`` in the surface the bot actually rendered is also how tests
catch missing or renamed buttons: :class:`ElementNotFound` lists what *is* there.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

TEXT_INPUTS = ("plain_text_input", "email_text_input", "url_text_input", "number_input")
_SINGLE = {"users_select": "selected_user", "conversations_select": "selected_conversation",
           "channels_select": "selected_channel"}
_MULTI = {"multi_users_select": "selected_users",
          "multi_conversations_select": "selected_conversations",
          "multi_channels_select": "selected_channels"}
_INITIAL = {  # element type -> attribute holding its initial value
    **{t: "initial_value" for t in TEXT_INPUTS},
    "static_select": "initial_option", "external_select": "initial_option",
    "radio_buttons": "initial_option", "multi_static_select": "initial_options",
    "multi_external_select": "initial_options", "checkboxes": "initial_options",
    "users_select": "initial_user", "multi_users_select": "initial_users",
    "conversations_select": "initial_conversation",
    "multi_conversations_select": "initial_conversations",
    "channels_select": "initial_channel", "multi_channels_select": "initial_channels",
    "datepicker": "initial_date", "timepicker": "initial_time",
    "datetimepicker": "initial_date_time", "rich_text_input": "initial_value",
}


class ElementNotFound(LookupError):
    """No element with that action_id (and block_id) in the surface; lists those present."""


def iter_elements(blocks: list) -> list[tuple[dict, dict]]:
    """All ``(block, element)`` pairs that can carry an action_id, in display order."""
    found = []
    for block in blocks or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") in ("actions", "context_actions"):
            found += [(block, el) for el in block.get("elements") or [] if isinstance(el, dict)]
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict) and block[key].get("type") != "image":
                found.append((block, block[key]))
    return found


def find_element(blocks: list, action_id: str, block_id: str | None = None) -> tuple[dict, dict]:
    """Return ``(block, element)`` for ``action_id``; raise :class:`ElementNotFound` if absent."""
    pairs = iter_elements(blocks)
    for block, el in pairs:
        if el.get("action_id") == action_id and block_id in (None, block.get("block_id")):
            return block, el
    present = ", ".join(f"{b.get('block_id')}/{e.get('action_id')} ({e.get('type')})"
                        for b, e in pairs) or "no interactive elements"
    where = f" in block {block_id!r}" if block_id else ""
    raise ElementNotFound(f"no element with action_id {action_id!r}{where}; present: {present}")


def _option(el: dict, wanted: Any) -> dict:
    """The option of ``el`` whose value is ``wanted`` (a dict is taken as the option itself)."""
    if isinstance(wanted, dict):
        return {k: wanted[k] for k in ("text", "value", "description") if k in wanted}
    options = list(el.get("options") or [])
    for group in el.get("option_groups") or []:
        options += group.get("options") or []
    for opt in options:
        if opt.get("value") == wanted:
            return {k: opt[k] for k in ("text", "value", "description") if k in opt}
    values = [o.get("value") for o in options]
    raise ElementNotFound(f"{el.get('type')} {el.get('action_id')!r} has no option {wanted!r}; "
                          f"options: {values}")


def _external_option(wanted: Any) -> dict:
    if isinstance(wanted, dict):
        return wanted
    return {"text": {"type": "plain_text", "text": str(wanted), "emoji": True},
            "value": str(wanted)}


def state_value(el: dict, value: Any) -> dict:
    """Slack's ``view.state.values[block_id][action_id]`` entry for ``el`` holding ``value``.

    ``value`` is a plain Python value: a string (or number) for text/number inputs, an option
    value for selects/radios (a list of them for multi-selects/checkboxes), user/channel IDs,
    ``date``/``time``/``datetime`` or their strings for pickers; None means "left empty".
    """
    kind = el.get("type")
    if kind in TEXT_INPUTS:
        return {"type": kind, "value": None if value is None else str(value)}
    if kind in ("static_select", "radio_buttons", "overflow"):
        return {"type": kind, "selected_option": None if value is None else _option(el, value)}
    if kind == "external_select":
        return {"type": kind,
                "selected_option": None if value is None else _external_option(value)}
    if kind in ("multi_static_select", "checkboxes"):
        return {"type": kind, "selected_options": [_option(el, v) for v in value or []]}
    if kind == "multi_external_select":
        return {"type": kind, "selected_options": [_external_option(v) for v in value or []]}
    if kind in _SINGLE:
        return {"type": kind, _SINGLE[kind]: value}
    if kind in _MULTI:
        return {"type": kind, _MULTI[kind]: list(value or [])}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value.isoformat()
                if isinstance(value, dt.date) else value}
    if kind == "timepicker":
        return {"type": kind, "selected_time": value.strftime("%H:%M")
                if isinstance(value, dt.time) else value}
    if kind == "datetimepicker":
        return {"type": kind, "selected_date_time": int(value.timestamp())
                if isinstance(value, dt.datetime) else value}
    if kind == "rich_text_input":
        if isinstance(value, str):
            value = {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                {"type": "text", "text": value}]}]}
        return {"type": kind, "rich_text_value": value}
    if kind == "file_input":
        return {"type": kind, "files": list(value or [])}
    raise ValueError(f"element type {kind!r} ({el.get('action_id')!r}) holds no value")


def initial_state(el: dict) -> dict:
    """The state an untouched element submits: its ``initial_*`` value, else empty."""
    return state_value(el, el.get(_INITIAL.get(el.get("type"), "")))


def is_empty(state: dict) -> bool:
    """True when a state entry holds nothing (how Slack decides a required input is unfilled)."""
    values = [v for k, v in state.items() if k != "type"]
    return all(v in (None, "", []) for v in values)


def block_action(el: dict, block_id: str, value: Any = None, selected: Any = None) -> dict:
    """One entry of a ``block_actions`` payload's ``actions`` for a user acting on ``el``.

    Buttons send their own ``value`` unless ``value`` overrides it; other elements need the
    chosen ``selected`` (or ``value`` for text inputs), converted like :func:`state_value`.
    """
    kind = el.get("type")
    action: dict = {"type": kind, "action_id": el.get("action_id"), "block_id": block_id}
    if kind in ("button", "workflow_button"):
        action["text"] = el.get("text")
        chosen = value if value is not None else el.get("value")
        if chosen is not None:
            action["value"] = chosen
        if el.get("style"):
            action["style"] = el["style"]
    else:
        chosen = selected if selected is not None else value
        if chosen is None:
            raise ValueError(f"{kind} {el.get('action_id')!r} needs `selected=` to act on")
        action.update({k: v for k, v in state_value(el, chosen).items() if k != "type"})
        if el.get("placeholder"):
            action["placeholder"] = el["placeholder"]
    action["action_ts"] = f"{time.time():.6f}"
    return action
