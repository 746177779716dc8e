"""Pricing help for order entry: product search and the median approved discount.

The hint a rep sees next to a product is the median discount of that product's lines on
orders that were approved (approved and every later state) in the last 90 days, computed in
`Decimal` from basis points — what the company actually agreed to, not the list maximum.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from rapidfuzz import fuzz, process, utils
from sqlmodel import Session, select

from models import Order, OrderLine, OrderStatus, Product
from workflows import policy as policies

HINT_DAYS = 90
# Orders that went through approval (or needed none): approved and everything after it.
APPROVED_STATES = (OrderStatus.APPROVED, OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED,
                   OrderStatus.SHIPPED, OrderStatus.INVOICED, OrderStatus.PAID,
                   OrderStatus.CLOSED)
SEARCH_LIMIT = 20
FUZZY_MIN = 60


@dataclass(frozen=True)
class PricingHint:
    sku: str
    name: str
    unit_price_minor: int
    currency: str
    max_discount_pct: Decimal  # above it the line needs a discount approval
    median_discount_pct: Decimal | None  # None when nothing was sold in the window
    sample_size: int
    days: int = HINT_DAYS


def median_approved_discount(session: Session, product_id: int, *, as_of: date,
                             days: int = HINT_DAYS) -> tuple[Decimal | None, int]:
    """(median discount in percent, number of lines) over approved orders' lines of the
    product with an order date in the `days` up to `as_of`."""
    rows = session.exec(
        select(OrderLine.discount_bp)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.product_id == product_id, Order.status.in_(APPROVED_STATES),
               Order.order_date > as_of - timedelta(days=days), Order.order_date <= as_of)
    ).all()
    if not rows:
        return None, 0
    median_bp = statistics.median(Decimal(bp) for bp in rows)
    return (median_bp / 100).quantize(Decimal("0.01")), len(rows)


def pricing_hint(session: Session, *, sku: str, as_of: date) -> PricingHint | None:
    product = session.exec(select(Product).where(Product.sku == sku)).first()
    if product is None:
        return None
    median, count = median_approved_discount(session, product.id, as_of=as_of)
    limit_bp = (product.max_discount_bp if product.max_discount_bp is not None
                else policies.current(session).max_discount_bp)
    return PricingHint(sku=product.sku, name=product.name,
                       unit_price_minor=product.unit_price_minor, currency=product.currency,
                       max_discount_pct=(Decimal(limit_bp) / 100).quantize(Decimal("0.01")),
                       median_discount_pct=median, sample_size=count)


def search_products(session: Session, query: str, *, limit: int = SEARCH_LIMIT
                    ) -> list[Product]:
    """Active products for a select box: SKU or name containing the text first, then close
    misspellings (rapidfuzz) when nothing contains it."""
    text = (query or "").strip()
    active = select(Product).where(Product.active.is_(True))
    if not text:
        return list(session.exec(active.order_by(Product.sku).limit(limit)))
    pattern = f"%{text.lower()}%"
    found = list(session.exec(active.where(sa.or_(sa.func.lower(Product.sku).like(pattern),
                                                  sa.func.lower(Product.name).like(pattern)))
                              .order_by(Product.sku).limit(limit)))
    if found:
        return found
    rows = session.exec(select(Product.id, Product.sku, Product.name)
                        .where(Product.active.is_(True))).all()
    choices = {row[0]: f"{row[1]} {row[2]}" for row in rows}
    scored = process.extract(text, choices, scorer=fuzz.WRatio, processor=utils.default_process,
                             limit=limit, score_cutoff=FUZZY_MIN)
    return [session.get(Product, key) for _, _, key in scored]


def revenue_type_of(session: Session, sku: str) -> str | None:
    """A product's revenue type (the order modal asks a service's period), or None."""
    return session.exec(select(Product.revenue_type).where(Product.sku == sku)).first()
