"""Outbound webhooks: subscriptions, events, and what the delivery log records.

ERPs, CRMs and data teams subscribe a URL to event types (SPEC §4, `models.EVENT_TYPES`)
through `/api/v1/webhooks`. A workflow that changes state calls `emit(session, type, data)` in
its own transaction: when at least one active subscription wants that type, one
`webhook_events` row is written (its `uid` is the `webhook-id` every attempt and replay
carries) and one outbox row per subscription (transport "webhook"), so the event commits with
the change or not at all (SPEC §5.4), and a crash delays a delivery but never loses it. With
no subscriber nothing at all is written (one cached query per transaction).

Delivery (`bot.webhooks_out`): the body `{"type", "timestamp", "data"}` (`body_of`), signed
per the Standard Webhooks specification with the subscription's secret, POSTed with httpx by
the outbox; any answer but 2xx is retried with exponential backoff for up to three days, the
same `webhook-id` every time. Every attempt is logged (`webhook_deliveries`,
`GET /webhooks/{id}/deliveries`). An endpoint that has failed every attempt for
`DISABLE_AFTER` is disabled (nothing more is queued for it; what was queued fails) and the
admins are told in the alerts channel and by DM. `o2c webhooks replay` queues an event again.

Where events come from: orders (`workflows.orders`: created, and `transition` for approved,
rejected, shipped), invoices (`workflows.invoicing`: issued, paid when the balance reaches 0
with money, and `issue_credit_note` for credit_note.issued), payments
(`workflows.cash_application`: received, applied), credit hold (`workflows.credit_hold`).
Disputes (opened, resolved) and revenue closes (revenue.period_closed) call `emit` from their
own workflows, with data builders like the ones here.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    EVENT_TYPES,
    CreditNote,
    Customer,
    Invoice,
    Order,
    OutboxMessage,
    OutboxStatus,
    Payment,
    Role,
    SubscriptionStatus,
    UserRole,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    invoice_status,
    money,
)
from workflows import audit, destinations, outbox
from workflows.errors import Conflict, NotFound, ValidationFailed

TRANSPORT = "webhook"
RETRY_FOR = timedelta(days=3)  # a delivery is retried this long after it was queued
DISABLE_AFTER = timedelta(days=3)  # an endpoint failing every attempt this long is disabled
MAX_SUBSCRIPTIONS = 100
MAX_URL = 2000
_CACHE = "webhooks.subscriptions"
REPLAYED = outbox.REPLAYED  # last_error of a failed row `replay` queued again


# -- subscriptions -------------------------------------------------------------------------------
def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str, *, allow_private: bool = False, resolve: bool = True) -> str:
    """An absolute https URL (http only to this computer: a local receiver or a tunnel), no
    credentials in it (they would show in the list and the logs), no fragment, and a public
    destination (`workflows.destinations`: neither its host nor, when it resolves now, any
    of its addresses private) unless `allow_private` (O2C_WEBHOOKS_ALLOW_PRIVATE). A name that
    does not resolve yet is accepted: every delivery checks again. `resolve=False`: the name
    is not looked up (the caller did, before its transaction: a lookup may take seconds)."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL:
        raise ValidationFailed.of("url", f"must be an https URL of at most {MAX_URL} "
                                  "characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationFailed.of("url", "must be an absolute https:// URL")
    if parts.username or parts.password:
        raise ValidationFailed.of("url", "must not carry a user name or password; the "
                                  "signature authenticates every delivery")
    if parts.fragment:
        raise ValidationFailed.of("url", "must not have a #fragment")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationFailed.of("url", "must not contain spaces or control characters")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationFailed.of("url", "has a port that is not a number from 0 to "
                                  "65535") from None
    try:
        if not allow_private:
            destinations.check_host(parts.hostname)
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValidationFailed.of("url", "must use https (http only for localhost)")
        if resolve and not allow_private:
            destinations.checked(parts.hostname, port, allow_private=False,
                                 timeout=destinations.REGISTRATION_TIMEOUT)
    except destinations.Refused as exc:
        raise ValidationFailed.of("url", str(exc)) from None
    except destinations.Unresolved:
        pass  # not (yet) in DNS: each delivery resolves it and checks again
    return url


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    address = destinations.literal(host)
    return address is not None and address.is_loopback


def check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValidationFailed.of("events", f"name at least one of: {', '.join(EVENT_TYPES)}")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed.of("events", f"unknown event type(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(events))


def subscribe(session: Session, *, url: str, events: list[str], actor: str,
              description: str | None = None, allow_private: bool = False,
              resolve: bool = True) -> WebhookSubscription:
    """A new active subscription; its `secret` is for the creator's eyes only (answer once).
    `allow_private`: the setting O2C_WEBHOOKS_ALLOW_PRIVATE; `resolve=False`: the caller
    checked the URL's addresses already (see `check_url`)."""
    url = check_url(url, allow_private=allow_private, resolve=resolve)
    events = check_events(events)
    live = session.exec(select(sa.func.count()).select_from(WebhookSubscription).where(
        WebhookSubscription.status != SubscriptionStatus.DELETED)).one()
    if live >= MAX_SUBSCRIPTIONS:
        raise Conflict(f"at most {MAX_SUBSCRIPTIONS} webhook subscriptions; delete one first")
    row = WebhookSubscription(url=url, events=events, description=description,
                              secret=new_secret())
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="webhook.subscribed", entity_type="webhook",
                 entity_id=row.id, to_state=row.status, url=url, events=events)
    session.info.pop(_CACHE, None)
    return row


def rotate_secret(session: Session, *, subscription_id: int, actor: str, now: datetime,
                  grace: timedelta) -> WebhookSubscription:
    """A new signing secret (for the caller's eyes only: answer it once, like `subscribe`);
    the one it replaces keeps signing beside it until `now + grace`, so each delivery carries
    both signatures meanwhile (Standard Webhooks' zero-downtime rotation) and a receiver
    verifies with either. Rotating again within the grace period replaces the older one: only
    the secret replaced last stays. Audited (never the secrets)."""
    row = get_subscription(session, subscription_id)
    until = now + grace
    row.previous_secret, row.previous_secret_until = row.secret, until
    row.secret = new_secret()
    session.add(row)
    audit.record(session, actor=actor, action="webhook.secret_rotated", entity_type="webhook",
                 entity_id=row.id, at=now,
                 previous_valid_until=until.isoformat().replace("+00:00", "Z"),
                 grace_hours=grace.total_seconds() / 3600)
    return row


def signing_secrets(row: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets a delivery at `now` is signed with: the current one, and the one a
    rotation replaced while its grace period lasts."""
    live = row.previous_secret and row.previous_secret_until is not None \
        and now < row.previous_secret_until
    return [row.secret, row.previous_secret] if live else [row.secret]


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    row = session.get(WebhookSubscription, subscription_id)
    if row is None or row.status == SubscriptionStatus.DELETED:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return row


def subscriptions(session: Session) -> list[WebhookSubscription]:
    return list(session.exec(select(WebhookSubscription).where(
        WebhookSubscription.status != SubscriptionStatus.DELETED)
        .order_by(WebhookSubscription.id)))


def delete_subscription(session: Session, *, subscription_id: int, actor: str) -> None:
    """Gone from the list; nothing more is delivered to it (what was queued fails with the
    reason); its delivery log stays."""
    row = get_subscription(session, subscription_id)
    before = row.status
    row.status = SubscriptionStatus.DELETED
    session.add(row)
    _fail_queued(session, row.id, "the subscription was deleted")
    audit.record(session, actor=actor, action="webhook.deleted", entity_type="webhook",
                 entity_id=row.id, from_state=before, to_state=row.status)
    session.info.pop(_CACHE, None)


def enable_subscription(session: Session, *, subscription_id: int, actor: str) -> bool:
    """Switch a disabled subscription back on (after the receiver was fixed); True when it
    changed. What failed meanwhile can be sent again with `replay`."""
    row = get_subscription(session, subscription_id)
    if row.status == SubscriptionStatus.ACTIVE:
        return False
    row.status, row.failing_since, row.disabled_at = SubscriptionStatus.ACTIVE, None, None
    session.add(row)
    audit.record(session, actor=actor, action="webhook.enabled", entity_type="webhook",
                 entity_id=row.id, from_state=SubscriptionStatus.DISABLED,
                 to_state=SubscriptionStatus.ACTIVE)
    session.info.pop(_CACHE, None)
    return True


def deliveries(session: Session, subscription_id: int, *, limit: int = 100,
               before_id: int | None = None) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """The delivery log of a subscription, newest first."""
    get_subscription(session, subscription_id)
    query = (select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.subscription_id == subscription_id)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(session.exec(query).all())


# -- events --------------------------------------------------------------------------------------
def _wanting(session: Session, event_type: str) -> list[int]:
    """Active subscriptions that want `event_type`, read once per transaction."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is None or cached[0] is not transaction:
        rows = session.execute(sa.select(WebhookSubscription.__table__.c.id,
                                         WebhookSubscription.__table__.c.events).where(
            WebhookSubscription.__table__.c.status == SubscriptionStatus.ACTIVE)).all()
        cached = (transaction, [(sid, set(events or [])) for sid, events in rows])
        session.info[_CACHE] = cached
    return [sid for sid, events in cached[1] if event_type in events]


def wanted(session: Session, *event_types: str) -> bool:
    """Whether `emit` of any of `event_types` would write anything (a subscription wants it,
    or an order came from a CRM deal): batch writers ask once instead of building each
    event's record (read once per transaction)."""
    from workflows import crm

    return any(_wanting(session, t) for t in event_types) or crm.any_linked(session)


def emit(session: Session, event_type: str, data: dict | Callable[[], dict], *,
         key: str | None = None, at: datetime | None = None) -> WebhookEvent | None:
    """Queue an outbound event in the caller's transaction (see the module docstring).

    `data`: the event's JSON-serialisable data (use the builders below), or a function
    returning it, called only when someone wants the event (no serialisation on hot paths
    without subscribers). `key`: a natural key to emit once ever (e.g.
    `invoice.paid:<id>:<paid_at>`): a second emit with it is a no-op. `at`: when it happened
    (the body's `timestamp`; default: now, the recording time). Returns the event, or None
    when nobody subscribed (nothing is written) or it was emitted before."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    from workflows import crm  # the CRM connector follows the same events

    targets = _wanting(session, event_type)
    linked = crm.any_linked(session)
    if not targets and not linked:
        return None
    if callable(data):
        data = data()
    if linked:
        crm.on_event(session, event_type, data)
    if not targets:
        return None
    table = WebhookEvent.__table__
    if key is not None and session.execute(
            sa.select(table.c.id).where(table.c.key == key)).first() is not None:
        return None
    event = WebhookEvent(uid="msg_" + secrets.token_urlsafe(18), type=event_type, data=data,
                         key=key, **({"occurred_at": at} if at is not None else {}))
    session.add(event)
    session.flush()
    for subscription_id in targets:
        _queue(session, subscription_id, event.id, f"webhook:{event.id}:{subscription_id}")
    return event


def _queue(session: Session, subscription_id: int, event_id: int,
           dedupe_key: str) -> OutboxMessage:
    return outbox._add(session, transport=TRANSPORT, method="POST", dedupe_key=dedupe_key,
                       payload={"subscription_id": subscription_id, "event_id": event_id})


def body_of(event: WebhookEvent) -> bytes:
    """The exact bytes every attempt sends (and signs): `{"type", "timestamp", "data"}`."""
    import json

    when = event.occurred_at
    stamp = when.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event.type, "timestamp": stamp, "data": event.data},
                      separators=(",", ":"), sort_keys=False, ensure_ascii=False,
                      default=str).encode()


def replay(session: Session, *, subscription_id: int, event_ids: list[int] | None = None,
           failed: bool = False, since: datetime | None = None, actor: str) -> int:
    """Queue events again for one subscription (the same `webhook-id` as before): the events
    named, or every event it failed to get (`failed`), or every event it was sent since a
    moment. Returns how many were queued."""
    row = get_subscription(session, subscription_id)
    if row.status != SubscriptionStatus.ACTIVE:
        raise Conflict(f"webhook subscription {subscription_id} is {row.status}; enable it "
                       "first (o2c webhooks enable)")
    ob = OutboxMessage.__table__
    queued = sa.select(ob.c.payload).where(ob.c.transport == TRANSPORT)
    # a failed row replayed before has its new row already (delivered, or failed itself):
    # `failed` replays each failure once, not again on every later replay
    not_replayed = sa.or_(ob.c.last_error.is_(None), ob.c.last_error != REPLAYED)
    ids: list[int] = []
    if event_ids:
        found = session.exec(select(WebhookEvent.id).where(
            WebhookEvent.id.in_(event_ids))).all()
        missing = sorted(set(event_ids) - set(found))
        if missing:
            raise NotFound(f"no webhook event(s) {', '.join(map(str, missing))}")
        ids = sorted(found)
    else:
        if failed:
            rows = session.execute(queued.where(ob.c.status == OutboxStatus.FAILED,
                                                not_replayed)).all()
        else:
            rows = session.execute(queued.where(ob.c.created_at >= since)).all() \
                if since is not None else []
        ids = sorted({p["event_id"] for (p,) in rows
                      if (p or {}).get("subscription_id") == subscription_id})
    count = 0
    for event_id in ids:
        n = session.execute(sa.select(sa.func.count()).select_from(ob).where(
            ob.c.dedupe_key.like(f"webhook:{event_id}:{subscription_id}%"))).scalar()
        _queue(session, subscription_id, event_id,
               f"webhook:{event_id}:{subscription_id}:replay{n}")
        count += 1
    if failed:  # those now have a new row each: the old ones are done with
        for (row_id, payload) in session.execute(sa.select(ob.c.id, ob.c.payload).where(
                ob.c.transport == TRANSPORT, ob.c.status == OutboxStatus.FAILED,
                not_replayed)).all():
            if (payload or {}).get("subscription_id") == subscription_id:
                session.execute(sa.update(ob).where(ob.c.id == row_id).values(
                    last_error=REPLAYED))
    audit.record(session, actor=actor, action="webhook.replayed", entity_type="webhook",
                 entity_id=subscription_id, events=ids[:200], count=count)
    return count


# -- the delivery log and an endpoint's health (the outbox worker calls these) -----------------
def record_attempt(session: Session, *, subscription_id: int, event_id: int, outbox_id: int,
                   attempt: int, at: datetime, ok: bool, status_code: int | None,
                   error: str | None, duration_ms: int) -> None:
    session.add(WebhookDelivery(subscription_id=subscription_id, event_id=event_id,
                                outbox_id=outbox_id, attempt=attempt, attempted_at=at, ok=ok,
                                status_code=status_code, error=(error or None) and error[:500],
                                duration_ms=duration_ms))
    table = WebhookSubscription.__table__
    if ok:
        session.execute(sa.update(table).where(table.c.id == subscription_id,
                                               table.c.failing_since.is_not(None))
                        .values(failing_since=None))
        return
    session.execute(sa.update(table).where(table.c.id == subscription_id,
                                           table.c.failing_since.is_(None))
                    .values(failing_since=at))
    row = session.get(WebhookSubscription, subscription_id)
    session.refresh(row)
    if (row.status == SubscriptionStatus.ACTIVE and row.failing_since is not None
            and at - row.failing_since >= DISABLE_AFTER):
        disable(session, row, at=at, reason=f"every delivery failed since "
                f"{row.failing_since.isoformat()}; last: {error or status_code}")


def purge_deliveries(session: Session, *, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` rows of the delivery log attempted before `before` (the
    `log-retention` job's cutoff, `O2C_WEBHOOK_LOG_RETENTION_DAYS`); how many. An attempt
    whose message is still queued or being sent (a retry to come) is kept, whatever its
    age: it is the log of a delivery not finished."""
    log, ob = WebhookDelivery.__table__, OutboxMessage.__table__
    unfinished = sa.select(ob.c.id).where(ob.c.id == log.c.outbox_id, ob.c.status.in_(
        (OutboxStatus.PENDING, OutboxStatus.SENDING)))
    ids = sa.select(log.c.id).where(log.c.attempted_at < before, ~unfinished.exists()) \
        .order_by(log.c.id).limit(limit).scalar_subquery()
    return session.execute(sa.delete(log).where(log.c.id.in_(ids))).rowcount


def disable(session: Session, row: WebhookSubscription, *, at: datetime, reason: str) -> bool:
    """Disable a subscription that keeps failing (once: a conditional UPDATE), fail what is
    queued for it, and tell the admins (alerts channel and a DM each)."""
    table = WebhookSubscription.__table__
    changed = session.execute(sa.update(table).where(
        table.c.id == row.id, table.c.status == SubscriptionStatus.ACTIVE).values(
        status=SubscriptionStatus.DISABLED, disabled_at=at,
        disabled_reason=reason[:500])).rowcount == 1
    if not changed:
        return False
    _fail_queued(session, row.id, "the subscription was disabled after failing for "
                 f"{DISABLE_AFTER.days} days")
    audit.record(session, actor="system", action="webhook.disabled", entity_type="webhook",
                 entity_id=row.id, from_state=SubscriptionStatus.ACTIVE,
                 to_state=SubscriptionStatus.DISABLED, reason=reason[:2000], at=at)
    context = {"subscription_id": row.id, "url": row.url, "reason": reason[:500],
               "since": row.failing_since.isoformat() if row.failing_since else None}
    key = f"webhook-disabled:{row.id}:{at.isoformat()}"
    outbox.post_to_channel(session, channel="alerts", template="webhook_disabled",
                           context=context, dedupe_key=key)
    for user_id in admins(session):
        outbox.post_to_user(session, user_id=user_id, template="webhook_disabled",
                            context=context, dedupe_key=f"{key}:{user_id}")
    return True


def admins(session: Session) -> list[str]:
    return list(session.exec(select(UserRole.user_id).where(UserRole.role == Role.ADMIN)
                             .order_by(UserRole.user_id)).all())


def _fail_queued(session: Session, subscription_id: int, reason: str) -> int:
    """Fail the webhook rows still queued for a subscription (visible, replayable)."""
    ob = OutboxMessage.__table__
    rows = session.execute(sa.select(ob.c.id, ob.c.payload).where(
        ob.c.transport == TRANSPORT, ob.c.status == OutboxStatus.PENDING)).all()
    ids = [rid for rid, p in rows if (p or {}).get("subscription_id") == subscription_id]
    if ids:
        session.execute(sa.update(ob).where(ob.c.id.in_(ids),
                                            ob.c.status == OutboxStatus.PENDING)
                        .values(status=OutboxStatus.FAILED, last_error=reason))
    return len(ids)


# -- what events carry ---------------------------------------------------------------------------
def _amount(minor: int | None, currency: str) -> str | None:
    return money.to_str(minor, currency) if minor is not None else None


def _day(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def customer_data(customer: Customer) -> dict:
    return {"external_id": customer.external_id, "name": customer.name,
            "currency": customer.currency, "credit_hold": customer.credit_hold}


def order_data(session: Session, order: Order, **extra: Any) -> dict:
    customer = session.get(Customer, order.customer_id)
    cur = order.currency
    return {"order": {
        "number": order.number, "external_id": order.external_id, "status": order.status,
        "customer": customer.external_id if customer else None,
        "customer_name": customer.name if customer else None, "currency": cur,
        "subtotal": _amount(order.subtotal_minor, cur),
        "discount": _amount(order.discount_minor, cur), "tax": _amount(order.tax_minor, cur),
        "total": _amount(order.total_minor, cur), "order_date": _day(order.order_date),
        "sales_rep": order.sales_rep_id, "source": order.source}, **extra}


def invoice_data(session: Session, invoice: Invoice, **extra: Any) -> dict:
    customer = session.get(Customer, invoice.customer_id)
    order = session.get(Order, invoice.order_id) if invoice.order_id else None
    cur = invoice.currency
    return {"invoice": {
        "number": invoice.number, "status": invoice_status(invoice),
        "customer": customer.external_id if customer else None,
        "customer_name": customer.name if customer else None,
        "order": order.number if order else None, "currency": cur,
        "total": _amount(invoice.total_minor, cur),
        "balance": _amount(invoice.balance_minor, cur),
        "issue_date": _day(invoice.issue_date), "due_date": _day(invoice.due_date),
        "source": invoice.source,
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None}, **extra}


def dispute_data(session: Session, dispute: Any, invoice: Invoice, **extra: Any) -> dict:
    """A dispute (`models.Dispute`) with its invoice as it stands."""
    cur = dispute.currency
    return {"dispute": {
        "id": dispute.id, "status": dispute.status, "invoice": invoice.number,
        "currency": cur, "amount": _amount(dispute.amount_minor, cur),
        "reason": dispute.reason, "source": dispute.source,
        "opened_at": dispute.opened_at.isoformat() if dispute.opened_at else None,
        "resolved_by": dispute.resolved_by,
        "resolved_at": dispute.resolved_at.isoformat() if dispute.resolved_at else None,
        "credit_amount": (_amount(dispute.credit_amount_minor, cur)
                          if dispute.credit_amount_minor is not None else None)},
        **invoice_data(session, invoice), **extra}


def credit_note_data(session: Session, note: CreditNote, invoice: Invoice,
                     **extra: Any) -> dict:
    cur = note.currency
    return {"credit_note": {"number": note.number, "invoice": invoice.number,
                            "currency": cur, "amount": _amount(note.total_minor, cur),
                            "applied_to_invoice": _amount(note.amount_minor, cur),
                            "customer_credit": _amount(note.customer_credit_minor, cur),
                            "reason": note.reason, "issue_date": _day(note.value_date)},
            **invoice_data(session, invoice), **extra}


def payment_data(session: Session, payment: Payment, **extra: Any) -> dict:
    from workflows.cash_application import payment_allocations

    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    cur = payment.currency
    return {"payment": {
        "id": payment.id, "external_id": payment.external_id, "status": payment.status,
        "customer": customer.external_id if customer else None, "currency": cur,
        "amount": _amount(payment.amount_minor, cur),
        "unapplied_amount": _amount(payment.unapplied_minor, cur),
        "received_at": payment.received_at.isoformat(), "source": payment.source,
        "allocations": [{"invoice": invoice.number,
                         "amount": _amount(allocation.amount_minor, cur)}
                        for allocation, invoice in payment_allocations(session, payment.id)]},
        **extra}


def payment_events(session: Session, payment: Payment, *, created: bool) -> None:
    """`payment.received` for a new payment, and `payment.applied` when any of it is on
    invoices (cash application calls this once the payment is recorded and applied)."""
    from workflows import crm

    if not _wanting(session, "payment.received") and not _wanting(
            session, "payment.applied") and not crm.any_linked(session):
        return  # the common case without subscribers: no serialisation at all
    session.flush()
    data = payment_data(session, payment)
    if created:
        emit(session, "payment.received", data, key=f"payment.received:{payment.id}")
    if data["payment"]["allocations"]:
        emit(session, "payment.applied", data)
