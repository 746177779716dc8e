"""Notifications about orders: status changes, backorders, shipments, and the basic approval
card. Contexts are frozen snapshots written by workflows (see `workflows.orders`)."""

from __future__ import annotations

from blocks.common import context, fields, render, section
from blocks.lookup import STATUS_EMOJI
from blocks.templates import template
from blocks.text import esc, fmt_money, status_label

OUTCOME = {
    "approved": "is approved",
    "pending_approval": "needs approval",
    "backordered": "is approved but backordered",
    "rejected": "was rejected",
    "on_hold": "is on hold",
    "cancelled": "was cancelled",
}


def _order_line(order: dict) -> str:
    return (f"*{esc(order['number'])}* for *{esc(order.get('customer'))}* — "
            f"{fmt_money(order['total_minor'], order['currency'])}")


@template("order_status")
def order_status(ctx: dict) -> dict:
    order = ctx["order"]
    status = order["status"]
    emoji = STATUS_EMOJI.get(status, ":information_source:")
    verb = OUTCOME.get(status, f"is now {status_label(status)}")
    text = f"Order {esc(order['number'])} {verb}"
    blocks = [section(f"{emoji} Order {_order_line(order)} {verb}.")]
    reasons = [esc(r) for r in ctx.get("reasons") or []]
    if reasons:
        blocks.append(context("Why: " + "; ".join(reasons)))
    return {"text": text, "blocks": render(blocks)}


@template("backorder_notice")
def backorder_notice(ctx: dict) -> dict:
    order = ctx["order"]
    rows = "\n".join(f"• `{esc(line['sku'])}` — {line['backordered']} of {line['ordered']} "
                     "backordered" for line in ctx["lines"])
    who = "Billing: " if ctx.get("audience") == "billing" else ""
    text = f"{who}Order {esc(order['number'])} is short of stock"
    blocks = [
        section(f":package: {who}Order {_order_line(order)} is short of stock:\n{rows}"),
        context("Choices: ship what is in stock (partial), wait for stock, or cancel the "
                "short line."),
    ]
    return {"text": text, "blocks": render(blocks)}


@template("order_shipped")
def order_shipped(ctx: dict) -> dict:
    order = ctx["order"]
    text = f"Order {esc(order['number'])} shipped and invoiced as {esc(ctx['invoice'])}"
    blocks = [
        section(f":truck: Order {_order_line(order)} shipped "
                f"({esc(ctx['carrier'])} `{esc(ctx['tracking_number'])}`)."),
        fields([("Invoice", esc(ctx["invoice"])),
                ("Amount", fmt_money(ctx["invoice_total_minor"], order["currency"])),
                ("Order status", status_label(order["status"]))]),
    ]
    return {"text": text, "blocks": render(blocks)}


@template("text")
def plain_text(ctx: dict) -> dict:
    """A one-line notice from plain text (escaped here, so it can mention nobody)."""
    return {"text": esc(ctx["text"]), "blocks": render([section(esc(ctx["text"]))])}
