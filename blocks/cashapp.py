"""Cash application in Slack: the suggestion card in the AR channel, the `/o2c pay` modal and
the answer after recording a payment. Contexts are frozen snapshots written by
`workflows.cash_application`; everything that came from a bank or a payer is escaped."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ActionsBlock,
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
from blocks.i18n import ENGLISH, Formats
from blocks.text import BUTTON_MAX, clip, esc, fmt_datetime, plain, refusal, status_label
from models import money

if TYPE_CHECKING:
    from models import Customer, Invoice

REFERENCE_SHOWN = 300
SUGGESTED_SHOWN = 10  # invoices listed per suggestion on the card


def _amount(text: str | None, currency: str, *, fmt: Formats = ENGLISH) -> str:
    return fmt.money(money.to_minor(text or "0", currency), currency)


PAYMENT_STATUS = {"applied": "applied in full",
                  "partially_applied": "applied; the rest is credit on the account",
                  "unapplied": "not applied yet (unapplied cash)",
                  "needs_review": "waiting for someone to check it"}


def payment_status(status: str) -> str:
    """A payment's status as a finance person says it (an overpayment is applied in full to
    its invoices with the rest as credit, not "partially applied")."""
    return PAYMENT_STATUS.get(status, status_label(status))


def match_strength(confidence: object) -> str:
    """The engine's confidence in words ("likely match"), not a number."""
    try:
        value = Decimal(str(confidence))
    except (ArithmeticError, ValueError):
        return "possible match"
    if value >= Decimal("0.8"):
        return "strong match"
    if value >= Decimal("0.5"):
        return "likely match"
    return "possible match"


def _suggestion_text(s: dict, currency: str, *, fmt: Formats = ENGLISH) -> str:
    who = esc(s.get("customer_name") or "several customers")
    rows = [f"*{s['rank']}. {who}* — {match_strength(s.get('confidence'))}"]
    invoices = s.get("invoices", [])
    rows += [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency, fmt=fmt)}"
             for i in invoices[:SUGGESTED_SHOWN]]
    if len(invoices) > SUGGESTED_SHOWN:  # Apply applies them all: say what is not listed
        rest = sum(money.to_minor(i["amount"], currency) for i in invoices[SUGGESTED_SHOWN:])
        rows.append(f"• …and {len(invoices) - SUGGESTED_SHOWN} more invoices — "
                    f"{fmt.money(rest, currency)}")
    if s.get("write_off") and money.to_minor(s["write_off"], currency):
        rows.append(f"• write-off {_amount(s['write_off'], currency, fmt=fmt)}")
    if s.get("unapplied_amount") and money.to_minor(s["unapplied_amount"], currency):
        rows.append(f"• left as credit {_amount(s['unapplied_amount'], currency, fmt=fmt)}")
    why = "; ".join(esc(r) for r in s.get("reasons", [])[:4])
    worry = "; ".join(esc(r) for r in s.get("concerns", [])[:3])
    if why:
        rows.append(f"_Why:_ {why}")
    if worry:
        rows.append(f"_But:_ {worry}")
    return lines_text(rows)


def _learned_rows(texts: list[str] | None) -> list[str]:
    """What the engine learned from a person's decision (`workflows.cash_rules`), escaped."""
    return [f":bulb: Learned: next time, {esc(t)}." for t in (texts or [])[:3]]


def _assign_select(payment_id: int) -> dict:
    """"Find customer": a collector names the customer (searchable)."""
    return ExternalDataSelectElement(action_id=ids.CASHAPP_ASSIGN,
                                     placeholder="Find customer…",
                                     min_query_length=1).to_dict()


def _payment_actions(payment_id: int) -> dict:
    """What else a collector can do with a payment nobody could place: apply it to open
    invoices they pick (any customer's), or send the money back."""
    return ActionsBlock(block_id=f"{ids.CASHAPP_ACTIONS_BLOCK}:{payment_id}", elements=[
        ExternalDataMultiSelectElement(action_id=ids.CASHAPP_APPLY_INVOICES,
                                       placeholder="Apply to invoices…", min_query_length=2),
        ButtonElement(text="Refund or return…", action_id=ids.CASHAPP_RETURN,
                      value=str(payment_id), style="danger"),
    ]).to_dict()


