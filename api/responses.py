"""What the REST API answers, declared once: each route's `response_model`, built by
`api/serialize.py`, so `/openapi.json` describes the bodies it really sends (and a test holds
every real answer to it: tests/api/test_openapi_conformance.py).

Amounts are decimal strings in the record's currency (`"1250.00"`, `"-12.50"` for a credit),
dates `YYYY-MM-DD`, moments ISO 8601 with their offset. Every key is always present; `null`
where there is nothing to say. Errors are not here: they are `api.problems.Problem`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from models import ApprovalStatus, InvoiceStatus, OrderStatus, PaymentStatus

Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["1250.00"],
                             description="a decimal amount in the record's currency")]
Number = Annotated[str, Field(description="a decimal number as a string", examples=["12.50"])]
# Moments as `datetime.isoformat()` writes them (2026-07-01T09:00:00+00:00), as before there
# were response models; pydantic's own format would write `Z`.
Moment = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str),
                   WithJsonSchema({"type": "string", "format": "date-time"})]


class Answer(BaseModel):
    """Built by our own code: a field the serializer forgets or adds is a bug, refused."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)


# -- users and master data -----------------------------------------------------------------------
class UserOut(Answer):
    slack_user_id: str
    name: str
    email: str | None
    timezone: str | None
    roles: list[str]


class CustomerOut(Answer):
    id: int
    external_id: str
    name: str
    currency: str
    credit_limit: Money
    payment_terms: str
    billing_email: str | None
    billing_address: str | None
    shipping_address: str | None
    collector: str | None
    sales_rep: str | None
    credit_reviewed: bool
    credit_hold: bool
    tax_rate_pct: Number
    notice_email: str | None = None
    notices: str = "all"
    goods_recognized_at: str = "shipment"
    monthly_statement: bool = False


class CustomerBalances(Answer):
    """At the end of `as_of` by economic date; with `known_at`, as the books knew them then."""

    open: Money
    overdue: Money
    exposure: Money
    available_credit: Money
    uninvoiced_orders: Money
    oldest_days_past_due: int
    aging: dict[str, Money] = Field(description="open amount per aging bucket")
    in_dispute: Money = Field(description="open amount held in dispute (out of dunning)")
    as_of: date
    known_at: Moment | None


class OpenInvoiceOut(Answer):
    number: str
    due_date: date
    total: Money
    balance: Money


class HeldOut(Answer):
    """Unapplied cash held for the customer in one currency: on no invoice."""

    currency: str
    unapplied_payments: Money = Field(description="payments received and not applied")
    customer_credit: Money = Field(description="credit notes on paid invoices left it (less "
                                   "what was refunded or applied to other invoices)")
    total: Money


class CustomerDetailOut(CustomerOut):
    balances: CustomerBalances
    unapplied: list[HeldOut] = Field(default_factory=list, description=(
        "today's unapplied cash, per currency (currencies with none left out), apart from "
        "the balances"))
    open_invoices: list[OpenInvoiceOut] = Field(description="today's, oldest due first "
                                                "(at most 200)")
    open_invoice_count: int = Field(description="how many invoices are open today: more "
                                    "than `open_invoices` lists when over 200")


class ProductOut(Answer):
    id: int
    sku: str
    name: str
    unit_price: Money
    currency: str
    on_hand: int
    reserved: int
    max_discount_pct: Number | None
    revenue_type: str = Field(description="goods, service or subscription (SPEC §3)")
    ssp: Money | None = Field(description="standalone selling price per unit, when set")


# -- orders, shipments, invoices -----------------------------------------------------------------
class HistoryEntry(Answer):
    at: Moment
    actor: str
    action: str
    from_: str | None = Field(alias="from")
    to: str | None
    reason: str | None


class OrderLineOut(Answer):
    line_no: int
    sku: str
    description: str
    quantity: int
    unit_price: Money
    discount_pct: Number
    line_total: Money
    shipped: int
    backordered: int
    cancelled: int
    revenue_type: str
    # services and subscriptions only (null for goods): the period served, both days included,
    # a subscription's billing and the day a cancelled one stops
    service_start: date | None = None
    service_end: date | None = None
    billing: str | None = None
    cancelled_from: date | None = None


