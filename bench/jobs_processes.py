"""Benchmark: the daily digest and dunning run by N server processes on one PostgreSQL at once
(issue 18, point 3): each notice, e-mail, digest and summary once, and how long it took.

    python bench/jobs_processes.py --processes 4 [--database-url postgresql://...]
                                   [--invoices 20000] [--customers 2000] [--collectors 20]
                                   [--unlocked]

Seeds `bench/digest.py`'s book (a fresh database: a throw-away PostgreSQL cluster unless
`--database-url` names an empty one), then starts `--processes` Python processes at once, each
doing what a server's scheduler does when the job's minute comes: `bot.scheduler.run_scheduled`
of `digest-schedule`-like `digest` and of `dunning` for the same planned minute (the advisory
lock elects one process per job; the others skip). With `--unlocked`, the processes call the
jobs directly, all at the same time (as if the lock were lost): only the database's unique keys
keep them exactly once. Then it checks, from the database:

* every (invoice, level) notice once (its unique key), every dunned invoice in exactly one
  e-mail, each collector exactly one digest for the day;
* the AR channel's dunning summaries count each sent notice exactly once, and every dunning
  run is finished;
* each collector is told of a dunning run once (`dunning_people`, one DM per person per run:
  no more of them than people told × finished runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402

from bot.db import Database  # noqa: E402
from bot.migrate import upgrade  # noqa: E402

CHILD = r"""
import dataclasses, json, sys, time
from datetime import UTC, date, datetime
from bot import collections_jobs, jobs
from bot.cli import _settings
from bot.deps import build_deps
from bot.scheduler import run_scheduled

as_of, unlocked = date.fromisoformat(sys.argv[1]), sys.argv[2] == "1"
planned = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)
deps = build_deps(_settings())
out = {}
for name in ("digest", "dunning"):
    started = time.perf_counter()
    if unlocked:
        func = collections_jobs.digest if name == "digest" else collections_jobs.run_dunning
        summary = func(deps, as_of)
    else:  # the scheduler's firing (a fixed planned minute), for the bench's day
        spec = jobs.JOBS[name]
        job = dataclasses.replace(spec, func=lambda d, _a, f=spec.func: f(d, as_of))
        summary = run_scheduled(deps, job, planned)
    out[name] = {"seconds": round(time.perf_counter() - started, 2),
                 "ran": summary is not None}
deps.db.dispose()
print(json.dumps(out))
"""


def check(db: Database) -> dict:
    with db.engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        notices = q("SELECT count(*), count(DISTINCT (invoice_id, level)) FROM dunning_notices "
                    "WHERE NOT skipped")[0]
        emails = q("SELECT payload FROM outbox WHERE transport = 'email'")
        emailed: Counter = Counter()
        for (payload,) in emails:
            payload = payload if isinstance(payload, dict) else json.loads(payload)
            context = payload["context"]
            for inv in context.get("invoices") or [context.get("invoice")]:
                emailed[inv["number"]] += 1
        digests = Counter(r[0] for r in q(
            "SELECT payload->>'channel' FROM outbox WHERE payload->>'template' = "
            "'collections_digest'"))
        summaries = [p if isinstance(p, dict) else json.loads(p) for (p,) in q(
            "SELECT payload FROM outbox WHERE payload->>'template' = 'dunning_summary'")]
        runs = q("SELECT count(*), count(*) FILTER (WHERE finished) FROM dunning_runs")[0]
        people = Counter(r[0] for r in q(
            "SELECT payload->>'channel' FROM outbox WHERE payload->>'template' = "
            "'dunning_people'"))
    counted = sum(s["context"]["notices"] for s in summaries)
    return {"notices": notices[0], "distinct_notices": notices[1], "emails": len(emails),
            "invoices_emailed_twice": sum(1 for n in emailed.values() if n > 1),
            "digests": sum(digests.values()),
            "collectors_with_two_digests": sum(1 for n in digests.values() if n > 1),
            "summary_posts": len(summaries), "notices_in_summaries": counted,
            "dunning_runs": runs[0], "finished_runs": runs[1],
            "people_messages": sum(people.values()), "people_told": len(people)}


def main() -> int:
    from digest import AS_OF
    from digest import seed as seed_book

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a "
                        "throw-away cluster)")
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--collectors", type=int, default=20)
    parser.add_argument("--unlocked", action="store_true",
                        help="call the jobs directly in every process (no advisory lock)")
    args = parser.parse_args()
    cluster, url = None, args.database_url
    if url is None:
        from tests.support.pg import TempPostgres

        cluster = TempPostgres()
        url = cluster.start()
    try:
        upgrade(url)
        db = Database(url)
        started = time.perf_counter()
        seed_book(db, invoices=args.invoices, customers=args.customers,
                  collectors=args.collectors, paid=0, rng=random.Random(42))
        print(f"seeded {args.invoices:,} invoices, {args.customers:,} customers, "
              f"{args.collectors} collectors in {time.perf_counter() - started:.0f} s")
        env = {**os.environ, "DATABASE_URL": url, "SLACK_BOT_TOKEN": "xoxb-bench",
               "SLACK_SIGNING_SECRET": "bench", "O2C_SCHEDULER": "false",
               "O2C_DUNNING_CONFIRM_ABOVE": "10000000", "PYTHONPATH": str(ROOT)}
        load = os.getloadavg()[0]
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, AS_OF.isoformat(),
                                   "1" if args.unlocked else "0"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
                 for _ in range(args.processes)]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=3600)
            if proc.returncode:
                raise SystemExit(f"a process failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - started
        found = check(db)
        db.dispose()
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{args.processes} processes{' (unlocked)' if args.unlocked else ''}, all done in "
          f"{wall:.1f} s (load average {load:.1f} -> {os.getloadavg()[0]:.1f}):")
    for n, r in enumerate(results):
        print(f"  process {n}: " + ", ".join(
            f"{job} {'ran' if v['ran'] else 'skipped'} ({v['seconds']} s)"
            for job, v in r.items()))
    print("  " + ", ".join(f"{k} {v}" for k, v in found.items()))
    ok = (found["notices"] == found["distinct_notices"] == found["notices_in_summaries"]
          and not found["invoices_emailed_twice"] and not found["collectors_with_two_digests"]
          and found["digests"] == args.collectors
          and found["dunning_runs"] == found["finished_runs"] and found["notices"] > 0
          and 0 < found["people_messages"]
          <= found["people_told"] * found["finished_runs"])
    print("  each notice, e-mail, digest, summary and person's message once -> "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