def return_modal(*, payment_id: int, amount: str, payer: str | None,
                 channel: str | None) -> dict:
    """"Refund or return": why the money goes back (audited)."""
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"The payment of {amount} from {esc(payer or 'an unknown payer')} goes back to "
            "whoever sent it: what it still holds is recorded as refunded in the books now, "
            "and you return it from your bank.")}},
        InputBlock(block_id=ids.CASHAPP_RETURN_REASON_BLOCK, label="Why? (audited)",
                   element=PlainTextInputElement(action_id=ids.CASHAPP_RETURN_REASON_INPUT,
                                                 multiline=True, max_length=500)).to_dict(),
    ]
    return {"type": "modal", "callback_id": ids.CASHAPP_RETURN_MODAL,
            "title": {"type": "plain_text", "text": "Refund or return"},
            "submit": {"type": "plain_text", "text": "Send it back"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "private_metadata": json.dumps({"payment_id": payment_id, "channel": channel}),
            "blocks": blocks}


def review_card(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A payment the engine did not apply: its best candidates with Apply buttons and a
    customer select, or (once a collector applied one or corrected it) who did what."""
    p = ctx["payment"]
    cur = p["currency"]
    amount = fmt.money(p["amount_minor"], cur)
    decision = ctx.get("decision")
    suggestions = ctx.get("suggestions") or []
    status = ctx.get("status") or ""
    if ctx.get("returned"):
        title = f"Payment refunded — {amount}"
    elif decision or status in ("applied", "partially_applied"):
        title = f"Payment applied — {amount}"
    elif suggestions:
        title = f"Payment needs review — {amount}"
    else:
        title = f"Unidentified payment — {amount}"
    reference = clip(esc(p.get("reference") or "—"), REFERENCE_SHOWN)
    pairs = [("Payer", esc(p.get("payer_name") or "—")), ("Amount", amount),
             ("Received", fmt_datetime(p.get("received_at"))), ("Reference", reference)]
    if p.get("customer_name"):
        pairs.append(("Customer", esc(p["customer_name"])))
    blocks = [header(title), fields(pairs)]
    if decision:
        rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], cur, fmt=fmt)}"
                for i in decision.get("invoices", [])]
        what = ("Applied to other invoices" if decision.get("corrected")
                else f"Suggestion {decision['rank']} applied")
        blocks.append(section(
            f":white_check_mark: {what} by <@{decision['by']}> "
            f"{fmt_datetime(decision.get('at'))} — now "
            f"*{esc(payment_status(decision.get('status', 'applied')))}*\n"
            + lines_text(rows + _learned_rows(decision.get("learned")))))
    elif status in ("applied", "partially_applied"):
        blocks.append(section(":white_check_mark: Applied once the customer was named — now "
                              f"*{esc(payment_status(status))}*."))
    elif suggestions and not ctx.get("returned"):
        blocks.append(section("Not sure enough to apply it automatically. Closest matches:"))
        round_ = ctx.get("round") or 1
        for s in suggestions:
            value = f"{p['id']}:{s['rank']}:{round_}"
            blocks.append(section(
                _suggestion_text(s, cur, fmt=fmt), block_id=f"cashapp:{p['id']}:{s['rank']}",
                accessory=ButtonElement(text=plain(f"Apply {s['rank']}", BUTTON_MAX),
                                        action_id=ids.CASHAPP_APPLY, value=value,
                                        style="primary" if s["rank"] == 1 else None)))
    elif not ctx.get("returned"):
        blocks.append(section("No open invoice looks like a match. The payment stays as "
                              "unapplied cash until someone identifies the customer."))
    returned, returning = ctx.get("returned"), ctx.get("return_requested")
    if returned:
        given = fmt.money(returned.get("amount_minor") or 0, cur)
        blocks.append(section(
            f":leftwards_arrow_with_hook: *Refunded* {given} by <@{esc(returned['by'])}> "
            f"{fmt_datetime(returned.get('at'))}: {esc(clip(returned.get('reason') or '', 500))}"
            f"\nThe books show it given back. Return it from your bank: *{given}* to "
            f"*{esc(p.get('payer_name') or 'the payer')}*."))
    elif returning:
        blocks.append(section(
            f":leftwards_arrow_with_hook: *To be returned* — asked by <@{esc(returning['by'])}> "
            f"{fmt_datetime(returning.get('at'))}: {esc(clip(returning.get('reason') or '', 500))}"
            "\nRecord the refund when the bank confirms it; until then it stays unapplied."))
    elif not decision and status in ("needs_review", "unapplied") and not p.get("customer_name"):
        blocks.append(section("None of these? Find the customer and I will match it again "
                              "(and remember how they pay):" if suggestions else
                              "Find the customer and I will match it (and remember how they "
                              "pay), or pick the invoices it pays, or send it back:",
                              block_id=f"{ids.CASHAPP_ASSIGN_BLOCK}:{p['id']}",
                              accessory=_assign_select(p["id"])))
        blocks.append(_payment_actions(p["id"]))
    blocks.append(context(f"Payment #{p['id']} · source {esc(p.get('source') or '—')}"
                          + (f" · {esc(p['external_id'])}" if _shown_id(p.get("external_id"))
                             else "")))
    return {"text": title, "blocks": render(blocks)}


def _shown_id(external_id: str | None) -> bool:
    """A provider's or ERP's id helps to find a payment; our own keys (a Slack view id) do
    not mean anything to a person."""
    return bool(external_id) and not str(external_id).startswith("slack-")


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


def customer_option(customer: Customer) -> dict:
    """A customer in a customer select (the card's "Find customer…", the modal's): its name
    and id."""
    return option(f"{customer.name} ({customer.external_id})", customer.external_id)


def invoice_option(invoice: Invoice, *, fmt: Formats = ENGLISH) -> dict:
    """An open invoice in the modal's invoice select: its number and what is still open."""
    return option(f"{invoice.number} — "
                  f"{fmt.money(invoice.balance_minor, invoice.currency)} open", invoice.number)


# -- answers to the Apply button (ephemeral, only the clicker sees them) -------------------------
_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def _who(user_id: str | None) -> str:
    if user_id and _SLACK_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return esc(user_id or "someone else")


def applied_answer(*, payment_id: int, rank: int, status: str, invoices: list[dict],
                   currency: str, learned: list[str] | None = None, fmt: Formats = ENGLISH) -> str:
    """The clicker's confirmation: what went where (ERP invoice numbers escaped), and what
    the engine learned from it."""
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency, fmt=fmt)}" for i in invoices]
    rows += _learned_rows(learned)
    return (f":white_check_mark: Payment #{payment_id}: suggestion {rank} applied — "
            f"{esc(payment_status(status))}." + ("\n" + lines_text(rows) if rows else ""))


