"""Benchmark: the as-of reports (aging, customer position, KPIs) over a large receivables book.

Target (issue 21): rebuilding a past day's AR by economic date does not make the as-of
reports slower at 1M open invoices than rebuilding it by recording date did.

The book is `bench/digest.py`'s (1M open + 100k paid invoices, 50k customers), plus the
settlements that make it a real book: every paid invoice gets its payment and allocation,
10 % of the open invoices a partial payment, 2 % a credit note, 1 % a small write-off. Money
is recorded late, as in life: each settlement is recorded 0-20 days after its value date, so
a past day's AR differs from today's. Balances stay equal to total - settlements (the AR
invariant), so both ways of rebuilding a past day see a consistent book.

Measured, each the best of `--runs`, with `AS_OF` (2026-11-23) as today:
  * aging of the whole book as of a past day (`AS_OF` - 30) and as of today;
  * one customer's position as of the past day (mean over 200 customers);
  * every KPI as of the past day and as of today (`workflows.kpis.compute`: what
    `GET /reports/kpis`, `/o2c kpi` and the `kpi-snapshot` job behind App Home run);
  * `/o2c ar` without an argument (today's aging + the 10 customers most overdue);
  * the floor (issue 18): one hand-written SQL aggregate of the open AR by currency and
    bucket, in the same run; the three above are printed as multiples of it.

    python bench/reports.py                         # full size on SQLite (seeds ~5 min)
    python bench/reports.py --reuse                 # same file again (migrated first)
    python bench/reports.py --database-url postgresql://...   # PostgreSQL
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402

from bot.db import Database  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from models import Allocation, CreditNote, Customer, Invoice, Payment, WriteOff  # noqa: E402
from workflows import kpis, receivables  # noqa: E402

AS_OF = date(2026, 11, 23)
PAST = AS_OF - timedelta(days=30)
NOW = datetime.combine(AS_OF, dtime(12), tzinfo=UTC)  # "today" of the bench
CHUNK = 20_000


def _has(table: sa.Table, column: str) -> bool:
    return column in table.c


def seed_settlements(db: Database, rng: random.Random) -> dict[str, int]:
    """Payments, allocations, credit notes and write-offs for the seeded invoices; balances
    lowered to match. Works on the schema before and after issue 21 (economic dates are
    filled when the columns exist)."""
    inv = Invoice.__table__
    pay_t, alloc_t = Payment.__table__, Allocation.__table__
    cn_t, wo_t = CreditNote.__table__, WriteOff.__table__
    dated = _has(alloc_t, "effective_date")
    counts = {"payments": 0, "credit_notes": 0, "write_offs": 0}
    yesterday = datetime.combine(AS_OF - timedelta(days=1), dtime(12), tzinfo=UTC)
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(inv.c.id, inv.c.customer_id, inv.c.currency,
                                      inv.c.total_minor, inv.c.balance_minor, inv.c.issue_date,
                                      inv.c.paid_at)).all()
    payment_id = 0
    payments, allocations, notes, write_offs, balances = [], [], [], [], []

    def flush() -> None:
        with db.engine.begin() as conn:
            for table, batch in ((pay_t, payments), (alloc_t, allocations), (cn_t, notes),
                                 (wo_t, write_offs)):
                if batch:
                    conn.execute(table.insert(), batch)
                    batch.clear()
            if balances:
                conn.execute(inv.update().where(inv.c.id == sa.bindparam("b_id"))
                             .values(balance_minor=sa.bindparam("b_balance")), balances)
                balances.clear()

    def received_between(start: date) -> datetime:
        first = datetime.combine(start, dtime(9), tzinfo=UTC)
        span = max(int((yesterday - first).total_seconds()), 0)
        return first + timedelta(seconds=rng.randint(0, span))

    for n, (invoice_id, customer_id, currency, total, balance, issued, paid_at) in \
            enumerate(rows):
        if issued > AS_OF - timedelta(days=2):
            continue
        roll = rng.random()
        if balance == 0:  # paid: its payment, applied in full
            amount, received, kind = total, min(paid_at or yesterday, yesterday), "pay"
        elif roll < 0.10:
            amount, received, kind = total // 2, received_between(issued), "pay"
        elif roll < 0.12:
            amount, received, kind = total // 10, received_between(issued), "credit"
        elif roll < 0.13:
            amount, received, kind = min(rng.randint(100, 500), total), \
                received_between(issued), "write_off"
        else:
            continue
        if amount <= 0:
            continue
        received = max(received, datetime.combine(issued, dtime(9), tzinfo=UTC))
        recorded = min(received + timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 8)),
                       NOW)
        value = received.date()
        economic = {"value_date": value, "effective_date": value} if dated else {}
        if kind == "pay":
            payment_id += 1
            payments.append({
                "id": payment_id, "customer_id": customer_id, "amount_minor": amount,
                "currency": currency, "received_at": received, "source": "bench",
                "status": "applied", "unapplied_minor": 0, "match_details": {},
                "created_at": recorded,
                **({"value_date": value} if _has(pay_t, "value_date") else {})})
            allocations.append({"payment_id": payment_id, "invoice_id": invoice_id,
                                "amount_minor": amount, "method": "reference",
                                "created_by": "bench", "created_at": recorded, **economic})
            counts["payments"] += 1
        elif kind == "credit":
            notes.append({"number": f"CN-B-{n:08d}", "invoice_id": invoice_id,
                          "amount_minor": amount, "currency": currency, "reason": "bench",
                          "created_by": "bench", "created_at": recorded, **economic})
            counts["credit_notes"] += 1
        else:
            write_offs.append({"invoice_id": invoice_id, "amount_minor": amount,
                               "reason": "bad_debt", "created_by": "bench",
                               "created_at": recorded, **economic})
            counts["write_offs"] += 1
        if balance:
            balances.append({"b_id": invoice_id, "b_balance": balance - amount})
        if len(allocations) + len(notes) + len(write_offs) >= CHUNK:
            flush()
    flush()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return counts


def _call(func, *args, **kwargs):
    """Pass `now` only to the functions that take it (before issue 21 they needed it to tell
    a past day from today)."""
    if "now" in inspect.signature(func).parameters:
        kwargs["now"] = NOW
    if "concurrently" in kwargs and "concurrently" not in inspect.signature(func).parameters:
        kwargs.pop("concurrently")  # before the reads at once (issue 18's last pass)
    return func(*args, **kwargs)


def best_of(runs: int, label: str, func) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    print(f"{label}: best {min(times) * 1000:.0f} ms; runs "
          + ", ".join(f"{t * 1000:.0f}" for t in times) + " ms")
    return min(times), times, result


def _with_snapshot(db: Database, measure):
    """Store today's KPI snapshot (what the `kpi-snapshot` job does), measure, remove it."""
    from models import KpiSnapshot

    with db.read_session() as s:
        data, marker = kpis.compute_snapshot(s, AS_OF)
    with db.transaction() as s:
        kpis.store_snapshot(s, AS_OF, data, marker, NOW)
    try:
        return measure()
    finally:
        with db.transaction() as s:
            s.execute(sa.delete(KpiSnapshot.__table__).where(
                KpiSnapshot.__table__.c.as_of == AS_OF))


