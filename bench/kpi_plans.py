"""Each statement of the KPIs (`workflows.kpis.compute`, one by one), timed alone and explained.

Runs the KPIs once as of `--as-of` (default: `bench/reports.py`'s today) on an existing book
(seed one with `bench/reports.py`), capturing every statement with its parameters, then runs
each again `--runs` times (best kept, warm cache) and prints its plan: `EXPLAIN (ANALYZE,
BUFFERS)` on PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite.

    python bench/kpi_plans.py --database-url postgresql://...    [--as-of 2026-10-24] [--plans]
    python bench/kpi_plans.py                                   # bench/reports.py's SQLite file
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
from workflows import kpis  # noqa: E402

AS_OF = date(2026, 11, 23)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url",
                        default=f"sqlite:///{ROOT / 'bench' / 'data'}/reports-1000000-50000.db")
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plans", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    db = Database(args.database_url)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and \
                "pg_export_snapshot" not in statement:
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    with db.read_session() as session:
        started = time.perf_counter()
        report = kpis.compute(session, args.as_of)
        whole = time.perf_counter() - started
    sa.event.remove(db.engine, "before_cursor_execute", capture)
    print(f"load average {os.getloadavg()[0]:.1f}; KPIs one by one {whole * 1000:.0f} ms; "
          f"{len(captured)} statements; DSO {report.dso}, CEI {report.cei}")
    total = 0.0
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for number, (statement, parameters) in enumerate(captured, 1):
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                cursor.execute(statement, parameters)
                cursor.fetchall()
                times.append(time.perf_counter() - started)
            total += min(times)
            first = " ".join(statement.split())[:150]
            print(f"\n#{number} best {min(times) * 1000:.0f} ms: {first}")
            if args.plans:
                explain = ("EXPLAIN (ANALYZE, BUFFERS) " if db.is_postgres
                           else "EXPLAIN QUERY PLAN ")
                cursor.execute(explain + statement, parameters)
                for row in cursor.fetchall():
                    print("    " + " | ".join(str(c) for c in row))
        raw.rollback()
    finally:
        raw.close()
    print(f"\nsum of the statements' best: {total * 1000:.0f} ms")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
