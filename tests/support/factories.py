"""Test data through the real workflows (never raw inserts), so fixtures obey the rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session

from bot.clock import Clock
from models import Customer, Invoice, Order, Product
from workflows import masterdata, orders, users
from workflows.inputs import (
    CustomerIn,
    DisputeOpenIn,
    InvoiceIn,
    OrderIn,
    OrderLineIn,
    ProductIn,
)
from workflows.invoicing import ingest_erp_invoice

if TYPE_CHECKING:
    from bot.db import Database


def user(session: Session, user_id: str, *roles: str, name: str | None = None,
         timezone: str = "UTC") -> None:
    users.upsert_user(session, user_id=user_id, name=name or user_id, roles=list(roles),
                      timezone=timezone, actor="test")


def customer(session: Session, external_id: str = "C-GLOBEX", name: str = "Globex Corporation",
             *, currency: str = "USD", credit_limit: str = "50000.00", terms: str = "NET30",
             reviewed: bool = True, collector: str | None = None, sales_rep: str | None = None,
             billing_email: str | None = "ap@globex.example",
             notice_email: str | None = None, tax_rate: str | None = None) -> Customer:
    c = masterdata.upsert_customer(session, CustomerIn(
        external_id=external_id, name=name, currency=currency, credit_limit=credit_limit,
        payment_terms=terms, credit_reviewed=reviewed, collector=collector,
        sales_rep=sales_rep, billing_email=billing_email, notice_email=notice_email,
        billing_address="1 Main St, Springfield", tax_rate_pct=tax_rate), actor="test").record
    return c


def product(session: Session, sku: str = "WID-1", *, price: str = "100.00",
            currency: str = "USD", on_hand: int = 1000, max_discount: str | None = None,
            name: str | None = None, revenue_type: str = "goods",
            ssp: str | None = None) -> Product:
    p = masterdata.upsert_product(session, ProductIn(
        sku=sku, name=name or f"Widget {sku}", unit_price=price, currency=currency,
        on_hand=on_hand, max_discount_pct=max_discount, revenue_type=revenue_type, ssp=ssp),
        actor="test").record
    return p


def shipped_invoice(session: Session, order: Order, *, shipped_at: datetime | None = None
                    ) -> Invoice:
    """The invoice of `order` shipped in full (one invoice per shipment)."""
    from sqlmodel import select

    from workflows import shipping

    when = shipped_at or Clock().now()
    shipment = shipping.ship_order(session, order_number=order.number, carrier="UPS",
                                   tracking_number="1Z999", shipped_at=when, lines=None,
                                   actor="USALES01", now=when)
    return session.exec(select(Invoice).where(Invoice.shipment_id == shipment.id)).one()


def order(session: Session, customer_ext: str = "C-GLOBEX", *, rep: str = "USALES01",
          lines: list[tuple[str, int]] | None = None, discount: str | None = None,
          currency: str = "USD", now: datetime | None = None) -> Order:
    data = OrderIn(customer=customer_ext, sales_rep=rep, currency=currency,
                   lines=[OrderLineIn(sku=s, quantity=q, discount_pct=discount)
                          for s, q in (lines or [("WID-1", 2)])])
    return orders.create_order(session, data, actor=rep, now=now or Clock().now())


def invoice(session: Session, number: str, customer_ext: str = "C-GLOBEX", *,
            total: str = "1000.00", due: date | None = None, issued: date | None = None,
            currency: str = "USD", terms: str | None = None) -> Invoice:
    due = due or Clock().business_today() + timedelta(days=30)
    issued = issued or due - timedelta(days=30)
    return ingest_erp_invoice(session, InvoiceIn(
        number=number, customer=customer_ext, currency=currency, issue_date=issued,
        due_date=due, total=total, payment_terms=terms), actor="test")


def dispute(session: Session, invoice_number: str, *, amount: str | None = None,
            reason: str = "pricing", note: str | None = None, actor: str = "api",
            now: datetime | None = None):
    """A dispute opened the way the API opens one."""
    from workflows import disputes

    return disputes.open_dispute(session, invoice_number, DisputeOpenIn(
        reason=reason, amount=amount, note=note), actor=actor,
        now=now or Clock().now(), source="api")


def kpi_snapshot(db: Database, as_of: date, now: datetime) -> None:
    """`as_of`'s KPI snapshot, stored as the `kpi-snapshot` job stores it (`bot.reports`):
    computed in a read session, kept in a short transaction."""
    from workflows import kpis

    with db.read_session() as s:
        data, marker = kpis.compute_snapshot(s, as_of)
    with db.transaction() as s:
        kpis.store_snapshot(s, as_of, data, marker, now)
