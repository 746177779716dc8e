"""`/o2c policy`: the policy values in force."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from blocks.common import context, header, lines_text, render, section
from blocks.text import esc

if TYPE_CHECKING:
    from workflows.policy import Policy


def policy_message(current: Policy, *, usage: str, changed: str | None = None,
                   invalid: Sequence[tuple[str, str, str]] = ()) -> list[dict]:
    """The values in force; `invalid`: stored overrides not in force, (key, value, why)."""
    rows = []
    for f in fields(current):
        mark = " :white_check_mark:" if f.name == changed else ""
        rows.append(f"`{f.name}` = `{esc(getattr(current, f.name))}`{mark}")
    blocks = [header("Policy")]
    if changed:
        blocks.append(section(f"`{esc(changed)}` changed; it applies to the next decision."))
    blocks.append(section(lines_text(rows)))
    if invalid:
        blocks.append(section(lines_text([
            f":warning: The stored `{esc(_short(value))}` for `{esc(key)}` is not valid "
            f"({esc(_short(why, 200))}): "
            "the value above is in force until an admin sets it again."
            for key, value, why in invalid])))
    blocks.append(context(f"Admins: `{esc(usage)}`"))
    return render(blocks)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
