"""The KPI rollups' stripes folded together (`kpi-rollup-merge` job).

On PostgreSQL every connection adds to a row of its own of `kpi_daily` per currency and day
(`stripe` = its server process id, migrations 0023/0024), so concurrent writers never wait on
one another; the KPIs sum a day's stripes. A connection lives as long as the pool keeps it,
every command-line run and every overflow connection is a new server process: the rows grow
with the days *and* with the connections that wrote on them, and the KPIs' "AR before the
window" sums every row of every day up to it. `merge` folds the stripes of the days before a
date into stripe 0, so the table keeps about one row per currency and day.

Nothing is lost or counted twice, whatever writes meanwhile:

* the stripes are deleted and their sums added to stripe 0 in one transaction, with the
  values the DELETE returned — a day reads the same before and after the commit;
* rows another transaction is writing (locked) are skipped (`FOR UPDATE SKIP LOCKED`), so
  the merge never waits for a writer, and a writer only ever waits for the merge's short
  transaction — never both ways, so no deadlock; what is skipped is merged next time;
* a writer whose stripe row the merge deleted meanwhile inserts a fresh one
  (`INSERT … ON CONFLICT` sees the deleted row gone once the merge commits);
* stripe 0 is written by nothing else on PostgreSQL (writers use their process id; the
  migration's backfill ran before the triggers existed), and two merges lock stripe 0's
  rows in the same order.

SQLite has one writer and only stripe 0: nothing to merge (the same code finds no rows).
No figure changes, so nothing is audited and the KPI snapshot stays fresh.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from models import KpiDaily

BATCH = 10_000  # stripe rows folded per transaction

_K = KpiDaily.__table__
FIGURES = tuple(c.name for c in _K.c if c.name not in ("currency", "day", "stripe"))
_KEY = (_K.c.currency, _K.c.day, _K.c.stripe)
# (constants only: the column names of the model)
_ADD = sa.text(
    f"INSERT INTO kpi_daily (currency, day, stripe, {', '.join(FIGURES)}) "  # noqa: S608
    f"VALUES (:currency, :day, 0, {', '.join(':' + n for n in FIGURES)}) "
    "ON CONFLICT (currency, day, stripe) DO UPDATE SET "
    + ", ".join(f"{n} = kpi_daily.{n} + excluded.{n}" for n in FIGURES))


def merge(session: Session, before: date, *, batch: int = BATCH) -> dict[str, int]:
    """Fold up to `batch` stripe rows of the days before `before` into stripe 0, in the
    caller's transaction (commit it soon: the rows stay locked until then). Returns how many
    rows were folded (`merged`) and into how many days (`days`); `merged == batch` means
    there may be more."""
    conn = session.connection()
    picked = (sa.select(*_KEY).where(_K.c.stripe != 0, _K.c.day < before)
              .order_by(*_KEY).limit(batch).with_for_update(skip_locked=True))
    gone = conn.execute(sa.delete(_K).where(sa.tuple_(*_KEY).in_(picked))
                        .returning(_K.c.currency, _K.c.day, *(_K.c[n] for n in FIGURES))).all()
    sums: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * len(FIGURES))
    for currency, day, *figures in gone:
        total = sums[(currency, day)]
        for i, value in enumerate(figures):
            total[i] += int(value)
    if sums:  # (in key order: two merges lock stripe 0's rows in the same order)
        conn.execute(_ADD, [{"currency": currency, "day": day,
                             **dict(zip(FIGURES, total, strict=True))}
                            for (currency, day), total in sorted(sums.items())])
    return {"merged": len(gone), "days": len(sums)}


def stripes(session: Session) -> int:
    """Rows of `kpi_daily` outside stripe 0 (what `merge` has left to fold)."""
    return int(session.connection().execute(
        sa.select(sa.func.count()).select_from(_K).where(_K.c.stripe != 0)).scalar_one())
