"""The records that come in, declared once: the REST API takes them as request bodies, the CSV
import (`bot/imports.py`) builds them from cells, the Slack modals from their fields, and the
workflows take them as arguments (`masterdata.upsert_customer(session, CustomerIn(...))`).

Strict: unknown fields, floats for money and numbers for quantities given as strings are
refused, so a typo never silently becomes a default. Bounds come from `models.limits` (README,
"Bounds"): amounts are ASCII decimal strings (a regex `\\d` would also take "１２３"),
quantities and stock are bounded, dates and times must be in the years `MIN_YEAR`..`MAX_YEAR`,
and no text may hold a NUL character. What needs the database or the currency (a known SKU, the
currency's own decimals, quantity x price within the bound) the workflows check, naming the
field the same way.

Each surface reports a refusal in its own words: the API a 422 problem naming the field
(`api/problems.py`), the CSV import "row N, column X", a modal an inline error (`build` turns
pydantic's refusal into `ValidationFailed` naming each field)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from models import EVENT_TYPES, limits
from models.money import CURRENCIES
from workflows.errors import FieldError, ValidationFailed
from workflows.validation import TERMS, check_email  # ValueError: an error naming the field


def _in_years(value: date | datetime) -> date | datetime:
    return limits.check_year(value)  # OutOfBounds is a ValueError: an error naming the field


ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _iso_day(value: Any) -> Any:
    """A day is written YYYY-MM-DD (or given as a date): pydantic would also read a number,
    "0" included, as seconds since 1970 — never what a finance team meant."""
    if isinstance(value, datetime) or not isinstance(value, date | str) or (
            isinstance(value, str) and not ISO_DAY.fullmatch(value)):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


def _iso_moment(value: Any) -> Any:
    """A moment is an ISO 8601 date and time with its offset (or a datetime), not a number."""
    if not isinstance(value, datetime | str) or (
            isinstance(value, str) and not ISO_MOMENT.match(value)):
        raise ValueError("must be a date and time written YYYY-MM-DDTHH:MM:SS with an offset")
    return value


AMOUNT_PATTERN = rf"^[0-9]{{1,{limits.MAX_AMOUNT_DIGITS}}}(\.[0-9]{{1,3}})?$"
Amount = Annotated[StrictStr, StringConstraints(pattern=AMOUNT_PATTERN)]
Percent = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,2})?$")]
# The codes the bot accepts are listed in the schema (upper case; lower case is accepted too).
Currency = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z]{3}$"),
                     WithJsonSchema({"type": "string", "enum": sorted(CURRENCIES)})]
Terms = Annotated[StrictStr, StringConstraints(max_length=32),
                  WithJsonSchema({"type": "string", "maxLength": 32,
                                  "pattern": TERMS.pattern, "examples": ["NET30", "2/10 NET30"]})]
SLACK_USER_PATTERN = r"^[UW][A-Z0-9]{2,31}$"
SlackUser = Annotated[StrictStr, StringConstraints(pattern=SLACK_USER_PATTERN)]
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"  # no line breaks or other control characters
Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=200)]
LongText = Annotated[StrictStr, StringConstraints(max_length=1000)]
Quantity = Annotated[StrictInt, Field(gt=0, le=limits.MAX_QUANTITY)]
Stock = Annotated[StrictInt, Field(ge=0, le=limits.MAX_QUANTITY)]
Day = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_in_years)]
Moment = Annotated[AwareDatetime, BeforeValidator(_iso_moment), AfterValidator(_in_years)]
Email = Annotated[StrictStr, StringConstraints(max_length=320)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("string_blank", "must not be blank")
    return value


def Key(max_length: int, *, strip: bool = False) -> Any:
    """An id a record is known by (external_id, SKU, number, the customer named): at most
    `max_length` characters, never empty nor only whitespace — "   " identifies nothing, and
    stored as a key it would take every later "   " for the same record. `strip`: the key is
    stored without the spaces around it (those that always were; the others keep what was
    sent, so a key stored before still finds its record)."""
    return Annotated[StrictStr, StringConstraints(strip_whitespace=strip, min_length=1,
                                                  max_length=max_length),
                     AfterValidator(_not_blank)]


def _no_nul(value: Any) -> Any:
    if isinstance(value, str):
        limits.check_text(value)
    elif isinstance(value, list | tuple):
        for item in value:
            _no_nul(item)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        """PostgreSQL cannot store NUL in text or JSON: refused for every field, by name."""
        return _no_nul(value)


Model = TypeVar("Model", bound=BaseModel)


def build(model: type[Model], **fields: Any) -> Model:
    """`model(**fields)`, a refusal raised as `ValidationFailed` naming each field as the
    workflows do (`lines[0].quantity`): for the Slack modals, which show it under the input."""
    try:
        return model(**fields)
    except ValidationError as exc:
        errors = [FieldError(path_of(e.get("loc", ())), _said(e)) for e in exc.errors()]
        raise ValidationFailed("; ".join(f"{e.field}: {e.detail}" for e in errors),
                               errors=errors) from None


def _said(error: Any) -> str:
    """Pydantic's words, except for an amount, which a person types: say what it looks like."""
    if (error.get("type") == "string_pattern_mismatch"
            and (error.get("ctx") or {}).get("pattern") == AMOUNT_PATTERN):
        return ("type an amount like 1250.00 (digits and a decimal point, no currency symbol "
                "or thousands separator)")
    return error.get("msg", "invalid")


