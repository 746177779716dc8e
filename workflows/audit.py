"""The append-only audit log: one small keyword-only factory per kind of event.

Rows are only ever inserted; database triggers refuse UPDATE and DELETE. Each factory adds the
row to the caller's session so it commits (or rolls back) with the change it describes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from models import AuditEvent
from workflows import bulk
from workflows.errors import PermissionDenied


def record(session: Session, *, actor: str, action: str, entity_type: str, entity_id: object,
           from_state: str | None = None, to_state: str | None = None,
           reason: str | None = None, at: datetime | None = None,
           **data: Any) -> AuditEvent:
    event = AuditEvent(
        actor=actor, action=action, entity_type=entity_type, entity_id=str(entity_id),
        from_state=from_state, to_state=to_state, reason=reason, data=data,
        **({"at": at} if at is not None else {}),  # else the recording time
    )
    session.add(event)
    return event


def row(*, actor: str, action: str, entity_type: str, entity_id: object,
        from_state: str | None = None, to_state: str | None = None, reason: str | None = None,
        at: datetime | None = None, **data: Any) -> dict:
    """The same event as `record`, as a row for `record_rows` (batch writers: a bank statement
    writes thousands of events with one statement)."""
    return {"actor": actor, "action": action, "entity_type": entity_type,
            "entity_id": str(entity_id), "from_state": from_state, "to_state": to_state,
            "reason": reason, "data": data, **({"at": at} if at is not None else {})}


def record_rows(session: Session, rows: list[dict]) -> None:
    """Insert events made by `row`, in order, with one executemany (unset `at`: recording
    time)."""
    plain = [r for r in rows if "at" not in r]
    timed = [r for r in rows if "at" in r]
    for batch in (plain, timed):
        bulk.insert_many(session, AuditEvent.__table__, batch)


def order_transition(session: Session, *, order_id: int, number: str, actor: str,
                     from_state: str | None, to_state: str, reason: str | None = None,
                     at: datetime | None = None, **data: Any) -> AuditEvent:
    return record(session, actor=actor, action="order.transition", entity_type="order",
                  entity_id=order_id, from_state=from_state, to_state=to_state, reason=reason,
                  at=at, number=number, **data)


def role_changed(session: Session, *, actor: str, user_id: str, role: str, granted: bool,
                 reason: str | None = None) -> AuditEvent:
    return record(session, actor=actor, action="role.granted" if granted else "role.revoked",
                  entity_type="user", entity_id=user_id, to_state=role if granted else None,
                  from_state=None if granted else role, reason=reason)


def decision(session: Session, *, actor: str, approval_id: int, kind: str, outcome: str,
             reason: str | None = None, **data: Any) -> AuditEvent:
    return record(session, actor=actor, action=f"approval.{outcome}", entity_type="approval",
                  entity_id=approval_id, from_state="pending", to_state=outcome, reason=reason,
                  kind=kind, **data)


def refusal(session: Session, *, actor: str, action: str, entity_type: str, entity_id: object,
            reason: str, **data: Any) -> AuditEvent:
    """Someone tried something they may not do; refusals are audited too (SPEC §5.7)."""
    return record(session, actor=actor, action=f"refused.{action}", entity_type=entity_type,
                  entity_id=entity_id, reason=reason, **data)


def refusal_of(session: Session, error: PermissionDenied) -> AuditEvent | None:
    """Audit a PermissionDenied raised by a rolled-back transaction."""
    if not error.actor:
        return None
    return refusal(session, actor=error.actor, action=error.action,
                   entity_type=error.entity_type, entity_id=error.entity_id,
                   reason=error.detail)


def write_off(session: Session, *, actor: str, invoice_id: int, amount_minor: int,
              currency: str, reason: str, payment_id: int | None = None,
              booking: Any = None) -> AuditEvent:
    """`booking` (`workflows.periods.Booking`): its dates, and why it moved if it did."""
    why, dates = _booked(reason, booking)
    return record(session, actor=actor, action="invoice.write_off", entity_type="invoice",
                  entity_id=invoice_id, reason=why, amount_minor=amount_minor,
                  currency=currency, payment_id=payment_id, **dates)


def write_off_row(*, actor: str, invoice_id: int, amount_minor: int, currency: str,
                  reason: str, payment_id: int | None = None, booking: Any = None) -> dict:
    """The `write_off` event as a row for `record_rows` (payments applied in a batch)."""
    why, dates = _booked(reason, booking)
    return row(actor=actor, action="invoice.write_off", entity_type="invoice",
               entity_id=invoice_id, reason=why, amount_minor=amount_minor,
               currency=currency, payment_id=payment_id, **dates)


def _booked(reason: str, booking: Any) -> tuple[str, dict]:
    dates = booking.as_dict() if booking is not None else {}
    return (f"{reason}; {booking.note}" if booking is not None and booking.moved else reason,
            dates)


def credit_hold(session: Session, *, actor: str, customer_id: int, on_hold: bool,
                reason: str | None = None) -> AuditEvent:
    return record(session, actor=actor, action="customer.credit_hold" if on_hold
                  else "customer.credit_release", entity_type="customer",
                  entity_id=customer_id, from_state="released" if on_hold else "hold",
                  to_state="hold" if on_hold else "released", reason=reason)
