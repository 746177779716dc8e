"""Imports at volume, through the real command line (`o2c import ...` in a child process, as an
operator runs it): a camt.053 bank statement of 100,000 entries, a CSV file of 100,000 rows.

    python bench/cashapp_volume.py --camt 100000          # statement: time, peak memory, re-import
    python bench/cashapp_volume.py --csv 100000           # invoices CSV: time, re-import
    python bench/cashapp_volume.py --csv 100000 --kind payments
    ... --database-url postgresql://...                   # a scratch database: it is WIPED

Data: the labelled generator of `bench/cashapp_data.py` (seed 20261124), sized from the number
of lines: for N statement entries, N payments of N / 4 customers against 5 N / 2 open invoices
(loaded with bulk INSERTs first, not timed). Each file is imported once (timed: wall time and
the child's peak resident memory), then again (re-importing must change nothing). One
transaction per file, as always.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.cashapp import fresh_db, load_bulk, machine
from bench.cashapp_data import Dataset, generate
from bot.db import Database
from models import Customer, Invoice, Payment

ROOT = Path(__file__).resolve().parent.parent
IBAN = "DE89370400440532013000"


def write_camt(data: Dataset, path: Path) -> None:
    """One camt.053 statement holding every payment as a booked credit entry, written as a
    stream (a bank's file of that size)."""
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:'
                  '20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>BENCH-1'
                  '</MsgId><CreDtTm>2026-11-24T18:00:00+01:00</CreDtTm></GrpHdr><Stmt>'
                  f'<Id>BENCH-1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>USD</Ccy></Acct>\n')
        for n, p in enumerate(data.payments, start=1):
            day = p.received_at.date().isoformat()
            payer = (f"<RltdPties><Dbtr><Nm>{escape(p.payer_name)}</Nm></Dbtr></RltdPties>"
                     if p.payer_name else "")
            remittance = (f"<RmtInf><Ustrd>{escape(p.reference)}</Ustrd></RmtInf>"
                          if p.reference else "")
            out.write(f'<Ntry><Amt Ccy="{p.currency}">{p.amount}</Amt><CdtDbtInd>CRDT'
                      f'</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>{day}</Dt></BookgDt>'
                      f'<AcctSvcrRef>B{n:09d}</AcctSvcrRef><NtryDtls><TxDtls>{payer}'
                      f'{remittance}</TxDtls></NtryDtls></Ntry>\n')
        out.write("</Stmt></BkToCstmrStmt></Document>\n")


def write_invoices_csv(data: Dataset, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["number", "customer", "currency", "issue_date", "due_date", "total"])
        for i in data.invoices:
            writer.writerow([i.number, i.customer, i.currency, i.issue_date.isoformat(),
                             i.due_date.isoformat(),
                             f"{i.total_minor // 100}.{i.total_minor % 100:02d}"])


def write_payments_csv(data: Dataset, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["amount", "currency", "received_at", "payer_name", "reference",
                         "customer", "external_id"])
        for p in data.payments:
            writer.writerow([p.amount, p.currency, p.received_at.isoformat(),
                             p.payer_name or "", p.reference or "", p.customer or "",
                             p.external_id])


def load_customers(db: Database, data: Dataset) -> None:
    """Only the customers (the invoices are what the CSV import brings)."""
    load_bulk(db, Dataset(data.customers, [], [], data.seed))


def run_cli(args: list[str], database_url: str) -> tuple[float, float, str]:
    """`o2c <args>` in a child process: (wall seconds, peak RSS MiB, output)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import sys; from bot.cli import main; "
                           "sys.exit(main())", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"o2c {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    if peak <= before:  # a smaller child than an earlier one: ru_maxrss is the maximum
        peak = before
    return elapsed, peak / 1024, (done.stdout or done.stderr).strip()


def counts(db: Database) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (Payment.__table__, Invoice.__table__, Customer.__table__))


def statement(args: argparse.Namespace, folder: Path) -> None:
    n = args.camt
    started = time.perf_counter()
    data = generate(args.seed, customers=max(n // 4, 50), invoices=n * 5 // 2, payments=n)
    path = folder / "statement.xml"
    write_camt(data, path)
    db = fresh_db(folder / "volume.db", args.database_url)
    load_bulk(db, data)
    url = db.url
    print(f"{machine(db)}")
    print(f"camt.053 of {len(data.payments)} entries ({path.stat().st_size / 2**20:.0f} MiB) "
          f"against {len(data.invoices)} open invoices of {len(data.customers)} customers "
          f"(generated and loaded in {time.perf_counter() - started:.0f} s)")
    elapsed, peak, out = run_cli(["import", "bank-statement", str(path)], url)
    print(f"  import: {elapsed:.1f} s wall, peak memory {peak:.0f} MiB, "
          f"{len(data.payments) / elapsed:.0f} entries/s\n    {out}")
    before = counts(db)
    elapsed, peak2, out = run_cli(["import", "bank-statement", str(path)], url)
    print(f"  re-import: {elapsed:.1f} s wall, peak memory {max(peak, peak2):.0f} MiB; "
          f"rows before/after {before} / {counts(db)}\n    {out}")
    db.dispose()


def csv_import(args: argparse.Namespace, folder: Path) -> None:
    n = args.csv
    started = time.perf_counter()
    if args.kind == "invoices":
        data = generate(args.seed, customers=max(n // 20, 50), invoices=n,
                        payments=max(n // 100, 10))
        path = folder / "invoices.csv"
        write_invoices_csv(data, path)
        db = fresh_db(folder / "volume.db", args.database_url)
        load_customers(db, data)
        rows = len(data.invoices)
    else:
        data = generate(args.seed, customers=max(n // 4, 50), invoices=n * 5 // 2, payments=n)
        path = folder / "payments.csv"
        write_payments_csv(data, path)
        db = fresh_db(folder / "volume.db", args.database_url)
        load_bulk(db, data)
        rows = len(data.payments)
    print(f"{machine(db)}")
    print(f"CSV of {rows} {args.kind} ({path.stat().st_size / 2**20:.0f} MiB; generated and "
          f"loaded in {time.perf_counter() - started:.0f} s)")
    elapsed, peak, out = run_cli(["import", args.kind, str(path)], db.url)
    print(f"  import: {elapsed:.1f} s wall, peak memory {peak:.0f} MiB, "
          f"{rows / elapsed:.0f} rows/s\n    {out}")
    before = counts(db)
    try:
        elapsed, peak, out = run_cli(["import", args.kind, str(path)], db.url)
        print(f"  re-import: {elapsed:.1f} s wall; rows before/after {before} / {counts(db)}"
              f"\n    {out}")
    except SystemExit as refused:  # invoices are immutable: a re-import is refused whole
        first = str(refused).splitlines()[1:3]
        print(f"  re-import: refused as a whole, rows before/after {before} / {counts(db)}"
              f"\n    {' '.join(first)}")
    db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--camt", type=int, help="entries in the camt.053 statement")
    parser.add_argument("--csv", type=int, help="rows in the CSV file")
    parser.add_argument("--kind", choices=["invoices", "payments"], default="invoices")
    parser.add_argument("--database-url", help="a scratch database (e.g. PostgreSQL) instead "
                        "of a temporary SQLite file; it is WIPED")
    args = parser.parse_args(argv)
    if not args.camt and not args.csv:
        parser.error("say --camt N or --csv N")
    print(f"date: {date.today().isoformat()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.camt:
            statement(args, Path(tmp))
        if args.csv:
            csv_import(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
