"""Small pure Block Kit builders: plain dicts in Slack's exact shapes.

They are cheap (a lookup answer is built on every `/o2c` call) and easy to assert on. Limits
are applied here so no builder can exceed them by accident. `render()` also accepts
`slack_sdk.models` block objects, for builders that prefer them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from blocks.text import (
    BUTTON_MAX,
    FIELD_MAX,
    HEADER_MAX,
    MESSAGE_BLOCKS_MAX,
    SECTION_TEXT_MAX,
    clip,
    plain,
)

Block = dict[str, Any]


def _dict(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def mrkdwn(text: str, limit: int = SECTION_TEXT_MAX) -> dict:
    """A mrkdwn text object; `text` must already be escaped."""
    return {"type": "mrkdwn", "text": clip(text, limit)}


def plain_text(text: object, limit: int) -> dict:
    """A plain_text object from raw text (escaped here)."""
    return {"type": "plain_text", "text": plain(text, limit), "emoji": True}


def header(text: str) -> Block:
    return {"type": "header", "text": plain_text(text, HEADER_MAX)}


def section(text: str, *, accessory: Any = None, block_id: str | None = None) -> Block:
    """`text` must already be escaped mrkdwn."""
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = _dict(accessory)
    if block_id:
        block["block_id"] = block_id
    return block


def fields(pairs: Iterable[tuple[str, str]], *, text: str | None = None) -> Block:
    """Up to 10 label/value fields; values must already be escaped mrkdwn."""
    block: Block = {"type": "section", "fields": [
        mrkdwn(f"*{label}*\n{value}", FIELD_MAX) for label, value in list(pairs)[:10]]}
    if text:
        block["text"] = mrkdwn(text)
    return block


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, FIELD_MAX) for t in texts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict | None = None) -> dict:
    element = {"type": "button", "text": plain_text(text, BUTTON_MAX), "action_id": action_id,
               "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(*elements: dict, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": [_dict(e) for e in elements[:25]]}
    if block_id:
        block["block_id"] = block_id
    return block


def render(blocks: Iterable[Any], *, limit: int = MESSAGE_BLOCKS_MAX) -> list[dict]:
    """Drop Nones, convert objects to dicts, and keep within the surface's block limit; when
    cut, the last block says so instead of Slack refusing the whole message."""
    items = [_dict(b) for b in blocks if b is not None]
    if len(items) > limit:
        items = items[: limit - 1] + [context(f"_…{len(items) - limit + 1} more not shown_")]
    return items


def lines_text(rows: Iterable[str], *, limit: int = SECTION_TEXT_MAX) -> str:
    """Join rows into one mrkdwn text, stopping (with a count) before the section limit."""
    out: list[str] = []
    size = 0
    rows = list(rows)
    for i, row in enumerate(rows):
        if size + len(row) + 1 > limit - 40:
            out.append(f"_…and {len(rows) - i} more_")
            break
        out.append(row)
        size += len(row) + 1
    return "\n".join(out)
