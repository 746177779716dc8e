"""The App Home tab."""

from __future__ import annotations

from blocks.common import context, divider, header, render, section
from blocks.text import VIEW_BLOCKS_MAX, esc


def home_view(name: str, roles: list[str], extra: list[dict] | None = None) -> dict:
    role_text = ", ".join(f"`{r}`" for r in roles) if roles else "none yet — ask an admin"
    blocks = [
        header("Order to cash"),
        section(f"Hi {esc(name)}. Your roles: {role_text}."),
        context("Type `/o2c help` anywhere for commands."),
        divider(),
    ]
    rendered = render(blocks, limit=VIEW_BLOCKS_MAX)
    rendered.extend((extra or [])[: VIEW_BLOCKS_MAX - len(rendered)])
    return {"type": "home", "blocks": rendered}
