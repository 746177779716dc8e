"""Stripe objects and events shaped as Stripe documents them (API reference: Event, Checkout
Session, PaymentIntent, Charge, Dispute, Balance Transaction), trimmed to what matters, and
signed with Stripe's own algorithm (the official library's `WebhookSignature`)."""

from __future__ import annotations

import json
import secrets

import stripe

from models.base import utcnow

WEBHOOK_SECRET = "whsec_test_" + "s3cret0123456789abcdef"
API_KEY = "sk_test_o2c_" + "0123456789"
API = "https://api.stripe.com"


def now_ts() -> int:
    """Now, as Stripe's Unix seconds (the recording clock: time_machine moves it in tests)."""
    return int(utcnow().timestamp())


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def event(event_type: str, obj: dict, *, created: int | None = None,
          event_id: str | None = None) -> dict:
    return {"id": event_id or _id("evt"), "object": "event", "api_version": "2025-09-30.clover",
            "created": created or now_ts(), "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "type": event_type, "data": {"object": obj}}


def checkout_session(*, invoice: str, amount: int, currency: str = "usd",
                     payment_intent: str | None = None, status: str = "complete",
                     payment_status: str = "paid", session_id: str | None = None,
                     name: str = "Globex Corporation", url: str | None = None) -> dict:
    sid = session_id or _id("cs_test")
    # as the bot makes them: the link by its id, never its token (`old_style_session`: before)
    metadata = {"o2c_invoice": invoice, "o2c_link_id": "1", "o2c_generation": "1"}
    return {"id": sid, "object": "checkout.session", "amount_subtotal": amount,
            "amount_total": amount, "cancel_url": "https://o2c.example/pay/back",
            "client_reference_id": invoice, "created": now_ts() - 60,
            "currency": currency, "customer": None,
            "customer_details": {"email": "ap@globex.example", "name": name,
                                 "tax_exempt": "none", "tax_ids": []},
            "customer_email": "ap@globex.example", "expires_at": now_ts() + 3600,
            "livemode": False, "metadata": metadata, "mode": "payment",
            "payment_intent": payment_intent if status == "complete" else None,
            "payment_method_types": ["card"], "payment_status": payment_status,
            "status": status, "success_url": "https://o2c.example/pay/done",
            "url": url if status == "open" else None}


def old_style_session(token: str, **given) -> dict:
    """A session made before the pay link's token stopped going to Stripe: the token in its
    metadata (`o2c_link`) and return URLs."""
    made = checkout_session(**given)
    made["metadata"] = {"o2c_invoice": given["invoice"], "o2c_link": token,
                        "o2c_generation": "1"}
    made["success_url"] = f"https://o2c.example/pay/{token}/done"
    made["cancel_url"] = f"https://o2c.example/pay/{token}"
    return made


def payment_intent(*, invoice: str | None, amount: int, currency: str = "usd",
                   pi_id: str | None = None, charge: dict | str | None = None) -> dict:
    return {"id": pi_id or _id("pi"), "object": "payment_intent", "amount": amount,
            "amount_capturable": 0, "amount_received": amount, "currency": currency,
            "created": now_ts() - 60, "livemode": False,
            "latest_charge": charge if charge is not None else _id("ch"),
            "metadata": {"o2c_invoice": invoice} if invoice else {},
            "payment_method_types": ["card"], "status": "succeeded"}


def balance_transaction(*, amount: int, fee: int, currency: str = "usd",
                        source: str | None = None) -> dict:
    return {"id": _id("txn"), "object": "balance_transaction", "amount": amount,
            "available_on": now_ts() + 2 * 86400, "created": now_ts(),
            "currency": currency, "description": None, "fee": fee,
            "fee_details": [{"amount": fee, "application": None, "currency": currency,
                             "description": "Stripe processing fees", "type": "stripe_fee"}],
            "net": amount - fee, "reporting_category": "charge", "source": source,
            "status": "pending", "type": "charge"}


def charge(*, payment_intent: str, amount: int, amount_refunded: int = 0,
           currency: str = "usd", charge_id: str | None = None,
           balance_transaction: dict | str | None = None) -> dict:
    return {"id": charge_id or _id("ch"), "object": "charge", "amount": amount,
            "amount_captured": amount, "amount_refunded": amount_refunded,
            "balance_transaction": balance_transaction, "captured": True,
            "created": now_ts() - 60, "currency": currency, "disputed": False,
            "livemode": False, "metadata": {}, "paid": True, "payment_intent": payment_intent,
            "refunded": amount_refunded == amount, "status": "succeeded"}


def dispute(*, payment_intent: str, charge_id: str, amount: int, currency: str = "usd",
            reason: str = "product_not_received", status: str = "needs_response",
            dispute_id: str | None = None, balance_transactions: list[int] | None = None
            ) -> dict:
    """A dispute; `balance_transactions`, when given, the amounts Stripe moved for it (a
    withdrawal negative, a reinstatement positive), as its list of balance transactions."""
    listed = {} if balance_transactions is None else {"balance_transactions": [
        {"id": _id("txn"), "object": "balance_transaction", "amount": moved,
         "currency": currency, "fee": 1500 if moved < 0 else -1500,
         "net": moved - 1500 if moved < 0 else moved + 1500,
         "description": ("Chargeback withdrawal" if moved < 0 else "Chargeback reversal")
         + f" for {charge_id}", "reporting_category": "dispute" if moved < 0
         else "dispute_reversal", "type": "adjustment", "status": "pending"}
        for moved in balance_transactions]}
    return {**listed, "id": dispute_id or _id("dp"), "object": "dispute", "amount": amount,
            "charge": charge_id,
            "created": now_ts(), "currency": currency,
            "evidence_details": {"due_by": now_ts() + 7 * 86400,
                                 "has_evidence": False, "past_due": False,
                                 "submission_count": 0},
            "is_charge_refundable": False, "livemode": False, "metadata": {},
            "payment_intent": payment_intent, "reason": reason, "status": status}


def signed(payload: dict, *, secret: str = WEBHOOK_SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Stripe sends: `Stripe-Signature: t=...,v1=...`."""
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp if timestamp is not None else now_ts())
    return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}
