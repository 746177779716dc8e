"""Notifications of the integrations: outbound webhooks, Stripe, HubSpot. Contexts are frozen
snapshots written by workflows (`workflows.webhooks`, `workflows.stripe_events`,
`workflows.crm`); every outside text is escaped."""

from __future__ import annotations

from blocks import ids
from blocks.common import actions, context, render, section
from blocks.common import plain_text as plain_object
from blocks.i18n import ENGLISH, Formats
from blocks.text import clip, esc
from models import money


def link_button(text: str, url: str) -> dict:
    """A button that opens a URL (Slack still sends the click; `handlers.actions` only acks
    it)."""
    return {"type": "button", "text": plain_object(text, 75), "action_id": ids.OPEN_LINK,
            "url": url[:3000], "value": "link"}


def _amount(amount: str, currency: str, *, fmt: Formats = ENGLISH) -> str:
    """A decimal string of a snapshot (`"1451.05"`) as money is shown (`USD 1,451.05`)."""
    try:
        return fmt.money(money.to_minor(amount, currency), currency)
    except (ValueError, ArithmeticError, TypeError):
        return esc(str(amount))


def webhook_disabled(ctx: dict) -> dict:
    url = esc(clip(ctx.get("url") or "", 300))
    text = f"Webhook subscription #{ctx['subscription_id']} was disabled"
    blocks = [section(f":no_entry: Outbound webhook *#{ctx['subscription_id']}* "
                      f"(`{url}`) kept failing and was *disabled*: nothing more is sent to "
                      f"it.\n> {esc(clip(ctx.get('reason') or '', 500))}"),
              context("Once the receiver is fixed: `o2c webhooks enable "
                      f"{ctx['subscription_id']}`, then `o2c webhooks replay "
                      f"{ctx['subscription_id']} --failed` sends what it missed (same "
                      "webhook-id).")]
    return {"text": text, "blocks": render(blocks)}


