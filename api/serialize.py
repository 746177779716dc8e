"""Records -> JSON for API answers: amounts as decimal strings with their currency."""

from __future__ import annotations

from decimal import Decimal

from models import (
    Allocation,
    ClosedPeriod,
    Customer,
    Invoice,
    Payment,
    Product,
    User,
    invoice_status,
)
from models.money import bp_to_pct, to_str
from workflows.queries import InvoiceView, OrderView
from workflows.receivables import CustomerPosition


def amount(minor: int | None, currency: str) -> str | None:
    return None if minor is None else to_str(minor, currency)


def user_json(user: User, roles: set[str]) -> dict:
    return {"slack_user_id": user.slack_user_id, "name": user.name, "email": user.email,
            "timezone": user.timezone, "roles": sorted(roles)}


def customer_json(customer: Customer, position: CustomerPosition | None = None) -> dict:
    cur = customer.currency
    data = {
        "id": customer.id, "external_id": customer.external_id, "name": customer.name,
        "currency": cur, "credit_limit": amount(customer.credit_limit_minor, cur),
        "payment_terms": customer.payment_terms, "billing_email": customer.billing_email,
        "billing_address": customer.billing_address,
        "shipping_address": customer.shipping_address, "collector": customer.collector_id,
        "sales_rep": customer.sales_rep_id, "credit_reviewed": customer.credit_reviewed,
        "credit_hold": customer.credit_hold,
        "tax_rate_pct": str(bp_to_pct(customer.tax_rate_bp)),
    }
    if position is not None:
        data["balances"] = {
            "open": amount(position.aging.total, cur),
            "overdue": amount(position.aging.overdue, cur),
            "exposure": amount(position.exposure_minor, cur),
            "available_credit": amount(position.available_credit_minor, cur),
            "uninvoiced_orders": amount(position.uninvoiced_minor, cur),
            "oldest_days_past_due": position.oldest_days_past_due,
            "aging": {k: amount(v, cur) for k, v in position.aging.buckets.items()},
            "in_dispute": amount(position.aging.disputed, cur),
        }
    return data


def product_json(product: Product) -> dict:
    cur = product.currency
    return {"id": product.id, "sku": product.sku, "name": product.name,
            "unit_price": amount(product.unit_price_minor, cur), "currency": cur,
            "on_hand": product.on_hand, "reserved": product.reserved,
            "max_discount_pct": (str(bp_to_pct(product.max_discount_bp))
                                 if product.max_discount_bp is not None else None),
            "revenue_type": product.revenue_type}


def history_json(events: list) -> list[dict]:
    return [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "from": e.from_state, "to": e.to_state, "reason": e.reason} for e in events]


def order_json(view: OrderView) -> dict:
    o = view.order
    cur = o.currency
    return {
        "number": o.number, "external_id": o.external_id, "status": o.status,
        "customer": view.customer.external_id, "customer_name": view.customer.name,
        "sales_rep": o.sales_rep_id, "currency": cur, "order_date": o.order_date.isoformat(),
        "subtotal": amount(o.subtotal_minor, cur), "discount": amount(o.discount_minor, cur),
        "tax": amount(o.tax_minor, cur), "total": amount(o.total_minor, cur),
        "cancelled": amount(o.cancelled_minor, cur),
        "lines": [{"line_no": li.line_no, "sku": li.sku, "description": li.description,
                   "quantity": li.quantity, "unit_price": amount(li.unit_price_minor, cur),
                   "discount_pct": str(bp_to_pct(li.discount_bp)),
                   "line_total": amount(li.line_total_minor, cur),
                   "shipped": li.qty_shipped, "backordered": li.qty_backordered,
                   "cancelled": li.qty_cancelled}
                  for li in view.lines],
        "approvals": [{"id": a.id, "kind": a.kind, "status": a.status,
                       "reasons": [r.get("text") for r in a.reasons],
                       "decided_by": a.decided_by,
                       "decided_at": a.decided_at.isoformat() if a.decided_at else None,
                       "note": a.decision_note} for a in view.approvals],
        "shipments": [{"id": s.id, "carrier": s.carrier, "tracking_number": s.tracking_number,
                       "shipped_at": s.shipped_at.isoformat()} for s in view.shipments],
        "invoices": [{"number": i.number, "total": amount(i.total_minor, cur),
                      "balance": amount(i.balance_minor, cur),
                      "due_date": i.due_date.isoformat(), "status": invoice_status(i)}
                     for i in view.invoices],
        "balances": {"invoiced": amount(view.invoiced_minor, cur),
                     "due": amount(view.balance_minor, cur)},
        "history": history_json(view.history),
    }


