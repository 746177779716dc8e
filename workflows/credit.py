"""Credit and discount checks on order submission (SPEC §3).

`approval_needs()` is pure policy: it says which approvals an order needs and why, as
machine-readable reasons that the approval card and the audit log show. Deciding approvals
lives in `workflows.approvals`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models import ApprovalKind, Customer, Invoice, Order, OrderLine, Product
from workflows import policy as policies
from workflows.receivables import credit_exposure


@dataclass
class ApprovalNeed:
    kind: str  # ApprovalKind
    reasons: list[dict] = field(default_factory=list)  # [{"code": ..., "text": ...}]
    snapshot: dict = field(default_factory=dict)


def overdue_beyond(session: Session, customer_id: int, as_of: date, days: int) -> int:
    """Number of open invoices more than `days` past due."""
    return int(session.exec(
        select(sa.func.count()).select_from(Invoice)
        .where(Invoice.customer_id == customer_id, Invoice.balance_minor > 0,
               Invoice.due_date < as_of - timedelta(days=days))
    ).one())


def credit_need(session: Session, order: Order, customer: Customer, as_of: date
                ) -> ApprovalNeed | None:
    policy = policies.current(session)
    exposure = credit_exposure(session, customer.id, extra_minor=order.total_minor)
    reasons = []
    if not customer.credit_reviewed:
        reasons.append({"code": "new_customer", "text": "new customer: no credit review yet"})
    if exposure > customer.credit_limit_minor:
        reasons.append({"code": "over_limit", "text": "exposure would exceed the credit limit"})
    late = overdue_beyond(session, customer.id, as_of, policy.overdue_hold_days)
    if late:
        reasons.append({"code": "past_due", "text": f"{late} invoice(s) more than "
                        f"{policy.overdue_hold_days} days past due"})
    if customer.credit_hold:
        reasons.append({"code": "credit_hold", "text": "customer is on credit hold"})
    if not reasons:
        return None
    return ApprovalNeed(ApprovalKind.CREDIT, reasons, {
        "exposure_minor": exposure, "credit_limit_minor": customer.credit_limit_minor,
        "currency": customer.currency, "late_invoices": late,
    })


def discount_need(session: Session, order: Order, lines: list[OrderLine]) -> ApprovalNeed | None:
    policy = policies.current(session)
    reasons = []
    for line in lines:
        product = session.get(Product, line.product_id)
        limit_bp = (product.max_discount_bp if product and product.max_discount_bp is not None
                    else policy.max_discount_bp)
        if line.discount_bp > limit_bp:
            reasons.append({"code": "discount_over_max", "line_no": line.line_no,
                            "sku": line.sku, "discount_bp": line.discount_bp,
                            "max_bp": limit_bp,
                            "text": f"{line.sku}: discount {line.discount_bp / 100:g}% "
                                    f"exceeds the {limit_bp / 100:g}% maximum"})
    if not reasons:
        return None
    return ApprovalNeed(ApprovalKind.DISCOUNT, reasons, {"currency": order.currency})


def approval_needs(session: Session, order: Order, lines: list[OrderLine], as_of: date
                   ) -> list[ApprovalNeed]:
    customer = session.get(Customer, order.customer_id)
    needs = [credit_need(session, order, customer, as_of), discount_need(session, order, lines)]
    return [need for need in needs if need is not None]
