"""What the KPI rollup triggers (migration 0023_kpi_rollups) cost a write, on PostgreSQL.

The same single-row inserts (invoices, then allocations) with the triggers and with them
disabled (`ALTER TABLE … DISABLE TRIGGER`), each batch in a transaction that is rolled back,
so the book is left as it was. Needs a book seeded by `bench/reports.py`.

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


def timed(engine: sa.Engine, table: str, rows: int, *, disabled: bool) -> float:
    with engine.connect() as conn:
        transaction = conn.begin()
        if disabled:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER kpi_rollup_{table}")
        customer = conn.exec_driver_sql("SELECT min(id) FROM customers").scalar()
        invoice = conn.exec_driver_sql(
            "SELECT id FROM invoices WHERE balance_minor > 100000 LIMIT 1").scalar()
        payments = [r[0] for r in conn.exec_driver_sql(
            f"SELECT id FROM payments ORDER BY id LIMIT {rows}")]
        started = time.perf_counter()
        for n in range(rows):
            if table == "invoices":
                conn.execute(INVOICE, {"n": f"TRIGGER-COST-{n}", "c": customer, "d": DAY})
            else:  # each allocation from another payment, as a cash run writes them
                conn.execute(ALLOCATION, {"p": payments[n % len(payments)], "i": invoice,
                                          "d": DAY})
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
        for _ in range(2):
            for disabled in (False, True):
                spent = timed(db.engine, table, args.rows, disabled=disabled)
                print(f"{table:11s} triggers {'off' if disabled else 'on '}: {args.rows} "
                      f"inserts {spent * 1000:.0f} ms = {spent / args.rows * 1e6:.0f} us/row "
                      f"(load {os.getloadavg()[0]:.1f})")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
