"""Request bodies of the REST API. Strict: unknown fields, floats for money and numbers for
quantities given as strings are refused, so a typo never silently becomes a default."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)

Amount = Annotated[StrictStr, StringConstraints(pattern=r"^\d{1,15}(\.\d{1,4})?$")]
Percent = Annotated[StrictStr, StringConstraints(pattern=r"^\d{1,3}(\.\d{1,2})?$")]
Currency = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
SlackUser = Annotated[StrictStr, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,31}$")]
Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=200)]
LongText = Annotated[StrictStr, StringConstraints(max_length=1000)]
Quantity = Annotated[StrictInt, Field(gt=0, le=10_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(Strict):
    name: Text
    roles: list[StrictStr]
    email: Annotated[StrictStr, StringConstraints(max_length=320)] | None = None
    timezone: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None


class CustomerIn(Strict):
    external_id: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                        max_length=100)]
    name: Text
    currency: Currency
    credit_limit: Amount
    payment_terms: Annotated[StrictStr, StringConstraints(max_length=32)]
    billing_email: Annotated[StrictStr, StringConstraints(max_length=320)] | None = None
    billing_address: LongText | None = None
    shipping_address: LongText | None = None
    collector: SlackUser | None = None
    sales_rep: SlackUser | None = None
    credit_reviewed: StrictBool = False
    tax_rate_pct: Percent | None = None


class ProductIn(Strict):
    sku: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=64)]
    name: Text
    unit_price: Amount
    currency: Currency
    on_hand: Annotated[StrictInt, Field(ge=0)]
    max_discount_pct: Percent | None = None
    revenue_type: StrictStr = "goods"
    cost: Amount | None = None
    service_months: Annotated[StrictInt, Field(ge=1, le=120)] | None = None


class OrderLineIn(Strict):
    sku: Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
    quantity: Quantity
    unit_price: Amount | None = None
    discount_pct: Percent | None = None


class OrderIn(Strict):
    customer: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    sales_rep: SlackUser
    currency: Currency
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=200)]
    external_id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)] | None = None
    order_date: date | None = None
    notes: Annotated[StrictStr, StringConstraints(max_length=2000)] | None = None


class ShipmentLineIn(Strict):
    sku: Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
    quantity: Quantity


class ShipmentIn(Strict):
    order: Annotated[StrictStr, StringConstraints(min_length=1, max_length=32)]
    carrier: Text
    tracking_number: Text
    shipped_at: AwareDatetime
    lines: list[ShipmentLineIn] | None = None


class InvoiceLineIn(Strict):
    description: Text
    sku: StrictStr | None = None
    quantity: Quantity = 1
    unit_price: Amount | None = None
    amount: Amount | None = None


class InvoiceIn(Strict):
    number: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                   max_length=64)]
    customer: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    currency: Currency
    issue_date: date
    due_date: date
    total: Amount
    order: StrictStr | None = None
    lines: list[InvoiceLineIn] | None = None
    payment_terms: Annotated[StrictStr, StringConstraints(max_length=32)] | None = None


class PaymentIn(Strict):
    amount: Amount
    currency: Currency
    received_at: AwareDatetime
    payer_name: Annotated[StrictStr, StringConstraints(max_length=300)] | None = None
    reference: Annotated[StrictStr, StringConstraints(max_length=2000)] | None = None
    customer: StrictStr | None = None
    method: Annotated[StrictStr, StringConstraints(max_length=32)] | None = None
    external_id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=200)] | None = None