def main() -> int:
    from digest import seed as seed_invoices

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000, help="open invoices")
    parser.add_argument("--paid", type=int, default=100_000, help="paid invoices (history)")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--database-url", help="default: a SQLite file in bench/data/")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the database of an earlier run (migrated first)")
    parser.add_argument("--label", default="", help="a note for RESULTS.md (e.g. before)")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--skip-positions", action="store_true",
                        help="leave out the 200 customer positions (KPIs only)")
    args = parser.parse_args()

    url, reuse = args.database_url, args.reuse
    if url is None:
        data = ROOT / "bench" / "data"
        data.mkdir(parents=True, exist_ok=True)
        path = data / f"reports-{args.invoices}-{args.customers}.db"
        reuse = args.reuse and path.exists()
        if not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    started = time.perf_counter()
    upgrade(url)
    migrated = time.perf_counter() - started
    db = Database(url)
    seeded = ""
    if reuse:
        print(f"reused {url}; migrated in {migrated:.1f} s")
    else:
        rng = random.Random(42)
        seconds = seed_invoices(db, invoices=args.invoices, customers=args.customers,
                                collectors=50, paid=args.paid, rng=rng)
        started = time.perf_counter()
        counts = seed_settlements(db, rng)
        seeded = (f"seeded {args.invoices:,} open + {args.paid:,} paid invoices, "
                  f"{args.customers:,} customers in {seconds:.0f} s; settlements "
                  f"{counts} in {time.perf_counter() - started:.0f} s")
        print(seeded)
    load = os.getloadavg()
    customers = random.Random(7).sample(range(1, args.customers + 1), 200)

    def aging_past():
        with db.read_session() as s:
            return _call(receivables.aging_by_currency, s, PAST)["USD"].total

    def aging_today():
        with db.read_session() as s:
            return _call(receivables.aging_by_currency, s, AS_OF)["USD"].total

    def positions_past():
        with db.read_session() as s:
            for cid in customers:
                customer = s.get(Customer, cid)
                receivables.customer_position(s, customer, PAST)
        return len(customers)

    def kpis_past():
        with db.read_session() as s:
            return str(_call(kpis.compute, s, PAST, concurrently=True).dso)

    def kpis_today():  # GET /reports/kpis, /o2c kpi, the kpi-snapshot job
        with db.read_session() as s:
            return str(_call(kpis.compute, s, AS_OF, concurrently=True).dso)

    def kpis_past_one_by_one():  # the statements one after another (SQLite's path)
        with db.read_session() as s:
            return str(_call(kpis.compute, s, PAST).dso)

    def kpis_today_one_by_one():
        with db.read_session() as s:
            return str(_call(kpis.compute, s, AS_OF).dso)

    def ar_command():  # /o2c ar without an argument: the aging and the top 10 customers
        with db.read_session() as s:
            aging = _call(receivables.aging_by_currency, s, AS_OF)
            top = receivables.top_balances(s, AS_OF)
        return (aging["USD"].total, top[0].customer_id)

    def floor():  # the hand-written aggregate: one SQL pass, open invoices by currency/bucket
        edges = [AS_OF - timedelta(days=d) for d in (0, 30, 60, 90)]
        sql = sa.text(
            "SELECT currency, CASE WHEN due_date >= :e0 THEN 0 WHEN due_date >= :e1 THEN 1 "
            "WHEN due_date >= :e2 THEN 2 WHEN due_date >= :e3 THEN 3 ELSE 4 END AS b, "
            "SUM(balance_minor) FROM invoices WHERE balance_minor > 0 AND issue_date <= :d "
            "GROUP BY currency, b")
        with db.engine.connect() as conn:
            rows = conn.execute(sql, {"e0": edges[0], "e1": edges[1], "e2": edges[2],
                                      "e3": edges[3], "d": AS_OF}).all()
        return sum(int(r[2]) for r in rows if r[0] == "USD")

    def kpi_command():  # /o2c kpi while today's snapshot is fresh: the snapshot, not compute
        with db.read_session() as s:
            return (kpis.fresh_snapshot(s, AS_OF) or {}).get("dso")

    if args.skip_positions:  # only the KPI figures (the 200 positions take long)
        def positions_past():
            return 0
    results = {
        "aging, whole book, as of a past day": best_of(args.runs, "aging past", aging_past),
        "aging, whole book, as of today": best_of(args.runs, "aging today", aging_today),
        "customer position as of a past day (200 customers)":
            best_of(args.runs, "200 positions past", positions_past),
        "KPIs as of a past day": best_of(args.runs, "kpis past", kpis_past),
        "KPIs as of today": best_of(args.runs, "kpis today", kpis_today),
        "KPIs as of a past day, statements one by one":
            best_of(args.runs, "kpis past 1by1", kpis_past_one_by_one),
        "KPIs as of today, statements one by one":
            best_of(args.runs, "kpis today 1by1", kpis_today_one_by_one),
        "/o2c ar (aging + top 10 customers)": best_of(args.runs, "o2c ar", ar_command),
        "/o2c kpi, today's snapshot fresh": _with_snapshot(db, lambda: best_of(
            args.runs, "o2c kpi (snapshot)", kpi_command)),
        "floor: one hand-written SQL aggregate (open AR by currency and bucket)":
            best_of(args.runs, "floor", floor),
    }
    base = results["floor: one hand-written SQL aggregate (open AR by currency and bucket)"][0]
    for label in ("KPIs as of a past day", "KPIs as of today",
                  "/o2c ar (aging + top 10 customers)"):
        print(f"{label}: {results[label][0] / base:.1f}x the floor")
    print("answers:", {k: v[2] for k, v in results.items()})
    load_after = os.getloadavg()
    if not args.no_record:
        kind = "postgresql" if db.is_postgres else "sqlite"
        command = "python " + " ".join(["bench/reports.py", *sys.argv[1:]])
        lines = [f"\n### reports — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {kind}"
                 + (f" — {args.label}" if args.label else "") + "\n",
                 f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
                 f"{platform.python_version()}; load average before / after: "
                 f"{load[0]:.1f} / {load_after[0]:.1f} (shared with other work)",
                 f"- command: `{command}`",
                 f"- data: {seeded}" if seeded else f"- data: reused file; migrated in "
                 f"{migrated:.1f} s"]
        for label, (best, times, answer) in results.items():
            lines.append(f"- {label}: **{best * 1000:.0f} ms** (runs "
                         + ", ".join(f"{t * 1000:.0f}" for t in times) + f" ms) -> {answer}")
        with (ROOT / "bench" / "RESULTS.md").open("a") as out:
            out.write("\n".join(lines) + "\n")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