def invoice_json(view: InvoiceView) -> dict:
    i = view.invoice
    cur = i.currency
    return {
        "number": i.number, "customer": view.customer.external_id, "order": view.order_number,
        "source": i.source, "currency": cur, "issue_date": i.issue_date.isoformat(),
        "due_date": i.due_date.isoformat(), "payment_terms": i.payment_terms,
        "subtotal": amount(i.subtotal_minor, cur), "discount": amount(i.discount_minor, cur),
        "tax": amount(i.tax_minor, cur), "fees": amount(i.fees_minor, cur),
        "total": amount(i.total_minor, cur), "balance": amount(i.balance_minor, cur),
        "status": invoice_status(i), "disputed": i.disputed,
        "in_dispute": amount(i.disputed_minor, cur),
        "amount_due": amount(i.balance_minor - i.disputed_minor, cur),
        "fee_for": view.fee_for, "fee_level": i.fee_level,
        "allocations": [{"payment": pid, "amount": amount(a, cur), "method": m}
                        for pid, a, m in view.allocations],
        "credit_notes": [{"number": n.number, "amount": amount(n.total_minor, cur),
                          "applied_to_invoice": amount(n.amount_minor, cur),
                          "customer_credit": amount(n.customer_credit_minor, cur),
                          "issue_date": n.value_date.isoformat(), "reason": n.reason}
                         for n in view.credit_notes],
        "pending_credit_notes": [{"id": r.id, "amount": amount(r.amount_minor, cur),
                                  "reason": r.reason} for r in view.pending_credit_notes],
        "disputes": [{"id": d.id, "status": d.status, "amount": amount(d.amount_minor, cur),
                      "reason": d.reason} for d in view.disputes],
        "late_fees": [{"number": fee.number, "level": fee.fee_level,
                       "amount": amount(fee.total_minor, cur),
                       "balance": amount(fee.balance_minor, cur)} for fee in view.fees],
        "history": history_json(view.history),
    }


def period_json(row: ClosedPeriod, *, requested: str | None = None,
                created: bool | None = None) -> dict:
    """A month close; `requested` is the month asked for when a later close covers it."""
    data = {"period": (requested or row.period).strip(), "closed": True,
            "closed_through": row.period, "closed_at": row.closed_at.isoformat(),
            "closed_by": row.closed_by, "source": row.source}
    if created is not None:
        data["created"] = created
    return data


def allocation_json(allocation: Allocation, invoice: Invoice) -> dict:
    """An allocation with the day it counts on, and why when that is not its value date."""
    effective, value = allocation.effective_date, allocation.value_date
    data = {"invoice": invoice.number, "amount": amount(allocation.amount_minor,
                                                        invoice.currency),
            "value_date": value.isoformat(), "effective_date": effective.isoformat()}
    if effective > max(value, invoice.issue_date):
        data["booked_in_open_period"] = True
        data["note"] = (f"dated {value.isoformat()}, in a closed period: booked on "
                        f"{effective.isoformat()}, the first day of the first open month")
    elif effective > value:
        data["note"] = (f"received before {invoice.number} was issued: counts from its issue "
                        f"date {effective.isoformat()}")
    return data