def provider_payment(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A payment that arrived through a payment provider (Stripe), as applied."""
    cur = ctx["currency"]
    who = esc(ctx.get("customer_name") or "A customer")
    invoice = ctx.get("invoice")
    applied = ctx.get("applied") or []
    paid = ", ".join(f"*{esc(a['invoice'])}* {_amount(a['amount'], cur, fmt=fmt)}" for a in applied)
    text = (f"{who} paid {fmt.money(ctx['amount_minor'], cur)} through "
            f"{esc(ctx['provider_name'])}")
    lines = [f":credit_card: {who} paid *{fmt.money(ctx['amount_minor'], cur)}* through "
             f"{esc(ctx['provider_name'])}" + (f" for *{esc(invoice)}*" if invoice else "")
             + "."]
    if paid:
        lines.append(f"Applied: {paid}.")
    if ctx.get("unapplied_minor"):
        lines.append(f"Unapplied credit: {fmt.money(ctx['unapplied_minor'], cur)}.")
    if ctx.get("note"):
        lines.append(esc(ctx["note"]))
    blocks = [section("\n".join(lines)),
              context(f"Payment #{ctx['payment_id']} · {esc(ctx.get('external_id') or '')}")]
    return {"text": text, "blocks": render(blocks)}


def provider_refund(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    cur = ctx["currency"]
    reopened = ", ".join(f"*{esc(r['invoice'])}* {_amount(r['amount'], cur, fmt=fmt)}"
                         for r in ctx.get("reopened") or [])
    text = f"Refund of {fmt.money(ctx['amount_minor'], cur)} on payment #{ctx['payment_id']}"
    lines = [f":leftwards_arrow_with_hook: {esc(ctx['provider_name'])} refunded "
             f"*{fmt.money(ctx['amount_minor'], cur)}* of payment #{ctx['payment_id']}"
             f" ({esc(ctx.get('customer_name') or 'unknown customer')})."]
    if reopened:
        lines.append(f"Reopened: {reopened}.")
    if ctx.get("from_unapplied_minor"):
        lines.append(f"Taken from unapplied credit: "
                     f"{fmt.money(ctx['from_unapplied_minor'], cur)}.")
    return {"text": text, "blocks": render([section("\n".join(lines))])}


def provider_dispute(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A card payment disputed by the customer's bank (a chargeback)."""
    cur = ctx["currency"]
    invoice = esc(ctx.get("invoice") or "no invoice known")
    text = (f"Chargeback: {fmt.money(ctx['amount_minor'], cur)} disputed on payment "
            f"#{ctx.get('payment_id') or '?'}")
    blocks = [section(f":rotating_light: *Chargeback* — the customer's bank disputes "
                      f"*{fmt.money(ctx['amount_minor'], cur)}* of a "
                      f"{esc(ctx['provider_name'])} payment "
                      f"({esc(ctx.get('customer_name') or 'unknown customer')}, {invoice}).\n"
                      f"Reason: *{esc(ctx.get('reason') or 'not given')}*"
                      + (f" · evidence due {esc(ctx['due_by'])}" if ctx.get("due_by") else "")),
              context(f"{esc(ctx.get('dispute_id') or '')} · answer it in the "
                      f"{esc(ctx['provider_name'])} dashboard · "
                      + _chargeback_effect(ctx, fmt=fmt))]
    return {"text": text, "blocks": render(blocks)}


def _chargeback_effect(ctx: dict, *, fmt: Formats = ENGLISH) -> str:
    """What the chargeback did to the books."""
    if ctx.get("inquiry"):
        return "an inquiry: nothing was taken back yet, the payment stays applied"
    held = ctx.get("held") or []
    if not held:
        return "nothing of it is on an open invoice here; the payment was not changed"
    cur = ctx["currency"]
    parts = [f"{esc(h['invoice'])} open again for {fmt.money(h['amount_minor'], cur)}"
             + (f", held in dispute #{h['dispute']}" if h.get("dispute") else
                ", already in dispute") for h in held[:10]]
    return ("the money was taken back: " + "; ".join(parts)
            + " — left out of dunning until it is decided")


def provider_dispute_closed(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A chargeback decided: won (the money is back) or lost (a person decides the rest)."""
    cur = ctx["currency"]
    amount = fmt.money(ctx["amount_minor"], cur)
    held = ", ".join(f"#{d}" for d in ctx.get("disputes") or [])
    if ctx.get("status") == "won":
        text = f"Chargeback won: {amount} is back"
        line = (f":white_check_mark: *Chargeback won* — {esc(ctx['provider_name'])} returned "
                f"*{amount}* ({esc(ctx.get('customer_name') or 'unknown customer')}); it is "
                f"recorded as payment #{ctx.get('payment_back') or '?'} on the invoices it "
                "had reopened, and their disputes are closed.")
    else:
        text = f"Chargeback lost: {amount} stays with the customer"
        line = (f":x: *Chargeback lost* — the customer's bank keeps *{amount}* "
                f"({esc(ctx.get('customer_name') or 'unknown customer')}). "
                + (f"Decide dispute {held}: accept it (a credit note) or reject it (collect "
                   "the invoice again)." if held else "No dispute is open for it any more."))
    return {"text": text, "blocks": render([section(line),
                                            context(esc(ctx.get("dispute_id") or ""))])}


def crm_deal_refused(ctx: dict) -> dict:
    """A won CRM deal that could not become an order (unknown customer, SKU, ...)."""
    text = f"HubSpot deal {esc(ctx['deal_id'])} could not become an order"
    blocks = [section(f":warning: HubSpot deal *{esc(ctx.get('deal_name') or ctx['deal_id'])}* "
                      f"(`{esc(ctx['deal_id'])}`) was won but could not become an order:\n"
                      f"> {esc(clip(ctx.get('reason') or '', 1500))}"),
              context("Fix the deal (or the customer / product data) in HubSpot and move it "
                      "to the won stage again, or enter the order with `/o2c new`.")]
    return {"text": text, "blocks": render(blocks)}


def pay_now_actions(url: str | None) -> list[dict]:
    """The "Pay now" button of an invoice card, when there is a link."""
    return [actions(link_button("Pay now", url))] if url else []
