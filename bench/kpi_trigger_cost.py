"""What the KPI rollup triggers (migrations 0023_kpi_rollups, 0024) cost a write, on PostgreSQL.

The same inserts (invoices, then allocations) with the triggers and with them disabled
(`ALTER TABLE … DISABLE TRIGGER`, every `kpi_rollup_*` trigger of the table), each batch in a
transaction that is rolled back, so the book is left as it was: one row per INSERT, then (at
0024, where an INSERT's rows are added by one trigger per statement) the same rows in INSERTs
of 1,000 rows, as a cash run's batch writes allocations. Needs a book seeded by
`bench/reports.py`.

    python bench/kpi_trigger_cost.py --database-url postgresql://... [--rows 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bot.db import Database  # noqa: E402

DAY = date(2026, 11, 23)
INVOICE = sa.text(
    "INSERT INTO invoices (number, customer_id, source, currency, issue_date, due_date, "
    "payment_terms, subtotal_minor, discount_minor, fees_minor, tax_minor, total_minor, "
    "balance_minor, disputed, disputed_minor, created_at) VALUES (:n, :c, 'o2c', 'USD', :d, "
    ":d, 'NET30', 100, 0, 0, 0, 100, 100, false, 0, now())")
ALLOCATION = sa.text(
    "INSERT INTO allocations (payment_id, invoice_id, amount_minor, method, value_date, "
    "effective_date, created_by, created_at) VALUES (:p, :i, 1, 'reference', :d, :d, "
    "'bench', now())")

# the same rows, `per` to a statement
INVOICES = sa.text(
    "INSERT INTO invoices (number, customer_id, source, currency, issue_date, due_date, "
    "payment_terms, subtotal_minor, discount_minor, fees_minor, tax_minor, total_minor, "
    "balance_minor, disputed, disputed_minor, created_at) SELECT 'TRIGGER-COST-' || n, :c, "
    "'o2c', 'USD', :d, :d, 'NET30', 100, 0, 0, 0, 100, 100, false, 0, now() "
    "FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS n")
ALLOCATIONS = sa.text(
    "INSERT INTO allocations (payment_id, invoice_id, amount_minor, method, value_date, "
    "effective_date, created_by, created_at) SELECT p, :i, 1, 'reference', :d, :d, 'bench', "
    "now() FROM unnest(CAST(:ps AS bigint[])) AS p")


def timed(engine: sa.Engine, table: str, rows: int, *, disabled: bool, per: int = 1) -> float:
    """Seconds to insert `rows` rows into `table`, `per` rows to an INSERT."""
    with engine.connect() as conn:
        transaction = conn.begin()
        if disabled:
            for trigger in conn.exec_driver_sql(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE "
                    f"'kpi_rollup_%%' AND tgrelid = '{table}'::regclass").scalars().all():
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        customer = conn.exec_driver_sql("SELECT min(id) FROM customers").scalar()
        invoice = conn.exec_driver_sql(
            "SELECT id FROM invoices WHERE balance_minor > 100000 LIMIT 1").scalar()
        payments = [r[0] for r in conn.exec_driver_sql(
            f"SELECT id FROM payments ORDER BY id LIMIT {rows}")]
        started = time.perf_counter()
        for start in range(0, rows, per):
            if table == "invoices" and per == 1:
                conn.execute(INVOICE, {"n": f"TRIGGER-COST-{start}", "c": customer, "d": DAY})
            elif table == "invoices":
                conn.execute(INVOICES, {"a": start, "b": min(start + per, rows) - 1,
                                        "c": customer, "d": DAY})
            elif per == 1:  # each allocation from another payment, as a cash run writes them
                conn.execute(ALLOCATION, {"p": payments[start % len(payments)], "i": invoice,
                                          "d": DAY})
            else:
                conn.execute(ALLOCATIONS, {"ps": [payments[n % len(payments)] for n in range(
                    start, min(start + per, rows))], "i": invoice, "d": DAY})
        spent = time.perf_counter() - started
        transaction.rollback()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    db = Database(args.database_url)
    for table in ("invoices", "allocations"):
        for per in (1, 1000):
            for _ in range(2):
                for disabled in (False, True):
                    spent = timed(db.engine, table, args.rows, disabled=disabled, per=per)
                    print(f"{table:11s} {per:4d} to an INSERT, triggers "
                          f"{'off' if disabled else 'on '}: {args.rows} rows "
                          f"{spent * 1000:.0f} ms = {spent / args.rows * 1e6:.0f} us/row "
                          f"(load {os.getloadavg()[0]:.1f})")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
