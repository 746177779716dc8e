"""Approvals in Slack: the card in the approvals channel (pending, reminded, decided), the
discount alert, the requester's DM, the reject / approve-with-note modals, refusals, and the
`/o2c approvals` list. Pure functions of the JSON contexts written by `workflows.approvals`.

Times in channel messages use Slack's `<!date^…>` token, so every reader sees their own time
zone; the fallback text is UTC.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    InputBlock,
    PlainTextInputElement,
)

from blocks import ids
from blocks.common import context, divider, fields, header, lines_text, render, section
from blocks.i18n import ENGLISH, Formats
from blocks.text import VIEW_BLOCKS_MAX, esc, plain
from blocks.text import refusal as refusal_text

if TYPE_CHECKING:  # view models only; blocks never call workflows
    from workflows.approvals import PendingItem, PendingOverview

KIND_EMOJI = {"credit": ":credit_card:", "discount": ":label:", "credit_note": ":receipt:",
              "write_off": ":wastebasket:", "fee_waiver": ":money_with_wings:"}
STATUS_MARK = {"approved": ":white_check_mark:", "rejected": ":no_entry:",
               "cancelled": ":heavy_minus_sign:"}


def slack_date(iso: str | None) -> str:
    """A timestamp every reader sees in their own time zone (fallback: UTC)."""
    if not iso:
        return "—"
    moment = datetime.fromisoformat(iso)
    return (f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|"
            f"{moment:%Y-%m-%d %H:%M} UTC>")


def who(user_id: str | None, label: str | None = None) -> str:
    if label:
        return esc(label)
    return f"<@{user_id}>" if user_id else "someone"


def pct(bp: int) -> str:
    return format((Decimal(bp) / 100).normalize(), "f")


def _requester(ctx: dict) -> str:
    label = ctx.get("requested_by_label")
    if label:
        return f"{esc(label)} for <@{ctx['sales_rep']}>" if ctx.get("sales_rep") else esc(label)
    return f"<@{ctx['requested_by']}>"


def _share(exposure: int, limit: int, cur: str, *, fmt: Formats = ENGLISH) -> str:
    if limit > 0:
        share = Decimal(exposure) * 100 / Decimal(limit)
        used = " (<1% of limit)" if 0 < share < 1 else f" ({share.quantize(Decimal(1))}% of limit)"
    else:
        used = " (no limit set)"
    mark = " :warning:" if exposure > limit else ""
    return f"{fmt.money(exposure, cur)} / {fmt.money(limit, cur)}{used}{mark}"


def _exposure(snap: dict, *, fmt: Formats = ENGLISH) -> str | None:
    """Exposure vs limit as posted; once decided (or refreshed), as it was at that moment,
    with the posted figure beside it when it moved."""
    if "exposure_minor" not in snap:
        return None
    cur = snap["currency"]
    posted = _share(snap["exposure_minor"], snap.get("credit_limit_minor") or 0, cur, fmt=fmt)
    later = snap.get("at_decision") or snap.get("now")
    if not later:
        return posted
    when = "at decision" if snap.get("at_decision") else "now"
    current = _share(later["exposure_minor"], later.get("credit_limit_minor") or 0,
                     later.get("currency") or cur, fmt=fmt)
    if (later["exposure_minor"], later.get("credit_limit_minor")) == (
            snap["exposure_minor"], snap.get("credit_limit_minor")):
        return f"{current} ({when}; unchanged since posted)"
    return (f"{current} ({when})\n:rotating_light: *Moved since posted*: was {posted}")


def _aging(snap: dict, *, fmt: Formats = ENGLISH) -> str | None:
    aging = snap.get("aging")
    if not aging:
        return None
    cur = snap["currency"]
    parts = [f"{'current' if name == 'current' else name}: {fmt.money(amount, cur)}"
             for name, amount in aging.items() if amount]
    oldest = snap.get("oldest_days_past_due") or 0
    text = " · ".join(parts) if parts else "nothing open"
    return text + (f" · oldest {oldest} days past due" if oldest else "")


def _history(snap: dict) -> str | None:
    history = snap.get("history")
    if history is None:
        return None
    if not history["paid"]:
        return f"no invoices paid in the last {history['days']} days"
    late = (f", {history['paid_late']} late (avg {history['avg_days_late']} days)"
            if history["paid_late"] else ", all on time")
    return f"{history['paid']} invoice(s) paid in {history['days']} days{late}"


def _discount_rows(snap: dict, *, fmt: Formats = ENGLISH) -> list[str]:
    cur = snap.get("currency", "USD")
    rows = []
    for line in snap.get("lines") or []:
        margin = ""
        if line.get("margin_before_pct") is not None:
            margin = (f" · margin {line['margin_before_pct']}% → "
                      f"{line.get('margin_after_pct') or '—'}%")
        rows.append(f"• `{esc(line['sku'])}` {esc(line['name'])} — {line['quantity']} × "
                    f"{fmt.money(line['unit_price_minor'], cur)} at *{pct(line['discount_bp'])}%*"
                    f" (max {pct(line['max_bp'])}%): revenue given away "
                    f"*{fmt.money(line['lost_minor'], cur)}*{margin}")
    return rows


def _info(ctx: dict, *, fmt: Formats = ENGLISH) -> list[tuple[str, str]]:
    order, snap = ctx["order"], ctx.get("snapshot") or {}
    info = [("Customer", esc(order["customer"])),
            ("Amount", fmt.money(order["total_minor"], order["currency"])),
            ("Requested by", _requester(ctx)),
            ("Sales rep", who(ctx.get("sales_rep")))]
    for label, value in (("Exposure / limit", _exposure(snap, fmt=fmt)),
                         ("Aging", _aging(snap, fmt=fmt)),
                         ("Payment history", _history(snap))):
        if value:
            info.append((label, value))
    return info


def decision_text(ctx: dict) -> str:
    status = ctx["status"]
    mark = STATUS_MARK.get(status, ":grey_question:")
    if status == "cancelled":
        return (f"{mark} *Cancelled* — the order was rejected (by {who(ctx.get('decided_by'))}"
                f" {slack_date(ctx.get('decided_at'))})")
    note = f"\n>{esc(ctx['note'])}" if ctx.get("note") else ""
    return (f"{mark} *{status.capitalize()}* by {who(ctx.get('decided_by'))} "
            f"{slack_date(ctx.get('decided_at'))}{note}")


def decision_buttons(approval_id: int) -> ActionsBlock:
    value = str(approval_id)
    return ActionsBlock(block_id=f"approval:{value}", elements=[
        ButtonElement(text="Approve", action_id=ids.APPROVE, value=value, style="primary"),
        ButtonElement(text="Approve with note…", action_id=ids.APPROVE_WITH_NOTE, value=value),
        ButtonElement(text="Reject…", action_id=ids.REJECT, value=value, style="danger"),
    ])


def approval_card(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The card (and its reminders): who asks, customer, amount, exposure vs limit, aging,
    payment history, why; Approve / Approve with note / Reject while pending, then the
    decision, who and when."""
    order, kind = ctx["order"], ctx["kind"]
    status = ctx.get("status", "pending")
    reminder = ctx.get("reminder")
    title = f"{kind.capitalize()} approval — {order['number']}"  # raw: header() escapes
    blocks = [header(f"{'Reminder: ' if reminder else ''}{title}")]
    if reminder and status == "pending":
        pings = " ".join(f"<@{u}>" for u in reminder.get("approvers") or [])
        waited = (f" — waiting {working_time_words(int(Decimal(reminder['working_hours']) * 3600))}"
                  if reminder.get("working_hours") else "")
        blocks.append(section(f":alarm_clock: *Reminder {reminder['number']}*{waited}. "
                              f"{pings}".strip()))
    blocks.append(fields(_info(ctx, fmt=fmt)))
    reasons = lines_text(f"• {esc(r['text'])}" for r in ctx.get("reasons") or [])
    blocks.append(section(f"{KIND_EMOJI.get(kind, '')} *Why approval is needed*\n{reasons}"))
    snap = ctx.get("snapshot") or {}
    rows = _discount_rows(snap, fmt=fmt)
    if rows:
        blocks.append(section("*Discounted lines*\n" + lines_text(rows)))
    if ctx.get("second_role"):
        from blocks.backoffice import tier_text

        blocks.append(section(tier_text(ctx)))
    if status == "pending":
        blocks.append(decision_buttons(ctx["approval_id"]))
    else:
        blocks.append(section(decision_text(ctx)))
    blocks.append(context(f"Asked {slack_date(ctx.get('requested_at'))}"))  # (no row id)
    return {"text": f"{'Reminder: ' if reminder else ''}{esc(title)}: {status}",
            "blocks": render(blocks)}


