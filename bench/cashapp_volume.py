"""Imports at volume, through the real command line (`o2c import ...` in a child process, as an
operator runs it): a camt.053 bank statement of 100,000 entries, a CSV file of 100,000 rows.

    python bench/cashapp_volume.py --camt 100000          # statement: time, peak memory, re-import
    python bench/cashapp_volume.py --camt 20000 --outcomes before.json   # ... and what became
                                                          # of every payment (written, or
                                                          # compared with the file if it exists)
    python bench/cashapp_volume.py --camt 100000 --keep /tmp/camt100k   # set up once, reuse
    python bench/cashapp_volume.py --csv 100000           # invoices CSV: time, re-import
    python bench/cashapp_volume.py --csv 100000 --kind payments
    ... --database-url postgresql://...                   # a scratch database: it is WIPED

Data: the labelled generator of `bench/cashapp_data.py` (seed 20261124), sized from the number
of lines: for N statement entries, N payments of N / 4 customers against 5 N / 2 open invoices
(loaded with bulk INSERTs first, not timed). Each file is imported once (timed: wall time, the
child's user + system CPU time and peak resident memory, and the load average around it: on a
shared machine the wall time says as much about the neighbours as about the import), then
again (re-importing must change nothing). One transaction per file, as always.

`--outcomes FILE` records what the first import decided — every payment's status, customer,
unapplied amount and confidence, every allocation, write-off, suggestion and deduction (with
its card), the audit events — as JSON keyed by the bank's references and invoice numbers (not
row ids), and if FILE already exists compares with it instead: run it once on the code before
a change and once after (same seed, same size) to show that a change made imports faster
without changing what they decide.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
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


@dataclass
class Run:
    wall: float  # seconds
    user: float  # CPU seconds of the child, in user mode
    system: float  # ... in the kernel
    peak: float  # MiB, the child's maximum resident set
    load: tuple[float, float]  # 1-minute load average before and after
    out: str

    def __str__(self) -> str:
        return (f"{self.wall:.1f} s wall, {self.user:.1f} s user + {self.system:.1f} s system "
                f"CPU, peak memory {self.peak:.0f} MiB, load average {self.load[0]:.1f} -> "
                f"{self.load[1]:.1f}")


# `o2c` as the operator runs it, saying its own peak memory when it exits: the high-water
# mark of its own address space (VmHWM). The children's `ru_maxrss` is no measure of it: on
# Linux a child that execs keeps the high-water mark of the memory it was forked from — the
# bench's own, which holds the whole generated data set (at 100,000 entries ~390 MiB, for the
# import and the re-import alike).
_PEAK = "o2c-bench-peak-kib"
_CHILD = ("import atexit, sys\n"
          "def _peak():\n"
          "    for line in open('/proc/self/status'):\n"
          "        if line.startswith('VmHWM:'):\n"
          f"            print('{_PEAK}', line.split()[1], file=sys.stderr)\n"
          "atexit.register(_peak)\n"
          "from bot.cli import main\n"
          "sys.exit(main())\n")


def run_cli(args: list[str], database_url: str) -> Run:
    """`o2c <args>` in a child process: wall and CPU time, peak memory, output."""
    env = {**os.environ, "DATABASE_URL": database_url}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith(_PEAK)]
    stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith(_PEAK))
    if done.returncode != 0:
        raise SystemExit(f"o2c {' '.join(args)} failed:\n{done.stdout}\n{stderr[-3000:]}")
    peak = int(peaks[-1]) if peaks else max(after.ru_maxrss, before.ru_maxrss)  # KiB
    return Run(elapsed, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
               peak / 1024, (load, os.getloadavg()[0]), (done.stdout or stderr).strip())


def outcomes(db: Database) -> dict:
    """What the import decided, by the bank's references and invoice numbers (not row ids)."""
    q = sa.text
    with db.engine.connect() as conn:
        ext = dict(conn.execute(q("SELECT id, external_id FROM payments")).all())
        number = dict(conn.execute(q("SELECT i.id, i.number FROM invoices i WHERE EXISTS "
                                     "(SELECT 1 FROM allocations a WHERE a.invoice_id = i.id) "
                                     "OR EXISTS (SELECT 1 FROM deductions d WHERE "
                                     "d.invoice_id = i.id) OR EXISTS (SELECT 1 FROM write_offs "
                                     "w WHERE w.invoice_id = i.id)")).all())
        customer = dict(conn.execute(q("SELECT id, external_id FROM customers")).all())

        def rows(sql: str) -> list[list]:
            return [list(r) for r in conn.execute(q(sql)).all()]

        payments = {ext[p]: [status, customer.get(c), unapplied, confidence]
                    for p, status, c, unapplied, confidence in rows(
                        "SELECT id, status, customer_id, unapplied_minor, confidence_bp "
                        "FROM payments")}
        allocations = sorted([ext[p], number[i], amount, method] for p, i, amount, method in rows(
            "SELECT payment_id, invoice_id, amount_minor, method FROM allocations"))
        write_offs = sorted([ext[p], number[i], amount, reason] for p, i, amount, reason in rows(
            "SELECT payment_id, invoice_id, amount_minor, reason FROM write_offs"))
        suggestions = sorted(
            [ext[p], round_, rank, customer.get(c), kind, fit, confidence,
             [[line["number"], line["allocate_minor"], line["write_offs"],
               line["deduction_minor"]] for line in _json(lines)]]
            for p, round_, rank, c, kind, fit, confidence, lines in rows(
                "SELECT payment_id, round, rank, customer_id, kind, fit, confidence_bp, lines "
                "FROM payment_suggestions"))
        deductions = sorted(
            [ext[p], number[i], amount, status, _card(_json(payload), ext)]
            for p, i, amount, status, payload in rows(
                "SELECT d.payment_id, d.invoice_id, d.amount_minor, d.status, o.payload "
                "FROM deductions d JOIN outbox o ON o.id = d.card_outbox_id"))
        audit = Counter(json.dumps([actor, action, entity, _json(data)], sort_keys=True)
                        for actor, action, entity, data in rows(
                            "SELECT actor, action, entity_type, data FROM audit_log"))
    return {"payments": payments, "allocations": allocations, "write_offs": write_offs,
            "suggestions": suggestions, "deductions": deductions,
            "audit_events": {"count": sum(audit.values()), "digest": hashlib.sha256(
                json.dumps(sorted(audit.items())).encode()).hexdigest()}}


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _card(payload: dict, ext: dict[int, str]) -> dict:
    """A deduction's card without the row ids (the same card in another database)."""
    context = dict(payload["context"])
    context.pop("deduction_id", None)
    context["payment"] = {**context["payment"], "id": ext[context["payment"]["id"]]}
    return context