class ApprovalOut(Answer):
    id: int
    kind: str
    status: ApprovalStatus
    reasons: list[str | None]
    decided_by: str | None
    decided_at: Moment | None
    note: str | None


class ShipmentSummary(Answer):
    id: int
    carrier: str
    tracking_number: str
    shipped_at: Moment


class OrderInvoiceOut(Answer):
    number: str
    total: Money
    balance: Money
    due_date: date
    status: InvoiceStatus


class OrderBalances(Answer):
    invoiced: Money
    due: Money


class OrderOut(Answer):
    number: str
    external_id: str | None
    status: OrderStatus
    customer: str = Field(description="the customer's external_id")
    customer_name: str
    sales_rep: str
    currency: str
    order_date: date
    subtotal: Money
    discount: Money
    tax: Money
    total: Money
    cancelled: Money
    lines: list[OrderLineOut]
    approvals: list[ApprovalOut]
    shipments: list[ShipmentSummary]
    invoices: list[OrderInvoiceOut]
    balances: OrderBalances
    history: list[HistoryEntry]


class ShipmentOut(Answer):
    """The shipment recorded and the invoice issued for it."""

    id: int
    order: str
    order_status: OrderStatus
    invoice: str
    invoice_total: Money
    due_date: date


class ShipmentEventOut(Answer):
    """A carrier event recorded on a shipment, and where it left the shipment (a delivered
    shipment stays delivered whatever comes after)."""

    id: int
    shipment: int
    order: str
    kind: str
    occurred_at: Moment
    shipment_status: str
    delivered_at: Moment | None
    pod_signed_by: str | None
    pod_document_url: str | None


class InvoiceAllocationOut(Answer):
    payment: int
    amount: Money
    method: str


class InvoiceCreditNoteOut(Answer):
    number: str
    amount: Money = Field(description="tax included")
    applied_to_invoice: Money
    customer_credit: Money
    issue_date: date
    reason: str | None


class InvoiceWriteOffOut(Answer):
    amount: Money
    reason: str = Field(description="bank_fee, early_payment_discount, bad_debt, "
                        "small_balance, deduction, fee_waived, or customer_credit (a credit "
                        "note's customer credit set against the invoice when the payment "
                        "behind it was refunded)")
    value_date: date = Field(description="the day it counts on")
    payment: int | None = Field(description="the payment it is part of (a fee or discount)")


class PendingCreditNoteOut(Answer):
    id: int
    amount: Money
    reason: str | None


class InvoiceDisputeOut(Answer):
    id: int
    status: str
    amount: Money
    reason: str


class LateFeeOut(Answer):
    number: str
    level: int | None
    amount: Money
    balance: Money


class InvoiceOut(Answer):
    number: str
    customer: str = Field(description="the customer's external_id")
    order: str | None
    source: str
    currency: str
    issue_date: date
    due_date: date
    payment_terms: str
    subtotal: Money
    discount: Money
    tax: Money
    fees: Money
    total: Money
    balance: Money
    status: InvoiceStatus
    disputed: bool
    in_dispute: Money = Field(description="part of the balance held in open disputes")
    amount_due: Money = Field(description="balance less what is in dispute")
    fee_for: str | None = Field(description="a late-fee invoice: the invoice it charges for")
    fee_level: int | None = Field(description="a late-fee invoice: its dunning level")
    allocations: list[InvoiceAllocationOut]
    credit_notes: list[InvoiceCreditNoteOut]
    pending_credit_notes: list[PendingCreditNoteOut]
    disputes: list[InvoiceDisputeOut]
    late_fees: list[LateFeeOut]
    write_offs: list[InvoiceWriteOffOut] = Field(description="balance = total - allocations "
                                                 "- credit notes applied - write-offs")
    history: list[HistoryEntry]


# -- payments ------------------------------------------------------------------------------------
class AllocationOut(Answer):
    invoice: str
    amount: Money
    value_date: date
    effective_date: date = Field(description="the day it counts on: its value date, or the "
                                 "invoice's issue date, or the first day of the first open "
                                 "month when its month is closed")
    booked_in_open_period: bool = Field(description="its value date is in a closed period")
    note: str | None = Field(description="why effective_date is not the value date")


