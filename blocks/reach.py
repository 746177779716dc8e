"""Compact record cards: the answer to a record number mentioned in a channel (in its thread or
to the poster alone) and the preview of a record link (`chat.unfurl`). Pure: a summary dict
(`workflows.mentions.record_summary`) -> Block Kit. With `locale` in the summary (the reader's
Slack locale: an ephemeral card has one reader), amounts and dates are in its format (English
readers: the app's, "USD 1,234.56", as `/o2c` writes them) and the texts in its language when
translated (`blocks.i18n`)."""

from __future__ import annotations

from blocks.common import context, render, section
from blocks.i18n import formats, t
from blocks.text import esc, plain, status_label

KIND = {"order": "Order", "invoice": "Invoice", "credit_note": "Credit note"}
WHEN = {"order": "ordered", "invoice": "due", "credit_note": "issued"}
TEXT_MAX = 300


def card_blocks(summary: dict) -> list[dict]:
    loc = summary.get("locale")
    fmt = formats(loc)  # English readers: the app's formats, as on every other surface
    kind = t(KIND.get(summary.get("kind", ""), "Record"), loc)
    currency = summary["currency"]
    status = t(status_label(summary["status"]), loc)
    parts = [f"*{esc(kind)} {esc(summary['number'])}* · {esc(status)}",
             esc(summary.get("customer") or "")]
    figures = [f"{esc(t('Total', loc))} {fmt.money(summary['total_minor'], currency)}"]
    if summary.get("balance_minor") is not None:
        figures.append(f"{esc(t('balance', loc))} "
                       f"{fmt.money(summary['balance_minor'], currency)}")
    if summary.get("date"):
        when = t(WHEN.get(summary.get("kind", ""), "due"), loc)
        figures.append(f"{esc(when)} {fmt.date(summary['date'])}")
    if summary.get("invoice"):
        figures.append(f"{esc(t('on', loc))} {esc(summary['invoice'])}")
    more = f"`/o2c {_command(summary)}` {esc(t('for more', loc))}"
    return render([section("\n".join(p for p in parts if p)),
                   context(" · ".join(figures) + f" · {more}")])


def _command(summary: dict) -> str:
    if summary.get("kind") == "order":
        return f"order {esc(summary['number'])}"
    number = summary.get("invoice") if summary.get("kind") == "credit_note" else None
    return f"invoice {esc(number or summary['number'])}"


def record_card(ctx: dict) -> dict:
    """Outbox template "record_card"."""
    kind = t(KIND.get(ctx.get("kind", ""), "Record"), ctx.get("locale"))
    return {"text": plain(f"{kind} {ctx['number']}", TEXT_MAX), "blocks": card_blocks(ctx)}


def unfurl(summary: dict) -> dict:
    """One URL's entry of chat.unfurl's `unfurls`."""
    return {"blocks": card_blocks(summary)}
