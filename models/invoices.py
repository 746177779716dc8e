"""Invoices, credit notes and write-offs: the receivables side.

An issued invoice is immutable (SPEC §3): corrections are credit notes. The open balance is
kept in `balance_minor` so aging over a million invoices is one indexed query; it is always
equal to total - allocations - credit notes - write-offs, which `workflows.invariants`
checks.

Every settlement (allocation, credit note, write-off) carries two dates besides `created_at`
(when it was recorded, for the audit trail):

* `value_date` — when it happened economically: the payment's value date, the credit note's
  issue date, the write-off's effective date;
* `effective_date` — the day the books count it on, which the as-of reports use: the value
  date, but never before the invoice's issue date, and, when that day falls in a closed
  month, the first day of the first open month (`workflows.periods`).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_field, ts_field

# Aging buckets by days past due (SPEC §3); "current" is not yet due.
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")


class InvoiceStatus(StrEnum):
    """Derived from amounts, never typed in: see `invoice_status()`."""

    OPEN = "open"  # nothing settled yet
    PARTIALLY_PAID = "partially_paid"  # some settled, balance left
    PAID = "paid"  # balance zero


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        sa.Index("ix_invoices_customer_open", "customer_id", "balance_minor"),
        sa.Index("ix_invoices_open_due", "due_date", "balance_minor"),
        # collections: per-customer aging of open invoices read from the index alone
        sa.Index("ix_invoices_open_aging", "customer_id", "due_date", "balance_minor",
                 "disputed_minor",
                 sqlite_where=sa.text("balance_minor > 0"),
                 postgresql_where=sa.text("balance_minor > 0")),
        # cash application: "which open invoice is exactly this amount?" in one index probe
        sa.Index("ix_invoices_open_amount", "currency", "balance_minor"),
        # KPIs: credit sales of a period (DSO, count-back month by month) from the index alone
        # credit sales by day; with the id, PostgreSQL also joins a day's settlements to the
        # invoices issued by then from the index alone (the KPIs' AR before the window)
        sa.Index("ix_invoices_sales", "currency", "issue_date", "total_minor", "id"),
        # KPIs: sales invoices issued in the window (invoice accuracy, dispute rate)
        sa.Index("ix_invoices_issued", "issue_date", "fee_for_invoice_id"),
        # aging and AR of a currency (KPIs, /o2c ar): open invoices read from the index alone
        sa.Index("ix_invoices_open_currency", "currency", "issue_date", "due_date",
                 "balance_minor",
                 sqlite_where=sa.text("balance_minor > 0"),
                 postgresql_where=sa.text("balance_minor > 0")),
        sa.CheckConstraint("balance_minor >= 0", name="ck_invoices_balance_not_negative"),
        sa.CheckConstraint("balance_minor <= total_minor", name="ck_invoices_balance_le_total"),
        # a late fee is charged once per (invoice, dunning level) (workflows.late_fees)
        sa.Index("ux_invoices_fee_level", "fee_for_invoice_id", "fee_level", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, index=True, max_length=64)
    # Blocking key for finding this number in remittance text whatever format the payer used
    # (see `invoice_number_key`); filled from `number` on insert, ORM or Core alike.
    number_key: str | None = Field(default=None, sa_column=sa.Column(
        sa.String(64), index=True, default=lambda ctx: invoice_number_key(
            ctx.get_current_parameters()["number"])))
    customer_id: int = Field(foreign_key="customers.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    # One invoice per shipment (SPEC §3), enforced here.
    shipment_id: int | None = Field(default=None, foreign_key="shipments.id", unique=True)
    source: str = Field(default="o2c", max_length=16)  # "o2c" (ours) or "erp" (ingested)
    currency: str = Field(max_length=3)
    issue_date: date
    due_date: date = Field(index=True)
    payment_terms: str = Field(default="NET30", max_length=32)
    order_date: date | None = None
    ship_date: date | None = None
    billing_address: str | None = Field(default=None, max_length=1000)
    shipping_address: str | None = Field(default=None, max_length=1000)
    subtotal_minor: int = big_field(default=0)
    discount_minor: int = big_field(default=0)
    fees_minor: int = big_field(default=0)
    tax_minor: int = big_field(default=0)
    total_minor: int = big_field(ge=0)
    balance_minor: int = big_field(ge=0)
    disputed: bool = Field(default=False)  # something is held in dispute (disputed_minor > 0)
    # How much of the balance is in dispute: min(what open disputes hold, balance), kept by
    # `workflows.disputes` and lowered with the balance (`invoicing.reduce_balance`). It is
    # left out of dunning, collector priority and the overdue figures.
    disputed_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    # A late-fee invoice (source "fee") names the invoice and dunning level it charges for.
    fee_for_invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    fee_level: int | None = None
    paid_at: datetime | None = ts_field()
    created_at: datetime = ts_field(nullable=False, default_now=True)


def invoice_number_key(number: str) -> str:
    """The digits of an invoice number without its zeros: "INV-2026-000123", "inv 2026/123"
    and "INV2026000123" all give "226123".

    Payers re-type invoice numbers with other punctuation, case, padding and separators; only
    the non-zero digits survive all of that. The key is lossy on purpose (INV-2026-001023
    shares it): it finds candidates with one index probe, and `workflows.matching` then checks
    each candidate exactly."""
    return "".join(ch for ch in number if ch in "123456789")[:64]


def invoice_status(invoice: Invoice) -> InvoiceStatus:
    if invoice.balance_minor == 0:
        return InvoiceStatus.PAID
    if invoice.balance_minor < invoice.total_minor:
        return InvoiceStatus.PARTIALLY_PAID
    return InvoiceStatus.OPEN


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_lines"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    line_no: int
    # The order line (performance obligation, SPEC §3) this line bills; None on an ERP's own
    # invoice lines.
    order_line_id: int | None = Field(default=None, foreign_key="order_lines.id", index=True)
    sku: str | None = Field(default=None, max_length=64)
    description: str = Field(max_length=200)
    quantity: int = big_field()
    unit_price_minor: int = big_field()
    discount_bp: int = 0
    line_total_minor: int = big_field()  # after discount, before tax
    tax_minor: int = big_field(default=0)
    revenue_type: str = Field(default="goods", max_length=16)
    service_start: date | None = None
    service_end: date | None = None


def settlement_index(table: str) -> sa.Index:
    """A settlement table's index for "what was settled after day t": a range scan on the
    economic date that reads invoice and amount from the index alone."""
    return sa.Index(f"ix_{table}_effective", "effective_date", "invoice_id", "amount_minor")


class CreditNote(SQLModel, table=True):
    """An issued credit note (immutable). `amount_minor` is what it took off the invoice's
    balance (the settlement the AR invariant and the as-of reports count);
    `customer_credit_minor` the rest of its total, which became customer credit because the
    invoice was already (partly) paid. Its total is the sum of both
    (`workflows.credit_notes`)."""

    __tablename__ = "credit_notes"
    __table_args__ = (settlement_index("credit_notes"),
                      # a request is issued once
                      sa.Index("ux_credit_notes_request", "request_id", unique=True))

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=64)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount_minor: int = big_field(gt=0)
    currency: str = Field(max_length=3)
    reason: str = Field(max_length=500)
    value_date: date  # its issue date
    effective_date: date  # the day the books count it on (see the module docstring)
    created_by: str = Field(max_length=64)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    customer_credit_minor: int = big_field(default=0, sa_column_kwargs={"server_default": "0"})
    source: str = Field(default="o2c", max_length=16,
                        sa_column_kwargs={"server_default": "o2c"})  # o2c, erp
    # the request it was issued for; None for notes issued before requests existed
    request_id: int | None = Field(default=None, foreign_key="credit_note_requests.id")

    @property
    def total_minor(self) -> int:
        return self.amount_minor + self.customer_credit_minor


class WriteOffReason(StrEnum):
    BANK_FEE = "bank_fee"  # small short payment within tolerance
    EARLY_PAYMENT_DISCOUNT = "early_payment_discount"  # taken per 2/10 NET30 style terms
    BAD_DEBT = "bad_debt"  # decided by finance
    SMALL_BALANCE = "small_balance"  # a leftover at or under the threshold (dunning job)
    DEDUCTION = "deduction"  # a short payment accepted by finance
    FEE_WAIVED = "fee_waived"  # a late fee a collector waived
    # not money given up: customer credit a credit note gave on this (paid) invoice, set
    # against it when the payment behind that credit was refunded (`workflows.refunds`) or
    # the credit applied to another invoice (`workflows.customer_credit`)
    CUSTOMER_CREDIT = "customer_credit"


class WriteOff(SQLModel, table=True):
    __tablename__ = "write_offs"
    __table_args__ = (settlement_index("write_offs"),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    payment_id: int | None = Field(default=None, foreign_key="payments.id", index=True)
    amount_minor: int = big_field(gt=0)
    reason: str = Field(max_length=32)
    value_date: date  # its effective date (a fee or discount: its payment's value date)
    effective_date: date  # the day the books count it on (see the module docstring)
    created_by: str = Field(max_length=64)
    created_at: datetime = ts_field(nullable=False, default_now=True)
