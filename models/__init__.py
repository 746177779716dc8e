"""SQLModel tables and the state vocabularies; no business logic beyond one row's invariants.

Importing this package registers every table on `SQLModel.metadata` (Alembic relies on it).
"""

from models.approvals import Approval, ApprovalKind, ApprovalStatus
from models.collections import (
    ActivityKind,
    CollectionActivity,
    DigestRun,
    DunningNotice,
    PromiseStatus,
    PromiseToPay,
)
from models.customers import Customer, Product, RevenueType
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
from models.orders import (
    Order,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentLine,
    can_cancel,
    can_ship,
    can_transition,
)
from models.payments import Allocation, Deduction, Payment, PaymentStatus
from models.people import Role, User, UserRole
from models.periods import ClosedPeriod
from models.system import (
    AuditEvent,
    Counter,
    IdempotencyKey,
    InteractionReceipt,
    JobRun,
    OutboxMessage,
    OutboxStatus,
    Policy,
    SlackEventReceipt,
)

__all__ = [
    "AGING_BUCKETS", "EVENT_TYPES",
    "ActivityKind", "Allocation", "Approval", "ApprovalKind", "ApprovalStatus", "AuditEvent",
    "ClosedPeriod", "CollectionActivity", "Counter", "CreditNote", "Customer", "Deduction",
    "DigestRun", "DunningNotice", "IdempotencyKey", "InteractionReceipt", "Invoice",
    "InvoiceLine", "InvoiceStatus", "JobRun", "Order", "OrderLine", "OrderStatus",
    "OutboxMessage", "OutboxStatus", "Payment", "PaymentStatus", "Policy", "Product",
    "PromiseStatus", "PromiseToPay", "RevenueType", "Role", "Shipment", "ShipmentLine",
    "SlackEventReceipt", "User", "UserRole", "WriteOff", "WriteOffReason", "can_cancel",
    "can_ship", "can_transition", "invoice_status",
    "CrmDeal", "PaymentFee", "PaymentLink", "ProviderEvent", "ProviderEventStatus", "Refund",
    "SubscriptionStatus", "WebhookDelivery", "WebhookEvent", "WebhookSubscription",
]
