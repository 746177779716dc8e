"""Credit and discount checks on order submission (SPEC §3).

`approval_needs()` is pure policy: it says which approvals an order needs and why, as
machine-readable reasons that the approval card and the audit log show. Deciding approvals
lives in `workflows.approvals`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from models import ApprovalKind, Customer, Invoice, Order, OrderLine, Product, money
from workflows import policy as policies
from workflows.receivables import credit_exposure, customer_position

HISTORY_DAYS = 365  # payment history shown on approval cards covers the last year
HISTORY_MAX_INVOICES = 500


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


def payment_history(session: Session, customer_id: int, as_of: date) -> dict:
    """How the customer paid over the last year: invoices settled, how many late, and the
    average days late of the late ones (a Decimal, one decimal place, as a string)."""
    # days of the books' zone: paid at 17:00 in Los Angeles on the due date (01:00 UTC the day
    # after) is on time, as the collectors' ranking counts it (`collections`)
    zone = policies.business_zone(session)
    since = datetime.combine(as_of - timedelta(days=HISTORY_DAYS), time.min,
                             tzinfo=zone).astimezone(UTC)
    rows = session.exec(
        select(Invoice.due_date, Invoice.paid_at)
        .where(Invoice.customer_id == customer_id, Invoice.paid_at.is_not(None),
               Invoice.paid_at >= since)
        .order_by(Invoice.paid_at.desc()).limit(HISTORY_MAX_INVOICES)).all()
    late_days = [days for days in ((paid_at.astimezone(zone).date() - due).days
                                   for due, paid_at in rows) if days > 0]
    average = (Decimal(sum(late_days)) / Decimal(len(late_days))).quantize(Decimal("0.1")) \
        if late_days else Decimal(0)
    return {"paid": len(rows), "paid_late": len(late_days), "avg_days_late": str(average),
            "days": HISTORY_DAYS}


def customer_snapshot(session: Session, customer: Customer, as_of: date, *,
                      order_total_minor: int = 0) -> dict:
    """The customer's credit position frozen at request time, for the approval card;
    `exposure_minor` includes the order being decided."""
    position = customer_position(session, customer, as_of)
    return {"currency": customer.currency, "credit_limit_minor": customer.credit_limit_minor,
            "exposure_minor": position.exposure_minor + order_total_minor,
            "open_ar_minor": position.aging.total, "overdue_minor": position.aging.overdue,
            "aging": dict(position.aging.buckets),
            "oldest_days_past_due": position.oldest_days_past_due,
            "credit_reviewed": customer.credit_reviewed, "credit_hold": customer.credit_hold,
            "history": payment_history(session, customer.id, as_of)}


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


def list_price_minor(line: OrderLine, product: Product | None, currency: str) -> int:
    """The price a line is measured against: the product's list price when it is in the
    order's currency (a lower unit price typed on the order is a discount too), else the
    line's own unit price."""
    if product is not None and product.currency == currency:
        return max(product.unit_price_minor, line.unit_price_minor)
    return line.unit_price_minor


def effective_discount_bp(line: OrderLine, product: Product | None, currency: str) -> int:
    """The discount a line really gives, in basis points of its list value: the discount
    field, or more when the unit price was typed below the list price (rounded up, so a
    price override can never slip under the maximum by rounding)."""
    listed = line.quantity * list_price_minor(line, product, currency)
    if listed <= 0:
        return line.discount_bp
    given = Decimal(listed - line.line_total_minor) * 10000 / Decimal(listed)
    return max(line.discount_bp, int(given.to_integral_value(rounding=ROUND_CEILING)))


def exceeds_max_discount(line: OrderLine, product: Product | None, currency: str,
                         limit_bp: int) -> bool:
    """The line gives more than the maximum discount (SPEC §3: a discount *exceeding* it needs
    an approval): its discount field is above it, or its net is below what the maximum itself
    leaves of the list value, rounded as every line is (half-up, once). A line at exactly the
    maximum is within it however its rounding falls (1 x 19.99 at 15 % nets 16.99, which is
    15.01 % below list), and a unit price typed below list can't go a minor unit under it."""
    floor = money.line_total(line.quantity, list_price_minor(line, product, currency),
                             limit_bp, currency)
    return line.discount_bp > limit_bp or line.line_total_minor < floor


