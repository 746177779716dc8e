"""Customers and products: the master data that orders and invoices point at."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, ts_field


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(unique=True, index=True, max_length=100)
    name: str = Field(index=True, max_length=200)
    currency: str = Field(max_length=3)
    credit_limit_minor: int = big_field(default=0)
    payment_terms: str = Field(default="NET30", max_length=32)
    billing_email: str | None = Field(default=None, max_length=320)
    billing_address: str | None = Field(default=None, max_length=1000)
    shipping_address: str | None = Field(default=None, max_length=1000)
    collector_id: str | None = Field(default=None, foreign_key="users.slack_user_id", index=True)
    sales_rep_id: str | None = Field(default=None, foreign_key="users.slack_user_id", index=True)
    tax_rate_bp: int = Field(default=0, ge=0)
    credit_reviewed: bool = Field(default=False)
    credit_hold: bool = Field(default=False)
    # The customer in the loop (issue 19): where order, backorder, shipment and delivery
    # notices go (None: the billing e-mail); which of them the customer wants (`NoticeLevel`);
    # when goods are recognised as revenue under the customer's terms ("shipment" by default,
    # or "delivery"); and whether a statement of account is e-mailed every month.
    notice_email: str | None = Field(default=None, max_length=320)
    notices: str = Field(default="all", max_length=16,
                         sa_column_kwargs={"server_default": "all"})
    goods_recognized_at: str = Field(default="shipment", max_length=16,
                                     sa_column_kwargs={"server_default": "shipment"})
    monthly_statement: bool = Field(default=False,
                                    sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = ts_field(nullable=False, default_now=True)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class NoticeLevel(StrEnum):
    ALL = "all"  # every customer notice
    ESSENTIAL = "essential"  # only those that ask for a decision or confirm a contract


class RevenueType(StrEnum):
    GOODS = "goods"  # recognised at shipment
    SERVICE = "service"  # recognised ratably over the service period
    SUBSCRIPTION = "subscription"  # recognised ratably over the subscription term


class Product(SQLModel, table=True):
    __tablename__ = "products"
    # Stock can never be over-promised or go negative, whatever a bug or a race tries: every
    # reservation and shipment is a conditional UPDATE, and these checks are the last word.
    __table_args__ = (
        sa.CheckConstraint("reserved >= 0", name="ck_products_reserved_not_negative"),
        sa.CheckConstraint("reserved <= on_hand", name="ck_products_reserved_le_on_hand"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(unique=True, index=True, max_length=64)
    name: str = Field(max_length=200)
    unit_price_minor: int = big_field(ge=0)
    currency: str = Field(max_length=3)
    cost_minor: int | None = big_field(default=None, ge=0)
    on_hand: int = big_field(default=0, ge=0)
    reserved: int = big_field(default=0, ge=0)  # promised to open order lines (sum of qty_reserved)
    # None means "the policy default" (15 % unless configured otherwise).
    max_discount_bp: int | None = Field(default=None, ge=0, le=10000)
    revenue_type: str = Field(default=RevenueType.GOODS, max_length=16)
    # standalone selling price per unit (SPEC §3 allocation); None: the list unit_price
    ssp_minor: int | None = big_field(default=None, ge=0)
    service_months: int | None = Field(default=None, ge=1)
    active: bool = Field(default=True)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)
