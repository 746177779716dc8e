"""money and quantities are 64-bit: every *_minor, on_hand, reserved, quantity and qty_* column

PostgreSQL's INTEGER is 32-bit: a payment of USD 21,474,836.48, an order of 214,749 x USD 100
or an IDR credit limit of 1,000,000,000.00 did not fit. Each table is altered with one
`ALTER TABLE ... ALTER COLUMN ... TYPE BIGINT, ...` statement, so it is rewritten once; the
values, defaults, NOT NULLs, CHECK constraints and indexes (the partial ones included) are kept
by PostgreSQL. The rewrite holds an exclusive lock on each table while it runs (seconds per
million rows): run `o2c migrate` in a quiet moment.

SQLite's INTEGER already holds 64 bits (the models declare BIGINT with an INTEGER variant for
SQLite), so nothing changes there and no table is rebuilt.

Downgrading narrows the columns back to INTEGER; it refuses, naming the column, while a value
does not fit in 32 bits, instead of failing half-way.

Revision ID: 0006_money_bigint
Revises: 0005_fulfil
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_money_bigint"
down_revision: str | None = "0005_fulfil"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not read from the models) so the migration never changes meaning.
COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("credit_limit_minor",),
    "products": ("unit_price_minor", "cost_minor", "on_hand", "reserved"),
    "orders": ("subtotal_minor", "discount_minor", "tax_minor", "total_minor", "cancelled_minor"),
    "order_lines": ("quantity", "unit_price_minor", "line_total_minor", "qty_reserved",
                    "qty_shipped", "qty_backordered", "qty_cancelled"),
    "shipment_lines": ("quantity",),
    "invoices": ("subtotal_minor", "discount_minor", "fees_minor", "tax_minor", "total_minor",
                 "balance_minor"),
    "invoice_lines": ("quantity", "unit_price_minor", "line_total_minor", "tax_minor"),
    "credit_notes": ("amount_minor",),
    "write_offs": ("amount_minor",),
    "payments": ("amount_minor", "unapplied_minor"),
    "allocations": ("amount_minor",),
    "deductions": ("amount_minor",),
    "promises": ("amount_minor",),
}
INT32_MAX = 2**31 - 1


def _alter(table: str, columns: tuple[str, ...], type_: str) -> None:
    clauses = ", ".join(f'ALTER COLUMN "{c}" TYPE {type_}' for c in columns)
    op.execute(sa.text(f'ALTER TABLE "{table}" {clauses}'))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        _alter(table, columns, "BIGINT")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            widest = bind.execute(sa.text(
                f'SELECT MAX(ABS("{column}")) FROM "{table}"')).scalar()
            if widest is not None and widest > INT32_MAX:
                raise RuntimeError(f"cannot downgrade below 0006_money_bigint: {table}.{column} "
                                   f"holds {widest}, which does not fit in 32 bits")
    for table, columns in COLUMNS.items():
        _alter(table, columns, "INTEGER")