def compare_outcomes(db: Database, path: Path) -> None:
    """Write what the import decided to `path`, or compare it with what `path` holds."""
    found = json.loads(json.dumps(outcomes(db)))  # (tuples as lists, as read back)
    if not path.exists():
        path.write_text(json.dumps(found, sort_keys=True, indent=0))
        print(f"  outcomes written to {path} ({len(found['payments'])} payments, "
              f"{len(found['allocations'])} allocations)")
        return
    recorded = json.loads(path.read_text())
    differ = [key for key in recorded if recorded[key] != found.get(key)]
    if not differ:
        print(f"  outcomes: the SAME as {path} ({len(found['payments'])} payments, "
              f"{len(found['allocations'])} allocations, {len(found['write_offs'])} "
              f"write-offs, {len(found['suggestions'])} suggestions, "
              f"{len(found['deductions'])} deductions, {found['audit_events']['count']} "
              "audit events)")
        return
    for key in differ:
        old, new = recorded[key], found.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key == "payments":
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            print(f"  outcomes DIFFER in {key}: {len(changed)}, e.g. "
                  + "; ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed[:5]))
        elif isinstance(old, list):
            gone = [x for x in old if x not in new][:3]
            came = [x for x in new if x not in old][:3]
            print(f"  outcomes DIFFER in {key}: {len(old)} -> {len(new)}; e.g. before "
                  f"{gone}, after {came}")
        else:
            print(f"  outcomes DIFFER in {key}: {old} -> {new}")
    raise SystemExit(f"outcomes differ from {path}")


def counts(db: Database) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (Payment.__table__, Invoice.__table__, Customer.__table__))


def statement(args: argparse.Namespace, folder: Path) -> None:
    n = args.camt
    started = time.perf_counter()
    kept = Path(args.keep) if args.keep else None
    path = (kept or folder) / "statement.xml"
    if kept is not None and (kept / "loaded.db").exists() and path.exists():
        # the same statement and book as the first run with this folder (SQLite only)
        shutil.copyfile(kept / "loaded.db", folder / "volume.db")
        db = Database(f"sqlite:///{folder / 'volume.db'}")
        sizes = json.loads((kept / "sizes.json").read_text())
    else:
        data = generate(args.seed, customers=max(n // 4, 50), invoices=n * 5 // 2, payments=n)
        if kept is not None:
            kept.mkdir(parents=True, exist_ok=True)
        write_camt(data, path)
        db = fresh_db(folder / "volume.db", args.database_url)
        load_bulk(db, data)
        sizes = {"payments": len(data.payments), "invoices": len(data.invoices),
                 "customers": len(data.customers)}
        del data
        if kept is not None and not args.database_url:
            db.dispose()
            shutil.copyfile(folder / "volume.db", kept / "loaded.db")
            (kept / "sizes.json").write_text(json.dumps(sizes))
    url = db.url
    print(f"{machine(db)}")
    print(f"camt.053 of {sizes['payments']} entries ({path.stat().st_size / 2**20:.0f} MiB) "
          f"against {sizes['invoices']} open invoices of {sizes['customers']} customers "
          f"(generated and loaded, or copied, in {time.perf_counter() - started:.0f} s)")
    first = run_cli(["import", "bank-statement", str(path)], url)
    print(f"  import: {first}, {sizes['payments'] / first.wall:.0f} entries/s\n"
          f"    {first.out}")
    if args.outcomes:
        compare_outcomes(db, Path(args.outcomes))
    before = counts(db)
    again = run_cli(["import", "bank-statement", str(path)], url)
    print(f"  re-import: {again}; rows before/after {before} / {counts(db)}\n    {again.out}")
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
    first = run_cli(["import", args.kind, str(path)], db.url)
    print(f"  import: {first}, {rows / first.wall:.0f} rows/s\n    {first.out}")
    before = counts(db)
    try:
        again = run_cli(["import", args.kind, str(path)], db.url)
        print(f"  re-import: {again}; rows before/after {before} / {counts(db)}"
              f"\n    {again.out}")
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
    parser.add_argument("--outcomes", help="with --camt: write what the import decided to "
                        "this JSON file, or compare with it if it exists")
    parser.add_argument("--database-url", help="a scratch database (e.g. PostgreSQL) instead "
                        "of a temporary SQLite file; it is WIPED")
    parser.add_argument("--keep", metavar="DIR", help="with --camt on SQLite: keep the "
                        "generated statement and loaded database in DIR and reuse them when "
                        "DIR already holds them (same --camt and --seed: the folder is not "
                        "checked), so that runs before and after a change skip the setup")
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