class SuggestedInvoice(Answer):
    invoice: str
    amount: Money


class SuggestionOut(Answer):
    """A way to apply a payment the matching engine could not apply on its own."""

    rank: int
    customer: str | None
    customer_name: str | None
    confidence: Number | None = Field(description="0 to 1; null for a suggestion recorded "
                                      "before confidences were kept per suggestion")
    fit: str
    invoices: list[SuggestedInvoice]
    write_off: Money
    unapplied_amount: Money
    reasons: list[str]
    concerns: list[str]


class PaymentOut(Answer):
    id: int
    external_id: str | None
    status: PaymentStatus
    amount: Money
    currency: str
    received_at: Moment
    value_date: date
    payer_name: str | None
    reference: str | None
    allocations: list[AllocationOut]
    write_off: Money
    deduction: Money = Field(description="a short payment flagged as a deduction")
    unapplied_amount: Money
    confidence: Number | None
    suggestions: list[SuggestionOut] = Field(description="ways to apply it, waiting for a "
                                             "person (empty once it is decided)")
    matched_because: list[str] = Field(description="the rules learned from people that placed "
                                       "it, e.g. \"Globex Corporation paid from 'GLBX "
                                       "HOLDINGS' on 12 Nov 2026\"")


# -- reports -------------------------------------------------------------------------------------
class AgingCurrency(Answer):
    buckets: dict[str, Money]
    invoices: dict[str, int] = Field(description="open invoices per bucket")
    total: Money
    overdue: Money
    in_dispute: dict[str, Money] = Field(description="of each bucket, the part in dispute")


class AgingReportOut(Answer):
    as_of: date
    known_at: Moment | None
    currencies: dict[str, AgingCurrency]


class CashApplicationKpis(Answer):
    payments: int
    auto_match_rate_pct: Number | None
    auto_match_amount_pct: Number | None
    amount_currency: str | None


class DisputeKpis(Answer):
    rate_pct: Number | None = Field(description="invoices issued in the window that were "
                                    "disputed, in %")
    invoices_disputed: int
    resolved: int
    avg_days_to_resolve: Number | None


class DeductionKpis(Answer):
    count: int
    amount: Money | None
    amount_currency: str | None


class BadDebtKpis(Answer):
    amount: Money | None
    ratio_pct: Number | None


class KpiReportOut(Answer):
    """The KPIs of `workflows.kpis`; amounts and ratios over amounts in `currency`, the home
    currency (null with no AR and no sales)."""

    as_of: date
    window_days: int
    currency: str | None
    known_at: Moment | None = None
    ar: Money | None
    current_ar: Money | None
    credit_sales: Money | None
    dso: Number | None
    best_possible_dso: Number | None
    count_back_dso: Number | None
    average_days_delinquent: Number | None
    cei_pct: Number | None
    cash_application: CashApplicationKpis
    approval_turnaround_hours: Number | None
    order_cycle_days: Number | None
    invoice_accuracy_pct: Number | None
    disputes: DisputeKpis
    deductions_outstanding: DeductionKpis
    bad_debt: BadDebtKpis
    aging: dict[str, dict[str, Money]]
    in_dispute: dict[str, Money] = Field(description="open amount in dispute per currency")


# -- closed periods ------------------------------------------------------------------------------
class PeriodOut(Answer):
    period: str = Field(description="the month asked for (YYYY-MM)")
    closed: bool
    closed_through: str = Field(description="the last closed month, which covers `period`")
    closed_at: Moment
    closed_by: str
    source: str


class PeriodCloseOut(PeriodOut):
    created: bool = Field(description="true when this request closed it")


class PeriodsOut(Answer):
    closed_through: str | None
    closes: list[PeriodOut]


# -- revenue recognition (workflows.revenue.to_json) ------------------------------------------
class RecognizedOut(Answer):
    total: Money
    by_type: dict[str, Money] = Field(description="recognised per revenue type")


