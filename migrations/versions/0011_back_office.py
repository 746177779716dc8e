"""back office: disputes, credit-note requests and lines, write-off requests, late fees, tiers

Issue 14 (SPEC §3 "Back office").

* New tables `disputes`, `credit_note_requests`, `credit_note_lines`, `write_off_requests`.
* `invoices`: `disputed_minor` (how much of the balance is held in dispute; NOT NULL, 0),
  `fee_for_invoice_id` / `fee_level` (a late-fee invoice names the invoice and dunning level
  it charges for; unique together: a fee once per (invoice, level)). The collections aging
  index carries `disputed_minor` instead of the flag, so worklists still read the index only.
  An invoice flagged `disputed` before this migration (nobody could set the flag in the bot;
  an import or a script may have) keeps being held out of dunning: it gets an open dispute
  for its whole balance (reason "other", opened by "migration") so that
  `disputed_minor` = what its disputes hold, as `workflows.invariants` checks; a flagged
  invoice with nothing open is unflagged.
* `credit_notes`: `customer_credit_minor` (0), `source` ("o2c"), `request_id` (unique).
* `deductions`: `resolution`, `resolved_by`, `resolved_at`, `card_outbox_id`,
  `billed_back_at`, `bill_backs` (0). Existing statuses ("open", "resolved") keep their
  meaning.
* `approvals`: `order_id` becomes nullable (a back-office approval has a `subject_id`
  instead; unique with its kind), plus `amount_minor`/`currency` (filled from the order for
  existing rows) and a tier's second decision (`second_role`, `first_decided_*`).

New NOT NULL columns have server defaults, so PostgreSQL and SQLite add them in place. A
foreign-key column is added on SQLite with `ALTER TABLE ... ADD COLUMN ... REFERENCES` (which
SQLite allows for a nullable column); `approvals` is rebuilt on SQLite (batch mode) to make
`order_id` nullable — no table references it.

Revision ID: 0011_back_office
Revises: 0010_core
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0011_back_office"
down_revision: str | None = "0010_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = models.base.UTCDateTime(timezone=True)


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _add_reference(table: str, column: str, target: str) -> None:
    """A nullable INTEGER column referencing `target` (table.id)."""
    if op.get_bind().dialect.name == "sqlite":
        ref_table, ref_column = target.split(".")
        op.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER "
                           f"REFERENCES {ref_table} ({ref_column})"))
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), sa.ForeignKey(target),
                                       nullable=True))


def _open_aging_index(columns: list[str]) -> None:
    op.create_index("ix_invoices_open_aging", "invoices", ["customer_id", "due_date",
                                                          "balance_minor", *columns],
                    sqlite_where=sa.text("balance_minor > 0"),
                    postgresql_where=sa.text("balance_minor > 0"))


def upgrade() -> None:
    # -- invoices ---------------------------------------------------------------------------
    op.add_column("invoices", sa.Column("disputed_minor", BIG, nullable=False,
                                        server_default="0"))
    _add_reference("invoices", "fee_for_invoice_id", "invoices.id")
    op.add_column("invoices", sa.Column("fee_level", sa.Integer(), nullable=True))
    op.create_index("ux_invoices_fee_level", "invoices", ["fee_for_invoice_id", "fee_level"],
                    unique=True)
    op.drop_index("ix_invoices_open_aging", table_name="invoices")
    _open_aging_index(["disputed_minor"])

    # -- credit notes and deductions: new columns -------------------------------------------
    op.add_column("credit_notes", sa.Column("customer_credit_minor", BIG, nullable=False,
                                            server_default="0"))
    op.add_column("credit_notes", sa.Column("source", _str(16), nullable=False,
                                            server_default="o2c"))
    for column, kind in (("resolution", _str(24)), ("resolved_by", _str(64)),
                         ("resolved_at", TS), ("card_outbox_id", sa.Integer()),
                         ("billed_back_at", TS)):
        op.add_column("deductions", sa.Column(column, kind, nullable=True))
    op.add_column("deductions", sa.Column("bill_backs", sa.Integer(), nullable=False,
                                          server_default="0"))
    with op.batch_alter_table("deductions") as batch:
        batch.alter_column("status", existing_type=_str(16), type_=_str(24),
                           existing_nullable=False)

    # -- approvals: back-office subjects and tiers ------------------------------------------
    with op.batch_alter_table("approvals") as batch:
        batch.alter_column("order_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("subject_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("amount_minor", BIG, nullable=True))
        batch.add_column(sa.Column("currency", _str(3), nullable=True))
        batch.add_column(sa.Column("second_role", _str(32), nullable=True))
        batch.add_column(sa.Column("first_decided_by", _str(32), nullable=True))
        batch.add_column(sa.Column("first_decided_at", TS, nullable=True))
        batch.add_column(sa.Column("first_note", _str(2000), nullable=True))
        batch.create_unique_constraint("uq_approvals_kind_subject", ["kind", "subject_id"])
    op.execute(sa.text(
        "UPDATE approvals SET amount_minor = (SELECT o.total_minor FROM orders o "
        "WHERE o.id = approvals.order_id), currency = (SELECT o.currency FROM orders o "
        "WHERE o.id = approvals.order_id) WHERE order_id IS NOT NULL"))

    # -- new tables --------------------------------------------------------------------------
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", _str(3), nullable=False),
        sa.Column("amount_minor", BIG, nullable=False),
        sa.Column("held_minor", BIG, nullable=False),
        sa.Column("reason", _str(16), nullable=False),
        sa.Column("note", _str(2000), nullable=True),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("source", _str(16), nullable=False),
        sa.Column("opened_by", _str(64), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("owner_id", _str(32), nullable=True),
        sa.Column("owner_channel", _str(64), nullable=True),
        sa.Column("deduction_id", sa.Integer(), nullable=True),
        sa.Column("resolved_by", _str(64), nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolution_note", _str(2000), nullable=True),
        sa.Column("credit_amount_minor", BIG, nullable=True),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("card_outbox_id", sa.Integer(), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", TS, nullable=True),
        sa.Column("escalated_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_disputes_amount_positive"),
        sa.CheckConstraint("held_minor >= 0 AND held_minor <= amount_minor",
                           name="ck_disputes_held_within_amount"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["deduction_id"], ["deductions.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("invoice_id", "customer_id", "status", "deduction_id"):
        op.create_index(f"ix_disputes_{column}", "disputes", [column])
    op.create_index("ux_disputes_open_invoice", "disputes", ["invoice_id"], unique=True,
                    sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))

    op.create_table(
        "credit_note_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", _str(3), nullable=False),
        sa.Column("amount_minor", BIG, nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("reason", _str(500), nullable=False),
        sa.Column("status", _str(24), nullable=False),
        sa.Column("source", _str(16), nullable=False),
        sa.Column("external_id", _str(200), nullable=True),
        sa.Column("requested_by", _str(64), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=True),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("decided_by", _str(64), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_note", _str(2000), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    for column in ("invoice_id", "customer_id", "status", "dispute_id"):
        op.create_index(f"ix_credit_note_requests_{column}", "credit_note_requests", [column])

    _add_reference("credit_notes", "request_id", "credit_note_requests.id")
    op.create_index("ux_credit_notes_request", "credit_notes", ["request_id"], unique=True)

    op.create_table(
        "credit_note_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("credit_note_id", sa.Integer(), nullable=False),
        sa.Column("invoice_line_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("quantity", BIG, nullable=True),
        sa.Column("net_minor", BIG, nullable=False),
        sa.Column("tax_minor", BIG, nullable=False),
        sa.Column("amount_minor", BIG, nullable=False),
        sa.ForeignKeyConstraint(["credit_note_id"], ["credit_notes.id"]),
        sa.ForeignKeyConstraint(["invoice_line_id"], ["invoice_lines.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credit_note_id", "invoice_line_id"),
    )
    for column in ("credit_note_id", "invoice_line_id"):
        op.create_index(f"ix_credit_note_lines_{column}", "credit_note_lines", [column])

    op.create_table(
        "write_off_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", _str(3), nullable=False),
        sa.Column("amount_minor", BIG, nullable=False),
        sa.Column("kind", _str(16), nullable=False),
        sa.Column("reason", _str(500), nullable=False),
        sa.Column("status", _str(24), nullable=False),
        sa.Column("requested_by", _str(64), nullable=False),
        sa.Column("deduction_id", sa.Integer(), nullable=True),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("write_off_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", _str(64), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_note", _str(2000), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["deduction_id"], ["deductions.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.ForeignKeyConstraint(["write_off_id"], ["write_offs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("write_off_id"),
    )
    for column in ("invoice_id", "customer_id", "status", "deduction_id"):
        op.create_index(f"ix_write_off_requests_{column}", "write_off_requests", [column])

    # -- invoices flagged as disputed before disputes were recorded --------------------------
    op.execute(sa.text(
        "INSERT INTO disputes (invoice_id, customer_id, currency, amount_minor, held_minor, "
        "reason, note, status, source, opened_by, opened_at, reminders_sent, created_at) "
        "SELECT id, customer_id, currency, balance_minor, balance_minor, 'other', "
        "'flagged as disputed before disputes were recorded (migration 0011)', 'open', "
        "'migration', 'migration', CURRENT_TIMESTAMP, 0, CURRENT_TIMESTAMP FROM invoices "
        "WHERE disputed AND balance_minor > 0"))
    op.execute(sa.text("UPDATE invoices SET disputed_minor = balance_minor "
                       "WHERE disputed AND balance_minor > 0"))
    op.execute(sa.text("UPDATE invoices SET disputed = false "
                       "WHERE disputed AND balance_minor = 0"))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # tables are rebuilt below; their rows point at each other
        op.execute(sa.text("PRAGMA defer_foreign_keys = ON"))
    op.drop_table("write_off_requests")
    op.drop_table("credit_note_lines")
    op.drop_index("ux_credit_notes_request", table_name="credit_notes")
    with op.batch_alter_table("credit_notes") as batch:
        batch.drop_column("request_id")
        batch.drop_column("source")
        batch.drop_column("customer_credit_minor")
    op.drop_table("credit_note_requests")
    op.drop_table("disputes")
    op.execute(sa.text("DELETE FROM approvals WHERE order_id IS NULL"))
    with op.batch_alter_table("approvals") as batch:
        batch.drop_constraint("uq_approvals_kind_subject", type_="unique")
        for column in ("first_note", "first_decided_at", "first_decided_by", "second_role",
                       "currency", "amount_minor", "subject_id"):
            batch.drop_column(column)
        batch.alter_column("order_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("deductions") as batch:
        for column in ("bill_backs", "billed_back_at", "card_outbox_id", "resolved_at",
                       "resolved_by", "resolution"):
            batch.drop_column(column)
        batch.alter_column("status", existing_type=_str(24), type_=_str(16),
                           existing_nullable=False)
    op.drop_index("ix_invoices_open_aging", table_name="invoices")
    op.drop_index("ux_invoices_fee_level", table_name="invoices")
    if dialect == "sqlite":
        _drop_invoice_columns_sqlite()
    else:
        for column in ("fee_level", "fee_for_invoice_id", "disputed_minor"):
            op.drop_column("invoices", column)
    _open_aging_index(["disputed"])


INVOICE_COLUMNS = ("disputed_minor", "fee_for_invoice_id", "fee_level")


def _drop_invoice_columns_sqlite() -> None:
    """SQLite cannot drop a column that references a table, and alembic's batch mode (copy,
    drop, rename) would leave the rows of every table referencing `invoices` pointing at a
    dropped table: as 0008_economic_dates does, the rows are copied aside, the table dropped
    and re-created under its own name with foreign keys deferred, and put back — which
    resolves the violations the drop left."""
    bind = op.get_bind()
    metadata = sa.MetaData()
    old = sa.Table("invoices", metadata, autoload_with=bind)
    metadata.remove(old)
    new = sa.Table("invoices", metadata)
    for column in old.columns:
        if column.name not in INVOICE_COLUMNS:
            new.append_column(sa.Column(column.name, column.type,
                                        primary_key=column.primary_key,
                                        nullable=column.nullable))
    for constraint in list(old.constraints):
        names = {c.name for c in constraint.columns}
        if names & set(INVOICE_COLUMNS):
            continue
        if isinstance(constraint, sa.ForeignKeyConstraint):
            new.append_constraint(sa.ForeignKeyConstraint(
                [c.name for c in constraint.columns],
                [element.target_fullname for element in constraint.elements],
                name=constraint.name))
        elif isinstance(constraint, sa.UniqueConstraint):
            new.append_constraint(sa.UniqueConstraint(*names, name=constraint.name))
        elif isinstance(constraint, sa.CheckConstraint):
            new.append_constraint(sa.CheckConstraint(constraint.sqltext, name=constraint.name))
    indexes = [(index.name, [c.name for c in index.columns], index.unique)
               for index in old.indexes
               if not {c.name for c in index.columns} & set(INVOICE_COLUMNS)]
    columns = ", ".join(c.name for c in new.columns)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # switched off again at COMMIT
    bind.exec_driver_sql("CREATE TEMP TABLE _copy_invoices AS SELECT * FROM invoices")
    bind.exec_driver_sql("DROP TABLE invoices")
    new.create(bind)
    bind.exec_driver_sql(f"INSERT INTO invoices ({columns}) SELECT {columns} FROM "
                         "_copy_invoices")
    bind.exec_driver_sql("DROP TABLE _copy_invoices")
    for name, names, unique in indexes:
        op.create_index(name, "invoices", names, unique=unique)
