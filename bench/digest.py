"""Benchmark: build every collector's daily digest over a large receivables book.

Target (issue 4, acceptance 6): 1M open invoices, 50k customers, 50 collectors -> all digests
built in <= 5 s, with memory that does not grow with the number of invoices (the worklists are
aggregated per customer in SQL and streamed; only the top accounts per collector are kept).

It seeds its own database (SQLite file under bench/data/, or --database-url) with bulk inserts,
then measures, in this order:
  * build: `build_worklists` for all collectors + the digest snapshot + rendering the Slack
    message (the `collections_digest` template) for each collector;
  * queue: what the `digest` job does — `prepare_digests` (worklists + contexts) in a read
    session, then `record_digests` (DigestRun rows + outbox rows) in a write transaction,
    whose length (how long SQLite's write lock is held) is reported separately.
Peak Python memory during each phase comes from tracemalloc; the process's max RSS from
getrusage. Results are printed and appended to bench/RESULTS.md.

    python bench/digest.py                       # full size on SQLite
    python bench/digest.py --invoices 100000 --customers 5000   # smaller, for comparison
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from blocks import templates  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from models import (  # noqa: E402
    CollectionActivity,
    Customer,
    DigestRun,
    Invoice,
    OutboxMessage,
    PromiseToPay,
    User,
    UserRole,
)
from workflows import collections  # noqa: E402

AS_OF = date(2026, 11, 23)
CHUNK = 50_000


def seed(db: Database, *, invoices: int, customers: int, collectors: int, paid: int,
         rng: random.Random) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        conn.execute(User.__table__.insert(), [
            {"slack_user_id": f"UCOLL{i:04d}", "name": f"Collector {i}",
             "timezone": "America/New_York" if i % 2 else "Europe/Berlin",
             "created_at": now, "updated_at": now} for i in range(collectors)])
        conn.execute(UserRole.__table__.insert(), [
            {"user_id": f"UCOLL{i:04d}", "role": "collector", "granted_by": "bench",
             "granted_at": now} for i in range(collectors)])
        conn.execute(Customer.__table__.insert(), [
            {"id": c + 1, "external_id": f"C{c:06d}", "name": f"Customer {c:06d} Ltd",
             "currency": "EUR" if c % 10 == 0 else "USD", "credit_limit_minor": 10_000_000,
             "payment_terms": "NET30", "billing_email": f"ap{c}@example.com",
             "collector_id": f"UCOLL{c % collectors:04d}", "tax_rate_bp": 0,
             "credit_reviewed": True, "credit_hold": False, "created_at": now,
             "updated_at": now} for c in range(customers)])
    total = invoices + paid
    for start in range(0, total, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, total)):
            customer = rng.randrange(customers) + 1
            due = AS_OF + timedelta(days=rng.randint(-200, 60))
            amount = rng.randint(1_000, 500_000)
            is_paid = n >= invoices
            rows.append({
                "number": f"INV-B-{n:08d}", "customer_id": customer, "source": "erp",
                "currency": "EUR" if (customer - 1) % 10 == 0 else "USD",
                "issue_date": due - timedelta(days=30), "due_date": due,
                "payment_terms": "NET30", "subtotal_minor": amount, "discount_minor": 0,
                "fees_minor": 0, "tax_minor": 0, "total_minor": amount,
                "balance_minor": 0 if is_paid else amount,
                "disputed": (not is_paid) and n % 97 == 0,
                # (a bench shortcut: no dispute rows, so `validate_disputes` would object)
                "disputed_minor": amount if (not is_paid) and n % 97 == 0 else 0,
                "paid_at": (datetime.combine(due, datetime.min.time(), tzinfo=UTC)
                            + timedelta(days=rng.randint(-5, 40))) if is_paid else None,
                "created_at": now})
        with db.engine.begin() as conn:
            conn.execute(Invoice.__table__.insert(), rows)
    with db.engine.begin() as conn:
        conn.execute(CollectionActivity.__table__.insert(), [
            {"customer_id": rng.randrange(customers) + 1, "kind": "call", "note": "bench",
             "user_id": "UCOLL0000", "at": now - timedelta(days=rng.randint(0, 30))}
            for _ in range(customers // 10)])
        conn.execute(PromiseToPay.__table__.insert(), [
            {"customer_id": rng.randrange(customers) + 1, "amount_minor": 10_000,
             "currency": "USD", "promised_date": AS_OF - timedelta(days=rng.randint(-10, 30)),
             "status": rng.choice(["open", "kept", "broken"]), "created_by": "UCOLL0000",
             "created_at": now, "broken_at": now} for _ in range(customers // 20)])
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def build_all(db: Database) -> tuple[int, int]:
    """Every collector's worklist, snapshot and rendered Slack message."""
    with db.read_session() as session:
        lists = collections.build_worklists(session, AS_OF)
    blocks = 0
    for worklist in lists.values():
        rendered = templates.render("collections_digest", worklist.snapshot())
        blocks += len(rendered["blocks"])
    return len(lists), blocks