def payment_json(payment: Payment, allocations: list[tuple[Allocation, Invoice]],
                 extra: dict | None = None) -> dict:
    cur = payment.currency
    details = payment.match_details or {}
    data = {
        "id": payment.id, "external_id": payment.external_id, "status": payment.status,
        "amount": amount(payment.amount_minor, cur), "currency": cur,
        "received_at": payment.received_at.isoformat(),
        "value_date": payment.value_date.isoformat(), "payer_name": payment.payer_name,
        "reference": payment.reference,
        "allocations": [allocation_json(a, invoice) for a, invoice in allocations],
        "write_off": amount(details.get("write_off_minor", 0), cur),
        "deduction": amount(details.get("deduction_minor", 0), cur),  # short payment flagged
        "unapplied_amount": amount(payment.unapplied_minor, cur),
        "confidence": (str(Decimal(payment.confidence_bp).scaleb(-4).quantize(Decimal("0.01")))
                       if payment.confidence_bp is not None else None),
        "suggestions": details.get("suggestions", []),
    }
    data.update(extra or {})
    return data


# -- back office (issue 14) -----------------------------------------------------------------------
def _iso(moment) -> str | None:  # noqa: ANN001
    return moment.isoformat() if moment is not None else None


def dispute_json(dispute, invoice: Invoice, customer: Customer, *,  # noqa: ANN001
                 credit_request=None, credit_note=None, history: list | None = None) -> dict:
    cur = dispute.currency
    data = {"id": dispute.id, "status": dispute.status, "invoice": invoice.number,
            "customer": customer.external_id, "currency": cur,
            "amount": amount(dispute.amount_minor, cur),
            "in_dispute": amount(dispute.held_minor, cur), "reason": dispute.reason,
            "note": dispute.note, "source": dispute.source, "opened_by": dispute.opened_by,
            "opened_at": _iso(dispute.opened_at), "owner": dispute.owner_id,
            "owner_channel": dispute.owner_channel, "resolved_by": dispute.resolved_by,
            "resolved_at": _iso(dispute.resolved_at), "resolution_note": dispute.resolution_note,
            "credit_amount": amount(dispute.credit_amount_minor, cur),
            "credit_note": None}
    if credit_request is not None:
        data["credit_note"] = {"id": credit_request.id, "status": credit_request.status,
                               "number": credit_note.number if credit_note else None}
    if history is not None:
        data["history"] = history_json(history)
    return data


def credit_note_json(view) -> dict:  # noqa: ANN001 - workflows.credit_notes.CreditNoteView
    request, note, invoice = view.request, view.note, view.invoice
    cur = invoice.currency
    return {
        "id": request.id, "number": note.number if note else None, "status": request.status,
        "invoice": invoice.number, "customer": view.customer.external_id, "currency": cur,
        "amount": amount(request.amount_minor, cur),
        "applied_to_invoice": amount(note.amount_minor, cur) if note else None,
        "customer_credit": amount(note.customer_credit_minor, cur) if note else None,
        "reason": request.reason, "source": request.source,
        "external_id": request.external_id, "requested_by": request.requested_by,
        "dispute": request.dispute_id, "issue_date": note.value_date.isoformat() if note else None,
        "effective_date": note.effective_date.isoformat() if note else None,
        "decided_by": request.decided_by, "decided_at": _iso(request.decided_at),
        "decision_note": request.decision_note,
        "lines": [{"line_no": c.line_no, "quantity": c.quantity,
                   "net": amount(c.net_minor, cur), "tax": amount(c.tax_minor, cur),
                   "amount": amount(c.amount_minor, cur)} for c in view.lines],
        "requested_lines": [{"line_no": li["line_no"], "quantity": li.get("quantity"),
                             "amount": amount(li["amount_minor"], cur)}
                            for li in request.lines or []],
        "history": history_json(view.history),
    }
