"""Orders typed into the `/o2c new` modal: check every field, then create the order through
`workflows.orders.create_order` (source "slack"), which runs the credit and discount checks.

Errors name the modal row they belong to (`lines[<row>].sku|quantity|discount_pct|
service_start|service_end|billing`, or `customer`), so the modal can show each one inline
next to its input; blank rows are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from models import Customer, Order, Product, Role
from models.limits import MAX_QUANTITY
from workflows import orders
from workflows import validation as v
from workflows.errors import FieldError, ValidationFailed
from workflows.inputs import OrderIn, build
from workflows.users import require_role

WHOLE = re.compile(r"^[+-]?[0-9]+$")  # ASCII: `\d` would take "１２３"
LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")
ENTER_ROLES = (Role.SALES,)  # admins hold every role


@dataclass
class EntryLine:
    row: int  # position in the modal (0-based), for pointing errors at it
    sku: str | None = None
    quantity: str | None = None
    discount_pct: str | None = None
    service_start: str | None = None  # services and subscriptions (YYYY-MM-DD)
    service_end: str | None = None
    billing: str | None = None  # subscriptions billed by period

    @property
    def blank(self) -> bool:
        return not (self.sku or self.quantity or self.discount_pct)


@dataclass
class Entry:
    customer: str | None  # external id chosen in the customer select
    lines: list[EntryLine] = field(default_factory=list)
    notes: str | None = None


def check_may_enter(session: Session, user_id: str) -> None:
    require_role(session, user_id=user_id, roles=ENTER_ROLES, action="order.create",
                 entity_type="order", entity_id="new")


def validate_entry(session: Session, entry: Entry, *, rep: str) -> OrderIn:
    """Every field checked at once (reads only): the order to create, or `ValidationFailed`
    naming each bad field. The modal runs it before its ack, so the form stays open with each
    error under its input; `create_from_entry` runs it again in its own transaction."""
    errors: list[FieldError] = []
    customer = None
    if not entry.customer:
        errors.append(FieldError("customer", "choose a customer"))
    else:
        customer = session.exec(select(Customer)
                                .where(Customer.external_id == entry.customer)).first()
        if customer is None:
            errors.append(FieldError("customer", "unknown customer; search again"))
    filled = [line for line in entry.lines if not line.blank]
    if not filled:
        first = entry.lines[0].row if entry.lines else 0
        errors.append(FieldError(f"lines[{first}].sku", "add at least one product"))
    skus = {line.sku for line in filled if line.sku}
    products = {p.sku: p for p in session.exec(select(Product).where(Product.sku.in_(skus)))}
    for line in filled:
        errors.extend(_line_errors(line, products.get(line.sku or ""), customer))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.detail}" for e in errors),
                               errors=errors)
    try:  # the order as every surface sends it (workflows.inputs), pointed at modal rows
        return build(OrderIn, customer=customer.external_id, sales_rep=rep,
                     currency=customer.currency, notes=(entry.notes or "").strip() or None,
                     lines=[{"sku": line.sku, "quantity": int(line.quantity.strip()),
                             "discount_pct": (line.discount_pct or "").strip() or None,
                             "service_start": line.service_start,
                             "service_end": line.service_end, "billing": line.billing}
                            for line in filled])
    except ValidationFailed as exc:
        raise ValidationFailed(exc.detail, errors=[_to_row(e, filled) for e in exc.errors]
                               ) from None


def _line_errors(line: EntryLine, product: Product | None,
                 customer: Customer | None) -> list[FieldError]:
    where = f"lines[{line.row}]"
    errors: list[FieldError] = []
    if not line.sku:
        errors.append(FieldError(f"{where}.sku", "choose a product"))
    elif product is None or not product.active:
        errors.append(FieldError(f"{where}.sku", f"unknown SKU {line.sku!r}"))
    elif customer is not None and product.currency != customer.currency:
        errors.append(FieldError(f"{where}.sku", f"priced in {product.currency}; "
                                 f"{customer.name} is billed in {customer.currency}"))
    quantity = (line.quantity or "").strip()
    if not WHOLE.match(quantity) or quantity.startswith("-") or not quantity.strip("+0"):
        errors.append(FieldError(f"{where}.quantity", "must be a whole number above 0"))
    else:
        try:  # a 30-digit quantity is refused by the bound, without building the int
            v.quantity(f"{where}.quantity",
                       int(quantity) if len(quantity) <= 20 else MAX_QUANTITY + 1)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if line.discount_pct not in (None, ""):
        try:
            v.percent_bp(f"{where}.discount_pct", line.discount_pct.strip())
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if product is not None and product.active:
        try:  # a service's period, a subscription's billing: before the ack, under the inputs
            orders.service_terms(where, product, line.service_start, line.service_end,
                                 line.billing)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    return errors


def create_from_entry(session: Session, entry: Entry, *, rep: str, now: datetime) -> Order:
    """Check the role and every field, then create and submit the order (credit and discount
    checks, approvals, reservations, the rep's DM: `workflows.orders.create_order`)."""
    check_may_enter(session, rep)
    data = validate_entry(session, entry, rep=rep)
    filled = [line for line in entry.lines if not line.blank]
    try:
        return orders.create_order(session, data, actor=rep, source="slack", now=now)
    except ValidationFailed as exc:  # point create_order's lines[i] back at the modal rows
        raise ValidationFailed(exc.detail, errors=[_to_row(e, filled) for e in exc.errors]
                               ) from None


def _to_row(error: FieldError, filled: list[EntryLine]) -> FieldError:
    match = LINE_FIELD.match(error.field)
    if not match or int(match[1]) >= len(filled):
        return error
    part = match[2] if match[2] in ("sku", "quantity", "discount_pct", "service_start",
                                    "service_end", "billing") else "sku"
    return FieldError(f"lines[{filled[int(match[1])].row}].{part}", error.detail)
