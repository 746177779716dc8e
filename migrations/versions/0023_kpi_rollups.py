"""KPI rollups: per currency and day, what the KPIs sum, kept by triggers (issue 18)

* `kpi_daily (currency, day, stripe)`: credit sales and sales invoices issued, settlements by the
  first day they count in AR, bad-debt write-offs, payments received and those matched
  automatically (see `models.system.KpiDaily`).
* `payments.auto_allocated_minor`, `payments.manual_allocations`: the sum of a payment's
  allocations other than "manual" ones and the number of "manual" ones.

Both are kept by database triggers (SQLite and PostgreSQL) on invoices, allocations, credit
notes, write-offs and payments, in the same statement as the write they summarise, whatever
code writes (ORM, Core bulk inserts, deletes of reversed allocations): never by Python.
`workflows.invariants.validate_kpi_rollups` recomputes them from the base rows.

Upgrading backfills both from the rows already there; on PostgreSQL the five tables are
locked against writes first (SHARE ROW EXCLUSIVE) so no write slips in between the backfill
and the triggers. Downgrading drops the triggers, the table and the two columns.

Revision ID: 0023_kpi_rollups
Revises: 0022_dunning_runs
Create Date: 2026-12-06
"""
# ruff: noqa: S608 - every SQL text below is built from this file's constants, no input
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_kpi_rollups"
down_revision: str | None = "0022_dunning_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("sales_minor", "invoices_issued", "settled_minor", "bad_debt_minor", "payments",
           "payments_auto", "received_minor", "auto_matched_minor")
APPLIED = "('applied', 'partially_applied')"
# what the trigger of each table watches on UPDATE (other columns do not change its figures)
WATCHED = {
    "invoices": ("total_minor", "issue_date", "currency", "fee_for_invoice_id"),
    "allocations": ("amount_minor", "method", "effective_date", "invoice_id", "payment_id"),
    "credit_notes": ("amount_minor", "effective_date", "invoice_id"),
    "write_offs": ("amount_minor", "effective_date", "invoice_id", "reason"),
    "payments": ("status", "amount_minor", "currency", "received_at", "auto_allocated_minor",
                 "manual_allocations"),
}
SETTLEMENTS = ("allocations", "credit_notes", "write_offs")
# The row of a day a write adds to: on PostgreSQL one per server process (connection), so
# concurrent transactions never wait on each other's row of the same currency and day (nor
# deadlock on two days' rows); the readers sum the stripes. SQLite has one writer: stripe 0.
STRIPE = "0"


def _later(pg: bool, a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if pg else f"max({a}, {b})"


def _utc_day(pg: bool, column: str) -> str:
    return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)" if pg else f"date({column})"


def _auto(r: str) -> str:
    """SQL: payment row `r` was matched with no manual allocation."""
    return (f"({r}.status IN {APPLIED} AND {r}.manual_allocations = 0 "
            f"AND {r}.auto_allocated_minor <> 0)")


def _add(values: dict[str, str], currency: str, day: str, source: str | None = None,
         group: bool = False) -> str:
    """SQL: add `values` to the row (currency, day) of kpi_daily, creating it."""
    names = ", ".join(values)
    sets = ", ".join(f"{c} = kpi_daily.{c} + excluded.{c}" for c in values)
    if source is None:
        head = f"VALUES ({currency}, {day}, {STRIPE}, {', '.join(values.values())})"
    else:
        sums = ", ".join(f"SUM({v})" if group else v for v in values.values())
        head = (f"SELECT {currency}, {day}, {STRIPE}, {sums} FROM {source}"
                + ("" if " WHERE " in source else " WHERE true")  # (SQLite's upsert needs one)
                + (" GROUP BY 1, 2" if group else ""))
    return (f"INSERT INTO kpi_daily (currency, day, stripe, {names}) {head} "
            f"ON CONFLICT (currency, day, stripe) DO UPDATE SET {sets}")


