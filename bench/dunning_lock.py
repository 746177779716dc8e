"""Benchmark (issue 18): how long another writer waits while dunning runs, on SQLite.

A book of `--invoices` overdue invoices (all at the +7 level, so every one gets a notice, an
e-mail and a collection activity) is dunned by `workflows.dunning.run_all` in one thread while
another thread plays "a click or an API write": every `--interval` seconds a small write
transaction (a collection activity), timed from `BEGIN IMMEDIATE` to commit (one that gives
up with "database is locked" after the busy timeout counts as failed, with its wait).
Reported: the writer's p50 / p99 / max wait during the run, the run's length and notices, for

  * `now`: the job as it runs on SQLite (`bot.collections_jobs`): candidates found in a read
    session, about `--batch` invoices per write transaction (a customer's together; the
    notices claimed with one INSERT, outbox rows and activities by executemany), a
    `--pause` after each;
  * `one`: the whole run in one write transaction (`run_dunning`): what a writer waits for
    when nothing lets it in.

    python bench/dunning_lock.py --invoices 2000              # both
    python bench/dunning_lock.py --invoices 2000 --which now --batch 20

The figures before the bulk inserts were measured with this script as it was at the commit
before them (see bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bot.collections_jobs import DUNNING_BATCH_SQLITE, DUNNING_PAUSE  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from models import CollectionActivity, Customer, Invoice  # noqa: E402
from workflows import dunning  # noqa: E402

AS_OF = date(2026, 11, 23)


def seed(db: Database, invoices: int) -> None:
    now = datetime.now(UTC)
    customers = max(invoices // 20, 1)
    with db.engine.begin() as conn:
        conn.execute(Customer.__table__.insert(), [
            {"id": c + 1, "external_id": f"C{c:06d}", "name": f"Customer {c:06d}",
             "currency": "USD", "credit_limit_minor": 10_000_000, "payment_terms": "NET30",
             "billing_email": f"ap{c}@example.com", "tax_rate_bp": 0,
             "credit_reviewed": True, "credit_hold": False, "created_at": now,
             "updated_at": now} for c in range(customers)])
        rng = random.Random(5)
        due = AS_OF - timedelta(days=8)
        conn.execute(Invoice.__table__.insert(), [
            {"number": f"INV-L-{n:08d}", "customer_id": n % customers + 1, "source": "erp",
             "currency": "USD", "issue_date": due - timedelta(days=30), "due_date": due,
             "payment_terms": "NET30", "subtotal_minor": (amount := rng.randint(1000, 90000)),
             "discount_minor": 0, "fees_minor": 0, "tax_minor": 0, "total_minor": amount,
             "balance_minor": amount, "disputed": False, "disputed_minor": 0,
             "created_at": now} for n in range(invoices)])


def one_transaction(db: Database, as_of: date) -> dunning.DunningRun:
    """The whole run in one write transaction."""
    with db.transaction() as session:
        return dunning.run_dunning(session, as_of)


def measure(db: Database, label: str, runner, interval: float) -> dict:
    waits: list[float] = []
    failed: list[str] = []
    done = threading.Event()

    def writer() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                with db.transaction() as session:
                    session.add(CollectionActivity(customer_id=1, kind="call", note="bench",
                                                   user_id="UBENCH"))
            except sa.exc.OperationalError as error:  # "database is locked": gave up waiting
                failed.append(str(error.orig))
            waits.append(time.perf_counter() - started)
            time.sleep(interval)

    thread = threading.Thread(target=writer)
    started = time.perf_counter()
    thread.start()
    run = runner()
    elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    waits.sort()
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    result = {"label": label, "notices": sum(run.sent.values()), "run_s": elapsed,
              "writes": len(waits), "failed": len(failed),
              "p50_ms": statistics.median(waits) * 1000, "p99_ms": p99 * 1000,
              "max_ms": waits[-1] * 1000}
    print(result, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--which", choices=("one", "now", "both"), default="both")
    parser.add_argument("--batch", type=int, default=DUNNING_BATCH_SQLITE)
    parser.add_argument("--pause", type=float, default=DUNNING_PAUSE)
    args = parser.parse_args()
    data = ROOT / "bench" / "data"
    data.mkdir(parents=True, exist_ok=True)
    results = []
    for label in (("one", "now") if args.which == "both" else (args.which,)):
        path = data / f"dunning-lock-{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        upgrade(url)
        db = Database(url)
        seed(db, args.invoices)
        if label == "one":
            runner = lambda db=db: one_transaction(db, AS_OF)  # noqa: E731
        else:
            runner = lambda db=db: dunning.run_all(  # noqa: E731
                db, AS_OF, batch=args.batch, between=lambda: time.sleep(args.pause))
        results.append(measure(db, label, runner, args.interval))
        db.dispose()
    print(f"batch {args.batch}, pause {args.pause}; machine: {platform.platform()}, "
          f"{os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
