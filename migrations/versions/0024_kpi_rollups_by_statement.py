"""KPI rollups on PostgreSQL: an INSERT's rows (and a settlement DELETE's) added at once

Migration 0023's triggers ran once per row: a cash run's 1,000-line statement paid, for each
allocation, an upsert of its day's row and an UPDATE of its payment (whose own trigger then
upserted again) — ~3 s more for issue 20's 10,000 payments. On PostgreSQL an INSERT into
invoices, payments, allocations, credit notes or write-offs, and a DELETE of allocations,
credit notes or write-offs, now fire one trigger per statement, which reads the statement's
rows from its transition table (`REFERENCING NEW TABLE` / `OLD TABLE`) and adds them with one
grouped upsert per figure (and, for allocations, one grouped UPDATE of their payments). The
figures are the same as 0023's, row for row (`workflows.invariants.validate_kpi_rollups`).
UPDATEs (and DELETEs of invoices and payments) keep 0023's row triggers: a column list can't
go with a transition table, and most UPDATEs change no figure.

SQLite has no statement triggers: its triggers are 0023's, unchanged (nothing to do).

Revision ID: 0024_kpi_rollups_by_statement
Revises: 0023_kpi_rollups
Create Date: 2026-12-07
"""
# ruff: noqa: S608 - every SQL text below is built from 0023's and this file's constants
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic import op

revision: str = "0024_kpi_rollups_by_statement"
down_revision: str | None = "0023_kpi_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous():
    """Migration 0023's module, for its SQL builders (a migration is never edited, so what it
    builds stays what it built)."""
    path = Path(__file__).with_name("0023_kpi_rollups.py")
    spec = importlib.util.spec_from_file_location("_o2c_migration_0023", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.STRIPE = "pg_backend_pid()"  # (as its upgrade sets it on PostgreSQL)
    return module


ADDED = ("invoices", "payments", "allocations", "credit_notes", "write_offs")  # on INSERT
REMOVED = ("allocations", "credit_notes", "write_offs")  # on DELETE


def _grouped(m, table: str, rows: str, sign: str) -> list[str]:
    """SQL: add (`sign` '') or remove ('-') every row of transition table `rows` of `table`,
    grouped by currency and day (0023's `_statements`, for a statement's rows at once)."""
    if table == "invoices":
        return [m._add({"sales_minor": f"{sign}r.total_minor",
                        "invoices_issued":
                            f"{sign}(CASE WHEN r.fee_for_invoice_id IS NULL THEN 1 ELSE 0 END)"},
                       "r.currency", "r.issue_date", f"{rows} r", group=True)]
    if table == "payments":
        auto = m._auto("r")
        return [m._add({"payments": f"{sign}1",
                        "payments_auto": f"{sign}(CASE WHEN {auto} THEN 1 ELSE 0 END)",
                        "received_minor": f"{sign}r.amount_minor",
                        "auto_matched_minor":
                            f"{sign}(CASE WHEN {auto} THEN r.auto_allocated_minor ELSE 0 END)"},
                       "r.currency", m._utc_day(True, "r.received_at"), f"{rows} r",
                       group=True)]
    joined = f"{rows} r JOIN invoices i ON i.id = r.invoice_id"
    out = [m._add({"settled_minor": f"{sign}r.amount_minor"}, "i.currency",
                  m._later(True, "r.effective_date", "i.issue_date"), joined, group=True)]
    if table == "write_offs":
        out.append(m._add({"bad_debt_minor": f"{sign}r.amount_minor"}, "i.currency",
                          "r.effective_date", f"{joined} WHERE r.reason = 'bad_debt'",
                          group=True))
    if table == "allocations":
        out.append(
            f"UPDATE payments p SET auto_allocated_minor = p.auto_allocated_minor + {sign}"
            f"s.auto, manual_allocations = p.manual_allocations + {sign}s.manual "
            "FROM (SELECT payment_id, SUM(CASE WHEN method = 'manual' THEN 0 "
            "ELSE amount_minor END) AS auto, SUM(CASE WHEN method = 'manual' THEN 1 ELSE 0 "
            f"END) AS manual FROM {rows} GROUP BY payment_id) s WHERE p.id = s.payment_id")
    return out


def _statement_triggers(m) -> list[str]:
    out = []
    for event, tables, rows, sign in (("insert", ADDED, "new_rows", ""),
                                      ("delete", REMOVED, "old_rows", "-")):
        which = "NEW" if event == "insert" else "OLD"
        for table in tables:
            name = f"kpi_rollup_{table}_{event}"
            out.append(f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                       f"{'; '.join(_grouped(m, table, rows, sign))}; "
                       "RETURN NULL; END $$ LANGUAGE plpgsql")
            out.append(f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} "
                       f"REFERENCING {which} TABLE AS {rows} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {name}()")
    return out


def _locked() -> object | None:
    """0023's module (its SQL), with the watched tables locked against writes — no write
    between dropping a trigger and creating its replacement — or None on SQLite."""
    if op.get_bind().dialect.name != "postgresql":
        return None
    op.execute("LOCK TABLE invoices, allocations, credit_notes, write_offs, payments "
               "IN SHARE ROW EXCLUSIVE MODE")
    return _previous()


def _row_triggers(m: object, events: Callable[[str, str], str]) -> None:
    """Each table's row trigger made again, firing on `events(table, its watched columns)`."""
    for table, watched in m.WATCHED.items():
        op.execute(f"DROP TRIGGER kpi_rollup_{table} ON {table}")
        op.execute(f"CREATE TRIGGER kpi_rollup_{table} AFTER "
                   f"{events(table, ', '.join(watched))} ON {table} FOR EACH ROW "
                   f"EXECUTE FUNCTION kpi_rollup_{table}()")


def upgrade() -> None:
    m = _locked()
    if m is None:
        return
    _row_triggers(m, lambda table, watched: (f"UPDATE OF {watched}" if table in REMOVED
                                             else f"DELETE OR UPDATE OF {watched}"))
    for statement in _statement_triggers(m):
        op.execute(statement)


def downgrade() -> None:
    m = _locked()
    if m is None:
        return
    for event, tables in (("insert", ADDED), ("delete", REMOVED)):
        for table in tables:
            op.execute(f"DROP TRIGGER kpi_rollup_{table}_{event} ON {table}")
            op.execute(f"DROP FUNCTION kpi_rollup_{table}_{event}()")
    _row_triggers(m, lambda table, watched: f"INSERT OR DELETE OR UPDATE OF {watched}")
