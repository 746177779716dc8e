"""SQLModel tables and the state vocabularies; no business logic beyond one row's invariants.

Importing this package registers every table on `SQLModel.metadata` (Alembic relies on it).
"""

from models.approvals import ORDER_KINDS, Approval, ApprovalKind, ApprovalStatus
from models.backoffice import (
    DISPUTE_RESOLUTIONS,
    CreditNoteLine,
    CreditNoteRequest,
    CreditNoteStatus,
    Dispute,
    DisputeReason,
    DisputeStatus,
    WriteOffKind,
    WriteOffRequest,
    WriteOffRequestStatus,
)
from models.collections import (
    ActivityKind,
    CollectionActivity,
    DigestRun,
    DunningConfirmation,
    DunningNotice,
    DunningRunRecord,
    PromiseStatus,
    PromiseToPay,
)
from models.customers import Customer, NoticeLevel, Product, RevenueType
from models.integrations import (
    EVENT_TYPES,
    CrmDeal,
    PaymentFee,
    PaymentLink,
    ProviderEvent,
    ProviderEventStatus,
    Refund,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from models.invoices import (
    AGING_BUCKETS,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    WriteOff,
    WriteOffReason,
    invoice_status,
)
from models.links import BackorderChoice, CustomerLink, LinkScope
from models.orders import (
    SHIPMENT_EVENTS,
    Order,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
    ShipmentStatus,
    can_cancel,
    can_ship,
    can_transition,
)
from models.payments import (
    Allocation,
    CashRule,
    CashRuleKind,
    Deduction,
    DeductionStatus,
    Payment,
    PaymentStatus,
    PaymentSuggestion,
    ReversedKind,
    ReversedSettlement,
)
from models.people import Role, User, UserRole
from models.periods import ClosedPeriod
from models.reach import (
    ChannelSetting,
    ChannelWorkspace,
    CreditRequest,
    CreditRequestStatus,
    NumberAnswers,
)
from models.revenue import Billing, RevenueClose, RevenueEntry, SubscriptionBilling
from models.slack_install import slack_bots, slack_installations, slack_oauth_states
from models.system import (
    AuditEvent,
    Counter,
    IdempotencyKey,
    InteractionReceipt,
    JobRun,
    KpiDaily,
    KpiSnapshot,
    OutboxMessage,
    OutboxStatus,
    Policy,
    SlackEventReceipt,
)

__all__ = [
    "ChannelSetting", "ChannelWorkspace", "CreditRequest", "CreditRequestStatus", "NumberAnswers",
    "slack_bots", "slack_installations", "slack_oauth_states",
    "AGING_BUCKETS", "DISPUTE_RESOLUTIONS", "EVENT_TYPES", "ORDER_KINDS",
    "CreditNoteLine", "CreditNoteRequest", "CreditNoteStatus", "DeductionStatus", "Dispute",
    "DisputeReason", "DisputeStatus", "WriteOffKind", "WriteOffRequest",
    "WriteOffRequestStatus",
    "ActivityKind", "Allocation", "Approval", "ApprovalKind", "ApprovalStatus", "AuditEvent",
    "CashRule", "CashRuleKind", "PaymentSuggestion", "ReversedKind",
    "ReversedSettlement",
    "Billing", "RevenueClose", "RevenueEntry", "SubscriptionBilling",
    "ClosedPeriod", "CollectionActivity", "Counter", "CreditNote", "Customer", "Deduction",
    "DigestRun", "DunningConfirmation", "DunningNotice", "DunningRunRecord", "IdempotencyKey",
    "InteractionReceipt",
    "Invoice",
    "InvoiceLine", "InvoiceStatus", "JobRun",
    "KpiDaily", "KpiSnapshot", "Order", "OrderLine", "OrderStatus",
    "OutboxMessage", "OutboxStatus", "Payment", "PaymentStatus", "Policy", "Product",
    "PromiseStatus", "PromiseToPay", "RevenueType", "Role", "Shipment", "ShipmentLine",
    "SlackEventReceipt", "User", "UserRole", "WriteOff", "WriteOffReason", "can_cancel",
    "can_ship", "can_transition", "invoice_status",
    "CrmDeal", "PaymentFee", "PaymentLink", "ProviderEvent", "ProviderEventStatus", "Refund",
    "SubscriptionStatus", "WebhookDelivery", "WebhookEvent", "WebhookSubscription",
    "SHIPMENT_EVENTS", "BackorderChoice", "CustomerLink", "LinkScope", "NoticeLevel",
    "ShipmentEvent", "ShipmentStatus",
]
