"""`/o2c policy`: the policy values in force."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from blocks.common import context, header, lines_text, render, section
from blocks.text import esc

if TYPE_CHECKING:
    from workflows.policy import Policy


def policy_message(current: Policy, *, usage: str, changed: str | None = None) -> list[dict]:
    rows = []
    for f in fields(current):
        mark = " :white_check_mark:" if f.name == changed else ""
        rows.append(f"`{f.name}` = `{esc(getattr(current, f.name))}`{mark}")
    blocks = [header("Policy")]
    if changed:
        blocks.append(section(f"`{esc(changed)}` changed; it applies to the next decision."))
    blocks += [section(lines_text(rows)), context(f"Admins: `{esc(usage)}`")]
    return render(blocks)
