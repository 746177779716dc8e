"""Notifications about orders: status changes, backorders, shipments, and the basic approval
card. Contexts are frozen snapshots written by workflows (see `workflows.orders`)."""

from __future__ import annotations

from blocks import ids
from blocks.common import actions, button, context, fields, lines_text, render, section
from blocks.common import plain_text as plain_object
from blocks.i18n import ENGLISH, Formats
from blocks.integrations import pay_now_actions
from blocks.lookup import STATUS_EMOJI
from blocks.text import esc, status_label

OUTCOME = {
    "approved": "is approved",
    "pending_approval": "needs approval",
    "backordered": "is approved but backordered",
    "rejected": "was rejected",
    "on_hold": "is on hold",
    "cancelled": "was cancelled",
}


def _order_line(order: dict, *, fmt: Formats = ENGLISH) -> str:
    return (f"*{esc(order['number'])}* for *{esc(order.get('customer'))}* — "
            f"{fmt.money(order['total_minor'], order['currency'])}")


def order_status(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    order = ctx["order"]
    status = order["status"]
    emoji = STATUS_EMOJI.get(status, ":information_source:")
    verb = OUTCOME.get(status, f"is now {status_label(status)}")
    text = f"Order {esc(order['number'])} {verb}"
    blocks = [section(f"{emoji} Order {_order_line(order, fmt=fmt)} {verb}.")]
    reasons = [esc(r) for r in ctx.get("reasons") or []]
    if reasons:
        blocks.append(context("Why: " + "; ".join(reasons)))
    return {"text": text, "blocks": render(blocks)}


BACKORDER_LINES_SHOWN = 40  # each short line is a block with its own button (50 max)


def _short_row(line: dict) -> str:
    reserved = line.get("reserved") or 0
    return (f"Line {line.get('line_no', '?')} `{esc(line['sku'])}` — {line['backordered']} of "
            f"{line['ordered']} backordered" + (f", {reserved} reserved" if reserved else ""))


def _cancel_button(number: str, line: dict) -> dict:
    return button(
        "Cancel short line", ids.BACKORDER_CANCEL_LINE, f"{number}:{line['line_no']}",
        style="danger",
        confirm={"title": plain_object("Cancel the short quantity?", 100),
                 "text": plain_object(f"{line['backordered']} × {line['sku']} will not be "
                                    f"delivered on {number}; what is reserved still ships.",
                                    300),
                 "confirm": plain_object("Cancel it", 30), "deny": plain_object("Keep it", 30)})


def _backorder_choices(order: dict, lines: list[dict], *, fmt: Formats = ENGLISH) -> list[dict]:
    """The rep's notice: each short line with its Cancel button, then Ship partial / Wait."""
    number = order["number"]
    blocks = [section(f":package: Order {_order_line(order, fmt=fmt)} is short of stock. "
                      "What should happen?")]
    for line in lines[:BACKORDER_LINES_SHOWN]:
        blocks.append(section(_short_row(line), accessory=_cancel_button(number, line),
                              block_id=f"{ids.BACKORDER_LINE_BLOCK}:{line['line_no']}"))
    if len(lines) > BACKORDER_LINES_SHOWN:
        blocks.append(context(f"_…and {len(lines) - BACKORDER_LINES_SHOWN} more short "
                              "line(s)_"))
    blocks.append(actions(
        button("Ship partial", ids.BACKORDER_SHIP_PARTIAL, number, style="primary"),
        button("Wait", ids.BACKORDER_WAIT, number), block_id=ids.BACKORDER_CHOICES_BLOCK))
    blocks.append(context("*Ship partial*: billing ships what is reserved now; the rest stays "
                          "backordered. *Wait*: stock is reserved for the order when it "
                          "arrives, oldest order first. *Cancel short line*: the short "
                          "quantity is dropped; what is reserved still ships."))
    return blocks


def _choice_made(ctx: dict, order: dict, who: str, *,
                 fmt: Formats = ENGLISH) -> tuple[str, list[dict]]:
    """Billing is told what the rep chose."""
    # the customer chooses through their e-mail link (issue 19): no Slack user to mention
    by = ("the customer" if ctx.get("by") == "customer" else f"<@{esc(ctx.get('by'))}>")
    number = esc(order["number"])
    choice = ctx["choice"]
    still = [f"• {_short_row(line)}" for line in ctx.get("lines") or []]
    if choice == "ship_partial":
        rows = [f"• `{esc(s['sku'])}` × {s['quantity']}" for s in ctx.get("ship") or []]
        text = f"{who}ship partial chosen for order {number}"
        blocks = [section(f":truck: {who}{by} chose *ship partial* for order "
                          f"{_order_line(order, fmt=fmt)}. Ship what is reserved now:\n"
                          + lines_text(rows)),
                  context("The short quantities stay backordered; stock is reserved for "
                          "them when it arrives.")]
    elif choice == "cancel_line":
        gone = ctx.get("cancelled") or {}
        moved = ""
        if gone.get("status") and gone.get("status") != gone.get("status_before"):
            moved = f" The order is now *{status_label(gone['status'])}*."
        text = f"{who}short line cancelled on order {number}"
        blocks = [section(f":heavy_minus_sign: {who}{by} cancelled the short quantity of line "
                          f"{gone.get('line_no')} (`{esc(gone.get('sku'))}`, "
                          f"{gone.get('quantity')} unit(s)) on order {_order_line(order, fmt=fmt)}."
                          f"{moved}")]
        if still:
            blocks.append(section("Still short:\n" + lines_text(still)))
    else:
        text = f"{who}waiting for stock on order {number}"
        blocks = [section(f":hourglass_flowing_sand: {who}{by} chose to *wait* for stock on "
                          f"order {_order_line(order, fmt=fmt)}.")]
    return text, blocks


def _rep_after_choice(ctx: dict, order: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The rep's notice once a choice is made: the choice, who made it, and only the buttons
    that can still change something (the short lines' Cancel; Ship partial after Wait)."""
    text, blocks = _choice_made({**ctx, "lines": []}, order, "", fmt=fmt)
    blocks = blocks[:1]
    number, lines, choice = order["number"], ctx.get("lines") or [], ctx["choice"]
    if ctx.get("by") == "customer":  # the customer's own choice: the rep overrides with a reason
        blocks.append(context(f"To change it, say why: `/o2c backorder {esc(number)} "
                              "ship|wait|cancel &lt;reason&gt;`"))
        return {"text": text, "blocks": render(blocks)}
    if not lines:
        blocks.append(context("Nothing on this order is short any more."))
        return {"text": text, "blocks": render(blocks)}
    blocks.append(section("Still short:"))
    for line in lines[:BACKORDER_LINES_SHOWN]:
        blocks.append(section(_short_row(line), accessory=_cancel_button(number, line),
                              block_id=f"{ids.BACKORDER_LINE_BLOCK}:{line['line_no']}"))
    left = []
    if choice != "ship_partial" and any(line.get("reserved") for line in lines):
        left.append(button("Ship partial", ids.BACKORDER_SHIP_PARTIAL, number,
                           style="primary"))
    if choice == "cancel_line":
        left.append(button("Wait", ids.BACKORDER_WAIT, number))
    if left:
        blocks.append(actions(*left, block_id=ids.BACKORDER_CHOICES_BLOCK))
    return {"text": text, "blocks": render(blocks)}


def backorder_notice(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A short order: to the rep with the choices as buttons, to billing as a notice; and to
    billing again when the rep chose (`choice`)."""
    order = ctx["order"]
    billing = ctx.get("audience") == "billing"
    who = "Billing: " if billing else ""
    if ctx.get("choice") and ctx.get("audience") == "rep":
        return _rep_after_choice(ctx, order, fmt=fmt)
    if ctx.get("choice"):
        text, blocks = _choice_made(ctx, order, who, fmt=fmt)
        return {"text": text, "blocks": render(blocks)}
    text = f"{who}Order {esc(order['number'])} is short of stock"
    if not billing:
        return {"text": text, "blocks": render(_backorder_choices(order, ctx["lines"], fmt=fmt))}
    rows = [f"• {_short_row(line)}" for line in ctx["lines"]]
    blocks = [
        section(f":package: {who}Order {_order_line(order, fmt=fmt)} is short of stock:\n"
                + lines_text(rows)),
        context("The customer (through the link in their backorder e-mail) or the sales rep "
                "chooses: ship what is reserved (partial), wait for stock, or cancel the "
                "short line; you will be told."),
    ]
    return {"text": text, "blocks": render(blocks)}


def order_shipped(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    order = ctx["order"]
    text = f"Order {esc(order['number'])} shipped and invoiced as {esc(ctx['invoice'])}"
    blocks = [
        section(f":truck: Order {_order_line(order, fmt=fmt)} shipped "
                f"({esc(ctx['carrier'])} `{esc(ctx['tracking_number'])}`)."),
        fields([("Invoice", esc(ctx["invoice"])),
                ("Amount", fmt.money(ctx["invoice_total_minor"], order["currency"])),
                ("Order status", status_label(order["status"]))]),
        *pay_now_actions(ctx.get("pay_url")),  # the invoice's link, to pass on to the customer
    ]
    return {"text": text, "blocks": render(blocks)}


def plain_text(ctx: dict) -> dict:
    """A one-line notice from plain text (escaped here, so it can mention nobody)."""
    return {"text": esc(ctx["text"]), "blocks": render([section(esc(ctx["text"]))])}