def line_economics(line: OrderLine, product: Product | None, currency: str) -> dict:
    """What a line's discount costs: revenue given away and the margin before and after.

    Margins need the product's cost in the order currency; without it (no cost, or a product
    priced in another currency) only the lost revenue is known.
    """
    gross = money.line_total(line.quantity, list_price_minor(line, product, currency), 0,
                             currency)
    net = line.line_total_minor
    result = {"line_no": line.line_no, "sku": line.sku, "name": line.description,
              "quantity": line.quantity, "unit_price_minor": line.unit_price_minor,
              "discount_bp": line.discount_bp, "gross_minor": gross, "net_minor": net,
              "lost_minor": gross - net, "cost_minor": None, "margin_before_minor": None,
              "margin_after_minor": None, "margin_before_pct": None, "margin_after_pct": None}
    if product is not None and product.cost_minor is not None and product.currency == currency:
        cost = product.cost_minor * line.quantity
        result.update(cost_minor=cost, margin_before_minor=gross - cost,
                      margin_after_minor=net - cost,
                      margin_before_pct=_pct(gross - cost, gross),
                      margin_after_pct=_pct(net - cost, net))
    return result


def pct_text(bp: int) -> str:
    """Basis points as a short percentage: 1500 -> "15", 1250 -> "12.5"."""
    return format(money.bp_to_pct(bp).normalize(), "f")


def _pct(part: int, whole: int) -> str | None:
    if whole == 0:
        return None
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1")))


def _for_term(session: Session, line: OrderLine, product: Product | None) -> Product | None:
    """The product as a renewal's line is measured: its list price (and cost) for the
    renewal's own term when it is shorter or longer than the term renewed
    (`subscriptions.for_term`: the renewal is priced so), so a term's length is no discount."""
    if product is None or line.renewal_of_line_id is None:
        return product
    from workflows.subscriptions import for_term

    renewed = session.get(OrderLine, line.renewal_of_line_id)
    if renewed is None or renewed.service_start is None or line.service_start is None:
        return product
    scaled = {name: for_term(value, renewed, line.service_start, line.service_end)
              for name in ("unit_price_minor", "cost_minor")
              if (value := getattr(product, name)) is not None}
    return Product(**{**product.model_dump(), **scaled})  # (a copy, never stored)


def discount_need(session: Session, order: Order, lines: list[OrderLine]) -> ApprovalNeed | None:
    policy = policies.current(session)
    reasons: list[dict] = []
    over: list[dict] = []
    for line in lines:
        product = _for_term(session, line, session.get(Product, line.product_id))
        limit_bp = (product.max_discount_bp if product and product.max_discount_bp is not None
                    else policy.max_discount_bp)
        if exceeds_max_discount(line, product, order.currency, limit_bp):
            given_bp = effective_discount_bp(line, product, order.currency)
            below_list = given_bp > line.discount_bp
            text = (f"{line.sku}: price below list is an effective discount of "
                    f"{pct_text(given_bp)}%" if below_list
                    else f"{line.sku}: discount {pct_text(given_bp)}%")
            reasons.append({"code": "discount_over_max", "line_no": line.line_no,
                            "sku": line.sku, "discount_bp": given_bp, "max_bp": limit_bp,
                            "price_below_list": below_list,
                            "text": f"{text} exceeds the {pct_text(limit_bp)}% maximum"})
            over.append({**line_economics(line, product, order.currency), "max_bp": limit_bp})
    if not reasons:
        return None
    lost = sum(item["lost_minor"] for item in over)
    return ApprovalNeed(ApprovalKind.DISCOUNT, reasons, {
        "currency": order.currency, "lines": over, "lost_minor": lost})


def approval_needs(session: Session, order: Order, lines: list[OrderLine], as_of: date
                   ) -> list[ApprovalNeed]:
    customer = session.get(Customer, order.customer_id)
    needs = [credit_need(session, order, customer, as_of), discount_need(session, order, lines)]
    needs = [need for need in needs if need is not None]
    if needs:
        # Every card shows the customer's position (exposure, aging, payment history).
        position = customer_snapshot(session, customer, as_of,
                                     order_total_minor=order.total_minor)
        for need in needs:
            need.snapshot = {**position, **need.snapshot}
    return needs