def picked_answer(*, payment_id: int, status: str, invoices: list[dict],
                  currency: str, fmt: Formats = ENGLISH) -> str:
    """After a collector picked the invoices an unplaced payment pays."""
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency, fmt=fmt)}" for i in invoices]
    return (f":white_check_mark: Payment #{payment_id} applied to the invoices you picked — "
            f"{esc(payment_status(status))}." + ("\n" + lines_text(rows) if rows else ""))


def identified_answer(*, payment_id: int, customer_name: str, status: str,
                      invoices: list[dict], currency: str,
                      learned: list[str] | None = None, fmt: Formats = ENGLISH) -> str:
    """After a collector named the customer of a payment: what the engine did with it."""
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], currency, fmt=fmt)}" for i in invoices]
    if status in ("applied", "partially_applied"):
        head = (f":white_check_mark: Payment #{payment_id} is {esc(customer_name)}'s and is "
                f"now *{esc(payment_status(status))}*.")
    elif status == "needs_review":
        head = (f":mag: Payment #{payment_id} is {esc(customer_name)}'s; the card now shows "
                "their invoices that could fit.")
    else:
        head = (f":information_source: Payment #{payment_id} is {esc(customer_name)}'s; no "
                "open invoice of theirs fits, so it stays as their unapplied credit.")
    rows += _learned_rows(learned)
    return head + ("\n" + lines_text(rows) if rows else "")


def already_applied_answer(decided_by: str | None, decision: str | None = None) -> str:
    done = decision if decision in ("refunded", "identified") else "applied"
    return refusal(f"This payment was already {done} by {_who(decided_by)}; nothing changed.")


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def refused_answer(error_text: str) -> str:
    """`error_text` is already escaped (`handlers.common.describe_error`)."""
    return f"{_sentence(error_text)} Applying payments is for collectors and admins."


def failed_answer(error_text: str) -> str:
    """`error_text` is already escaped (`handlers.common.describe_error`)."""
    text = _sentence(error_text)  # (a refusal says already that nothing changed)
    return text if "othing was" in text or "othing changed" in text else (
        f"{text} Nothing was applied.")


BROKEN_BUTTON = refusal("That button is broken; nothing was applied.")


