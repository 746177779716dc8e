"""The `/o2c help` answer."""

from __future__ import annotations

from blocks.common import context, header, lines_text, render, section
from blocks.text import esc


def help_message(entries: list[tuple[str, str]], *, unknown: str | None = None,
                 no_role: bool = False) -> list[dict]:
    blocks = [header("o2c — order to cash in Slack")]
    if unknown:
        blocks.append(section(f"I don't know `{esc(unknown)}`. Here is what I can do:"))
    rows = [f"`{esc(usage)}` — {esc(summary)}" for usage, summary in entries]
    blocks.append(section(lines_text(rows)))
    if no_role:
        blocks.append(section("You have no o2c role yet, so this is all you can run. An admin "
                              "gives roles with `/o2c role add @you sales` (or `collector`, "
                              "`credit_approver`, `discount_approver`, `admin`)."))
    blocks.append(context("Answers are only visible to you. Customer names can be approximate. "
                          "This list shows what your roles let you run."))
    return render(blocks)
