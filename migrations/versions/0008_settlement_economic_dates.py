"""settlements carry their economic dates; closed periods

Issue 21: as-of reports count money on the day it moved, not the day it was typed in.

* `payments.value_date`: when the money moved — for existing rows the UTC date of
  `received_at` (what they were received at; a bank statement's own value date was not kept).
* `allocations`, `credit_notes`, `write_offs`: `value_date` (as stated) and `effective_date`
  (the day the books count it on), filled for existing rows:
  - an allocation: its payment's value date;
  - a credit note: its issue date, i.e. the UTC date it was recorded (`created_at`);
  - a write-off: its payment's value date when it came with a payment (a bank fee, an early
    payment discount), else the UTC date it was recorded;
  and `effective_date` = the later of that and the invoice's issue date (a settlement never
  counts before its invoice exists). No month is closed yet, so nothing moves further.
  Indexed `(effective_date, invoice_id, amount_minor)`: "what was settled after day t".
* `closed_periods`: one row per month close (`workflows.periods`).
* `ix_invoices_sales (currency, issue_date, total_minor)`: a period's credit sales (the KPIs'
  DSO and count-back, month by month) read from the index instead of every invoice.

The new columns are NOT NULL. PostgreSQL adds them, fills them and sets NOT NULL in place.
SQLite cannot add a NOT NULL column without a default, so each of the four tables is rebuilt
from its own current definition (reflected, so what other migrations changed is kept) as
0005_fulfil rebuilds `products`: copied aside, dropped and re-created under the same name with
foreign keys deferred — `payments` is referenced by allocations, write-offs and deductions,
and each row put back resolves the violations its drop left.

Revision ID: 0008_economic_dates
Revises: 0007_exactly_once
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0008_economic_dates"
down_revision: str | None = "0007_exactly_once"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTLEMENTS = ("allocations", "credit_notes", "write_offs")
# (table, new columns), frozen here
NEW_COLUMNS = {"payments": ("value_date",),
               **{table: ("value_date", "effective_date") for table in SETTLEMENTS}}


def _fill(dialect: str) -> None:
    """Economic dates of the rows recorded before this migration (see the docstring)."""
    if dialect == "postgresql":
        utc_date = "(({col}) AT TIME ZONE 'UTC')::date"
        later = "GREATEST({a}, {b})"
    else:
        utc_date = "date({col})"
        later = "max({a}, {b})"
    issue = "(SELECT i.issue_date FROM invoices i WHERE i.id = {t}.invoice_id)"
    paid = "(SELECT p.value_date FROM payments p WHERE p.id = {t}.payment_id)"
    statements = [
        f"UPDATE payments SET value_date = {utc_date.format(col='received_at')}",
        f"UPDATE allocations SET value_date = {paid.format(t='allocations')}",
        f"UPDATE credit_notes SET value_date = {utc_date.format(col='created_at')}",
        "UPDATE write_offs SET value_date = COALESCE("
        f"{paid.format(t='write_offs')}, {utc_date.format(col='created_at')})",
        *(f"UPDATE {t} SET effective_date = "
          f"{later.format(a='value_date', b=issue.format(t=t))}" for t in SETTLEMENTS),
    ]
    for statement in statements:
        op.execute(sa.text(statement))


def _rebuild_sqlite(table_name: str) -> None:
    """Re-create a table from its reflected definition with the new columns NOT NULL."""
    bind = op.get_bind()
    metadata = sa.MetaData()  # also holds the tables its foreign keys point at
    old = sa.Table(table_name, metadata, autoload_with=bind)
    metadata.remove(old)
    new = sa.Table(table_name, metadata)
    for column in old.columns:
        new.append_column(sa.Column(
            column.name, column.type, primary_key=column.primary_key,
            nullable=column.nullable and column.name not in NEW_COLUMNS[table_name]))
    for constraint in list(old.constraints):
        if isinstance(constraint, sa.ForeignKeyConstraint):
            new.append_constraint(sa.ForeignKeyConstraint(
                [c.name for c in constraint.columns],
                [element.target_fullname for element in constraint.elements],
                name=constraint.name))
        elif isinstance(constraint, sa.UniqueConstraint):
            new.append_constraint(sa.UniqueConstraint(
                *(c.name for c in constraint.columns), name=constraint.name))
        elif isinstance(constraint, sa.CheckConstraint):
            new.append_constraint(sa.CheckConstraint(constraint.sqltext, name=constraint.name))
    indexes = [(index.name, [c.name for c in index.columns], index.unique)
               for index in old.indexes]
    columns = ", ".join(c.name for c in old.columns)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # switched off again at COMMIT
    bind.exec_driver_sql(f"CREATE TEMP TABLE _copy_{table_name} AS SELECT * FROM {table_name}")
    bind.exec_driver_sql(f"DROP TABLE {table_name}")
    new.create(bind)
    bind.exec_driver_sql(f"INSERT INTO {table_name} ({columns}) "
                         f"SELECT {columns} FROM _copy_{table_name}")
    bind.exec_driver_sql(f"DROP TABLE _copy_{table_name}")
    for name, names, unique in indexes:
        op.create_index(name, table_name, names, unique=unique)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "closed_periods",
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("closed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    op.create_index("ix_closed_periods_last_day", "closed_periods", ["last_day"])
    for table, columns in NEW_COLUMNS.items():
        for column in columns:
            op.add_column(table, sa.Column(column, sa.Date(), nullable=True))
    _fill(dialect)
    for table, columns in NEW_COLUMNS.items():
        if dialect == "sqlite":
            _rebuild_sqlite(table)
        else:
            for column in columns:
                op.alter_column(table, column, existing_type=sa.Date(), nullable=False)
    for table in SETTLEMENTS:
        op.create_index(f"ix_{table}_effective", table,
                        ["effective_date", "invoice_id", "amount_minor"])
    op.create_index("ix_invoices_sales", "invoices", ["currency", "issue_date", "total_minor"])


def downgrade() -> None:
    op.drop_index("ix_invoices_sales", table_name="invoices")
    for table in SETTLEMENTS:
        op.drop_index(f"ix_{table}_effective", table_name=table)
    for table, columns in NEW_COLUMNS.items():
        for column in columns:
            # SQLite (>= 3.35) drops an unindexed column in place, no rebuild needed
            op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    op.drop_index("ix_closed_periods_last_day", table_name="closed_periods")
    op.drop_table("closed_periods")
