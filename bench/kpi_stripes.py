"""What the KPI rollups' stripes cost the KPIs, and what merging them (`kpi-rollup-merge`) wins.

On PostgreSQL every connection writes a `kpi_daily` row of its own per currency and day
(`stripe` = its server process id), and the KPIs' "AR before the window" sums every row of
every day up to it. This seeds a book of `--days` days (`--per-day` invoices each, bulk
inserts: the triggers fill the rollups), spreads each day's row over `--stripes` rows (the
same sums: as if that many connections had written that day), then times `kpis.compute`
as of the last day (best of `--runs`), runs the `kpi-rollup-merge` job
(`bot.reports.kpi_rollup_merge`) and times it again. The figures must be the same to the
cent before and after.

    python bench/kpi_stripes.py [--database-url postgresql://...]   # a scratch database:
                                                                    # it is WIPED
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.cashapp import fresh_db, machine
from bot.reports import kpi_rollup_merge
from models import Customer, Invoice
from workflows import kpi_rollups, kpis

LAST = date(2026, 11, 23)


def seed(db, days: int, per_day: int) -> None:
    with db.engine.begin() as conn:
        customer = conn.execute(sa.insert(Customer.__table__).values(
            external_id="C-BENCH", name="Bench Corp", currency="USD")
            .returning(Customer.__table__.c.id)).scalar_one()
        rows = []
        for n in range(days):
            issued = LAST - timedelta(days=n)
            for k in range(per_day):
                total = 10_000 + 37 * n + k
                rows.append({"number": f"INV-{n:05d}-{k:03d}", "customer_id": customer,
                             "currency": "USD", "issue_date": issued,
                             "due_date": issued + timedelta(days=30), "total_minor": total,
                             "balance_minor": total if n < 90 else 0})
        for start in range(0, len(rows), 1_000):
            conn.execute(sa.insert(Invoice.__table__), rows[start:start + 1_000])


def spread(db, stripes: int) -> None:
    """Each row's figures over `stripes` rows (made-up negative stripes): the same sums."""
    figures = kpi_rollups.FIGURES
    with db.engine.begin() as conn:
        for k in range(1, stripes):
            conn.execute(sa.text(
                f"INSERT INTO kpi_daily (currency, day, stripe, {', '.join(figures)}) "
                f"SELECT currency, day, -{k}, {', '.join(f'{n} / {stripes}' for n in figures)}"
                " FROM kpi_daily WHERE stripe >= 0"))
        conn.execute(sa.text(
            "UPDATE kpi_daily SET " + ", ".join(
                f"{n} = {n} - ({stripes - 1}) * ({n} / {stripes})" for n in figures)
            + " WHERE stripe >= 0"))


def timed(db, runs: int) -> tuple[float, dict]:
    best, data = float("inf"), {}
    for _ in range(runs):
        with db.read_session() as session:
            started = time.perf_counter()
            data = kpis.to_json(kpis.compute(session, LAST))
            best = min(best, time.perf_counter() - started)
    return best, data


def rows(db) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM kpi_daily")).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--days", type=int, default=3 * 365)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--stripes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = fresh_db(Path(folder) / "stripes.db", args.database_url)
        print(machine(db))
        seed(db, args.days, args.per_day)
        base, figures = timed(db, args.runs)
        print(f"{args.days} days x {args.per_day} invoices, one row per day ({rows(db)} rows): "
              f"KPIs in {base * 1000:.1f} ms")
        spread(db, args.stripes)
        striped, same = timed(db, args.runs)
        assert same == figures, "spreading changed a figure"
        print(f"spread over {args.stripes} stripes ({rows(db)} rows): KPIs in "
              f"{striped * 1000:.1f} ms")
        started = time.perf_counter()
        merged = kpi_rollup_merge(SimpleNamespace(db=db), LAST)["merged"]  # (the job)
        took = time.perf_counter() - started
        after, same = timed(db, args.runs)
        assert same == figures, "merging changed a figure"
        print(f"merged {merged} rows in {took:.2f} s ({rows(db)} rows left): KPIs in "
              f"{after * 1000:.1f} ms, the same figures")
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