class RevenueMonthOut(Answer):
    month: str = Field(examples=["2026-06"])
    closed: bool = Field(description="as the monthly close recorded it (else as the books "
                         "stand now)")
    recognized: RecognizedOut
    deferred: Money = Field(description="invoiced, not yet recognised, at month end")
    unbilled: Money = Field(description="recognised, not yet invoiced, at month end")


class WaterfallOut(Answer):
    month: str = Field(examples=["2027-01"], description="a month, or `later`")
    amount: Money


class RevenueCurrencyOut(Answer):
    months: list[RevenueMonthOut]
    deferred: Money
    unbilled: Money
    waterfall: list[WaterfallOut]


class RevenueReportOut(Answer):
    from_: str = Field(alias="from", examples=["2026-01"])
    to: str = Field(examples=["2026-12"])
    as_of: date
    closed_through: str | None
    currencies: dict[str, RevenueCurrencyOut]


# -- back office (issue 14) -------------------------------------------------------------------
class DisputeCreditNoteOut(Answer):
    id: int
    status: str
    number: str | None


class DisputeOut(Answer):
    id: int
    status: str
    invoice: str
    customer: str
    currency: str
    amount: Money
    in_dispute: Money
    reason: str
    note: str | None
    source: str
    opened_by: str | None
    opened_at: Moment
    owner: str | None
    owner_channel: str | None
    resolved_by: str | None
    resolved_at: Moment | None
    resolution_note: str | None
    credit_amount: Money | None
    credit_note: DisputeCreditNoteOut | None
    history: list[HistoryEntry] | None = Field(
        default=None, description="with GET /disputes/{id} only")


class CreditNoteLineOut(Answer):
    line_no: int
    quantity: int | None
    net: Money
    tax: Money
    amount: Money


class RequestedLineOut(Answer):
    line_no: int
    quantity: int | None
    amount: Money | None


class CreditNoteOut(Answer):
    id: int
    number: str | None = Field(description="null while it waits for approval")
    status: str
    invoice: str
    customer: str
    currency: str
    amount: Money
    applied_to_invoice: Money | None
    customer_credit: Money | None
    reason: str | None
    source: str
    external_id: str | None
    requested_by: str | None
    dispute: int | None
    issue_date: date | None
    effective_date: date | None
    decided_by: str | None
    decided_at: Moment | None
    decision_note: str | None
    lines: list[CreditNoteLineOut]
    requested_lines: list[RequestedLineOut]
    history: list[HistoryEntry]


class CreditApplicationOut(Answer):
    """Customer credit applied to another invoice of the same customer."""

    key: str = Field(description="the application's key (`external_id` or Idempotency-Key)")
    credit_note: str
    credit_invoice: str = Field(description="the invoice the note credited, which held the "
                                "credit")
    invoice: str = Field(description="the invoice the credit was applied to")
    customer: str
    currency: str
    amount: Money
    credit_left: Money = Field(description="customer credit still held on `credit_invoice`")
    invoice_balance: Money = Field(description="what `invoice` has open after it")
    by: str
    applied_at: Moment


# -- outbound webhooks (issue 16) -----------------------------------------------------------
class WebhookOut(Answer):
    id: int
    url: str
    events: list[str]
    description: str | None
    status: str
    created_at: Moment
    failing_since: Moment | None
    disabled_at: Moment | None
    disabled_reason: str | None


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="the signing secret (`whsec_...`): shown once, here")


class WebhookSecretOut(Answer):
    id: int
    secret: str = Field(description="the new signing secret (`whsec_...`): shown once, here")
    previous_secret_until: Moment = Field(
        description="until then each delivery is signed with the previous secret too "
                    "(`webhook-signature` carries both), so the receiver can switch")


class WebhookListOut(Answer):
    webhooks: list[WebhookOut]
    event_types: list[str]


class WebhookEventOut(Answer):
    id: int
    webhook_id: str = Field(description="the `webhook-id` header of every attempt")
    type: str
    timestamp: Moment


class WebhookDeliveryOut(Answer):
    id: int
    event: WebhookEventOut
    attempt: int
    attempted_at: Moment
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int | None


class WebhookDeliveriesOut(Answer):
    deliveries: list[WebhookDeliveryOut]
