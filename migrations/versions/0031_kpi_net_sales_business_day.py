"""KPI rollups: credit notes against sales apart, payments found by the moment they arrived

* `kpi_daily.credited_minor`: per currency and day, the credit notes of sales invoices (late
  fees left out) dated that day (`credit_notes.effective_date`). The KPIs' credit sales are
  net of them (`sales_minor - fees_minor - credited_minor`, `workflows.kpis`): DSO divides
  AR by what was sold less what was credited, as a finance team computes it. The credit
  notes were already in `settled_minor`, with the other settlements, on the first day they
  count in AR — which is not always their own date, and mixed with payments.
  Kept by its own triggers on credit notes (insert, delete, an update of the amount, date or
  invoice) and on invoices (an update of the currency or of being a fee moves the invoice's
  credit notes); 0023's, 0024's and 0028's triggers are left as they are. On PostgreSQL they
  add to the connection's stripe, as 0023's do. Upgrading backfills the column from the
  credit notes already there (into stripe 0), with invoices and credit notes locked against
  writes on PostgreSQL between the backfill and the triggers.
* `ix_payments_received (received_at)`: the KPIs' window is made of business days in the
  books' time zone while the payments' rollups are kept by UTC day; the UTC days wholly in
  the window are read from `kpi_daily`, the few hours at either end (when the zone is not
  UTC) from the payments received then — a range of this index, never the whole table.

Downgrading drops the triggers, the column and the index.

Revision ID: 0031_kpi_net_sales_business_day
Revises: 0030_pay_token_hash
Create Date: 2026-12-07
"""
# ruff: noqa: S608 - every SQL text below is built from this file's constants, no input
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_kpi_net_sales_business_day"
down_revision: str | None = "0030_pay_token_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "kpi_rollup_credited"
WATCHED = "amount_minor, effective_date, invoice_id"
MOVED = "currency, fee_for_invoice_id"  # an invoice's columns its credit notes are keyed by
MOVES = ("OLD.currency <> NEW.currency OR "
         "(OLD.fee_for_invoice_id IS NULL) <> (NEW.fee_for_invoice_id IS NULL)")
INDEX = "ix_payments_received"


def _upsert(select: str) -> str:
    return ("INSERT INTO kpi_daily (currency, day, stripe, credited_minor) " + select
            + " ON CONFLICT (currency, day, stripe) DO UPDATE SET "
            "credited_minor = kpi_daily.credited_minor + excluded.credited_minor")


def _note(r: str, sign: str, stripe: str) -> str:
    """SQL: add (`sign` '') or remove ('-') credit note row `r` when its invoice is a sale."""
    return _upsert(f"SELECT i.currency, {r}.effective_date, {stripe}, {sign}{r}.amount_minor "
                   f"FROM invoices i WHERE i.id = {r}.invoice_id "
                   "AND i.fee_for_invoice_id IS NULL")


def _invoice(r: str, sign: str, stripe: str) -> str:
    """SQL: add or remove the credit notes of invoice row `r` when it is a sale."""
    return _upsert(f"SELECT {r}.currency, c.effective_date, {stripe}, {sign}SUM(c.amount_minor) "
                   f"FROM credit_notes c WHERE c.invoice_id = {r}.id "
                   f"AND {r}.fee_for_invoice_id IS NULL GROUP BY c.effective_date")


def _sqlite_triggers() -> list[str]:
    body = {"insert": [_note("NEW", "", "0")], "delete": [_note("OLD", "-", "0")],
            "update": [_note("OLD", "-", "0"), _note("NEW", "", "0")]}
    out = [f"CREATE TRIGGER {NAME}_{event} AFTER "
           f"{f'UPDATE OF {WATCHED}' if event == 'update' else event.upper()} ON credit_notes "
           f"FOR EACH ROW BEGIN {'; '.join(statements)}; END"
           for event, statements in body.items()]
    out.append(f"CREATE TRIGGER {NAME}_invoice AFTER UPDATE OF {MOVED} ON invoices FOR EACH ROW "
               f"WHEN {MOVES} BEGIN {_invoice('OLD', '-', '0')}; {_invoice('NEW', '', '0')}; "
               "END")
    return out


def _pg_triggers() -> list[str]:
    stripe = "pg_backend_pid()"
    return [f"""
        CREATE FUNCTION {NAME}() RETURNS trigger AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN {_note('OLD', '-', stripe)}; END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN {_note('NEW', '', stripe)}; END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
            f"CREATE TRIGGER {NAME} AFTER INSERT OR DELETE OR UPDATE OF {WATCHED} "
            f"ON credit_notes FOR EACH ROW EXECUTE FUNCTION {NAME}()",
            f"""
        CREATE FUNCTION {NAME}_invoice() RETURNS trigger AS $$
        BEGIN
            {_invoice('OLD', '-', stripe)}; {_invoice('NEW', '', stripe)};
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
            f"CREATE TRIGGER {NAME}_invoice AFTER UPDATE OF {MOVED} ON invoices FOR EACH ROW "
            f"WHEN ({MOVES}) EXECUTE FUNCTION {NAME}_invoice()"]


BACKFILL = _upsert("SELECT i.currency, c.effective_date, 0, SUM(c.amount_minor) "
                   "FROM credit_notes c JOIN invoices i ON i.id = c.invoice_id "
                   "WHERE i.fee_for_invoice_id IS NULL GROUP BY i.currency, c.effective_date")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:  # no credit note written or moved between the backfill and the triggers
        op.execute("LOCK TABLE invoices, credit_notes IN SHARE ROW EXCLUSIVE MODE")
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.add_column("kpi_daily", sa.Column("credited_minor", big, server_default="0",
                                         nullable=False))
    op.execute(BACKFILL)
    for statement in _pg_triggers() if pg else _sqlite_triggers():
        op.execute(statement)
    op.create_index(INDEX, "payments", ["received_at"])


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index(INDEX, table_name="payments")
    if pg:
        op.execute(f"DROP TRIGGER IF EXISTS {NAME} ON credit_notes")
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}_invoice ON invoices")
        op.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
        op.execute(f"DROP FUNCTION IF EXISTS {NAME}_invoice()")
    else:
        for event in ("insert", "delete", "update", "invoice"):
            op.execute(f"DROP TRIGGER IF EXISTS {NAME}_{event}")
    op.execute("ALTER TABLE kpi_daily DROP COLUMN credited_minor")
