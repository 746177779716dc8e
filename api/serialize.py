"""Records -> the API's answers (`api/responses.py`): amounts as decimal strings with their
currency."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from api import responses as out
from models import (
    AGING_BUCKETS,
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
from workflows.receivables import Aging, CustomerPosition, Held


def amount(minor: int | None, currency: str) -> str | None:
    return None if minor is None else to_str(minor, currency)


def user_out(user: User, roles: set[str]) -> out.UserOut:
    return out.UserOut(slack_user_id=user.slack_user_id, name=user.name, email=user.email,
                       timezone=user.timezone, roles=sorted(roles))


def _customer_fields(customer: Customer) -> dict:
    cur = customer.currency
    return {
        "id": customer.id, "external_id": customer.external_id, "name": customer.name,
        "currency": cur, "credit_limit": amount(customer.credit_limit_minor, cur),
        "payment_terms": customer.payment_terms, "billing_email": customer.billing_email,
        "billing_address": customer.billing_address,
        "shipping_address": customer.shipping_address, "collector": customer.collector_id,
        "sales_rep": customer.sales_rep_id, "credit_reviewed": customer.credit_reviewed,
        "credit_hold": customer.credit_hold,
        "tax_rate_pct": str(bp_to_pct(customer.tax_rate_bp)),
        "notice_email": customer.notice_email, "notices": customer.notices,
        "goods_recognized_at": customer.goods_recognized_at,
        "monthly_statement": customer.monthly_statement,
    }


def customer_out(customer: Customer) -> out.CustomerOut:
    return out.CustomerOut(**_customer_fields(customer))


def customer_detail_out(customer: Customer, position: CustomerPosition, *, as_of: date,
                        known_at: datetime | None,
                        open_invoices: list[Invoice],
                        open_invoice_count: int,
                        held: list[Held] = ()) -> out.CustomerDetailOut:
    cur = customer.currency
    balances = out.CustomerBalances(
        open=amount(position.aging.total, cur), overdue=amount(position.aging.overdue, cur),
        exposure=amount(position.exposure_minor, cur),
        available_credit=amount(position.available_credit_minor, cur),
        uninvoiced_orders=amount(position.uninvoiced_minor, cur),
        oldest_days_past_due=position.oldest_days_past_due,
        aging={k: amount(v, cur) for k, v in position.aging.buckets.items()},
        in_dispute=amount(position.aging.disputed, cur), as_of=as_of, known_at=known_at)
    return out.CustomerDetailOut(
        **_customer_fields(customer), balances=balances,
        open_invoices=[out.OpenInvoiceOut(number=i.number, due_date=i.due_date,
                                          total=amount(i.total_minor, i.currency),
                                          balance=amount(i.balance_minor, i.currency))
                       for i in open_invoices],
        open_invoice_count=open_invoice_count,
        unapplied=[out.HeldOut(currency=h.currency,
                               unapplied_payments=amount(h.unapplied_minor, h.currency),
                               customer_credit=amount(h.customer_credit_minor, h.currency),
                               total=amount(h.total_minor, h.currency)) for h in held])


def product_out(product: Product) -> out.ProductOut:
    cur = product.currency
    return out.ProductOut(
        id=product.id, sku=product.sku, name=product.name,
        unit_price=amount(product.unit_price_minor, cur), currency=cur,
        on_hand=product.on_hand, reserved=product.reserved,
        max_discount_pct=(str(bp_to_pct(product.max_discount_bp))
                          if product.max_discount_bp is not None else None),
        revenue_type=product.revenue_type, ssp=amount(product.ssp_minor, cur))


def history_out(events: list) -> list[out.HistoryEntry]:
    return [out.HistoryEntry(at=e.at, actor=e.actor, action=e.action, from_=e.from_state,
                             to=e.to_state, reason=e.reason) for e in events]


def order_out(view: OrderView) -> out.OrderOut:
    o = view.order
    cur = o.currency
    return out.OrderOut(
        number=o.number, external_id=o.external_id, status=o.status,
        customer=view.customer.external_id, customer_name=view.customer.name,
        sales_rep=o.sales_rep_id, currency=cur, order_date=o.order_date,
        subtotal=amount(o.subtotal_minor, cur), discount=amount(o.discount_minor, cur),
        tax=amount(o.tax_minor, cur), total=amount(o.total_minor, cur),
        cancelled=amount(o.cancelled_minor, cur),
        lines=[out.OrderLineOut(
            line_no=li.line_no, sku=li.sku, description=li.description, quantity=li.quantity,
            unit_price=amount(li.unit_price_minor, cur),
            discount_pct=str(bp_to_pct(li.discount_bp)),
            line_total=amount(li.line_total_minor, cur), shipped=li.qty_shipped,
            backordered=li.qty_backordered, cancelled=li.qty_cancelled,
            revenue_type=li.revenue_type, service_start=li.service_start,
            service_end=li.service_end, billing=li.billing, cancelled_from=li.cancelled_from)
            for li in view.lines],
        approvals=[out.ApprovalOut(
            id=a.id, kind=a.kind, status=a.status, reasons=[r.get("text") for r in a.reasons],
            decided_by=a.decided_by, decided_at=a.decided_at, note=a.decision_note)
            for a in view.approvals],
        shipments=[out.ShipmentSummary(id=s.id, carrier=s.carrier,
                                       tracking_number=s.tracking_number,
                                       shipped_at=s.shipped_at) for s in view.shipments],
        invoices=[out.OrderInvoiceOut(number=i.number, total=amount(i.total_minor, cur),
                                      balance=amount(i.balance_minor, cur),
                                      due_date=i.due_date, status=invoice_status(i))
                  for i in view.invoices],
        balances=out.OrderBalances(invoiced=amount(view.invoiced_minor, cur),
                                   due=amount(view.balance_minor, cur)),
        history=history_out(view.history))


def shipment_out(shipment_id: int, view: OrderView) -> out.ShipmentOut:
    """A shipment of the order in `view`, with the invoice issued for it."""
    invoice = next(i for i in view.invoices if i.shipment_id == shipment_id)
    return out.ShipmentOut(id=shipment_id, order=view.order.number,
                           order_status=view.order.status, invoice=invoice.number,
                           invoice_total=amount(invoice.total_minor, invoice.currency),
                           due_date=invoice.due_date)


def invoice_out(view: InvoiceView) -> out.InvoiceOut:
    i = view.invoice
    cur = i.currency
    return out.InvoiceOut(
        number=i.number, customer=view.customer.external_id, order=view.order_number,
        source=i.source, currency=cur, issue_date=i.issue_date, due_date=i.due_date,
        payment_terms=i.payment_terms, subtotal=amount(i.subtotal_minor, cur),
        discount=amount(i.discount_minor, cur), tax=amount(i.tax_minor, cur),
        fees=amount(i.fees_minor, cur), total=amount(i.total_minor, cur),
        balance=amount(i.balance_minor, cur), status=invoice_status(i), disputed=i.disputed,
        in_dispute=amount(i.disputed_minor, cur),
        amount_due=amount(i.balance_minor - i.disputed_minor, cur),
        fee_for=view.fee_for, fee_level=i.fee_level,
        allocations=[out.InvoiceAllocationOut(payment=pid, amount=amount(a, cur), method=m)
                     for pid, a, m in view.allocations],
        credit_notes=[out.InvoiceCreditNoteOut(
            number=n.number, amount=amount(n.total_minor, cur),
            applied_to_invoice=amount(n.amount_minor, cur),
            customer_credit=amount(n.customer_credit_minor, cur), issue_date=n.value_date,
            reason=n.reason) for n in view.credit_notes],
        pending_credit_notes=[out.PendingCreditNoteOut(
            id=r.id, amount=amount(r.amount_minor, cur), reason=r.reason)
            for r in view.pending_credit_notes],
        disputes=[out.InvoiceDisputeOut(id=d.id, status=d.status,
                                        amount=amount(d.amount_minor, cur), reason=d.reason)
                  for d in view.disputes],
        late_fees=[out.LateFeeOut(number=fee.number, level=fee.fee_level,
                                  amount=amount(fee.total_minor, cur),
                                  balance=amount(fee.balance_minor, cur)) for fee in view.fees],
        write_offs=[out.InvoiceWriteOffOut(amount=amount(w.amount_minor, cur), reason=w.reason,
                                           value_date=w.value_date, payment=w.payment_id)
                    for w in view.write_offs],
        history=history_out(view.history))


def period_out(row: ClosedPeriod, *, requested: str | None = None) -> out.PeriodOut:
    """A month close; `requested` is the month asked for when a later close covers it."""
    return out.PeriodOut(**_period_fields(row, requested))


def period_close_out(row: ClosedPeriod, *, requested: str, created: bool) -> out.PeriodCloseOut:
    return out.PeriodCloseOut(**_period_fields(row, requested), created=created)


def _period_fields(row: ClosedPeriod, requested: str | None) -> dict:
    return {"period": (requested or row.period).strip(), "closed": True,
            "closed_through": row.period, "closed_at": row.closed_at,
            "closed_by": row.closed_by, "source": row.source}


def allocation_out(allocation: Allocation, invoice: Invoice) -> out.AllocationOut:
    """An allocation with the day it counts on, and why when that is not its value date."""
    effective, value = allocation.effective_date, allocation.value_date
    closed = effective > max(value, invoice.issue_date)
    note = None
    if closed:
        note = (f"dated {value.isoformat()}, in a closed period: booked on "
                f"{effective.isoformat()}, the first day of the first open month")
    elif effective > value:
        note = (f"received before {invoice.number} was issued: counts from its issue "
                f"date {effective.isoformat()}")
    return out.AllocationOut(invoice=invoice.number,
                             amount=amount(allocation.amount_minor, invoice.currency),
                             value_date=value, effective_date=effective,
                             booked_in_open_period=closed, note=note)


def payment_out(payment: Payment, allocations: list[tuple[Allocation, Invoice]], *,
                suggestions: list[dict] | None = None,
                matched_because: list[str] | None = None) -> out.PaymentOut:
    """`suggestions`: `cash_application.suggestions_of` (what waits for a person);
    `matched_because`: `cash_application.matched_because` (the learned rules that placed it)."""
    cur = payment.currency
    details = payment.match_details or {}
    return out.PaymentOut(
        id=payment.id, external_id=payment.external_id, status=payment.status,
        amount=amount(payment.amount_minor, cur), currency=cur,
        received_at=payment.received_at, value_date=payment.value_date,
        payer_name=payment.payer_name, reference=payment.reference,
        allocations=[allocation_out(a, invoice) for a, invoice in allocations],
        write_off=amount(details.get("write_off_minor", 0), cur),
        deduction=amount(details.get("deduction_minor", 0), cur),  # short payment flagged
        unapplied_amount=amount(payment.unapplied_minor, cur),
        confidence=(str(Decimal(payment.confidence_bp).scaleb(-4).quantize(Decimal("0.01")))
                    if payment.confidence_bp is not None else None),
        suggestions=[out.SuggestionOut(**s) for s in suggestions or []],
        matched_because=matched_because or [])


def aging_report_out(as_of: date, known_at: datetime | None,
                     by_currency: dict[str, Aging]) -> out.AgingReportOut:
    return out.AgingReportOut(as_of=as_of, known_at=known_at, currencies={
        cur: out.AgingCurrency(buckets={b: amount(v, cur) for b, v in a.buckets.items()},
                               invoices=a.counts, total=amount(a.total, cur),
                               overdue=amount(a.overdue, cur),
                               in_dispute={b: amount(v, cur) for b, v in a.in_dispute.items()})
        for cur, a in sorted(by_currency.items())})


def aging_csv_rows(by_currency: dict[str, Aging], as_of: date,
                   known_at: datetime | None) -> list[list[str]]:
    """The aging as CSV: a row per currency, each saying the day it is of (and, asked for,
    the moment the books are read as known at), so a saved file still says when."""
    when = [as_of.isoformat(), known_at.isoformat() if known_at else ""]
    rows = [["currency", *AGING_BUCKETS, "total", "in_dispute", "as_of", "known_at"]]
    rows += [[cur, *(amount(a.buckets[b], cur) for b in AGING_BUCKETS), amount(a.total, cur),
              amount(a.disputed, cur), *when] for cur, a in sorted(by_currency.items())]
    return rows


# -- back office (issue 14) -----------------------------------------------------------------------
def dispute_out(dispute, invoice: Invoice, customer: Customer, *,
                credit_request=None, credit_note=None,
                history: list | None = None) -> out.DisputeOut:
    cur = dispute.currency
    return out.DisputeOut(
        id=dispute.id, status=dispute.status, invoice=invoice.number,
        customer=customer.external_id, currency=cur, amount=amount(dispute.amount_minor, cur),
        in_dispute=amount(dispute.held_minor, cur), reason=dispute.reason, note=dispute.note,
        source=dispute.source, opened_by=dispute.opened_by, opened_at=dispute.opened_at,
        owner=dispute.owner_id, owner_channel=dispute.owner_channel,
        resolved_by=dispute.resolved_by, resolved_at=dispute.resolved_at,
        resolution_note=dispute.resolution_note,
        credit_amount=amount(dispute.credit_amount_minor, cur),
        credit_note=(out.DisputeCreditNoteOut(
            id=credit_request.id, status=credit_request.status,
            number=credit_note.number if credit_note else None)
            if credit_request is not None else None),
        history=history_out(history) if history is not None else None)


def credit_note_out(view) -> out.CreditNoteOut:
    request, note, invoice = view.request, view.note, view.invoice
    cur = invoice.currency
    return out.CreditNoteOut(
        id=request.id, number=note.number if note else None, status=request.status,
        invoice=invoice.number, customer=view.customer.external_id, currency=cur,
        amount=amount(request.amount_minor, cur),
        applied_to_invoice=amount(note.amount_minor, cur) if note else None,
        customer_credit=amount(note.customer_credit_minor, cur) if note else None,
        reason=request.reason, source=request.source, external_id=request.external_id,
        requested_by=request.requested_by, dispute=request.dispute_id,
        issue_date=note.value_date if note else None,
        effective_date=note.effective_date if note else None,
        decided_by=request.decided_by, decided_at=request.decided_at,
        decision_note=request.decision_note,
        lines=[out.CreditNoteLineOut(line_no=c.line_no, quantity=c.quantity,
                                     net=amount(c.net_minor, cur), tax=amount(c.tax_minor, cur),
                                     amount=amount(c.amount_minor, cur)) for c in view.lines],
        requested_lines=[out.RequestedLineOut(line_no=li["line_no"],
                                              quantity=li.get("quantity"),
                                              amount=amount(li["amount_minor"], cur))
                         for li in request.lines or []],
        history=history_out(view.history))


def credit_application_out(done, customer: Customer) -> out.CreditApplicationOut:
    cur = done.currency
    return out.CreditApplicationOut(
        key=done.key, credit_note=done.credit_note, credit_invoice=done.source_invoice,
        invoice=done.invoice, customer=customer.external_id, currency=cur,
        amount=amount(done.amount_minor, cur), credit_left=amount(done.credit_left_minor, cur),
        invoice_balance=amount(done.invoice_balance_minor, cur), by=done.by,
        applied_at=datetime.fromisoformat(done.at))
