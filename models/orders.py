"""Sales orders, their lines and shipments, with the order state machine of SPEC §3."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, ts_field


class OrderStatus(StrEnum):
    DRAFT = "draft"  # being entered, not yet submitted
    PENDING_APPROVAL = "pending_approval"  # waiting for a credit and/or discount decision
    APPROVED = "approved"  # cleared to fulfil; stock is reserved
    BACKORDERED = "backordered"  # approved, but at least one line is short of stock
    PARTIALLY_SHIPPED = "partially_shipped"  # some quantities shipped, some still open
    SHIPPED = "shipped"  # every open quantity has shipped
    INVOICED = "invoiced"  # every shipment is invoiced
    PAID = "paid"  # every invoice of the order is settled
    CLOSED = "closed"  # nothing more will happen
    REJECTED = "rejected"  # an approver said no
    CANCELLED = "cancelled"  # withdrawn before shipping
    ON_HOLD = "on_hold"  # stopped by finance (e.g. customer put on credit hold)


# Which transitions the state machine allows. Everything else is a bug or a bad request.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.DRAFT: frozenset({OrderStatus.PENDING_APPROVAL, OrderStatus.APPROVED,
                                  OrderStatus.CANCELLED}),
    OrderStatus.PENDING_APPROVAL: frozenset({OrderStatus.APPROVED, OrderStatus.REJECTED,
                                             OrderStatus.CANCELLED, OrderStatus.ON_HOLD}),
    OrderStatus.APPROVED: frozenset({OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED,
                                     OrderStatus.SHIPPED, OrderStatus.CANCELLED,
                                     OrderStatus.ON_HOLD}),
    OrderStatus.BACKORDERED: frozenset({OrderStatus.APPROVED, OrderStatus.PARTIALLY_SHIPPED,
                                        OrderStatus.SHIPPED, OrderStatus.CANCELLED,
                                        OrderStatus.ON_HOLD}),
    OrderStatus.PARTIALLY_SHIPPED: frozenset({OrderStatus.SHIPPED, OrderStatus.INVOICED,
                                              OrderStatus.ON_HOLD}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.INVOICED}),
    OrderStatus.INVOICED: frozenset({OrderStatus.PAID}),
    # back to invoiced when a refund reopens one of its invoices
    OrderStatus.PAID: frozenset({OrderStatus.CLOSED, OrderStatus.INVOICED}),
    # (to shipped: a held order left with nothing to ship or bill — its subscription
    # cancelled from the periods not invoiced yet — is complete, `subscriptions.complete_order`)
    OrderStatus.ON_HOLD: frozenset({OrderStatus.PENDING_APPROVAL, OrderStatus.APPROVED,
                                    OrderStatus.CANCELLED, OrderStatus.SHIPPED}),
    OrderStatus.CLOSED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

# Orders whose value counts towards credit exposure until they are invoiced.
UNINVOICED_APPROVED = frozenset({OrderStatus.APPROVED, OrderStatus.BACKORDERED,
                                 OrderStatus.PARTIALLY_SHIPPED, OrderStatus.SHIPPED})


def can_transition(current: str, target: str) -> bool:
    return OrderStatus(target) in TRANSITIONS[OrderStatus(current)]


def can_ship(status: str) -> bool:
    return status in (OrderStatus.APPROVED, OrderStatus.BACKORDERED,
                      OrderStatus.PARTIALLY_SHIPPED)


def can_cancel(status: str) -> bool:
    return OrderStatus.CANCELLED in TRANSITIONS[OrderStatus(status)]


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (sa.Index("ix_orders_customer_status", "customer_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, index=True, max_length=32)
    external_id: str | None = Field(default=None, unique=True, max_length=100)
    customer_id: int = Field(foreign_key="customers.id")
    sales_rep_id: str = Field(foreign_key="users.slack_user_id", index=True, max_length=32)
    currency: str = Field(max_length=3)
    status: str = Field(default=OrderStatus.DRAFT, index=True, max_length=24)
    order_date: date
    subtotal_minor: int = big_field(default=0)  # sum of quantity x unit price, before discounts
    discount_minor: int = big_field(default=0)
    tax_minor: int = big_field(default=0)
    total_minor: int = big_field(default=0)  # subtotal - discount + tax
    # Totals describe what was ordered; the value (after discount, with tax) of the quantities
    # cancelled since (a short line cancelled, the order withdrawn) is kept apart, so
    # `total_minor - cancelled_minor` is what the customer still owes for, shipped or open.
    cancelled_minor: int = big_field(default=0)
    source: str = Field(default="api", max_length=16)
    notes: str | None = Field(default=None, max_length=2000)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (sa.UniqueConstraint("order_id", "line_no"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    line_no: int
    product_id: int = Field(foreign_key="products.id", index=True)
    sku: str = Field(max_length=64)
    description: str = Field(max_length=200)
    quantity: int = big_field(gt=0)
    unit_price_minor: int = big_field(ge=0)
    discount_bp: int = Field(default=0, ge=0, le=10000)
    line_total_minor: int = big_field(default=0)  # after discount, before tax
    # quantity = shipped + cancelled + open; open = reserved + backordered once fulfilment ran
    qty_reserved: int = big_field(default=0)
    qty_shipped: int = big_field(default=0)
    qty_backordered: int = big_field(default=0)
    qty_cancelled: int = big_field(default=0)
    # Revenue recognition (SPEC §3), fixed when the order is entered: the product's revenue
    # type, and its standalone selling price per unit (the product's `ssp`, else its list
    # price; the line's own price when the product is priced in another currency).
    revenue_type: str = Field(default="goods", max_length=16)
    ssp_minor: int = big_field(default=0, ge=0)
    # The service period, both days included (services and subscriptions), and for a
    # subscription billed by period its frequency (`models.revenue.Billing`). A billed
    # subscription is never shipped: `workflows.subscriptions` invoices each period.
    service_start: date | None = None
    service_end: date | None = None
    billing: str | None = Field(default=None, max_length=16)
    # A billed subscription cancelled through the API: no period starting on or after this
    # day is billed or served.
    cancelled_from: date | None = None
    # The subscription line this one renews (one renewal per line: unique).
    # (an order_lines id; no foreign key, so that SQLite can drop the column on a downgrade)
    renewal_of_line_id: int | None = Field(default=None, unique=True, index=True)

    @property
    def qty_open(self) -> int:
        """Still to ship: neither shipped nor cancelled. A subscription billed by period has
        nothing to ship (its periods are invoiced by `workflows.subscriptions`)."""
        if self.billing:
            return 0
        return self.quantity - self.qty_shipped - self.qty_cancelled


class ShipmentStatus(StrEnum):
    SHIPPED = "shipped"  # handed to the carrier
    IN_TRANSIT = "in_transit"  # the carrier reports it moving
    OUT_FOR_DELIVERY = "out_for_delivery"  # on the truck for its last leg
    DELIVERED = "delivered"  # the customer has it (final)
    EXCEPTION = "exception"  # the carrier reports a problem (delay, damage, refused...)


# The events a carrier (or the ERP relaying it) may post, and where each leaves a shipment.
# A delivered shipment stays delivered: later events are recorded, the status does not move.
SHIPMENT_EVENTS = (ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY,
                   ShipmentStatus.DELIVERED, ShipmentStatus.EXCEPTION)


class Shipment(SQLModel, table=True):
    __tablename__ = "shipments"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    carrier: str = Field(max_length=100)
    tracking_number: str = Field(max_length=200)
    shipped_at: datetime = ts_field(nullable=False)
    status: str = Field(default=ShipmentStatus.SHIPPED, max_length=24,
                        sa_column_kwargs={"server_default": "shipped"})
    delivered_at: datetime | None = ts_field()
    # proof of delivery: who signed, and/or where the carrier's POD document is
    pod_signed_by: str | None = Field(default=None, max_length=200)
    pod_document_url: str | None = Field(default=None, max_length=2000)
    # Goods on this shipment are recognised at delivery, not shipment (the customer's terms
    # when it shipped; frozen so a later change of terms never rewrites revenue).
    recognize_at_delivery: bool = Field(default=False,
                                        sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = ts_field(nullable=False, default_now=True)


class ShipmentEvent(SQLModel, table=True):
    """What the carrier reported about a shipment, append-only, one row per API call
    (`Idempotency-Key` keeps a retried call from adding a second)."""

    __tablename__ = "shipment_events"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    kind: str = Field(max_length=24)  # one of SHIPMENT_EVENTS
    occurred_at: datetime = ts_field(nullable=False)
    location: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    pod_signed_by: str | None = Field(default=None, max_length=200)
    pod_document_url: str | None = Field(default=None, max_length=2000)
    actor: str = Field(max_length=64)
    created_at: datetime = ts_field(nullable=False, default_now=True)


class ShipmentLine(SQLModel, table=True):
    __tablename__ = "shipment_lines"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    quantity: int = big_field(gt=0)