def path_of(loc: tuple | list) -> str:
    """('lines', 0, 'quantity') -> 'lines[0].quantity'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
    return path


def _email(value: str | None) -> str | None:
    return check_email(value) if value is not None and value.strip() else None


OptionalEmail = Annotated[Email | None, AfterValidator(_email)]


class UserIn(Strict):
    name: Text
    roles: Annotated[list[Annotated[StrictStr, StringConstraints(max_length=32)]],
                     Field(max_length=10)]
    email: OptionalEmail = None
    timezone: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None


class CustomerIn(Strict):
    """A customer as an integration sends it. Optional fields left out keep their stored value
    when the customer exists — an ERP re-sending name and limit must not reset the collector,
    the billing contact or the credit review — and take the defaults when new."""

    # (left out = not in `model_fields_set`: `masterdata.upsert_customer`)

    external_id: Key(100, strip=True)
    name: Text
    currency: Currency
    credit_limit: Amount
    payment_terms: Terms
    billing_email: OptionalEmail = None
    billing_address: LongText | None = None
    shipping_address: LongText | None = None
    collector: SlackUser | None = None
    sales_rep: SlackUser | None = None
    credit_reviewed: StrictBool = False
    tax_rate_pct: Percent | None = None
    # the customer in the loop (issue 19)
    notice_email: OptionalEmail = None  # where order notices go (default: billing_email)
    notices: Literal["all", "essential"] = "all"  # "essential": no shipment/delivery notices
    goods_recognized_at: Literal["shipment", "delivery"] = "shipment"  # revenue of goods
    monthly_statement: StrictBool = False  # a statement of account e-mailed every month


class ProductIn(Strict):
    """A product as an integration sends it. As with `CustomerIn`, optional fields left out
    keep their stored value when the product exists and take the defaults when new."""

    sku: Key(64, strip=True)
    name: Text
    unit_price: Amount
    currency: Currency
    on_hand: Stock
    max_discount_pct: Percent | None = None
    revenue_type: StrictStr = "goods"
    cost: Amount | None = None
    service_months: Annotated[StrictInt, Field(ge=1, le=120)] | None = None
    ssp: Amount | None = None


class OrderLineIn(Strict):
    sku: Key(64)
    quantity: Quantity
    unit_price: Amount | None = None
    discount_pct: Percent | None = None
    # services and subscriptions: the period served, both days included (SPEC §4)
    service_start: Day | None = None
    service_end: Day | None = None
    billing: Literal["monthly", "quarterly", "annual"] | None = None


class OrderIn(Strict):
    """An order; `customer` is the customer's external_id, `sales_rep` a Slack user id. Without
    an `order_date` the order is dated today in the business time zone."""

    customer: Key(100)
    sales_rep: SlackUser
    currency: Currency
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=200)]
    external_id: Key(100) | None = None
    order_date: Day | None = None
    notes: Annotated[StrictStr, StringConstraints(max_length=2000)] | None = None


class ShipmentLineIn(Strict):
    sku: Key(64)
    quantity: Quantity


class ShipmentIn(Strict):
    """A shipment of an order (its number); without `lines`, every open quantity ships."""

    order: Key(32)
    # one line each: they go into the customer's e-mail subject and Slack messages
    carrier: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                    max_length=100, pattern=ONE_LINE)]
    tracking_number: Annotated[StrictStr, StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=ONE_LINE)]
    shipped_at: Moment
    lines: Annotated[list[ShipmentLineIn], Field(max_length=200)] | None = None


class InvoiceLineIn(Strict):
    description: Text
    sku: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None
    quantity: Quantity = 1
    unit_price: Amount | None = None
    amount: Amount | None = None


class InvoiceIn(Strict):
    """An invoice issued by the ERP, stored as issued. Without `payment_terms` its terms are
    NET<days from issue_date to due_date>."""

    number: Key(64, strip=True)
    customer: Key(100)
    currency: Currency
    issue_date: Day
    due_date: Day
    total: Amount
    order: Annotated[StrictStr, StringConstraints(max_length=32)] | None = None  # its number
    lines: Annotated[list[InvoiceLineIn], Field(max_length=200)] | None = None
    payment_terms: Terms | None = None


class PaymentIn(Strict):
    """A payment received; `customer` is an external_id when the sender knows the payer.
    `value_date`: when the money moved, if the source says so apart from `received_at` (a bank
    statement's value date); by default the date of `received_at` in the offset it came with."""

    amount: Amount
    currency: Currency
    received_at: Moment
    payer_name: Annotated[StrictStr, StringConstraints(max_length=300)] | None = None
    reference: Annotated[StrictStr, StringConstraints(max_length=2000)] | None = None
    customer: Annotated[StrictStr, StringConstraints(max_length=100)] | None = None
    method: Annotated[StrictStr, StringConstraints(max_length=32)] | None = None
    external_id: Key(200) | None = None
    value_date: Day | None = None


class SubscriptionCancelIn(Strict):
    reason: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                   max_length=500)]
    effective: Day | None = None  # a period not invoiced yet (default: the next to start)
    by: SlackUser | None = None


