"""Stripe, through its official library: Checkout Sessions behind the "Pay now" links, the
fee of each payment, and expiring a session whose amount went stale.

`StripeGateway` is the only place that calls Stripe's API (the `stripe` library, which sends
its requests with `requests`; tests mock that layer with `responses`). Every create carries an
idempotency key derived from the link and its generation (`workflows.payment_links`), so two
clicks at once, or a retried click after a timeout, make one session. Nothing sent to Stripe
carries the link's token (the key of the customer's page): not the metadata (the link's id),
not the idempotency key (the token's hash), not the return URLs (`/pay/done`, `/pay/back`):
Stripe keeps and shows all of them to whoever reads the account.

`StripeTransport` (outbox kind "stripe", delivered by the integrations worker):
* `fee.fetch`: the payment's charge and its balance transaction (`expand`), whose `fee` is
  recorded as the payment's fee (`workflows.stripe_events.record_fee`); while Stripe has not
  attached the balance transaction yet, retried;
* `session.expire`: the checkout session of an old balance is expired (one already completed
  or expired is fine: nothing to do).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import stripe

from bot.db import Database
from bot.outbox import Permanent, Retry
from models import OutboxMessage
from workflows import payment_links, stripe_events

if TYPE_CHECKING:
    from bot.outbox import OutboxWorker

log = logging.getLogger("o2c.stripe")

RETRY_FOR = timedelta(days=1)


class StripeGateway:
    def __init__(self, api_key: str, *, client: stripe.StripeClient | None = None) -> None:
        # the outbox retries (with the row's claim); the library itself does not
        self.client = client or stripe.StripeClient(api_key, max_network_retries=0)

    def __repr__(self) -> str:  # never the key
        return "StripeGateway()"

    def create_session(self, *, link_id: int, generation: int, idempotency_key: str,
                       invoice_number: str, amount_minor: int, currency: str,
                       expires_at: datetime, customer_email: str | None, success_url: str,
                       cancel_url: str) -> tuple[str, str]:
        """A Checkout Session for one invoice's balance (our minor units, sent in Stripe's:
        `payment_links.to_stripe`); (id, url). `idempotency_key`: the plan's
        (`payment_links.Checkout.idempotency_key`, no token in it)."""
        metadata = {"o2c_invoice": invoice_number, "o2c_link_id": str(link_id),
                    "o2c_generation": str(generation)}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": currency.lower(),
                "unit_amount": payment_links.to_stripe(amount_minor, currency),
                "product_data": {"name": f"Invoice {invoice_number}"}}}],
            "client_reference_id": invoice_number,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata,
                                    "description": f"Invoice {invoice_number}"},
            "expires_at": int(expires_at.timestamp()),
            "success_url": success_url, "cancel_url": cancel_url,
        }
        if customer_email:
            params["customer_email"] = customer_email
        session = self.client.v1.checkout.sessions.create(
            params=params, options={"idempotency_key": idempotency_key})
        return session.id, session.url

    def session_status(self, session_id: str) -> str:
        """"open", "complete" or "expired"."""
        return self.client.v1.checkout.sessions.retrieve(session_id).status

    def expire_session(self, session_id: str) -> None:
        self.client.v1.checkout.sessions.expire(session_id)

    def fee_of(self, payment_intent: str) -> dict | None:
        """The balance transaction of the PaymentIntent's charge (`id`, `fee`, `net`,
        `currency`, `fee_details`), or None while Stripe has not made it yet."""
        intent = self.client.v1.payment_intents.retrieve(
            payment_intent, params={"expand": ["latest_charge.balance_transaction"]})
        charge = intent.latest_charge
        if charge is None or isinstance(charge, str):
            return None
        txn = charge.balance_transaction
        if txn is None or isinstance(txn, str):
            return None
        return {"id": txn.id, "fee": txn.fee, "net": txn.net, "currency": txn.currency,
                "description": ", ".join(d.description for d in (txn.fee_details or [])
                                         if getattr(d, "description", None)) or None}


def classify(exc: stripe.StripeError) -> Exception:
    """A Stripe error as the outbox's Retry (network, 429, 5xx) or Permanent (the rest)."""
    status = getattr(exc, "http_status", None)
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or \
            (status is not None and status >= 500):
        return Retry(30.0, f"stripe: {type(exc).__name__} {status or ''}".strip())
    return Permanent(f"stripe: {type(exc).__name__}: {exc.user_message or exc}"[:500])


class StripeTransport:
    kind = stripe_events.PROVIDER
    retry_for = RETRY_FOR

    def __init__(self, db: Database, gateway: StripeGateway) -> None:
        self.db = db
        self.gateway = gateway

    def backoff(self, attempts: int) -> float:
        return min(30.0 * (2 ** max(attempts - 1, 0)), 3600.0)

    def send(self, row: OutboxMessage, worker: OutboxWorker) -> dict:
        payload = row.payload or {}
        try:
            if row.method == "session.expire":
                return self._expire(payload["session_id"])
            if row.method == "fee.fetch":
                return self._fee(payload)
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        raise Permanent(f"unknown stripe outbox method {row.method}")

    def _expire(self, session_id: str) -> dict:
        try:
            self.gateway.expire_session(session_id)
        except stripe.InvalidRequestError as exc:  # completed or expired already
            return {"ok": True, "note": str(exc.user_message or exc)[:200]}
        return {"ok": True, "expired": session_id}

    def _fee(self, payload: dict) -> dict:
        txn = self.gateway.fee_of(payload["payment_intent"])
        if txn is None:
            raise Retry(60.0, "stripe: the charge has no balance transaction yet")
        fee = payment_links.from_stripe(int(txn["fee"]), txn["currency"])
        net = payment_links.from_stripe(int(txn["net"]), txn["currency"]) \
            if txn.get("net") is not None else None
        if fee is None:
            raise Permanent(f"stripe: a fee of {txn['fee']} {txn['currency']} in fractions "
                            "of its minor unit")
        with self.db.transaction() as session:
            recorded = stripe_events.record_fee(
                session, payment_id=payload["payment_id"], external_id=txn["id"],
                fee_minor=fee, currency=txn["currency"], net_minor=net,
                description=txn.get("description"))
        return {"ok": True, "fee": txn["fee"], "balance_transaction": txn["id"],
                "recorded": recorded}
