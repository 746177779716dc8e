"""The approval card posted in the approvals channel, and its decided form."""

from __future__ import annotations

from blocks import ids
from blocks.common import actions, button, context, fields, header, render, section
from blocks.templates import template
from blocks.text import esc, fmt_datetime, fmt_money


@template("approval_card")
def approval_card(ctx: dict) -> dict:
    order = ctx["order"]
    kind = ctx["kind"]
    snap = ctx.get("snapshot") or {}
    title = f"{kind.capitalize()} approval — {order['number']}"
    info = [("Customer", esc(order["customer"])),
            ("Amount", fmt_money(order["total_minor"], order["currency"])),
            ("Requested by", f"<@{ctx['requested_by']}>")]
    if "exposure_minor" in snap:
        info.append(("Exposure / limit",
                     f"{fmt_money(snap['exposure_minor'], snap['currency'])} / "
                     f"{fmt_money(snap['credit_limit_minor'], snap['currency'])}"))
    reasons = "\n".join(f"• {esc(r['text'])}" for r in ctx.get("reasons") or [])
    blocks = [header(title), fields(info), section(f"*Why approval is needed*\n{reasons}")]
    status = ctx.get("status", "pending")
    if status == "pending":
        value = str(ctx["approval_id"])
        blocks.append(actions(
            button("Approve", ids.APPROVE, value, style="primary"),
            button("Reject", ids.REJECT, value, style="danger"),
            block_id=f"approval:{value}"))
    else:
        mark = ":white_check_mark:" if status == "approved" else ":no_entry:"
        note = f" — “{esc(ctx['note'])}”" if ctx.get("note") else ""
        blocks.append(section(f"{mark} *{status.capitalize()}* by <@{ctx['decided_by']}> "
                              f"{fmt_datetime(ctx.get('decided_at'))}{note}"))
    blocks.append(context(f"Approval #{ctx['approval_id']}"))
    return {"text": f"{title}: {status}", "blocks": render(blocks)}
