"""Integrations: outbound webhook subscriptions and their events and delivery log, inbound
provider events (Stripe, HubSpot) kept once by their id, "Pay now" links, refunds and
provider fees, and the CRM deals orders came from.

Secrets here are the signing secrets of our own outbound subscriptions (we sign with them, so
they must be readable; they are shown once, when the subscription is created, and never
listed). Provider credentials stay in the environment (SPEC §5.9).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, json_field, ts_field

# The outbound event types of SPEC §4, in one place.
EVENT_TYPES = (
    "order.created", "order.approved", "order.rejected", "order.shipped",
    "invoice.issued", "invoice.paid", "payment.received", "payment.applied",
    "dispute.opened", "dispute.resolved", "credit_note.issued", "customer.credit_hold",
    "revenue.period_closed",
)


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"  # events are delivered
    DISABLED = "disabled"  # kept failing: nothing new is queued, admins were told
    DELETED = "deleted"  # DELETE /webhooks/{id}: gone from the list; its log stays


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    events: list = json_field(list)  # event types (EVENT_TYPES)
    description: str | None = Field(default=None, max_length=500)
    secret: str = Field(max_length=100)  # "whsec_" + base64 (Standard Webhooks)
    # the secret a rotation replaced: it still signs, beside `secret`, until
    # `previous_secret_until` (the grace period), so receivers switch without downtime
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_until: datetime | None = ts_field()
    status: str = Field(default=SubscriptionStatus.ACTIVE, max_length=16, index=True)
    # since when every attempt failed (None after a success); disabled after long enough
    failing_since: datetime | None = ts_field()
    disabled_at: datetime | None = ts_field()
    disabled_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class WebhookEvent(SQLModel, table=True):
    """One outbound event, as every subscriber receives it: `uid` is its `webhook-id` (the
    same on every attempt and replay), `occurred_at` its `timestamp`."""

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=40)  # "msg_" + random
    type: str = Field(max_length=64, index=True)
    data: dict = json_field()
    # emitted once per natural key when the caller gives one (e.g. "invoice.paid:42")
    key: str | None = Field(default=None, unique=True, max_length=200)
    occurred_at: datetime = ts_field(nullable=False, default_now=True)


class WebhookDelivery(SQLModel, table=True):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="webhook_subscriptions.id")
    event_id: int = Field(foreign_key="webhook_events.id", index=True)
    outbox_id: int | None = Field(default=None)
    attempt: int = 1
    attempted_at: datetime = ts_field(nullable=False, default_now=True)
    ok: bool = False
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int = 0


class ProviderEventStatus(StrEnum):
    PROCESSED = "processed"  # it changed what it had to change
    IGNORED = "ignored"  # acknowledged, nothing to do (unknown type, not ours)
    WAITING = "waiting"  # needs something that has not arrived yet (a refund before its
    # payment); processed when it does
    FAILED = "failed"  # could not be applied (the detail says why; AR was told)


class ProviderEvent(SQLModel, table=True):
    """An inbound event from a provider, once per (provider, event id): a re-delivery finds
    it and changes nothing."""

    __tablename__ = "provider_events"
    __table_args__ = (sa.Index("ix_provider_events_waiting", "provider", "object_id",
                               "status"),)

    provider: str = Field(primary_key=True, max_length=16)  # "stripe", "hubspot"
    event_id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    # what it waits for; of a processed event, the object it was about (a Stripe dispute, a
    # HubSpot deal)
    object_id: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=16)
    detail: str | None = Field(default=None, max_length=500)
    payload: dict = json_field()  # kept while waiting (to process it later)
    received_at: datetime = ts_field(nullable=False, default_now=True)
    processed_at: datetime | None = ts_field()


class PaymentLink(SQLModel, table=True):
    """The stable "Pay now" link of an invoice (`/pay/<token>`), made when first needed.

    The link that goes into e-mails never changes; what it opens does. Each click looks at
    the open balance and reuses the provider's checkout session for it, or replaces the
    session when the balance changed (`generation` counts the sessions; the old one is
    expired at the provider so it can no longer be paid).

    The link's token is never stored: `token_hash` is the SHA-256 (hex) of the token its URL
    carries (derived from a server secret, `workflows.payment_links.token_for`), so a copy of
    the database opens no customer's page; `legacy_token_hash`, the hash of the random token
    a link made before 0030 carried, which still opens it."""

    __tablename__ = "payment_links"
    __table_args__ = (sa.Index("ix_payment_links_legacy_token_hash", "legacy_token_hash",
                               unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", unique=True)
    token_hash: str = Field(unique=True, max_length=64)
    legacy_token_hash: str | None = Field(default=None, max_length=64)
    generation: int = 0
    amount_minor: int | None = big_field(default=None, nullable=True)
    currency: str | None = Field(default=None, max_length=3)
    session_id: str | None = Field(default=None, max_length=255)  # Stripe cs_...
    session_url: str | None = Field(default=None, max_length=2000)
    expires_at: datetime | None = ts_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class Refund(SQLModel, table=True):
    """Money given back on a payment (e.g. a Stripe refund): what it reversed is in the
    payment's allocations (negative, method "refund") and unapplied credit."""

    __tablename__ = "refunds"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    external_id: str = Field(unique=True, max_length=255)
    amount_minor: int = big_field(gt=0)
    currency: str = Field(max_length=3)
    from_unapplied_minor: int = big_field(default=0)  # taken from unapplied credit
    value_date: date
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class PaymentFee(SQLModel, table=True):
    """What a payment provider kept from a payment (Stripe's fee): an expense of ours, not a
    short payment by the customer (the invoice is paid in full)."""

    __tablename__ = "payment_fees"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", index=True)
    provider: str = Field(max_length=16)
    external_id: str = Field(unique=True, max_length=255)  # Stripe txn_...
    amount_minor: int = big_field(ge=0)
    currency: str = Field(max_length=3)
    net_minor: int | None = big_field(default=None, nullable=True)  # what reaches the bank
    description: str | None = Field(default=None, max_length=500)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class CrmDeal(SQLModel, table=True):
    """A CRM deal that became an order (or was refused), once per deal."""

    __tablename__ = "crm_deals"
    __table_args__ = (sa.UniqueConstraint("provider", "deal_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)  # "hubspot"
    deal_id: str = Field(max_length=64)
    order_id: int | None = Field(default=None, foreign_key="orders.id", unique=True)
    status: str = Field(max_length=16)  # "imported", "refused"
    detail: str | None = Field(default=None, max_length=1000)
    created_at: datetime = ts_field(nullable=False, default_now=True)