def payment_recorded(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The DM to the person who recorded a payment in the modal: what happened to it."""
    cur = ctx["currency"]
    amount = fmt.money(ctx["amount_minor"], cur)
    status = ctx["status"]
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], cur, fmt=fmt)}"
            for i in ctx["allocations"]]
    if status == "needs_review":
        head = (f":mag: Payment #{ctx['id']} of {amount} recorded. I was not sure where it "
                "belongs, so the AR channel has my suggestions.")
    elif status == "unapplied":
        head = (f":grey_question: Payment #{ctx['id']} of {amount} recorded, but no open "
                "invoice matches it; it stays as unapplied cash.")
    else:
        head = (f":white_check_mark: Payment #{ctx['id']} of {amount} recorded and "
                f"*{esc(payment_status(status))}*.")
    rows += [f"_Matched because_ {esc(t)}" for t in (ctx.get("matched_because") or [])[:3]]
    text = head + ("\n" + lines_text(rows) if rows else "")
    extra = []
    if ctx.get("unapplied_minor"):
        extra.append(f"Unapplied: {fmt.money(ctx['unapplied_minor'], cur)}")
    if ctx.get("write_off_minor"):
        extra.append(f"Written off: {fmt.money(ctx['write_off_minor'], cur)}")
    blocks = [section(text)] + ([context(" · ".join(extra))] if extra else [])
    return {"text": f"Payment #{ctx['id']} {payment_status(status)}", "blocks": render(blocks)}


# -- /o2c payment and /o2c rules ------------------------------------------------------------------
def payment_view(p: dict, *, usage: str, note: str | None = None,
                 fmt: Formats = ENGLISH) -> list[dict]:
    """One payment for a collector: what it is, where it went, why, and how to change that.
    `p`: id, amount_minor, currency, status, payer_name, reference, received_at,
    customer_name, allocations [{invoice, amount}], unapplied_minor, matched_because [..],
    suggestions (count)."""
    cur = p["currency"]
    blocks = [header(f"Payment #{p['id']} — {fmt.money(p['amount_minor'], cur)}")]
    if note:
        blocks.append(section(note))
    blocks.append(fields([
        ("Status", esc(payment_status(p["status"]))),
        ("Customer", esc(p.get("customer_name") or "—")),
        ("Payer", esc(p.get("payer_name") or "—")),
        ("Received", fmt_datetime(p.get("received_at"))),
        ("Reference", clip(esc(p.get("reference") or "—"), REFERENCE_SHOWN)),
        ("Unapplied", fmt.money(p.get("unapplied_minor", 0), cur)),
    ]))
    rows = [f"• {esc(i['invoice'])} — {_amount(i['amount'], cur, fmt=fmt)}"
            for i in p.get("allocations", [])[:20]]
    rows += [f"_Matched because_ {esc(t)}" for t in p.get("matched_because", [])[:3]]
    if p.get("suggestions"):
        rows.append(f"{p['suggestions']} suggestion(s) wait on the card in the AR channel.")
    if rows:
        blocks.append(section(lines_text(rows)))
    blocks.append(context(f"Collectors: `{esc(usage)}`"))
    return render(blocks)


_SOURCE_TEXT = {"suggestion": "applying a suggestion", "customer": "naming the customer",
                "correction": "correcting an application"}


def rules_view(rules: list[dict], total: int, *, usage: str, note: str | None = None
               ) -> list[dict]:
    """The rules cash application learned from people (admins). `rules`: id, customer,
    kind, shown, seen_on, taught_by, taught_at, source, payment_id, active, removed_by."""
    blocks = [header("What cash application learned")]
    if note:
        blocks.append(section(note))
    if not rules:
        blocks.append(section("Nothing learned yet. When a collector applies a suggestion, "
                              "names the customer of a payment or corrects one, the way that "
                              "customer paid is remembered here."))
    for r in rules[:40]:
        what = (f"pays from '{esc(r['shown'])}'" if r["kind"] == "payer_alias"
                else f"writes references like '{esc(r['shown'])}'")
        state = "" if r.get("active", True) else f" — removed by {_who(r.get('removed_by'))}"
        blocks.append(section(
            f"`#{r['id']}` *{esc(r['customer'])}* {what}\n"
            f"Taught by {_who(r['taught_by'])} {fmt_datetime(r.get('taught_at'))} by "
            f"{_SOURCE_TEXT.get(r.get('source'), esc(r.get('source')))}"
            + (f" (payment #{r['payment_id']})" if r.get("payment_id") else "") + state))
    shown = min(len(rules), 40)
    blocks.append(context(f"{shown} of {total} · Admins: `{esc(usage)}`"))
    return render(blocks)
