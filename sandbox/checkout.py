"""The sandbox's stand-in for Stripe's payment page (only with ``O2C_SANDBOX``; never Stripe).

With no Stripe key, an invoice's "Pay now" link (in the sandbox's AR channel copy of each
queued e-mail, and on the invoice card) leads, through the bot's own ``/pay/<token>`` page,
to ``/sandbox/checkout/<token>``. Paying there does what Stripe would do after a card
payment: it sends the bot a ``checkout.session.completed`` event, shaped as Stripe shapes it
and signed exactly as Stripe signs it (``Stripe-Signature: t=...,v1=...``, the official
library's ``WebhookSignature``, with the demo's random ``STRIPE_WEBHOOK_SECRET``), to the
bot's ``POST /webhooks/stripe`` over HTTP. The bot verifies it like any Stripe event, records
and applies the payment, and the collector sees it arrive in Slack.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC
from typing import Any

import httpx
import stripe

from models import money
from sandbox.workspace import ActionFailed
from workflows import payment_links
from workflows.errors import NotFound

API_VERSION = "2025-09-30.clover"


def checkout_info(deps: Any, token: str) -> dict:
    try:
        with deps.db.read_session() as session:
            link, invoice, customer = payment_links.by_token(session, token)
    except NotFound:
        raise ActionFailed(404, "no such payment link") from None
    due = payment_links.payable(  # what the link asks for today
        invoice, on=deps.clock.now().astimezone(UTC).date())
    return {"invoice": invoice.number, "customer": customer.name,
            "email": customer.billing_email, "currency": invoice.currency,
            "amount_minor": due, "amount": money.format_money(due, invoice.currency),
            "paid": due == 0, "link_id": link.id}


def checkout_session_completed(info: dict, created: int) -> dict:
    """The event Stripe sends when a Checkout Session for `info` is paid by card."""
    payment_intent = f"pi_sandbox_{secrets.token_hex(12)}"
    amount = payment_links.to_stripe(info["amount_minor"], info["currency"])  # its units
    session = {
        "id": f"cs_test_sandbox_{secrets.token_hex(16)}", "object": "checkout.session",
        "amount_subtotal": amount, "amount_total": amount,
        "client_reference_id": info["invoice"], "created": created,
        "currency": info["currency"].lower(), "customer": None,
        "customer_details": {"email": info["email"], "name": info["customer"],
                             "tax_exempt": "none", "tax_ids": []},
        "customer_email": info["email"], "livemode": False,
        # what the bot gives Stripe: the link's id, never its token
        "metadata": {"o2c_invoice": info["invoice"], "o2c_link_id": str(info["link_id"]),
                     "o2c_generation": "1"},
        "mode": "payment", "payment_intent": payment_intent, "payment_method_types": ["card"],
        "payment_status": "paid", "status": "complete", "url": None}
    return {"id": f"evt_sandbox_{secrets.token_hex(12)}", "object": "event",
            "api_version": API_VERSION, "created": created, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "type": "checkout.session.completed", "data": {"object": session}}


def pay(deps: Any, origin: str, token: str) -> dict:
    """Pay the invoice's balance by "card": the signed webhook goes to the bot over HTTP."""
    secret = deps.settings.secret("stripe_webhook_secret")
    if not secret:
        raise ActionFailed(409, "STRIPE_WEBHOOK_SECRET is not set (`o2c demo` sets one)")
    info = checkout_info(deps, token)
    if info["paid"]:
        raise ActionFailed(409, f"invoice {info['invoice']} has nothing to pay by card (paid, "
                           "or in question)")
    event = checkout_session_completed(info, int(deps.clock.now().timestamp()))
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret)
    answer = httpx.post(f"{origin}/webhooks/stripe", content=body.encode(), timeout=30,
                        headers={"Stripe-Signature": header,
                                 "Content-Type": "application/json; charset=utf-8",
                                 "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
    if answer.status_code != 200:
        raise ActionFailed(502, f"the bot answered {answer.status_code}: {answer.text[:200]}")
    return {"ok": True, "status": answer.json().get("status"), "invoice": info["invoice"],
            "amount": info["amount"], "done_url": f"/pay/{token}/done"}
