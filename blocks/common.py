"""Small Block Kit helpers on top of `slack_sdk.models.blocks`.

Builders return plain lists of dicts (`to_dict()`), which is what the Web API, the outbox and
the tests handle. Limits are applied here so no builder can exceed them by accident.
"""

from __future__ import annotations

from collections.abc import Iterable

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from blocks.text import FIELD_MAX, HEADER_MAX, MESSAGE_BLOCKS_MAX, SECTION_TEXT_MAX, clip, plain


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=plain(text, HEADER_MAX))


def section(text: str, *, accessory: object = None, block_id: str | None = None
            ) -> SectionBlock:
    """`text` must already be escaped mrkdwn."""
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_MAX)),
                        accessory=accessory, block_id=block_id)


def fields(pairs: Iterable[tuple[str, str]], *, text: str | None = None) -> SectionBlock:
    """Up to 10 label/value fields; values must already be escaped mrkdwn."""
    items = [MarkdownTextObject(text=clip(f"*{label}*\n{value}", FIELD_MAX))
             for label, value in list(pairs)[:10]]
    return SectionBlock(fields=items,
                        text=MarkdownTextObject(text=clip(text, SECTION_TEXT_MAX)) if text
                        else None)


def context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(t, FIELD_MAX))
                                  for t in texts[:10]])


def divider() -> DividerBlock:
    return DividerBlock()


def render(blocks: Iterable[Block | None], *, limit: int = MESSAGE_BLOCKS_MAX) -> list[dict]:
    """Drop Nones, convert to dicts, and keep within the surface's block limit; when cut, the
    last block says so instead of Slack refusing the whole message."""
    items = [b for b in blocks if b is not None]
    if len(items) > limit:
        items = items[: limit - 1] + [context(f"_…{len(items) - limit + 1} more not shown_")]
    return [b.to_dict() for b in items]


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
