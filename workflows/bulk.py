"""Many rows into one table at once, cheaply.

A bank statement of 100,000 lines writes some 700,000 rows (payments, allocations, write-offs,
suggestions, cards, audit events). SQLAlchemy's executemany spends about 25 us per row in its
generic per-row machinery (building each row's parameters, looking up each column's default
and type) besides the driver's own work. `insert_many` does the same thing with the same
pieces SQLAlchemy would use — the statement SQLAlchemy compiles, the columns' own bind
processors (`UTCDateTime`, JSON) and Python-side defaults (`utcnow`, `dict`) — applied in one
tight loop, then hands the rows to the driver at once (below). What is stored is exactly what
`conn.execute(sa.insert(table), rows)` stores (tests/workflows/test_bulk_insert.py compares
the two row by row).

On SQLite that is one `executemany` of the statement SQLAlchemy compiles (positional `?`
parameters). On PostgreSQL psycopg's executemany sends one INSERT per row (pipelined) and
SQLAlchemy's multi-row INSERTs (`insertmanyvalues`) cost psycopg a regex pass over every
placeholder of each 1,000-row statement; so the rows go to the server in one `COPY … FROM
STDIN` instead (psycopg's `copy.write_row`, the same values, in text), which runs the
table's statement triggers — the KPI rollups', migration 0024 — once for all of them. A
column whose default is an SQL expression, or rows whose keys differ from the first's, go
SQLAlchemy's own way.

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


class _RowContext:
    """What a column default may ask of SQLAlchemy's execution context here: the row's own
    parameters (`get_current_parameters()`, e.g. `invoices.number_key` from `number`);
    nothing else."""

    def __init__(self, row: dict) -> None:
        self._row = row

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict:
        return self._row

    def __getattr__(self, name: str) -> Any:
        raise TypeError(f"insert_many: a column default asked for its context ({name})")


def _plan(conn: sa.Connection, table: sa.Table, keys: tuple[str, ...]
          ) -> tuple[str, list[tuple[str, Callable | None, Callable | None]]] | None:
    """(SQL, for each value in order: the row's key, its Python-side default, its bind
    processor): an INSERT with `?` placeholders on SQLite, a COPY on PostgreSQL; None when
    a default of a column left out is SQL (only SQLAlchemy's INSERT can say it)."""
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(keys),
                                        for_executemany=True)
    defaults: dict[str, Callable] = {}
    for column in compiled.insert_prefetch:
        default = column.default
        if default.is_scalar:
            defaults[column.key] = (lambda value: lambda row: value)(default.arg)
        elif default.is_callable:
            defaults[column.key] = (lambda fn: lambda row: fn(_RowContext(row)))(default.arg)
        else:  # (a sequence or SQL expression: not for this path)
            raise TypeError(f"insert_many: unsupported default of {table.name}.{column.key}")
    processors = compiled._bind_processors
    if compiled.positiontup is not None:  # (SQLite)
        order = []
        for name in compiled.positiontup:
            column_key = compiled.binds[name].key
            order.append((column_key, defaults.get(column_key), processors.get(name)))
        return compiled.string, order
    by_key = {bind.key: processors.get(name) for name, bind in compiled.binds.items()}
    columns = [c for c in table.columns if c.key in by_key]
    if len(columns) != len(by_key) or any(
            c.default is not None and c.key not in keys and c.key not in defaults
            for c in table.columns):
        return None
    quote = conn.dialect.identifier_preparer
    names = ", ".join(quote.format_column(c) for c in columns)
    sql = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    return sql, [(c.key, defaults.get(c.key), by_key[c.key]) for c in columns]


def insert_many(session: Session | sa.Connection, table: sa.Table,
                rows: Sequence[dict]) -> None:
    """`INSERT INTO table` every row, in order, as `conn.execute(sa.insert(table), rows)`
    would (see the module docstring)."""
    if not rows:
        return
    conn = session.connection() if isinstance(session, Session) else session
    keys = tuple(rows[0])
    key_set = set(keys)
    cache = (session.info if isinstance(session, Session) else conn.info).setdefault(
        _CACHE_KEY, {})
    plan = cache.get((table, keys, conn.dialect), False)
    if plan is False:
        plan = cache[(table, keys, conn.dialect)] = _plan(conn, table, keys)
    if plan is None or any(r.keys() != key_set for r in rows):
        conn.execute(sa.insert(table), list(rows))
        return
    sql, order = plan
    params = []
    for row in rows:
        values = []
        for key, default, process in order:
            value = default(row) if default is not None else row[key]
            values.append(process(value) if process is not None else value)
        params.append(tuple(values))
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(sql, params)
        return
    dbapi, raw = conn.dialect.loaded_dbapi, conn.connection.dbapi_connection
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for values in params:
                copy.write_row(values)
    except dbapi.Error as error:  # raised as SQLAlchemy's execute raises it (IntegrityError…)
        raise sa.exc.DBAPIError.instance(
            sql, None, error, dbapi.Error, dialect=conn.dialect,
            connection_invalidated=conn.dialect.is_disconnect(error, raw, None)) from error


_NEXT_IDS = sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                    "FROM generate_series(1, :n)")


def insert_with_ids(session: Session, table: sa.Table, rows: Sequence[dict]) -> list[int]:
    """`insert_many`, giving the new rows' ids (`id`, from its sequence) in the rows' order.
    On PostgreSQL the ids are taken from the sequence first, in one statement, and the rows
    copied with them (SQLAlchemy's 1,000-row `INSERT … RETURNING`s took 1.9 s of a 10,000-
    payment cash run, psycopg parsing each again: bench/RESULTS.md); elsewhere SQLAlchemy's
    `INSERT … RETURNING`."""
    if not rows:
        return []
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        insert = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return [r[0] for r in conn.execute(insert, list(rows))]
    ids = sorted(conn.execute(_NEXT_IDS, {"table": table.name, "n": len(rows)}).scalars())
    insert_many(session, table,
                [{**row, "id": id_} for row, id_ in zip(rows, ids, strict=True)])
    return ids