class SubscriptionRenewIn(Strict):
    service_end: Day | None = None  # default: a term as long as the one renewed
    external_id: Key(100) | None = None
    by: SlackUser | None = None


# -- back office (issue 14) -----------------------------------------------------------------------
DisputeReasonText = Annotated[StrictStr, StringConstraints(min_length=1, max_length=16),
                              WithJsonSchema({"type": "string", "enum": [
                                  "pricing", "quantity", "damaged", "not_received", "duplicate",
                                  "tax", "other"]})]
Note = Annotated[StrictStr, StringConstraints(max_length=2000)]
Reason = Annotated[StrictStr, StringConstraints(min_length=1, max_length=500)]


class DisputeOpenIn(Strict):
    reason: DisputeReasonText
    amount: Amount | None = None  # default: the open balance not already in dispute
    note: Note | None = None
    opened_by: SlackUser | None = None


class DisputeResolveIn(Strict):
    outcome: Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": [
        "accepted", "rejected", "withdrawn"]})]
    by: SlackUser
    note: Note | None = None
    credit_amount: Amount | None = None  # accepted only; default: the disputed amount


class CreditNoteLineIn(Strict):
    line_no: Annotated[StrictInt, Field(ge=1, le=10_000)]
    quantity: Quantity | None = None
    amount: Amount | None = None  # net, before tax


class CreditNoteIn(Strict):
    invoice: Key(64, strip=True)
    reason: Reason
    amount: Amount | None = None  # tax included
    lines: Annotated[list[CreditNoteLineIn], Field(min_length=1, max_length=200)] | None = None
    external_id: Key(200) | None = None
    source: Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": ["erp"]})] | None = None
    requested_by: SlackUser | None = None
    issue_date: Day | None = None  # an ERP's own (source erp)


class CreditApplicationIn(Strict):
    """Customer credit a credit note left, applied to another invoice
    (`workflows.customer_credit`)."""

    invoice: Key(64, strip=True)
    amount: Amount
    by: SlackUser  # a collector or credit approver
    external_id: Key(150) | None = None  # the application's key (else the Idempotency-Key)


# -- outbound webhooks (issue 16) -----------------------------------------------------------------
EventType = Annotated[StrictStr, StringConstraints(max_length=64),
                      Field(json_schema_extra={"enum": list(EVENT_TYPES)})]


class WebhookIn(Strict):
    url: Annotated[StrictStr, StringConstraints(min_length=1, max_length=2000)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
    description: Annotated[StrictStr, StringConstraints(max_length=500)] | None = None


class ShipmentEventIn(Strict):
    """What a carrier reports about a shipment (issue 19): `kind` is `in_transit`,
    `out_for_delivery`, `delivered` or `exception`; proof of delivery (who signed, a link to
    the carrier's POD document) only with `delivered`."""

    kind: Literal["in_transit", "out_for_delivery", "delivered", "exception"]
    occurred_at: Moment
    location: Annotated[StrictStr, StringConstraints(strip_whitespace=True,
                                                     max_length=200)] | None = None
    note: LongText | None = None
    pod_signed_by: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                          max_length=200)] | None = None
    pod_document_url: Annotated[StrictStr, StringConstraints(
        max_length=2000, pattern=r"^https://[^\s]+$")] | None = None
