"""Many KPI requests at the same moment on one process (PostgreSQL): do they all answer?

`GET /reports/kpis`, `/o2c kpi` and the KPI jobs compute with `concurrently=True`
(`workflows.snapshot_reads`: the reads on several pooled connections at once). This starts
`--requests` threads that each open a read session and compute the KPIs at the same moment,
against a fresh database with the default pool (10 + 20 overflow), and says how many failed
and the slowest answer.

    python bench/kpi_burst.py --database-url postgresql://... [--requests 30]   # WIPED
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cashapp import fresh_db, machine
from workflows import kpis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = fresh_db(Path(folder) / "unused.db", args.database_url)
        print(machine(db))
        start = threading.Barrier(args.requests)
        errors: list[str] = []
        took: list[float] = []

        def ask() -> None:
            start.wait()
            began = time.perf_counter()
            try:
                with db.read_session() as session:
                    kpis.compute(session, date(2026, 11, 23), concurrently=True)
            except Exception as error:  # (counted, by kind)
                errors.append(type(error).__name__)
            took.append(time.perf_counter() - began)

        threads = [threading.Thread(target=ask) for _ in range(args.requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(f"{args.requests} requests at once: {len(errors)} failed {sorted(set(errors))}, "
              f"slowest {max(took):.2f} s")
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
