"""KPI rollups: late-fee invoices apart from credit sales

A late-fee invoice is owed (it stays in AR) but it is not a sale: DSO divides AR by credit
sales, and counting fees as sales made DSO look shorter the more fees were charged. The
rollups kept one figure for every invoice issued (`kpi_daily.sales_minor`, which AR is summed
from), so the fees get a column of their own, `fees_minor` (the totals of the fee invoices
issued that day): credit sales = `sales_minor - fees_minor` (`workflows.kpis`).

It is kept by its own triggers on invoices, which fire only for a fee invoice (a `WHEN` on
`fee_for_invoice_id`; 0023's and 0024's triggers are left as they are): insert, delete, and
an update of its total, date, currency or being a fee. On PostgreSQL they add to the
connection's stripe, as 0023's do. Upgrading backfills the column from the fee invoices
already there (into stripe 0), with invoices locked against writes on PostgreSQL between
the backfill and the triggers; downgrading drops the triggers and the column.

Revision ID: 0028_kpi_fee_sales
Revises: 0027_webhook_secret_rotation
Create Date: 2026-12-07
"""
# ruff: noqa: S608 - every SQL text below is built from this file's constants, no input
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_kpi_fee_sales"
down_revision: str | None = "0027_webhook_secret_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "kpi_rollup_invoice_fees"
WATCHED = "total_minor, issue_date, currency, fee_for_invoice_id"
FEE = "{r}.fee_for_invoice_id IS NOT NULL"
WHEN = {"insert": FEE.format(r="NEW"), "delete": FEE.format(r="OLD"),
        "update": f"{FEE.format(r='OLD')} OR {FEE.format(r='NEW')}"}


def _add(r: str, sign: str, stripe: str) -> str:
    """SQL: add (`sign` '') or remove ('-') the total of invoice row `r`, when it is a fee
    invoice, to its currency and day."""
    return ("INSERT INTO kpi_daily (currency, day, stripe, fees_minor) "
            f"SELECT {r}.currency, {r}.issue_date, {stripe}, {sign}{r}.total_minor "
            f"WHERE {FEE.format(r=r)} ON CONFLICT (currency, day, stripe) DO UPDATE SET "
            "fees_minor = kpi_daily.fees_minor + excluded.fees_minor")


def _on(event: str) -> str:
    return f"UPDATE OF {WATCHED}" if event == "update" else event.upper()


def _sqlite_triggers() -> list[str]:
    body = {"insert": [_add("NEW", "", "0")], "delete": [_add("OLD", "-", "0")],
            "update": [_add("OLD", "-", "0"), _add("NEW", "", "0")]}
    return [f"CREATE TRIGGER {NAME}_{event} AFTER {_on(event)} ON invoices FOR EACH ROW "
            f"WHEN {WHEN[event]} BEGIN {'; '.join(statements)}; END"
            for event, statements in body.items()]


def _pg_triggers() -> list[str]:
    stripe = "pg_backend_pid()"
    return [f"""
        CREATE FUNCTION {NAME}() RETURNS trigger AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN {_add('OLD', '-', stripe)}; END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN {_add('NEW', '', stripe)}; END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
            *(f"CREATE TRIGGER {NAME}_{event} AFTER {_on(event)} ON invoices FOR EACH ROW "
              f"WHEN ({WHEN[event]}) EXECUTE FUNCTION {NAME}()" for event in WHEN)]


BACKFILL = ("INSERT INTO kpi_daily (currency, day, stripe, fees_minor) "
            "SELECT currency, issue_date, 0, SUM(total_minor) FROM invoices "
            "WHERE fee_for_invoice_id IS NOT NULL GROUP BY currency, issue_date "
            "ON CONFLICT (currency, day, stripe) DO UPDATE SET "
            "fees_minor = kpi_daily.fees_minor + excluded.fees_minor")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:  # no fee invoice written between the backfill and the triggers
        op.execute("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE")
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.add_column("kpi_daily", sa.Column("fees_minor", big, server_default="0",
                                         nullable=False))
    op.execute(BACKFILL)
    for statement in _pg_triggers() if pg else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for event in WHEN:
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}_{event}" + (" ON invoices" if pg else ""))
    if pg:
        op.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
    op.execute("ALTER TABLE kpi_daily DROP COLUMN fees_minor")
