"""The back office in Slack (issue 14): dispute cards, deduction cards, approval cards for credit
notes, write-offs and fee waivers, the modals they open, `/o2c invoice` and `/o2c disputes`.
Pure functions of the JSON contexts the workflows write (`workflows.disputes`,
`workflows.deductions`, `workflows.approvals.subject_context`) or of read-only views.

Everything that came from a person, a customer record or a bank (notes, reasons, names,
remittance text) goes through `esc`.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import TYPE_CHECKING

from blocks import approvals as approval_blocks
from blocks import ids
from blocks.common import (
    actions,
    button,
    context,
    divider,
    fields,
    header,
    lines_text,
    render,
    section,
)
from blocks.i18n import ENGLISH, Formats
from blocks.integrations import pay_now_actions
from blocks.text import VIEW_BLOCKS_MAX, clip, esc, plain, status_label
from models import DisputeReason, invoice_status

if TYPE_CHECKING:  # view models only; blocks never call workflows
    from workflows.disputes import DisputeRow
    from workflows.queries import InvoiceView

SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def slack_date(iso: str | None) -> str:
    return approval_blocks.slack_date(iso)


REASON_LABELS = {DisputeReason.PRICING: "Pricing", DisputeReason.QUANTITY: "Quantity",
                 DisputeReason.DAMAGED: "Damaged goods", DisputeReason.NOT_RECEIVED:
                 "Not received", DisputeReason.DUPLICATE: "Duplicate billing",
                 DisputeReason.TAX: "Tax", DisputeReason.OTHER: "Other"}
KIND_TITLES = {"credit_note": "Credit note approval", "write_off": "Write-off approval",
               "fee_waiver": "Fee waiver approval", "credit_request": "Credit approval"}


def who(user_id: str | None) -> str:
    """A Slack user as a mention; anyone else ("api", "system", "migration") as text."""
    if not user_id:
        return "someone"
    return f"<@{user_id}>" if SLACK_USER.match(user_id) else esc(user_id)


def _reason(code: str | None) -> str:
    return REASON_LABELS.get(code or "", esc(code or ""))


def _owner(ctx: dict) -> str:
    if ctx.get("owner_id"):
        return who(ctx["owner_id"])
    channel = ctx.get("owner_channel") or "ar"
    return f"<#{channel}>" if channel[:1] in ("C", "G") and channel.isalnum() else \
        f"the {esc(channel)} channel"


# -- disputes -------------------------------------------------------------------------------------
def _dispute_facts(ctx: dict, *, fmt: Formats = ENGLISH) -> list[tuple[str, str]]:
    inv, cur = ctx["invoice"], ctx["currency"]
    return [("Customer", esc(ctx["customer"])),
            ("Invoice", f"{esc(inv['number'])} · due {fmt.date(inv['due_date'])}"),
            ("In dispute", f"*{fmt.money(ctx['amount_minor'], cur)}* of "
                           f"{fmt.money(inv['balance_minor'], cur)} open"),
            ("Reason", _reason(ctx.get("reason"))),
            ("Opened by", f"{who(ctx.get('opened_by'))} {slack_date(ctx.get('opened_at'))}"),
            ("Owner", _owner(ctx))]


def dispute_buttons(dispute_id: int) -> dict:
    value = str(dispute_id)
    return actions(button("Accept…", ids.DISPUTE_ACCEPT, value, style="primary"),
                   button("Reject…", ids.DISPUTE_REJECT, value, style="danger"),
                   button("Reassign…", ids.DISPUTE_REASSIGN, value),
                   block_id=f"dispute:{value}")


def _dispute_outcome(ctx: dict, *, fmt: Formats = ENGLISH) -> str:
    status, cur = ctx["status"], ctx["currency"]
    mark = {"accepted": ":white_check_mark:", "rejected": ":no_entry:",
            "withdrawn": ":heavy_minus_sign:"}.get(status, "")
    text = (f"{mark} *{status.capitalize()}* by {who(ctx.get('resolved_by'))} "
            f"{slack_date(ctx.get('resolved_at'))}")
    if ctx.get("resolution_note"):
        text += f"\n>{esc(ctx['resolution_note'])}"
    if status == "accepted" and ctx.get("credit_amount_minor"):
        credit = fmt.money(ctx["credit_amount_minor"], cur)
        if ctx.get("credit_note"):
            text += f"\nCredit note *{esc(ctx['credit_note'])}* ({credit}) issued."
        elif ctx.get("credit_status") == "rejected":
            text += f"\nThe credit note of {credit} was rejected; dunning resumes."
        else:
            text += f"\nA credit note of {credit} waits for a credit approver."
    elif status == "rejected":
        text += "\nDunning resumes."
    return text


def dispute_card(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The owner's card: the dispute, then Accept · Reject · Reassign while it is open."""
    number = ctx["invoice"]["number"]
    reminder = ctx.get("reminder")
    title = f"{'Reminder: ' if reminder else ''}Dispute #{ctx['dispute_id']} — {number}"
    blocks = [header(title)]
    if reminder and ctx["status"] == "open":
        blocks.append(section(f":alarm_clock: *Reminder {reminder}*: this dispute is still "
                              f"open. {_owner(ctx)}, please accept or reject it."))
    blocks.append(fields(_dispute_facts(ctx, fmt=fmt)))
    if ctx.get("note"):
        blocks.append(section(f"*Note*\n>{esc(ctx['note'])}"))
    if ctx.get("reassigned_to"):
        blocks.append(section(f":arrow_right: Reassigned to {who(ctx['reassigned_to'])}."))
    elif ctx["status"] == "open":
        blocks.append(dispute_buttons(ctx["dispute_id"]))
    else:
        blocks.append(section(_dispute_outcome(ctx, fmt=fmt)))
    blocks.append(context(f"Dispute #{ctx['dispute_id']} · source {esc(ctx.get('source'))} · "
                          "the amount is left out of dunning while it is open"))
    return {"text": f"{plain(title, 150)}: {ctx['status']}", "blocks": render(blocks)}


