"""reversed settlements: what a correction took back, kept for the reports "as known at"

A person correcting a payment's application (`workflows.cash_application.correct_application`)
deletes its allocations and write-offs and restores the invoices' balances. The reports as of a
day by economic date are right to forget them (the correction undoes the money on every day),
but a report as the books knew them at a moment before the correction (`?known_at=`) must
still count them: `reversed_settlements` keeps each one as it was (its kind, invoice, payment,
amount, method or reason, effective date and when it was recorded) with when it was reversed.
Append-only, as the audit log (0002): the database refuses UPDATE and DELETE.

A new table, empty: nothing to backfill (corrections made before it cannot be recovered from
the rows; their amounts are in the audit log). Downgrading drops it.

Revision ID: 0029_reversed_settlements
Revises: 0028_kpi_fee_sales
Create Date: 2026-12-07
"""
# ruff: noqa: S608 - every SQL text below is built from this file's constants, no input
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401 - custom column types (UTCDateTime, BigInt)

revision: str = "0029_reversed_settlements"
down_revision: str | None = "0028_kpi_fee_sales"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "reversed_settlements"
TS = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", models.base.BigInt, nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("reversed_at", TS, nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_reversed_settlements_positive"),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(f"ix_{TABLE}_invoice_id", TABLE, ["invoice_id"])
    op.create_index(f"ix_{TABLE}_payment_id", TABLE, ["payment_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {TABLE}_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{TABLE} is append-only';
            END;
            $$ LANGUAGE plpgsql;
        """)
        op.execute(f"CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE} "
                   f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                       f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_change ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{verb}")
    op.drop_index(f"ix_{TABLE}_payment_id", table_name=TABLE)
    op.drop_index(f"ix_{TABLE}_invoice_id", table_name=TABLE)
    op.drop_table(TABLE)
