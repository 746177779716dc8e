"""Compact record cards: the answer to a record number mentioned in a channel (in its thread or
to the poster alone) and the preview of a record link (`chat.unfurl`). Pure: a summary dict
(`workflows.mentions.record_summary`) -> Block Kit."""

from __future__ import annotations

from blocks.common import context, render, section
from blocks.text import esc, fmt_date, fmt_money, plain, status_label

KIND = {"order": "Order", "invoice": "Invoice", "credit_note": "Credit note"}
TEXT_MAX = 300


def card_blocks(summary: dict) -> list[dict]:
    kind = KIND.get(summary.get("kind", ""), "Record")
    currency = summary["currency"]
    parts = [f"*{kind} {esc(summary['number'])}* · {esc(status_label(summary['status']))}",
             esc(summary.get("customer") or "")]
    figures = [f"Total {fmt_money(summary['total_minor'], currency)}"]
    if summary.get("balance_minor") is not None:
        figures.append(f"balance {fmt_money(summary['balance_minor'], currency)}")
    when = {"order": "ordered", "invoice": "due", "credit_note": "issued"}.get(
        summary.get("kind", ""), "")
    if summary.get("date"):
        figures.append(f"{when} {fmt_date(summary['date'])}")
    if summary.get("invoice"):
        figures.append(f"on {esc(summary['invoice'])}")
    return render([section("\n".join(p for p in parts if p)),
                   context(" · ".join(figures) + f" · `/o2c {_command(summary)}` for more")])


def _command(summary: dict) -> str:
    if summary.get("kind") == "order":
        return f"order {esc(summary['number'])}"
    number = summary.get("invoice") if summary.get("kind") == "credit_note" else None
    return f"invoice {esc(number or summary['number'])}"


def record_card(ctx: dict) -> dict:
    """Outbox template "record_card"."""
    kind = KIND.get(ctx.get("kind", ""), "Record")
    return {"text": plain(f"{kind} {ctx['number']}", TEXT_MAX), "blocks": card_blocks(ctx)}


def unfurl(summary: dict) -> dict:
    """One URL's entry of chat.unfurl's `unfurls`."""
    return {"blocks": card_blocks(summary)}