def measure(label: str, func, *, trace: bool = False):
    """Time `func`; with `trace`, also its peak Python memory (tracemalloc slows Python code
    down, so timed runs and the memory run are separate)."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{label}: peak Python memory {peak / 2**20:.1f} MiB -> {result}")
    else:
        print(f"{label}: {elapsed:.2f} s -> {result}")
    return elapsed, peak, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000, help="open invoices")
    parser.add_argument("--paid", type=int, default=100_000, help="paid invoices (history)")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--collectors", type=int, default=50)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in bench/data/")
    parser.add_argument("--runs", type=int, default=3, help="timed builds (best is reported)")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the SQLite file seeded by an earlier run of the same size")
    args = parser.parse_args()

    url = args.database_url
    if url is None:
        data = ROOT / "bench" / "data"
        data.mkdir(parents=True, exist_ok=True)
        path = data / f"digest-{args.invoices}-{args.customers}.db"
        reuse = args.reuse and path.exists()
        if not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        reuse = False
    upgrade(url)
    db = Database(url)
    if reuse:
        with db.transaction() as session:
            session.execute(sa.delete(DigestRun.__table__))
            session.execute(sa.delete(OutboxMessage.__table__))
        seconds = 0.0
    else:
        seconds = seed(db, invoices=args.invoices, customers=args.customers,
                       collectors=args.collectors, paid=args.paid, rng=random.Random(42))
    print(f"seeded {args.invoices:,} open + {args.paid:,} paid invoices, {args.customers:,} "
          f"customers, {args.collectors} collectors in {seconds:.1f} s")

    builds = [measure(f"build all digests (run {i + 1})", lambda: build_all(db))
              for i in range(args.runs)]
    best = min(b[0] for b in builds)
    _, peak, _ = measure("build all digests (memory run)", lambda: build_all(db), trace=True)

    held: list[float] = []

    def queue() -> int:  # as bot/collections_jobs.digest does it
        with db.read_session() as session:
            prepared = collections.prepare_digests(session, AS_OF)
        started = time.perf_counter()
        with db.transaction() as session:
            queued = collections.record_digests(session, AS_OF, prepared)
        held.append(time.perf_counter() - started)
        return len(queued)

    queue_s, _, queued = measure("digest job (read: prepare; write: DigestRun + outbox rows)",
                                 queue)
    print(f"write transaction (SQLite write lock held): {held[0]:.3f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    verdict = "PASS" if best <= 5.0 else "FAIL"
    print(f"best build {best:.2f} s (target <= 5 s: {verdict}); max RSS {rss:.0f} MiB")

    if not args.no_record:
        kind = "postgresql" if db.is_postgres else "sqlite"
        command = "python " + " ".join(["bench/digest.py", *sys.argv[1:]])
        with (ROOT / "bench" / "RESULTS.md").open("a") as out:
            out.write(
                f"\n### digest — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {kind}\n\n"
                f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
                f"{platform.python_version()} (shared with other work while it ran)\n"
                f"- command: `{command}`\n"
                f"- data: {args.invoices:,} open + {args.paid:,} paid invoices, "
                f"{args.customers:,} customers, {args.collectors} collectors "
                f"(seeded in {seconds:.0f} s)\n"
                f"- build all digests (worklists + snapshots + Slack messages), best of "
                f"{args.runs}: **{best:.2f} s** (target <= 5 s: {verdict}); runs: "
                + ", ".join(f"{b[0]:.2f}" for b in builds) + " s\n"
                f"- peak Python memory during a build (tracemalloc, separate run): "
                f"**{peak / 2**20:.1f} MiB**\n"
                f"- digest job ({queued} digests): {queue_s:.2f} s in all; worklists built in "
                f"a read session, then the write transaction (DigestRun + outbox rows, the "
                f"time SQLite's write lock is held): **{held[0]:.3f} s**\n"
                f"- process max RSS (including seeding): {rss:.0f} MiB\n")
    db.dispose()
    return 0 if best <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