def dispute_resolved(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The DM to whoever opened the dispute."""
    number = ctx["invoice"]["number"]
    text = f"Dispute #{ctx['dispute_id']} on {esc(number)} was {ctx['status']}"
    blocks = [section(f"Your dispute *#{ctx['dispute_id']}* on *{esc(number)}* "
                      f"({esc(ctx['customer'])}):"), section(_dispute_outcome(ctx, fmt=fmt))]
    return {"text": text, "blocks": render(blocks)}


def dispute_escalated(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The alerts channel: a dispute open too long."""
    number = ctx["invoice"]["number"]
    text = (f"Dispute #{ctx['dispute_id']} on {esc(number)} has been open "
            f"{ctx.get('working_days')} working days")
    blocks = [section(f":rotating_light: *Dispute #{ctx['dispute_id']}* on *{esc(number)}* "
                      f"({esc(ctx['customer'])}, {fmt.money(ctx['amount_minor'], ctx['currency'])})"
                      f" has been open *{ctx.get('working_days')} working days*. Owner: "
                      f"{_owner(ctx)}."),
              fields(_dispute_facts(ctx, fmt=fmt))]
    return {"text": text, "blocks": render(blocks)}


def dispute_list(rows: list[DisputeRow], total: int, *, today: date,
                 fmt: Formats = ENGLISH) -> list[dict]:
    """`/o2c disputes`: open disputes, oldest first."""
    blocks = [header("Open disputes")]
    if not rows:
        blocks.append(section("No open disputes. :tada:"))
        return render(blocks)
    lines = [f"• *#{r.dispute.id}* {esc(r.invoice.number)} — {esc(clip(r.customer.name, 60))}"
             f" — {fmt.money(r.dispute.amount_minor, r.dispute.currency)} · "
             f"{_reason(r.dispute.reason)} · owner "
             f"{_owner({'owner_id': r.dispute.owner_id, 'owner_channel': r.dispute.owner_channel})}"
             f" · {r.age_days} day{'s' if r.age_days != 1 else ''}" for r in rows]
    blocks.append(section(lines_text(lines)))
    if total > len(rows):
        blocks.append(context(f"The oldest {len(rows)} of {total}."))
    blocks.append(context(f"As of {fmt.date(today)} · decide on the dispute cards; "
                          "`/o2c invoice &lt;number&gt;` for one invoice"))
    return render(blocks)


# -- deductions -----------------------------------------------------------------------------------
def deduction_card(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """AR channel: a short payment beyond the fee tolerance, with what to do about it."""
    inv, pay, cur = ctx["invoice"], ctx["payment"], ctx["currency"]
    title = f"Deduction — {inv['number']}"
    # what is still missing: less what credit notes of disputes opened from it credited
    left = ctx.get("left_minor", ctx["amount_minor"])
    short = f"*{fmt.money(ctx['amount_minor'], cur)}*"
    if left != ctx["amount_minor"]:
        short = (f"{fmt.money(ctx['amount_minor'], cur)} · "
                 f"{fmt.money(ctx['amount_minor'] - left, cur)} credited · "
                 f"*{fmt.money(left, cur)} left*")
    blocks = [header(title), fields([
        ("Customer", esc(ctx["customer"])),
        ("Short by", short),
        ("Invoice", f"{esc(inv['number'])} · {fmt.money(inv['total_minor'], cur)}, "
                    f"{fmt.money(inv['balance_minor'], cur)} open"),
        ("Payment", f"#{pay['id']} · {fmt.money(pay['amount_minor'], cur)} "
                    f"{slack_date(pay['received_at'])}"),
        ("Payer", esc(pay.get("payer_name") or "—")),
        ("Status", esc(status_label(ctx["status"]))
         + (f" ({esc(status_label(ctx['resolution']))})" if ctx.get("resolution") else "")),
    ])]
    if pay.get("reference"):
        blocks.append(section(f"*Remittance text*\n>{esc(clip(pay['reference'], 1500))}"))
    if ctx.get("note"):
        blocks.append(context(esc(ctx["note"])))
    if ctx.get("dispute_id"):
        blocks.append(context(f"Dispute #{ctx['dispute_id']} opened for it."))
    if ctx.get("billed_back_at"):
        blocks.append(context(f"Billed back to the customer {ctx.get('bill_backs', 1)}× — "
                              f"last {slack_date(ctx['billed_back_at'])}"))
    if ctx["status"] == "open":
        value = str(ctx["deduction_id"])
        blocks.append(actions(
            button("Open dispute…", ids.DEDUCTION_DISPUTE, value, style="primary"),
            button("Write off…", ids.DEDUCTION_WRITE_OFF, value),
            button("Bill back", ids.DEDUCTION_BILL_BACK, value, confirm={
                "title": {"type": "plain_text", "text": "Bill back?"},
                "text": {"type": "plain_text", "text": plain(
                    f"E-mail {ctx['customer']} that {fmt.money(left, cur)} "
                    f"of {inv['number']} is still due.", 300)},
                "confirm": {"type": "plain_text", "text": "Send"},
                "deny": {"type": "plain_text", "text": "Cancel"}}),
            block_id=f"deduction:{value}"))
    return {"text": f"{plain(title, 150)}: {fmt.money(ctx['amount_minor'], cur)} short"
                    + (f", {fmt.money(left, cur)} left" if left != ctx["amount_minor"] else ""),
            "blocks": render(blocks)}


# -- back-office approvals ------------------------------------------------------------------------
def _subject_facts(ctx: dict, *, fmt: Formats = ENGLISH) -> list[tuple[str, str]]:
    sub = ctx["subject"]
    cur = sub["currency"]
    facts = [("Customer", esc(sub["customer"])),
             ("Amount", f"*{fmt.money(sub['amount_minor'], cur)}*")]
    if sub.get("invoice"):  # a credit request (a Workflow Builder step) has none
        facts.append(("Invoice", f"{esc(sub['invoice'])} · "
                                 f"{fmt.money(sub['invoice_total_minor'], cur)}, "
                                 f"{fmt.money(sub['invoice_balance_minor'], cur)} open"))
    facts.append(("Requested by", who(ctx.get("requested_by"))
                  if not ctx.get("requested_by_label") else esc(ctx["requested_by_label"])))
    facts.extend((esc(label), esc(value)) for label, value in sub.get("facts") or [])
    if sub.get("credited_before_minor"):
        facts.append(("Credited before", fmt.money(sub["credited_before_minor"], cur)))
    if sub.get("dispute_id"):
        facts.append(("Dispute", f"#{sub['dispute_id']}"))
    if sub.get("deduction_id"):
        facts.append(("Deduction", f"#{sub['deduction_id']}"))
    for line in sub.get("lines") or []:
        if len(facts) >= 10:
            break
        what = f"{line['quantity']} unit(s)" if line.get("quantity") else "amount"
        facts.append((f"Line {line['line_no']}", f"{what}: {fmt.money(line['amount_minor'], cur)}"))
    return facts


def tier_text(ctx: dict) -> str | None:
    """Where a tier's two decisions stand (None without a tier)."""
    role = ctx.get("second_role")
    if not role:
        return None
    role = esc(role.replace("_", " "))
    if ctx.get("first_decided_by"):
        note = f" — “{esc(ctx['first_note'])}”" if ctx.get("first_note") else ""
        text = (f":one: First approval by {who(ctx['first_decided_by'])} "
                f"{slack_date(ctx.get('first_decided_at'))}{note}")
        if ctx.get("status") == "pending":
            text += f"\n:two: Waiting for the second decision of a *{role}* (approval tier)."
        return text
    return f":scales: Above the approval tier: after the first approval, a *{role}* decides."


def _subject_outcome(ctx: dict, *, fmt: Formats = ENGLISH) -> str:
    sub, status = ctx["subject"], ctx["status"]
    mark = approval_blocks.STATUS_MARK.get(status, ":grey_question:")
    note = f"\n>{esc(ctx['note'])}" if ctx.get("note") else ""
    text = (f"{mark} *{status.capitalize()}* by {who(ctx.get('decided_by'))} "
            f"{slack_date(ctx.get('decided_at'))}{note}")
    if sub.get("number"):
        credit = (f"; {fmt.money(sub['customer_credit_minor'], sub['currency'])} became "
                  "customer credit" if sub.get("customer_credit_minor") else "")
        text += f"\nCredit note *{esc(sub['number'])}* issued and e-mailed{credit}."
    elif sub.get("written_off_minor") is not None:
        text += (f"\n{fmt.money(sub['written_off_minor'], sub['currency'])} written off "
                 f"{esc(sub['invoice'])}.")
    elif sub.get("status") == "nothing_left":
        text += f"\n{esc(sub['invoice'])} was settled meanwhile: nothing was written off."
    return text


def backoffice_approval_card(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The approvals channel: a credit note, write-off or fee waiver to decide (the same
    Approve · Approve with note · Reject as any approval), tiers, then the decision."""
    sub, status = ctx["subject"], ctx.get("status", "pending")
    reminder = ctx.get("reminder")
    title = f"{KIND_TITLES.get(ctx['kind'], 'Approval')} — {sub['title']}"
    blocks = [header(f"{'Reminder: ' if reminder else ''}{title}")]
    if reminder and status == "pending":
        pings = " ".join(f"<@{u}>" for u in reminder.get("approvers") or [])
        waited = (f" — waiting {reminder['working_hours']} working hours"
                  if reminder.get("working_hours") else "")
        blocks.append(section(f":alarm_clock: *Reminder {reminder['number']}*{waited}. "
                              f"{pings}".strip()))
    blocks.append(fields(_subject_facts(ctx, fmt=fmt)))
    blocks.append(section(f"*Reason*\n>{esc(sub.get('reason'))}"))
    tier = tier_text(ctx)
    if tier:
        blocks.append(section(tier))
    if status == "pending":
        blocks.append(approval_blocks.decision_buttons(ctx["approval_id"]))
    else:
        blocks.append(section(_subject_outcome(ctx, fmt=fmt)))
    blocks.append(context(f"Asked {slack_date(ctx.get('requested_at'))}"))  # (no row id)
    return {"text": f"{'Reminder: ' if reminder else ''}{plain(title, 150)}: {status}",
            "blocks": render(blocks)}


def backoffice_approval_decided(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The requester's DM."""
    sub, status = ctx["subject"], ctx["status"]
    what = KIND_TITLES.get(ctx["kind"], "approval").replace(" approval", "").lower()
    if status == "pending":  # a tier's first approval
        text = f"Your {what} request ({sub['title']}) got its first approval"
        blocks = [section(f":one: Your {what} request — *{esc(sub['title'])}*, "
                          f"{fmt.money(sub['amount_minor'], sub['currency'])} — got its first "
                          f"approval by {who(ctx.get('first_decided_by'))}; a "
                          f"{esc((ctx.get('second_role') or '').replace('_', ' '))} decides "
                          "next.")]
        return {"text": plain(text, 300), "blocks": render(blocks)}
    text = f"Your {what} request ({sub['title']}) was {status}"
    blocks = [section(f"Your {what} request — *{esc(sub['title'])}*, "
                      f"{fmt.money(sub['amount_minor'], sub['currency'])}:"),
              section(_subject_outcome(ctx, fmt=fmt))]
    return {"text": plain(text, 300), "blocks": render(blocks)}


# -- modals ---------------------------------------------------------------------------------------
def _title(text: str) -> dict:
    return {"type": "plain_text", "text": plain(text, 24)}


def _modal(callback_id: str, title: str, submit: str, meta: dict, blocks: list) -> dict:
    return {"type": "modal", "callback_id": callback_id, "title": _title(title),
            "submit": _title(submit), "close": _title("Cancel"),
            "private_metadata": json.dumps(meta), "blocks": render(blocks,
                                                                   limit=VIEW_BLOCKS_MAX)}


def _text_input(block_id: str, action_id: str, label: str, *, optional: bool = False,
                multiline: bool = False, initial: str | None = None,
                max_length: int = 2000, hint: str | None = None) -> dict:
    element = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline,
               "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    block = {"type": "input", "block_id": block_id, "optional": optional,
             "label": {"type": "plain_text", "text": plain(label, 2000)}, "element": element}
    if hint:
        block["hint"] = {"type": "plain_text", "text": plain(hint, 2000)}
    return block


def _option(text: str, value: str) -> dict:
    return {"text": {"type": "plain_text", "text": plain(text, 75)}, "value": value[:150]}


def dispute_modal(*, meta: dict, invoice: dict | None, invoices: list[dict] | None = None,
                  amount: str | None = None, note: str | None = None) -> dict:
    """Open a dispute: on one invoice (`invoice`: number, customer, open), or on one of a
    customer's open `invoices` (a select); a reason code, an amount (default: all that is
    open), a note."""
    blocks = []
    if invoice is not None:
        blocks.append(section(f"Dispute on *{esc(invoice['number'])}* — "
                              f"{esc(invoice['customer'])}, {invoice['open']} open."))
    else:
        blocks.append({"type": "input", "block_id": ids.DISPUTE_INVOICE_BLOCK,
                       "label": {"type": "plain_text", "text": "Invoice"},
                       "element": {"type": "static_select", "action_id": ids.DISPUTE_INVOICE,
                                   "options": [_option(f"{i['number']} — {i['open']}",
                                                       i["number"])
                                               for i in (invoices or [])[:100]]}})
    blocks.append({"type": "input", "block_id": ids.DISPUTE_REASON_BLOCK,
                   "label": {"type": "plain_text", "text": "Reason"},
                   "element": {"type": "static_select", "action_id": ids.DISPUTE_REASON,
                               "options": [_option(label, code.value)
                                           for code, label in REASON_LABELS.items()]}})
    blocks.append(_text_input(ids.DISPUTE_AMOUNT_BLOCK, ids.DISPUTE_AMOUNT, "Amount in dispute",
                              optional=True, initial=amount, max_length=20,
                              hint="Leave empty for all that is open and not yet in dispute."))
    blocks.append(_text_input(ids.DISPUTE_NOTE_BLOCK, ids.DISPUTE_NOTE, "Note (what the "
                              "customer says)", optional=True, multiline=True, initial=note))
    return _modal(ids.DISPUTE_MODAL, "Open a dispute", "Open dispute", meta, blocks)


def resolve_modal(*, dispute: dict, outcome: str, channel: str | None) -> dict:
    """Accept (a credit of up to the disputed amount, a note) or reject (a reason)."""
    amount = dispute["amount"]
    head = section(f"Dispute *#{dispute['id']}* on *{esc(dispute['invoice'])}* — "
                   f"{esc(dispute['customer'])}, {amount} in dispute "
                   f"({_reason(dispute['reason'])}).")
    meta = {"dispute_id": dispute["id"], "outcome": outcome, "channel": channel}
    if outcome == "accepted":
        blocks = [head, _text_input(ids.RESOLVE_CREDIT_BLOCK, ids.RESOLVE_CREDIT,
                                    "Credit to give", initial=dispute["amount_plain"],
                                    max_length=20, hint="At most the disputed amount; a credit"
                                    " approver approves the credit note."),
                  _text_input(ids.RESOLVE_NOTE_BLOCK, ids.RESOLVE_NOTE, "Note", optional=True,
                              multiline=True)]
        return _modal(ids.DISPUTE_RESOLVE_MODAL, "Accept dispute", "Accept", meta, blocks)
    blocks = [head, _text_input(ids.RESOLVE_NOTE_BLOCK, ids.RESOLVE_NOTE,
                                "Why it is rejected (dunning resumes)", multiline=True)]
    return _modal(ids.DISPUTE_RESOLVE_MODAL, "Reject dispute", "Reject", meta, blocks)


def reassign_modal(*, dispute: dict, channel: str | None) -> dict:
    blocks = [section(f"Give dispute *#{dispute['id']}* on *{esc(dispute['invoice'])}* to:"),
              {"type": "input", "block_id": ids.REASSIGN_USER_BLOCK,
               "label": {"type": "plain_text", "text": "New owner"},
               "element": {"type": "users_select", "action_id": ids.REASSIGN_USER}}]
    return _modal(ids.REASSIGN_MODAL, "Reassign dispute", "Reassign",
                  {"dispute_id": dispute["id"], "channel": channel}, blocks)


def amount_reason_modal(*, callback_id: str, title: str, submit: str, meta: dict,
                        summary: str, amount: str | None, amount_label: str | None,
                        reason_label: str) -> dict:
    """A credit-note request, a write-off request or a fee waiver: an amount (when it can be
    chosen) and a reason."""
    blocks = [section(summary)]
    if amount_label is not None:
        blocks.append(_text_input(ids.BO_AMOUNT_BLOCK, ids.BO_AMOUNT, amount_label,
                                  initial=amount, max_length=20))
    blocks.append(_text_input(ids.BO_REASON_BLOCK, ids.BO_REASON, reason_label, multiline=True,
                              max_length=500))
    return _modal(callback_id, title, submit, meta, blocks)


# -- `/o2c invoice <number>` ----------------------------------------------------------------------
def invoice_card(view: InvoiceView, *, today: date, can_act: bool,
                 pay_url: str | None = None, fmt: Formats = ENGLISH) -> list[dict]:
    """One invoice: figures, lines, credit notes, disputes, late fees, its "Pay now" link (to
    pass on to the customer) when there is one, and (for people who may act) Dispute ·
    Request credit note · Write off · Waive fee."""
    i, cur = view.invoice, view.invoice.currency
    blocks = [header(f"Invoice {i.number}"), fields([
        ("Customer", esc(view.customer.name)),
        ("Status", status_label(invoice_status(i))),
        ("Total", fmt.money(i.total_minor, cur)),
        ("Amount due", fmt.money(i.balance_minor, cur)
         + (f" ({fmt.money(i.disputed_minor, cur)} in dispute)" if i.disputed_minor else "")
         + (f" — {fmt.money(i.total_minor - i.balance_minor, cur)} paid or credited"
            if i.total_minor != i.balance_minor else "")),
        ("Issued", fmt.date(i.issue_date)),
        ("Due", fmt.date(i.due_date) + (f" · {(today - i.due_date).days} days past due"
                                        if i.balance_minor and i.due_date < today else "")),
        ("Order", esc(view.order_number or "—")),
        ("Source", esc(i.source)),
    ])]
    if view.fee_for:
        blocks.append(context(f"Late fee for {esc(view.fee_for)} (dunning level "
                              f"+{i.fee_level})"))
    if view.lines:
        rows = [f"{line.line_no}. {esc(clip(line.description, 80))} — {line.quantity} × "
                f"{fmt.money(line.unit_price_minor, cur)} = "
                f"{fmt.money(line.line_total_minor, cur)}" for line in view.lines[:15]]
        blocks.append(section("*Lines*\n" + lines_text(rows)))
    rows = [f"• {esc(n.number)} {fmt.date(n.value_date)} — "
            f"{fmt.money(n.total_minor, cur)}: {esc(clip(n.reason, 120))}"
            + (f" ({fmt.money(n.customer_credit_minor, cur)} customer credit)"
               if n.customer_credit_minor else "") for n in view.credit_notes]
    rows += [f"• _waiting for approval_ — {fmt.money(r.amount_minor, cur)}: "
             f"{esc(clip(r.reason, 120))}" for r in view.pending_credit_notes]
    if rows:
        blocks.append(section("*Credit notes*\n" + lines_text(rows)))
    if view.disputes:
        rows = [f"• #{d.id} {status_label(d.status)} — {fmt.money(d.amount_minor, cur)} · "
                f"{_reason(d.reason)}" for d in view.disputes]
        blocks.append(section("*Disputes*\n" + lines_text(rows)))
    if view.fees:
        rows = [f"• {esc(fee.number)} level +{fee.fee_level} — "
                f"{fmt.money(fee.total_minor, cur)}, {fmt.money(fee.balance_minor, cur)} open"
                for fee in view.fees]
        blocks.append(section("*Late fees*\n" + lines_text(rows)))
    blocks += pay_now_actions(pay_url)
    if can_act:
        value = str(i.id)
        buttons = []
        if i.balance_minor > i.disputed_minor and not any(d.status == "open"
                                                          for d in view.disputes):
            buttons.append(button("Dispute…", ids.DISPUTE_OPEN, value))
        buttons.append(button("Request credit note…", ids.CREDIT_NOTE_REQUEST, value))
        if i.balance_minor:
            if view.fee_for:
                buttons.append(button("Waive fee…", ids.FEE_WAIVE, value))
            else:
                buttons.append(button("Write off…", ids.WRITE_OFF_REQUEST, value,
                                      style="danger"))
        blocks.append(divider())
        blocks.append(actions(*buttons, block_id=f"invoice:{value}"))
    blocks.append(context(f"As of {fmt.date(today)} · {len(view.allocations)} payment "
                          f"allocation(s)"))
    return render(blocks)
