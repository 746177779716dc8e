"""Cash application in Slack: the suggestion card in the AR channel, the `/o2c pay` modal and
the answer after recording a payment. Contexts are frozen snapshots written by
`workflows.cash_application`; everything that came from a bank or a payer is escaped."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ButtonElement,
    DatePickerElement,
    ExternalDataMultiSelectElement,
    ExternalDataSelectElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from blocks import ids
from blocks.common import context, fields, header, lines_text, render, section
from blocks.text import BUTTON_MAX, clip, esc, fmt_datetime, fmt_money, plain, status_label
from models import money

if TYPE_CHECKING:
    from models import Invoice

REFERENCE_SHOWN = 300


def _amount(text: str | None, currency: str) -> str:
    return fmt_money(money.to_minor(text or "0", currency), currency)


def _suggestion_text(s: dict, currency: str) -> str:
    who = esc(s.get("customer_name") or "several customers")
    rows = [f"*{s['rank']}. {who}* — confidence {esc(s['confidence'])}"]
    rows += [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency)}"
             for i in s.get("invoices", [])[:10]]
    if s.get("write_off") and money.to_minor(s["write_off"], currency):
        rows.append(f"• write-off {_amount(s['write_off'], currency)}")
    if s.get("unapplied_amount") and money.to_minor(s["unapplied_amount"], currency):
        rows.append(f"• left as credit {_amount(s['unapplied_amount'], currency)}")
    why = "; ".join(esc(r) for r in s.get("reasons", [])[:4])
    worry = "; ".join(esc(r) for r in s.get("concerns", [])[:3])
    if why:
        rows.append(f"_Why:_ {why}")
    if worry:
        rows.append(f"_But:_ {worry}")
    return lines_text(rows)


def review_card(ctx: dict) -> dict:
    """A payment the engine did not apply: its best candidates with Apply buttons, or (once a
    collector applied one) who applied what."""
    p = ctx["payment"]
    cur = p["currency"]
    amount = fmt_money(p["amount_minor"], cur)
    decision = ctx.get("decision")
    suggestions = ctx.get("suggestions") or []
    if decision:
        title = f"Payment applied — {amount}"
    elif suggestions:
        title = f"Payment needs review — {amount}"
    else:
        title = f"Unidentified payment — {amount}"
    reference = clip(esc(p.get("reference") or "—"), REFERENCE_SHOWN)
    blocks = [header(title), fields([
        ("Payer", esc(p.get("payer_name") or "—")),
        ("Amount", amount),
        ("Received", fmt_datetime(p.get("received_at"))),
        ("Reference", reference),
    ])]
    if decision:
        rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], cur)}"
                for i in decision.get("invoices", [])]
        blocks.append(section(
            f":white_check_mark: Suggestion {decision['rank']} applied by <@{decision['by']}> "
            f"{fmt_datetime(decision.get('at'))} — now "
            f"*{esc(status_label(decision.get('status', 'applied')))}*\n" + lines_text(rows)))
    elif suggestions:
        blocks.append(section("Not sure enough to apply it automatically. Closest matches:"))
        for s in suggestions:
            value = f"{p['id']}:{s['rank']}"
            blocks.append(section(
                _suggestion_text(s, cur), block_id=f"cashapp:{p['id']}:{s['rank']}",
                accessory=ButtonElement(text=plain(f"Apply {s['rank']}", BUTTON_MAX),
                                        action_id=ids.CASHAPP_APPLY, value=value,
                                        style="primary" if s["rank"] == 1 else None)))
    else:
        blocks.append(section("No open invoice looks like a match. The payment stays as "
                              "unapplied cash until someone identifies the customer."))
    blocks.append(context(f"Payment #{p['id']} · source {esc(p.get('source') or '—')}"
                          + (f" · {esc(p['external_id'])}" if p.get("external_id") else "")))
    return {"text": title, "blocks": render(blocks)}


# -- /o2c pay -----------------------------------------------------------------------------------
def payment_modal(*, currencies: list[str], currency: str, today: date,
                  private_metadata: str = "") -> dict:
    """The payment modal: amount, currency, customer (searchable), payer, reference, date,
    and optionally the invoices to apply it to (otherwise the engine matches it)."""
    options = [Option(text=c, value=c) for c in currencies[:100]]
    initial = next((o for o in options if o.value == currency), options[0])
    blocks = [
        InputBlock(block_id=ids.PAY_AMOUNT_BLOCK, label="Amount",
                   element=PlainTextInputElement(action_id=ids.PAY_AMOUNT,
                                                 placeholder="1250.00")),
        InputBlock(block_id=ids.PAY_CURRENCY_BLOCK, label="Currency",
                   element=StaticSelectElement(action_id=ids.PAY_CURRENCY, options=options,
                                               initial_option=initial)),
        InputBlock(block_id=ids.PAY_CUSTOMER_BLOCK, label="Customer", optional=True,
                   hint="Type part of the name. Leave empty if you do not know.",
                   element=ExternalDataSelectElement(action_id=ids.PAY_CUSTOMER,
                                                     placeholder="Search customers",
                                                     min_query_length=1)),
        InputBlock(block_id=ids.PAY_PAYER_BLOCK, label="Payer name (as on the bank line)",
                   optional=True,
                   element=PlainTextInputElement(action_id=ids.PAY_PAYER, max_length=300)),
        InputBlock(block_id=ids.PAY_REFERENCE_BLOCK, label="Reference / remittance text",
                   optional=True,
                   element=PlainTextInputElement(action_id=ids.PAY_REFERENCE, multiline=True,
                                                 max_length=2000)),
        InputBlock(block_id=ids.PAY_DATE_BLOCK, label="Received on",
                   element=DatePickerElement(action_id=ids.PAY_DATE,
                                             initial_date=today.isoformat())),
        InputBlock(block_id=ids.PAY_INVOICES_BLOCK, label="Apply to invoices", optional=True,
                   hint="Leave empty to let the bot match it (it asks the AR channel when "
                        "unsure).",
                   element=ExternalDataMultiSelectElement(action_id=ids.PAY_INVOICES,
                                                          placeholder="Search open invoices",
                                                          min_query_length=2)),
    ]
    view = View(type="modal", callback_id=ids.PAY_MODAL, title="Record payment",
                submit="Record", close="Cancel", blocks=blocks,
                private_metadata=private_metadata)
    return view.to_dict()


def option(text: str, value: str) -> dict:
    """An option of an external select; `text` is raw (escaped here by `plain`)."""
    return Option(text=plain(text, 75), value=value[:150]).to_dict()


def invoice_option(invoice: Invoice) -> dict:
    """An open invoice in the modal's invoice select: its number and what is still open."""
    return option(f"{invoice.number} — "
                  f"{fmt_money(invoice.balance_minor, invoice.currency)} open", invoice.number)


