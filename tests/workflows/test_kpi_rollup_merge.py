"""The KPI rollups' stripes folded into one row per currency and day (`kpi-rollup-merge`):
the same figures to the cent before and after, the days from the cut-off untouched, and
nothing lost or doubled when writers add to their stripes meanwhile.

On PostgreSQL each connection writes a stripe of its own (its server process id); on SQLite
every write goes to stripe 0, so the book's rows are also split across made-up (negative)
stripes here — the same sums — to give the merge something to fold on both databases."""

# ruff: noqa: S608 - the SQL below is built from this file's constants, no input
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from bot import jobs
from bot.cli import main as cli
from bot.db import Database
from models import Invoice
from tests.support import factories as f
from tests.support.meanwhile import in_thread, wait_until_blocked
from tests.support.migrations import rollup_book
from workflows import invariants, kpi_rollups, kpis

FIGURES = ", ".join(kpi_rollups.FIGURES)
CUT = date(2026, 11, 3)  # the merge folds the days before it
AS_OF = date(2026, 11, 23)


@pytest.fixture
def writer(database_url: str) -> Iterator[Database]:
    """Another process's database object with one connection: every session of it writes
    through the same server process, so to the same stripe (PostgreSQL)."""
    other = Database(database_url, pool_size=1, max_overflow=0)
    yield other
    other.dispose()


def _rows(db: Database) -> dict[tuple, tuple]:
    with db.engine.connect() as conn:
        return {(c, str(d), s): tuple(v) for c, d, s, *v in conn.execute(sa.text(
            f"SELECT currency, day, stripe, {FIGURES} FROM kpi_daily"))}


def _days(db: Database) -> dict[tuple, tuple]:
    """Each currency and day's figures, its stripes summed."""
    sums: dict[tuple, tuple] = {}
    for (currency, day, _), values in _rows(db).items():
        was = sums.get((currency, day), (0,) * len(values))
        sums[(currency, day)] = tuple(a + int(b) for a, b in zip(was, values, strict=True))
    return sums


def _split(db: Database) -> None:
    """Every row's figures split over it and a made-up stripe (a third each, rounded toward
    zero on both databases): the same sums, twice the rows."""
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            f"INSERT INTO kpi_daily (currency, day, stripe, {FIGURES}) SELECT currency, day, "
            f"-1 - stripe, {', '.join(f'{n} / 3' for n in kpi_rollups.FIGURES)} "
            "FROM kpi_daily WHERE stripe >= 0"))
        conn.execute(sa.text(
            "UPDATE kpi_daily SET "
            + ", ".join(f"{n} = {n} - {n} / 3" for n in kpi_rollups.FIGURES)
            + " WHERE stripe >= 0"))


def _kpis(db: Database) -> list[dict]:
    with db.read_session() as session:
        return [kpis.to_json(kpis.compute(session, day)) for day in (CUT, AS_OF)]


def _invoice(session: Session, number: str, issued: date, total: int) -> None:
    customer = session.connection().execute(sa.text("SELECT MIN(id) FROM customers")).scalar()
    session.connection().execute(sa.insert(Invoice.__table__).values(
        number=number, customer_id=customer, currency="USD", issue_date=issued,
        due_date=issued + timedelta(days=30), total_minor=total, balance_minor=total))


def _valid(db: Database) -> None:
    with db.read_session() as session:
        assert invariants.validate_kpi_rollups(session) == []


def test_merging_folds_past_days_into_one_row_each_and_changes_no_figure(db, writer) -> None:
    # given: a book in two currencies over several days, part of it written by another
    # connection, and every row split over two stripes
    with db.transaction() as s:
        rollup_book(s)
    with writer.transaction() as s:
        f.invoice(s, "INV-2026-000004", issued=date(2026, 10, 1), total="70.00")
        f.invoice(s, "INV-2026-000005", issued=date(2026, 11, 5), total="80.00")
    _split(db)
    rows, days, figures = _rows(db), _days(db), _kpis(db)
    past = {k for k in days if k[1] < CUT.isoformat()}
    assert len([r for r in rows if (r[0], r[1]) in past]) >= 2 * len(past) >= 4
    # when the days before the cut-off are merged
    with db.transaction() as s:
        done = kpi_rollups.merge(s, CUT)
    # then each of those days is one row, stripe 0, holding the day's sums
    after = _rows(db)
    assert done == {"merged": len([r for r in rows if (r[0], r[1]) in past and r[2] != 0]),
                    "days": len(past)}
    for currency, day in past:
        assert [r for r in after if r[:2] == (currency, day)] == [(currency, day, 0)]
        assert after[(currency, day, 0)] == days[(currency, day)]
    # and the days from the cut-off on are as they were, stripe by stripe
    assert {k: v for k, v in after.items() if k[1] >= CUT.isoformat()} == {
        k: v for k, v in rows.items() if k[1] >= CUT.isoformat()}
    # and every figure is the same: the rollups against the base rows, and the KPIs
    assert _days(db) == days
    _valid(db)
    assert _kpis(db) == figures
    # and merging again finds nothing
    with db.transaction() as s:
        assert kpi_rollups.merge(s, CUT) == {"merged": 0, "days": 0}
        assert kpi_rollups.stripes(s) == len([k for k in after if k[2] != 0])