def _statements(pg: bool, table: str, r: str, sign: str) -> tuple[list[str], list[str]]:
    """SQL: the statements adding (`sign` '') or removing ('-') row `r` of `table`, and (for
    an invoice's OLD row) those moving its settlements when its currency or date changes."""
    if table == "invoices":
        out = [_add({"sales_minor": f"{sign}{r}.total_minor",
                     "invoices_issued":
                         f"{sign}(CASE WHEN {r}.fee_for_invoice_id IS NULL THEN 1 ELSE 0 END)"},
                    f"{r}.currency", f"{r}.issue_date")]
        if r.upper() == "OLD":  # an invoice's settlements move with its currency and date
            rekey = []
            for settlement in SETTLEMENTS:
                for row, sg in (("OLD", "-"), ("NEW", "")):
                    rekey.append(_add(
                        {"settled_minor": f"{sg}s.amount_minor"}, f"{row}.currency",
                        _later(pg, "s.effective_date", f"{row}.issue_date"),
                        f"{settlement} s WHERE s.invoice_id = {row}.id", group=True))
            for row, sg in (("OLD", "-"), ("NEW", "")):
                rekey.append(_add(
                    {"bad_debt_minor": f"{sg}s.amount_minor"}, f"{row}.currency",
                    "s.effective_date",
                    f"write_offs s WHERE s.invoice_id = {row}.id AND s.reason = 'bad_debt'",
                    group=True))
            return out, rekey
        return out, []
    if table == "payments":
        return [_add({"payments": f"{sign}1",
                      "payments_auto": f"{sign}(CASE WHEN {_auto(r)} THEN 1 ELSE 0 END)",
                      "received_minor": f"{sign}{r}.amount_minor",
                      "auto_matched_minor":
                          f"{sign}(CASE WHEN {_auto(r)} THEN {r}.auto_allocated_minor "
                          "ELSE 0 END)"},
                     f"{r}.currency", _utc_day(pg, f"{r}.received_at"))], []
    out = [_add({"settled_minor": f"{sign}{r}.amount_minor"}, "i.currency",
                _later(pg, f"{r}.effective_date", "i.issue_date"),
                f"invoices i WHERE i.id = {r}.invoice_id")]
    if table == "write_offs":
        out.append(_add({"bad_debt_minor": f"{sign}{r}.amount_minor"}, "i.currency",
                        f"{r}.effective_date",
                        f"invoices i WHERE i.id = {r}.invoice_id "
                        f"AND {r}.reason = 'bad_debt'"))
    if table == "allocations":
        out.append(
            f"UPDATE payments SET auto_allocated_minor = auto_allocated_minor + {sign}"
            f"(CASE WHEN {r}.method = 'manual' THEN 0 ELSE {r}.amount_minor END), "
            f"manual_allocations = manual_allocations + {sign}"
            f"(CASE WHEN {r}.method = 'manual' THEN 1 ELSE 0 END) "
            f"WHERE id = {r}.payment_id")
    return out, []


def _sqlite_triggers() -> list[str]:
    out = []
    for table, watched in WATCHED.items():
        plus, _ = _statements(False, table, "NEW", "")
        minus, rekey = _statements(False, table, "OLD", "-")
        body = {"insert": plus, "delete": minus, "update": minus + plus}
        for event, statements in body.items():
            on = f"UPDATE OF {', '.join(watched)}" if event == "update" else event.upper()
            sql = "; ".join(statements)
            out.append(f"CREATE TRIGGER kpi_rollup_{table}_{event} AFTER {on} ON {table} "
                       f"FOR EACH ROW BEGIN {sql}; END")
        if rekey:
            out.append(f"CREATE TRIGGER kpi_rollup_{table}_rekey AFTER UPDATE OF "
                       f"issue_date, currency ON {table} FOR EACH ROW WHEN "
                       "OLD.issue_date <> NEW.issue_date OR OLD.currency <> NEW.currency "
                       f"BEGIN {'; '.join(rekey)}; END")
    return out


def _pg_payment_update() -> str:
    """PL/pgSQL: a payment updated within its currency and day adds the difference in one
    statement, or nothing when its figures did not change (a cash run updates each payment
    once per allocation and once for its status: most of those change no figure)."""
    day_old, day_new = _utc_day(True, "OLD.received_at"), _utc_day(True, "NEW.received_at")

    def auto(r: str) -> str:
        return f"(CASE WHEN {_auto(r)} THEN 1 ELSE 0 END)"

    def matched(r: str) -> str:
        return f"(CASE WHEN {_auto(r)} THEN {r}.auto_allocated_minor ELSE 0 END)"

    deltas = {"payments_auto": f"{auto('NEW')} - {auto('OLD')}",
              "received_minor": "NEW.amount_minor - OLD.amount_minor",
              "auto_matched_minor": f"{matched('NEW')} - {matched('OLD')}"}
    changed = " OR ".join(f"({delta}) <> 0" for delta in deltas.values())
    return (f"IF TG_OP = 'UPDATE' AND OLD.currency = NEW.currency AND {day_old} = {day_new} "
            f"THEN IF {changed} THEN {_add(deltas, 'NEW.currency', day_new)}; END IF; "
            "RETURN NULL; END IF;")


