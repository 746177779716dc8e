"""Customers and products pushed in by an ERP/CRM (API, CSV) or the demo seed.

A POST of an existing `external_id`/`sku` updates it: integrations re-send master data, and a
re-send must converge rather than fail or duplicate. Every change is audited.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, select

from models import Customer, Product, RevenueType, User
from workflows import audit, exposure
from workflows import validation as v
from workflows.errors import ValidationFailed
from workflows.inputs import CustomerIn, ProductIn


def _known_user(session: Session, field: str, user_id: str | None) -> str | None:
    if not user_id:
        return None
    if not v.SLACK_USER_ID.match(user_id):
        raise ValidationFailed.of(field, "must be a Slack user id such as U012AB3CD")
    if session.get(User, user_id) is None:
        raise ValidationFailed.of(field, f"unknown user {user_id}; add it first with "
                                  f"PUT /api/v1/users/{user_id}")
    return user_id


class Upserted(NamedTuple):
    """What an upsert did: the record, whether it was created, and whether anything about it
    changed (False for an identical re-send: the CSV import reports it as unchanged)."""

    record: Any
    created: bool
    changed: bool


def upsert_customer(session: Session, data: CustomerIn, *, actor: str) -> Upserted:
    if not data.external_id.strip():
        raise ValidationFailed.of("external_id", "must not be empty")
    if not data.name.strip():
        raise ValidationFailed.of("name", "must not be empty")
    given = {k: getattr(data, k) for k in OPTIONAL_CUSTOMER_FIELDS
             if k in data.model_fields_set}  # left out: keep what is stored
    currency = v.currency("currency", data.currency)
    values: dict[str, Any] = {
        "name": data.name.strip(),
        "credit_limit_minor": v.amount_minor("credit_limit", data.credit_limit, currency),
        "payment_terms": v.payment_terms("payment_terms", data.payment_terms),
    }
    v.text("name", data.name)
    v.text("external_id", data.external_id)
    if "billing_email" in given:
        values["billing_email"] = v.email("billing_email", given["billing_email"])
    for field in ("billing_address", "shipping_address"):
        if field in given:
            values[field] = v.text(field, given[field])
    if "collector" in given:
        values["collector_id"] = _known_user(session, "collector", given["collector"])
    if "sales_rep" in given:
        values["sales_rep_id"] = _known_user(session, "sales_rep", given["sales_rep"])
    if "credit_reviewed" in given:
        values["credit_reviewed"] = bool(given["credit_reviewed"])
    if "notice_email" in given:
        values["notice_email"] = v.email("notice_email", given["notice_email"])
    for field in ("notices", "goods_recognized_at", "monthly_statement"):
        if field in given:
            values[field] = given[field]
    if "tax_rate_pct" in given:
        values["tax_rate_bp"] = (v.percent_bp("tax_rate_pct", given["tax_rate_pct"])
                                 if given["tax_rate_pct"] else 0)
    # locked: a change made meanwhile (a credit approver's raise, another sync) is what this
    # one changes from, so the audit's "from" is the value it replaced
    customer = session.exec(
        select(Customer).where(Customer.external_id == data.external_id).with_for_update()
        .execution_options(populate_existing=True)).first()
    created = customer is None
    if customer is None:
        customer = Customer(external_id=data.external_id, name=values["name"],
                            currency=currency)
    elif customer.currency != currency:
        raise ValidationFailed.of("currency", f"customer {data.external_id} bills in "
                                  f"{customer.currency}; a currency change needs a new customer")
    changes = {}
    for field, value in values.items():
        before = getattr(customer, field)
        if created or before != value:
            changes[field] = [None if created else before, value]
            setattr(customer, field, value)
    if not changes:
        return Upserted(customer, False, False)
    session.add(customer)
    session.flush()
    if not created and ("credit_limit_minor" in changes or "tax_rate_bp" in changes):
        # a waiting card shows the new limit, or the orders not yet invoiced at the rate
        # their invoices will charge (`receivables.uninvoiced_approved_minor`)
        exposure.moved(session, customer.id)
    if not created and "tax_rate_bp" in changes:
        # the orders still to invoice are worth what they will bill at the new rate
        from workflows.orders import reprice_for_tax_rate  # orders imports this module

        reprice_for_tax_rate(session, customer, before_bp=changes["tax_rate_bp"][0],
                             actor=actor)
    if "credit_limit_minor" in changes and not created:
        # a credit decision: in the one trail of limit changes (a credit approver's raise,
        # `workflow_steps._raise_limit`), with its currency
        audit.record(session, actor=actor, action="customer.credit_limit_changed",
                     entity_type="customer", entity_id=customer.id,
                     external_id=customer.external_id, currency=customer.currency,
                     changes={"credit_limit_minor": changes["credit_limit_minor"]})
    # What changed, old and new: a raised credit limit is a credit decision worth tracing.
    audit.record(session, actor=actor, action="customer.created" if created
                 else "customer.updated", entity_type="customer", entity_id=customer.id,
                 external_id=customer.external_id,
                 changes={k: "changed" if k in _UNAUDITED else v for k, v in changes.items()})
    return Upserted(customer, created, True)


OPTIONAL_CUSTOMER_FIELDS = ("billing_email", "billing_address", "shipping_address", "collector",
                            "sales_rep", "credit_reviewed", "tax_rate_pct", "notice_email",
                            "notices", "goods_recognized_at", "monthly_statement")
# long free text: the audit names the field ("changed"), not its old and new text
_UNAUDITED = ("billing_address", "shipping_address")


def upsert_product(session: Session, data: ProductIn, *, actor: str) -> Upserted:
    """Create or update a product. Like a customer, optional fields left out keep their stored
    value (an ERP's stock sync sending sku, name, price and stock must not turn a subscription
    into goods or drop its discount cap, cost or SSP); sent as null, they are cleared. What
    changed is audited, old and new; an identical re-send records nothing. When its stock
    goes up, the freed units are reserved for the orders waiting for it, oldest first
    (`fulfilment.reserve_backorders`)."""
    from workflows import fulfilment  # fulfilment -> orders -> masterdata

    if not data.sku.strip():
        raise ValidationFailed.of("sku", "must not be empty")
    if not data.name.strip():
        raise ValidationFailed.of("name", "must not be empty")
    currency = v.currency("currency", data.currency)
    values: dict[str, Any] = {
        "name": data.name.strip(),
        "unit_price_minor": v.amount_minor("unit_price", data.unit_price, currency),
        "currency": currency,
        "on_hand": data.on_hand,
    }
    v.text("sku", data.sku)
    v.text("name", data.name)
    v.quantity("on_hand", data.on_hand, allow_zero=True)
    product = session.exec(select(Product).where(Product.sku == data.sku)).first()
    created = product is None
    if created:
        _no_case_twin(session, data.sku)
    given = data.model_fields_set
    if created or "max_discount_pct" in given:
        values["max_discount_bp"] = (v.percent_bp("max_discount_pct", data.max_discount_pct)
                                     if data.max_discount_pct is not None else None)
    if created or "revenue_type" in given:
        if data.revenue_type not in RevenueType.__members__.values():
            raise ValidationFailed.of("revenue_type", "must be goods, service or subscription")
        values["revenue_type"] = data.revenue_type
    for field, column in (("cost", "cost_minor"), ("ssp", "ssp_minor")):
        if created or field in given:
            amount = getattr(data, field)
            values[column] = (v.amount_minor(field, amount, currency)
                              if amount is not None else None)
        elif getattr(product, column) is not None and product.currency != currency:
            # kept, it would be read in the new currency: 1000.00 USD becoming 100000 JPY
            raise ValidationFailed.of(field, f"is stored in {product.currency}; send it in "
                                      f"{currency} (or null) with the new currency")
    if created or "service_months" in given:
        values["service_months"] = data.service_months
    if product is not None:
        # their customers and the orders waiting for it first, then the product: the order
        # shipping locks in (`orders.lock_order`)
        fulfilment.lock_backorders(session, product.id)
        product = session.exec(select(Product).where(Product.id == product.id)
                               .with_for_update()
                               .execution_options(populate_existing=True)).one()
    if product is None:
        product = Product(sku=data.sku, name=values["name"],
                          unit_price_minor=values["unit_price_minor"], currency=currency)
    if data.on_hand < product.reserved:
        raise ValidationFailed.of("on_hand", f"{product.reserved} units are reserved for "
                                  "open orders; on_hand cannot go below that")
    changes = {}
    for field, value in values.items():
        before = getattr(product, field)
        if created or before != value:
            changes[field] = [None if created else before, value]
            setattr(product, field, value)
    if changes:
        session.add(product)
        session.flush()
        audit.record(session, actor=actor, action="product.created" if created
                     else "product.updated", entity_type="product", entity_id=product.id,
                     sku=product.sku, changes=changes)
    if not created and product.on_hand > product.reserved:
        # orders that started waiting since the lock above are left to the next restock
        # rather than waited for while this product is locked
        fulfilment.reserve_backorders(session, product.id, actor, skip_locked=True)
        session.refresh(product)
    return Upserted(product, created, bool(changes))


def _no_case_twin(session: Session, sku: str) -> None:
    """A new SKU differing from a stored one only in case ("wid-1" for "WID-1") is refused:
    an ERP or a spreadsheet changing the case would otherwise make a second product, with its
    own price and stock, that orders for the first never see. (Stored SKUs keep matching
    exactly; nothing is merged.)"""
    twin = session.exec(select(Product.sku).where(  # (itself: created meanwhile, a clash)
        sa.func.lower(Product.sku) == sku.lower(), Product.sku != sku)).first()
    if twin is not None:
        raise ValidationFailed.of("sku", f"product {twin} exists; a SKU differing from it only "
                                  f"in case would be a second product: send {twin}")


def customer_by_external_id(session: Session, external_id: str,
                            field: str = "customer") -> Customer:
    customer = session.exec(select(Customer).where(Customer.external_id == external_id)).first()
    if customer is None:
        raise ValidationFailed.of(field, f"unknown customer {external_id!r}")
    return customer
