"""Many rows into one table with one INSERT statement, cheaply.

A bank statement of 100,000 lines writes some 700,000 rows (payments, allocations, write-offs,
suggestions, cards, audit events). SQLAlchemy's executemany spends about 25 us per row in its
generic per-row machinery (building each row's parameters, looking up each column's default
and type) besides the driver's own work. `insert_many` does the same thing with the same
pieces SQLAlchemy would use — the statement SQLAlchemy compiles, the columns' own bind
processors (`UTCDateTime`, JSON) and Python-side defaults (`utcnow`, `dict`) — applied in one
tight loop, then hands the rows to the driver's `executemany`. What is stored is exactly what
`conn.execute(sa.insert(table), rows)` stores (tests/workflows/test_bulk_insert.py compares
the two row by row).

Only on SQLite (positional `?` parameters, one `executemany`); on PostgreSQL SQLAlchemy
batches INSERTs its own way (`insertmanyvalues`), and rows whose keys differ from the first's
go the ordinary way too.

`in_parts` cuts many keys into bounded `IN (...)` lists, for reads of many rows by key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_CACHE_KEY = "workflows.bulk.inserts"
IN_LIST = 500  # keys per `IN (...)` list: well within every driver's parameter limit


def in_parts(values: Iterable, size: int = IN_LIST) -> Iterator[list]:
    """`values` sorted, in lists of at most `size` (for `column.in_(part)` reads)."""
    ordered = sorted(values)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def upsert_insert(session: Session, table: Any):
    """`INSERT INTO table` in the session's own dialect, so that it can say
    `ON CONFLICT … DO NOTHING` (PostgreSQL and SQLite spell it alike)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class _NoContext:
    """A column default that needs SQLAlchemy's execution context is not supported here."""

    def __getattr__(self, name: str) -> Any:
        raise TypeError(f"insert_many: a column default asked for its context ({name})")


def _plan(conn: sa.Connection, table: sa.Table, keys: tuple[str, ...]
          ) -> tuple[str, list[tuple[str, Callable | None, Callable | None]]]:
    """(SQL, for each placeholder in order: the row's key, its Python-side default, its bind
    processor)."""
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(keys),
                                        for_executemany=True)
    defaults: dict[str, Callable] = {}
    for column in compiled.insert_prefetch:
        default = column.default
        if default.is_scalar:
            defaults[column.key] = (lambda value: lambda: value)(default.arg)
        elif default.is_callable:
            defaults[column.key] = (lambda fn: lambda: fn(_NoContext()))(default.arg)
        else:  # (a sequence or SQL expression: not for this path)
            raise TypeError(f"insert_many: unsupported default of {table.name}.{column.key}")
    processors = compiled._bind_processors
    order = []
    for name in compiled.positiontup:
        column_key = compiled.binds[name].key
        order.append((column_key, defaults.get(column_key), processors.get(name)))
    return compiled.string, order


def insert_many(session: Session | sa.Connection, table: sa.Table,
                rows: Sequence[dict]) -> None:
    """`INSERT INTO table` every row, in order, as `conn.execute(sa.insert(table), rows)`
    would (see the module docstring)."""
    if not rows:
        return
    conn = session.connection() if isinstance(session, Session) else session
    keys = tuple(rows[0])
    key_set = set(keys)
    if conn.dialect.paramstyle != "qmark" or any(r.keys() != key_set for r in rows):
        conn.execute(sa.insert(table), list(rows))
        return
    cache = (session.info if isinstance(session, Session) else conn.info).setdefault(
        _CACHE_KEY, {})
    plan = cache.get((table, keys, conn.dialect))
    if plan is None:
        plan = cache[(table, keys, conn.dialect)] = _plan(conn, table, keys)
    sql, order = plan
    params = []
    for row in rows:
        values = []
        for key, default, process in order:
            value = default() if default is not None else row[key]
            values.append(process(value) if process is not None else value)
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)
