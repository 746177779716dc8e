"""What happens to a shipment after it leaves (issue 19): carrier events, delivery and proof
of delivery.

`record_event` appends what the carrier reported (`ShipmentEvent`) and moves the shipment's
status: shipped -> in transit -> out for delivery -> delivered, with `exception` possible on
the way. Delivered is final: a later event is recorded but moves nothing (a late "in transit"
replayed by a carrier does not un-deliver anything). Delivery records the time and the proof
of delivery, tells the customer (`customer_notices.delivered`) and, for a shipment whose goods
are recognised at delivery (`Shipment.recognize_at_delivery`, from the customer's terms when it
shipped), is the day its revenue is recognised (`workflows.revenue`). An exception alerts the
order's sales rep in Slack. One transaction, the caller's; the API's Idempotency-Key keeps a
retried call from recording the event twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from models import Customer, Order, Shipment, ShipmentEvent, ShipmentStatus
from workflows import audit, customer_notices, outbox
from workflows import validation as v
from workflows.errors import NotFound, ValidationFailed
from workflows.inputs import ShipmentEventIn


def lock_shipment(session: Session, shipment_id: int) -> Shipment:
    shipment = session.exec(select(Shipment).where(Shipment.id == shipment_id)
                            .with_for_update()
                            .execution_options(populate_existing=True)).first()
    if shipment is None:
        raise NotFound(f"no shipment {shipment_id}")
    return shipment


def record_event(session: Session, *, shipment_id: int, data: ShipmentEventIn, actor: str,
                 now: datetime) -> ShipmentEvent:
    """Record a carrier event on a shipment and act on it (see the module's docstring)."""
    shipment = lock_shipment(session, shipment_id)
    kind = ShipmentStatus(data.kind)
    if kind != ShipmentStatus.DELIVERED and (data.pod_signed_by or data.pod_document_url):
        field = "pod_signed_by" if data.pod_signed_by else "pod_document_url"
        raise ValidationFailed.of(field, "proof of delivery goes with a delivered event only")
    if data.occurred_at < shipment.shipped_at:
        raise ValidationFailed.of("occurred_at", "is before the shipment left "
                                  f"({shipment.shipped_at.isoformat()})")
    for field in ("location", "note", "pod_signed_by"):
        v.text(field, getattr(data, field))
    event = ShipmentEvent(shipment_id=shipment.id, kind=kind, occurred_at=data.occurred_at,
                          location=data.location or None, note=data.note or None,
                          pod_signed_by=data.pod_signed_by, actor=actor, created_at=now,
                          pod_document_url=data.pod_document_url)
    session.add(event)
    order = session.get(Order, shipment.order_id)
    before = shipment.status
    if before != ShipmentStatus.DELIVERED:
        shipment.status = kind
        if kind == ShipmentStatus.DELIVERED:
            shipment.delivered_at = data.occurred_at
            shipment.pod_signed_by = data.pod_signed_by
            shipment.pod_document_url = data.pod_document_url
        session.add(shipment)
    session.flush()
    audit.record(session, actor=actor, action="order.shipment_event", entity_type="order",
                 entity_id=order.id, from_state=before, to_state=shipment.status,
                 reason=f"{shipment.carrier} {shipment.tracking_number}: "
                        f"{kind.replace('_', ' ')}", number=order.number,
                 shipment_id=shipment.id, event_id=event.id, kind=kind,
                 occurred_at=data.occurred_at.isoformat(), location=event.location, at=now)
    if before == ShipmentStatus.DELIVERED:
        return event  # recorded; a delivered shipment stays delivered
    if kind == ShipmentStatus.DELIVERED:
        customer_notices.delivered(session, order=order, shipment=shipment, now=now)
    elif kind == ShipmentStatus.EXCEPTION:
        customer = session.get(Customer, order.customer_id)
        where = f" at {event.location}" if event.location else ""
        why = f": {event.note}" if event.note else ""
        outbox.post_to_user(session, user_id=order.sales_rep_id, template="text",
                            dedupe_key=f"shipment-exception:{event.id}",
                            context={"text": f"⚠️ Delivery exception on order {order.number} "
                                             f"({customer.name}): {shipment.carrier} "
                                             f"{shipment.tracking_number}{where}{why}. "
                                             "Check with the carrier and the customer."})
    return event


def events_of(session: Session, shipment_ids: list[int]) -> list[ShipmentEvent]:
    if not shipment_ids:
        return []
    return list(session.exec(select(ShipmentEvent)
                             .where(ShipmentEvent.shipment_id.in_(shipment_ids))
                             .order_by(ShipmentEvent.occurred_at, ShipmentEvent.id)))