# -- answers to the Apply button (ephemeral, only the clicker sees them) -------------------------
_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def _who(user_id: str | None) -> str:
    if user_id and _SLACK_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return esc(user_id or "someone else")


def applied_answer(*, payment_id: int, rank: int, status: str, invoices: list[dict],
                   currency: str) -> str:
    """The clicker's confirmation: what went where (ERP invoice numbers escaped)."""
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency)}" for i in invoices]
    return (f":white_check_mark: Payment #{payment_id} applied (suggestion {rank}); it is now "
            f"*{esc(status_label(status))}*." + ("\n" + lines_text(rows) if rows else ""))


def already_applied_answer(decided_by: str | None) -> str:
    return (f":information_source: This payment was already applied by {_who(decided_by)}; "
            "nothing changed.")


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def refused_answer(error_text: str) -> str:
    """`error_text` is already escaped (`handlers.common.describe_error`)."""
    return (f"{_sentence(error_text)} Applying payments is for collectors and admins; nothing "
            "was applied.")


def failed_answer(error_text: str) -> str:
    """`error_text` is already escaped (`handlers.common.describe_error`)."""
    return f"{_sentence(error_text)} Nothing was applied."


BROKEN_BUTTON = ":warning: That button is broken; nothing was applied."


def payment_recorded(ctx: dict) -> dict:
    """The DM to the person who recorded a payment in the modal: what happened to it."""
    cur = ctx["currency"]
    amount = fmt_money(ctx["amount_minor"], cur)
    status = ctx["status"]
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], cur)}" for i in ctx["allocations"]]
    if status == "needs_review":
        head = (f":mag: Payment #{ctx['id']} of {amount} recorded. I was not sure where it "
                "belongs, so the AR channel has my suggestions.")
    elif status == "unapplied":
        head = (f":grey_question: Payment #{ctx['id']} of {amount} recorded, but no open "
                "invoice matches it; it stays as unapplied cash.")
    else:
        head = (f":white_check_mark: Payment #{ctx['id']} of {amount} recorded and "
                f"*{esc(status_label(status))}*.")
    text = head + ("\n" + lines_text(rows) if rows else "")
    extra = []
    if ctx.get("unapplied_minor"):
        extra.append(f"Unapplied: {fmt_money(ctx['unapplied_minor'], cur)}")
    if ctx.get("write_off_minor"):
        extra.append(f"Written off: {fmt_money(ctx['write_off_minor'], cur)}")
    blocks = [section(text)] + ([context(" · ".join(extra))] if extra else [])
    return {"text": f"Payment #{ctx['id']} {status_label(status)}", "blocks": render(blocks)}
