"""Notices to the customer about their order (issue 19): order confirmation, backorder notice,
shipment notice, delivery confirmation.

Each is an e-mail written to the outbox in the caller's transaction, to the customer's notice
contact (`Customer.notice_email`, else the billing e-mail), once: the outbox's `dedupe_key`
(`customer-notice:<kind>:<order or shipment id>`) is unique, and a notice already queued is
not queued again. Each notice, sent or not, is in the order's history (the audit log) so
`/o2c order` shows what the customer was told and when.

Essential notices (the order confirmation: what the customer bought and owes; the backorder
notice: it asks for a decision) always go. The shipment notice and the delivery confirmation
are informational: a customer whose `notices` is "essential" does not get them (the skip is in
the history too). Links in the e-mails (tracking, the backorder choice) are made when the
e-mail is rendered (`bot.customer_links`): no URL and no secret in the outbox row.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models import Customer, CustomerLink, NoticeLevel, Order, OrderLine, OutboxMessage, Shipment
from workflows import audit, outbox, policy

ESSENTIAL = ("order_confirmation", "backorder_notice")
INFORMATIONAL = ("shipment_notice", "delivery_notice")
KINDS = ESSENTIAL + INFORMATIONAL
NOTICE_ACTION = "order.customer_notice"
SKIPPED_ACTION = "order.customer_notice_skipped"


def contact(customer: Customer) -> str | None:
    """Where a customer's order notices go."""
    return customer.notice_email or customer.billing_email


def wants(customer: Customer, kind: str) -> bool:
    return kind in ESSENTIAL or customer.notices != NoticeLevel.ESSENTIAL


def _lines(lines: list[OrderLine]) -> list[dict]:
    return [{"line_no": line.line_no, "sku": line.sku, "description": line.description,
             "quantity": line.quantity, "line_total_minor": line.line_total_minor}
            for line in lines]


def _order_context(order: Order, customer: Customer) -> dict:
    return {"order_number": order.number, "order_date": order.order_date.isoformat(),
            "customer": customer.name, "currency": order.currency,
            "total_minor": order.total_minor, "status": order.status}


def notify(session: Session, *, order: Order, kind: str, key: object, context: dict,
           now: datetime | None) -> OutboxMessage | None:
    """Queue notice `kind` about `order` (once per `key`), or record why it was not sent."""
    if kind not in KINDS:
        raise ValueError(f"unknown customer notice {kind!r}")
    customer = session.get(Customer, order.customer_id)
    dedupe_key = f"customer-notice:{kind}:{key}"
    if outbox.has_message(session, dedupe_key):
        return None  # told already
    to = contact(customer)
    why = None
    if not to:
        why = "no e-mail address for order notices"
    elif not wants(customer, kind):
        why = "the customer wants essential notices only"
    if why:
        audit.record(session, actor="system", action=SKIPPED_ACTION, entity_type="order",
                     entity_id=order.id, reason=why, number=order.number, kind=kind,
                     key=str(key), at=now)
        return None
    message = outbox.send_email(session, to=to, template=f"notice_{kind}",
                                dedupe_key=dedupe_key,
                                context={**_order_context(order, customer), **context})
    audit.record(session, actor="system", action=NOTICE_ACTION, entity_type="order",
                 entity_id=order.id, reason=f"{kind.replace('_', ' ')} to {to}",
                 number=order.number, kind=kind, to=to, outbox_id=message.id, key=str(key),
                 at=now)
    return message


def order_confirmed(session: Session, *, order: Order, lines: list[OrderLine],
                    short: list[dict], now: datetime | None) -> None:
    notify(session, order=order, kind="order_confirmation", key=order.id, now=now,
           context={"lines": _lines(lines), "short_lines": short})


def backordered(session: Session, *, order: Order, short: list[dict],
                link: CustomerLink | None, now: datetime | None) -> None:
    """The backorder notice, with the order's backorder link (its choices are signed links
    made when the e-mail is rendered)."""
    notify(session, order=order, kind="backorder_notice", key=order.id, now=now,
           context={"short_lines": short, "link_id": link.id if link else None,
                    "link_expires_at": (policy.business_moment(session, link.expires_at)
                                        if link else None)})


def shipped(session: Session, *, order: Order, shipment: Shipment,
            lines: list[tuple[OrderLine, int]], now: datetime | None) -> None:
    notify(session, order=order, kind="shipment_notice", key=shipment.id, now=now,
           context={"shipment_id": shipment.id, "carrier": shipment.carrier,
                    "tracking_number": shipment.tracking_number,
                    "shipped_at": policy.business_moment(session, shipment.shipped_at),
                    "lines": [{"sku": line.sku, "description": line.description,
                               "quantity": qty} for line, qty in lines]})


def delivered(session: Session, *, order: Order, shipment: Shipment,
              now: datetime | None) -> None:
    notify(session, order=order, kind="delivery_notice", key=shipment.id, now=now,
           context={"shipment_id": shipment.id, "carrier": shipment.carrier,
                    "tracking_number": shipment.tracking_number,
                    "delivered_at": policy.business_moment(session, shipment.delivered_at),
                    "pod_signed_by": shipment.pod_signed_by})


def _history_read():
    from models import AuditEvent

    return (select(AuditEvent)
            .where(AuditEvent.entity_type == "order",
                   AuditEvent.entity_id == sa.bindparam("entity_id"),
                   AuditEvent.action.in_([NOTICE_ACTION, SKIPPED_ACTION]))
            .order_by(AuditEvent.id))


HISTORY_READ = _history_read()  # built once: each `/o2c order` binds the order's id


def history(session: Session, order_id: int) -> list[dict]:
    """The customer notices of an order, sent or skipped, oldest first (for `/o2c order`)."""
    events = session.exec(HISTORY_READ, params={"entity_id": str(order_id)})
    return [{"kind": e.data.get("kind"), "at": e.at, "to": e.data.get("to"),
             "sent": e.action == NOTICE_ACTION, "why": None if e.action == NOTICE_ACTION
             else e.reason} for e in events]