def discount_alert(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """Real-time alert: who, customer, product, discount and what it costs."""
    order, snap = ctx["order"], ctx.get("snapshot") or {}
    cur = snap.get("currency", order["currency"])
    text = f"Discount above policy on {esc(order['number'])} for {esc(order['customer'])}"
    blocks = [
        section(f":rotating_light: *Discount above policy* on *{esc(order['number'])}* "
                f"({fmt.money(order['total_minor'], order['currency'])}) — customer "
                f"*{esc(order['customer'])}*, asked by {_requester(ctx)}"),
        section(lines_text(_discount_rows(snap, fmt=fmt))),
    ]
    impact = [f"Revenue given away: *{fmt.money(snap.get('lost_minor', 0), cur)}*"]
    lines = snap.get("lines") or []
    if lines and all(line.get("margin_before_minor") is not None for line in lines):
        before = sum(line["margin_before_minor"] for line in lines)
        after = sum(line["margin_after_minor"] for line in lines)
        impact.append(f"margin on these lines {fmt.money(before, cur)} → "
                      f"{fmt.money(after, cur)}")
    blocks.append(context(" · ".join(impact), "A discount approval card is waiting in the "
                          "approvals channel."))
    return {"text": text, "blocks": render(blocks)}


def approval_decided(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The requester's DM: decided, by whom, why; what happens to the order now."""
    order, status, kind = ctx["order"], ctx["status"], ctx["kind"]
    text = f"Your {kind} request for {esc(order['number'])} was {status}"
    blocks = [section(f"{STATUS_MARK.get(status, '')} Your {kind} request for "
                      f"*{esc(order['number'])}* ({esc(order['customer'])}, "
                      f"{fmt.money(order['total_minor'], order['currency'])}) was *{status}* "
                      f"by {who(ctx.get('decided_by'))} {slack_date(ctx.get('decided_at'))}.")]
    if ctx.get("note"):
        label = "Reason" if status == "rejected" else "Note"
        blocks.append(section(f"*{label}:* {esc(ctx['note'])}"))
    waiting = ctx.get("waiting_for") or []
    if waiting:
        blocks.append(context(f"Still waiting for: {', '.join(waiting)} approval."))
    else:
        blocks.append(context(f"Order {esc(order['number'])} is now "
                              f"{order.get('status', '').replace('_', ' ')}."))
    return {"text": text, "blocks": render(blocks)}


# -- modals ------------------------------------------------------------------------------------

def plain_text(text: str, limit: int = 24) -> dict:
    """A plain_text object (modal titles and buttons are limited to 24 characters)."""
    return {"type": "plain_text", "text": plain(text, limit)}


def modal_metadata(approval_id: int, channel: str | None) -> str:
    return json.dumps({"approval_id": approval_id, "channel": channel})


def read_metadata(view: dict) -> tuple[int | None, str | None]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
        return int(data["approval_id"]), data.get("channel")
    except (ValueError, KeyError, TypeError):
        return None, None


def _summary(order_number: str, customer: str, amount: str, kind: str) -> list:
    what = kind.replace("_", " ").capitalize()
    return [section(f"{KIND_EMOJI.get(kind, '')} {what} approval for "
                    f"*{esc(order_number)}* — {esc(customer)}, {amount}")]


def reject_modal(*, approval_id: int, channel: str | None, order_number: str, customer: str,
                 amount: str, kind: str) -> dict:
    blocks = _summary(order_number, customer, amount, kind) + [InputBlock(
        block_id=ids.REJECT_REASON_BLOCK, label="Reason (the requester sees it)",
        element=PlainTextInputElement(action_id=ids.REJECT_REASON_INPUT, multiline=True,
                                      max_length=2000))]
    return {"type": "modal", "callback_id": ids.REJECT_MODAL, "title": plain_text("Reject"),
            "submit": plain_text("Reject"), "close": plain_text("Cancel"),
            "private_metadata": modal_metadata(approval_id, channel),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


def approve_note_modal(*, approval_id: int, channel: str | None, order_number: str,
                       customer: str, amount: str, kind: str) -> dict:
    blocks = _summary(order_number, customer, amount, kind) + [InputBlock(
        block_id=ids.APPROVE_NOTE_BLOCK, label="Note (the requester sees it)",
        optional=True, element=PlainTextInputElement(action_id=ids.APPROVE_NOTE_INPUT,
                                                     multiline=True, max_length=2000))]
    return {"type": "modal", "callback_id": ids.APPROVE_NOTE_MODAL,
            "title": plain_text("Approve"), "submit": plain_text("Approve"),
            "close": plain_text("Cancel"),
            "private_metadata": modal_metadata(approval_id, channel),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


# -- answers to the person who clicked ---------------------------------------------------------

def refusal(detail: str) -> list[dict]:
    """Why a click changed nothing (role, segregation of duties, already decided...)."""
    return render([section(refusal_text(esc(detail)))])


def already_decided(*, status: str | None, decided_by: str | None, kind: str | None = None
                    ) -> list[dict]:
    what = f"This {kind} request" if kind else "This request"
    return render([section(refusal_text(
        f"{what} was already *{esc(status or 'decided')}* by {who(decided_by)}. "
        "Your click changed nothing."))])


# -- `/o2c approvals` --------------------------------------------------------------------------

def _hours(item: PendingItem) -> str:
    """How long a request has waited, in working time, the way people say it."""
    return working_time_words(int(item.waiting.total_seconds()))


def working_time_words(seconds: int) -> str:
    hours = Decimal(seconds) / 3600
    if hours < 1:
        return "less than a working hour"
    whole = int(hours.quantize(Decimal(1)))
    return f"{whole} working hour{'s' if whole != 1 else ''}"


def _row(item: PendingItem, *, show_reasons: bool, fmt: Formats = ENGLISH) -> str:
    a = item.approval
    reasons = "; ".join(r.get("text", "") for r in a.reasons or [])
    tail = f"\n      _{esc(reasons)}_" if show_reasons and reasons else ""
    step = (f" · first approval by <@{a.first_decided_by}>, waiting for a "
            f"{esc(a.second_role.replace('_', ' '))}" if a.first_decided_by and a.second_role
            else "")
    return (f"• {KIND_EMOJI.get(a.kind, '')} *{esc(item.title)}* {a.kind.replace('_', ' ')} — "
            f"{esc(item.customer.name)}, {fmt.money(item.amount_minor, item.currency)} — "
            f"waiting {_hours(item)}{step}{tail}")


def pending_list(overview: PendingOverview, *, fmt: Formats = ENGLISH) -> list[dict]:
    blocks = [header("Pending approvals")]
    if overview.can_decide_kinds:
        names = [k.replace("_", " ") for k in overview.can_decide_kinds]
        kinds = " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + \
            f" and {names[-1]}"
        if overview.to_decide:
            rows = [_row(i, show_reasons=True, fmt=fmt) for i in overview.to_decide]
            more = overview.to_decide_total - len(overview.to_decide)
            if more:
                rows.append(f"_…and {more} more_")
            blocks.append(section(f"*Waiting for you* ({kinds}), oldest first\n"
                                  + lines_text(rows)))
        else:
            blocks.append(section(f"*Waiting for you* ({kinds}): nothing. :tada:"))
        blocks.append(context("Decide on the cards in the approvals channel."))
    if overview.requested or not overview.can_decide_kinds:
        if overview.requested:
            rows = [_row(i, show_reasons=False, fmt=fmt) for i in overview.requested]
            more = overview.requested_total - len(overview.requested)
            if more:
                rows.append(f"_…and {more} more_")
            blocks.append(divider())
            blocks.append(section("*Your requests still waiting*\n" + lines_text(rows)))
        else:
            blocks.append(section("*Your requests*: none waiting for a decision."))
    return render(blocks)


# -- credit hold (buttons under the customer card) ---------------------------------------------

def credit_hold_actions(customer_id: int, customer_name: str, on_hold: bool) -> list:
    value = str(customer_id)
    if on_hold:
        button = ButtonElement(text="Release credit hold…", action_id=ids.CREDIT_RELEASE,
                               value=value, style="primary")
    else:
        button = ButtonElement(
            text="Put on credit hold", action_id=ids.CREDIT_HOLD, value=value, style="danger",
            confirm=ConfirmObject(title="Put on credit hold?",
                                  text=plain(f"Every new order of {customer_name} will "
                                             "need a credit approval until the hold is "
                                             "released.", 300),
                                  confirm="Put on hold", deny="Cancel"))
    return [ActionsBlock(block_id=f"credit_hold:{value}", elements=[button])]


def release_hold_modal(*, customer_id: int, name: str, channel: str | None,
                       situation: str) -> dict:
    """Releasing a credit hold asks why (audited): the customer's overdue position is shown
    so nobody releases a customer 148 days overdue without saying why."""
    blocks = [section(f":octagonal_sign: *{esc(name)}* is on credit hold.\n{situation}"),
              InputBlock(block_id=ids.CREDIT_RELEASE_REASON_BLOCK,
                         label="Why release the hold? (audited)",
                         element=PlainTextInputElement(
                             action_id=ids.CREDIT_RELEASE_REASON_INPUT, multiline=True,
                             max_length=2000))]
    return {"type": "modal", "callback_id": ids.CREDIT_RELEASE_MODAL,
            "title": plain_text("Release credit hold"), "submit": plain_text("Release"),
            "close": plain_text("Cancel"),
            "private_metadata": json.dumps({"customer_id": customer_id, "channel": channel}),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


def credit_hold_done(customer_name: str, on_hold: bool, changed: bool) -> str:
    state = "on credit hold" if on_hold else "released from credit hold"
    if not changed:
        return f"{esc(customer_name)} was already {state}; nothing changed."
    return f":white_check_mark: {esc(customer_name)} is now {state}."