def _pg_triggers() -> list[str]:
    out = []
    for table, watched in WATCHED.items():
        plus, _ = _statements(True, table, "NEW", "")
        minus, rekey = _statements(True, table, "OLD", "-")
        shortcut = _pg_payment_update() if table == "payments" else ""
        rekey_sql = ""
        if rekey:
            rekey_sql = ("IF TG_OP = 'UPDATE' AND (OLD.issue_date <> NEW.issue_date "
                         f"OR OLD.currency <> NEW.currency) THEN {'; '.join(rekey)}; END IF;")
        out.append(f"""
            CREATE FUNCTION kpi_rollup_{table}() RETURNS trigger AS $$
            BEGIN
                {shortcut}
                IF TG_OP IN ('UPDATE', 'DELETE') THEN {'; '.join(minus)}; END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN {'; '.join(plus)}; END IF;
                {rekey_sql}
                RETURN NULL;
            END $$ LANGUAGE plpgsql""")
        out.append(f"CREATE TRIGGER kpi_rollup_{table} AFTER INSERT OR DELETE OR UPDATE OF "
                   f"{', '.join(watched)} ON {table} FOR EACH ROW "
                   f"EXECUTE FUNCTION kpi_rollup_{table}()")
    return out


def backfill_sql(pg: bool) -> list[str]:
    """SQL: the two columns of payments, then every row of kpi_daily, from the base rows."""
    zero = dict.fromkeys(COLUMNS, "0")

    def part(values: dict[str, str], currency: str, day: str, source: str) -> str:
        row = {**zero, **values}
        return (f"SELECT {currency} AS currency, {day} AS day, "
                + ", ".join(f"{v} AS {c}" for c, v in row.items()) + f" FROM {source}")

    def settled(table: str) -> str:
        return part({"settled_minor": "s.amount_minor"}, "i.currency",
                    _later(pg, "s.effective_date", "i.issue_date"),
                    f"{table} s JOIN invoices i ON i.id = s.invoice_id")

    auto = _auto("p")
    parts = [
        part({"sales_minor": "total_minor",
              "invoices_issued": "CASE WHEN fee_for_invoice_id IS NULL THEN 1 ELSE 0 END"},
             "currency", "issue_date", "invoices"),
        *(settled(table) for table in SETTLEMENTS),
        part({"bad_debt_minor": "s.amount_minor"}, "i.currency", "s.effective_date",
             "write_offs s JOIN invoices i ON i.id = s.invoice_id "
             "WHERE s.reason = 'bad_debt'"),
        part({"payments": "1", "payments_auto": f"CASE WHEN {auto} THEN 1 ELSE 0 END",
              "received_minor": "p.amount_minor",
              "auto_matched_minor": f"CASE WHEN {auto} THEN p.auto_allocated_minor ELSE 0 END"},
             "p.currency", _utc_day(pg, "p.received_at"), "payments p"),
    ]
    names = ", ".join(COLUMNS)
    return [
        "UPDATE payments SET "
        "auto_allocated_minor = (SELECT COALESCE(SUM(CASE WHEN a.method = 'manual' THEN 0 "
        "ELSE a.amount_minor END), 0) FROM allocations a WHERE a.payment_id = payments.id), "
        "manual_allocations = (SELECT COUNT(*) FROM allocations a "
        "WHERE a.payment_id = payments.id AND a.method = 'manual') "
        "WHERE id IN (SELECT payment_id FROM allocations)",
        f"INSERT INTO kpi_daily (currency, day, {names}) SELECT currency, day, "
        + ", ".join(f"SUM({c})" for c in COLUMNS)
        + " FROM (" + " UNION ALL ".join(parts) + ") parts GROUP BY currency, day",
    ]


def upgrade() -> None:
    global STRIPE
    pg = op.get_bind().dialect.name == "postgresql"
    STRIPE = "pg_backend_pid()" if pg else "0"
    if pg:  # no write between the backfill and the triggers
        op.execute("LOCK TABLE invoices, allocations, credit_notes, write_offs, payments "
                   "IN SHARE ROW EXCLUSIVE MODE")
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.add_column("payments", sa.Column("auto_allocated_minor", big, server_default="0",
                                        nullable=False))
    op.add_column("payments", sa.Column("manual_allocations", sa.Integer(), server_default="0",
                                        nullable=False))
    op.create_table(
        "kpi_daily",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stripe", sa.Integer(), server_default="0", nullable=False),
        *(sa.Column(c, big, server_default="0", nullable=False) for c in COLUMNS),
        sa.PrimaryKeyConstraint("currency", "day", "stripe"),
    )
    for statement in backfill_sql(pg):
        op.execute(statement)
    for statement in _pg_triggers() if pg else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        if pg:
            op.execute(f"DROP TRIGGER IF EXISTS kpi_rollup_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS kpi_rollup_{table}()")
        else:
            for event in ("insert", "delete", "update", "rekey"):
                op.execute(f"DROP TRIGGER IF EXISTS kpi_rollup_{table}_{event}")
    op.drop_table("kpi_daily")
    # (SQLite drops a plain column in place: a batch copy of payments would break the foreign
    # keys that point at it)
    for column in ("manual_allocations", "auto_allocated_minor"):
        op.execute(f"ALTER TABLE payments DROP COLUMN {column}")
