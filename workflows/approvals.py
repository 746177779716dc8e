"""Approval requests (credit, discount). Requesting creates the row and posts the card through
the outbox; deciding is taken exactly once (see `decide` in later work)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from models import Approval, ApprovalStatus, Customer, Order
from workflows import audit, outbox
from workflows.credit import ApprovalNeed


def request_approval(session: Session, *, order: Order, need: ApprovalNeed, requested_by: str,
                     now: datetime) -> Approval:
    existing = session.exec(select(Approval).where(Approval.order_id == order.id,
                                                   Approval.kind == need.kind)).first()
    approval = existing or Approval(order_id=order.id, kind=need.kind, requested_by=requested_by)
    approval.status = ApprovalStatus.PENDING
    approval.reasons = need.reasons
    approval.snapshot = need.snapshot
    approval.created_at = now
    session.add(approval)
    session.flush()
    audit.record(session, actor=requested_by, action="approval.requested",
                 entity_type="approval", entity_id=approval.id, to_state="pending",
                 kind=need.kind, order=order.number)
    customer = session.get(Customer, order.customer_id)
    card = outbox.post_to_channel(session, channel="approvals", template="approval_card",
                                  context=approval_context(approval, order, customer))
    approval.card_outbox_id = card.id
    session.add(approval)
    return approval


def approval_context(approval: Approval, order: Order, customer: Customer) -> dict:
    return {"approval_id": approval.id, "kind": approval.kind, "status": approval.status,
            "order": {"number": order.number, "total_minor": order.total_minor,
                      "currency": order.currency, "customer": customer.name},
            "requested_by": approval.requested_by, "reasons": approval.reasons,
            "snapshot": approval.snapshot, "decided_by": approval.decided_by,
            "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
            "note": approval.decision_note}