def test_merging_in_batches_leaves_the_rest_for_the_next_batch(db) -> None:
    # given: a split book
    with db.transaction() as s:
        rollup_book(s)
    _split(db)
    days = _days(db)
    striped = len([k for k in _rows(db) if k[2] != 0])
    # when the days before AS_OF are merged two rows at a time
    batches = []
    while not batches or batches[-1]["merged"] == 2:
        with db.transaction() as s:
            batches.append(kpi_rollups.merge(s, AS_OF, batch=2))
        assert _days(db) == days  # the same figures after each batch
    # then every row was folded once
    assert [b["merged"] for b in batches] == [2] * (striped // 2) + [striped % 2]
    assert striped >= 4
    with db.read_session() as s:
        assert kpi_rollups.stripes(s) == 0
    _valid(db)


def _pid(session: Session) -> int:
    """The stripe this session's connection writes to."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    return session.connection().execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_a_stripe_being_written_is_left_to_its_writer_and_nothing_is_lost(db, writer) -> None:
    # given: a split book; the other connection wrote on a past day and is writing on it
    # again, not committed yet (on PostgreSQL it holds its stripe row of that day)
    with db.transaction() as s:
        rollup_book(s)
    with writer.transaction() as s:
        _invoice(s, "INV-W-1", date(2026, 10, 1), 7_000)
    _split(db)
    before = _days(db)
    held = writer.session()
    _invoice(held, "INV-W-2", date(2026, 10, 1), 500)
    stripe = _pid(held)

    # when the merge runs meanwhile
    def merge() -> dict:
        with db.transaction() as s:
            return kpi_rollups.merge(s, CUT)

    merged = in_thread(merge)
    if db.is_postgres:
        # then on PostgreSQL it does not wait for the writer: the row being written is left
        merged()
        assert {k for k in _rows(db) if k[2] != 0 and k[1] < CUT.isoformat()} == {
            ("USD", "2026-10-01", stripe)}
        held.commit()
    else:  # (SQLite has one writer: the merge waits for it, then folds everything)
        assert wait_until_blocked(db) is False
        held.commit()
        merged()
    held.close()
    # and nothing is lost or doubled: the day holds both writes once
    after = _days(db)
    assert after[("USD", "2026-10-01")][0] == before[("USD", "2026-10-01")][0] + 500
    _valid(db)
    # and what was left is merged the next time
    with db.transaction() as s:
        kpi_rollups.merge(s, CUT)
    assert {k for k in _rows(db) if k[2] != 0 and k[1] < CUT.isoformat()} == set()
    assert _days(db) == after


def test_a_writer_whose_stripe_was_merged_meanwhile_adds_a_fresh_one(db, writer) -> None:
    # given: the other connection's stripe of a past day, being merged by a transaction not
    # committed yet
    with db.transaction() as s:
        rollup_book(s)
    with writer.transaction() as s:
        _invoice(s, "INV-W-1", date(2026, 10, 1), 7_000)
        stripe = _pid(s)
    _split(db)
    before = _days(db)
    merging = db.session()
    assert kpi_rollups.merge(merging, CUT)["merged"] > 0

    # when the other connection writes on that day again meanwhile
    def write() -> None:
        with writer.transaction() as s:
            _invoice(s, "INV-W-2", date(2026, 10, 1), 500)

    wrote = in_thread(write)
    waited = wait_until_blocked(db)
    merging.commit()
    merging.close()
    wrote()
    # then it waited for the merge (PostgreSQL: for its stripe row, which the merge had
    # removed; SQLite: for the one writer) and wrote a row of its own again
    assert waited == db.is_postgres
    assert ("USD", "2026-10-01", stripe) in _rows(db)
    # and nothing is lost or doubled
    after = _days(db)
    assert after[("USD", "2026-10-01")][0] == before[("USD", "2026-10-01")][0] + 500
    _valid(db)


def test_the_job_merges_the_days_before_its_day_and_says_so(db, database_url, capsys,
                                                           monkeypatch) -> None:
    # given: a split book
    with db.transaction() as s:
        rollup_book(s)
    _split(db)
    days = _days(db)
    past = [k for k in _rows(db) if k[2] != 0 and k[1] < CUT.isoformat()]
    # when an operator runs the job as of the cut-off
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli(["run", "kpi-rollup-merge", "--as-of", CUT.isoformat()]) == 0
    # then it says what it merged, and the figures are the same
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert summary == {"before": CUT.isoformat(), "merged": len(past),
                       "days": len({k[:2] for k in past}), "event_receipts_purged": 0}
    assert len(past) >= 2
    assert {k for k in _rows(db) if k[2] != 0 and k[1] < CUT.isoformat()} == set()
    assert _days(db) == days
    _valid(db)
    # and the scheduler runs it every hour
    assert jobs.JOBS["kpi-rollup-merge"].cron == {"minute": "35"}
