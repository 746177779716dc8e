"""Fresh databases per test, cheaply: migrate a template once per session, then copy it
(SQLite: copy the file; PostgreSQL: `CREATE DATABASE ... TEMPLATE`, or a released copy of the
same schema emptied again)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import upgrade


class Factory:
    """What both factories give: `create` a database's URL, `drop` it when done."""

    def create(self) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        raise NotImplementedError

    @contextmanager
    def fresh(self) -> Iterator[Database]:
        """A new empty, migrated database for one block (e.g. one Hypothesis example), given
        back when the block ends."""
        url = self.create()
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()
            self.drop(url)


class SqliteFactory(Factory):
    kind = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template = workdir / "template.db"
        upgrade(f"sqlite:///{self.template}")

    def create(self) -> str:
        return self.clone(f"sqlite:///{self.template}")

    def clone(self, url: str) -> str:
        """A copy of another (quiescent) test database, e.g. one seeded once per session."""
        path = self.workdir / f"t_{uuid.uuid4().hex[:10]}.db"
        shutil.copyfile(url.removeprefix("sqlite:///"), path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# What a test database's schema is, as one digest: every relation with its columns, types,
# defaults and NOT NULLs, constraints, indexes, functions, triggers, types, schemas, extensions,
# per-database settings and the Alembic revision. A released database whose digest is the
# template's is emptied and handed out again; any other is dropped.
SCHEMA_DIGEST = """
SELECT md5(string_agg(item, '|' ORDER BY item)) FROM (
  SELECT 'rel:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || coalesce(
           string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                      || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                      ',' ORDER BY a.attnum), '') AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
     AND n.nspname NOT LIKE 'pg\\_%%temp\\_%%'
   GROUP BY n.nspname, c.relname, c.relkind
  UNION ALL SELECT 'con:' || conrelid::regclass || ':' || conname || ' '
                   || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT 'idx:' || indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT 'fn:' || oid::regprocedure::text FROM pg_proc
   WHERE pronamespace = 'public'::regnamespace
  UNION ALL SELECT 'trg:' || tgrelid::regclass || ':' || tgname || ':' || tgenabled::text
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT 'type:' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
  UNION ALL SELECT 'ns:' || nspname FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_%%temp\\_%%'
  UNION ALL SELECT 'ext:' || extname || ' ' || extversion FROM pg_extension
  UNION ALL SELECT 'set:' || array_to_string(setconfig, ',') FROM pg_db_role_setting
   WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT 'rev:' || version_num FROM alembic_version
) items
"""


class PostgresFactory(Factory):
    """Databases copied from a migrated template (`CREATE DATABASE ... TEMPLATE`), and reused:
    a copy costs the server ~0.4 s of CPU (every page of the template through the WAL, then a
    drop), emptying one ~0.04 s. A released database is cut off from its last users (its
    connections ended, then renamed: a straggler of the test that used it can never reach it
    again), checked to have the template's schema (`SCHEMA_DIGEST`), emptied (every row
    deleted, every sequence back where the template has it) and handed to the next test as if
    it were a new copy. One that cannot be (another schema, a connection that would not end,
    an error) is dropped as before."""

    kind = "postgresql"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = normalize_url(admin_url)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                                      poolclass=sa.pool.NullPool)
        self.template = f"o2c_tpl_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        upgrade(self._url(self.template))
        self.spare: list[str] = []  # emptied databases, ready to hand out
        engine = self._engine(self.template)
        try:
            with engine.connect() as conn:
                self.digest = conn.exec_driver_sql(SCHEMA_DIGEST).scalar_one()
                self.emptying = self._emptying(conn)
        finally:
            engine.dispose()

    def _url(self, name: str) -> str:
        base = sa.engine.make_url(self.admin_url)
        return base.set(database=name).render_as_string(hide_password=False)

    def _engine(self, name: str) -> sa.Engine:
        return sa.create_engine(self._url(name), isolation_level="AUTOCOMMIT",
                                poolclass=sa.pool.NullPool)

    @staticmethod
    def _emptying(conn: sa.Connection) -> str | None:
        """The statements that bring a database of the template's schema back to the
        template's contents: no rows but the Alembic revision, sequences as they are there
        (None if the template holds rows: then every released database is dropped)."""
        tables = conn.exec_driver_sql(
            "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'").scalars().all()
        for table in tables:  # names quoted by format('%I'), from the catalog
            exists = f"SELECT EXISTS (SELECT FROM {table})"  # noqa: S608
            if conn.exec_driver_sql(exists).scalar_one():
                return None
        sequences = conn.exec_driver_sql(
            "SELECT format('%%I.%%I', schemaname, sequencename), last_value FROM pg_sequences "
            "WHERE schemaname = 'public'").all()
        restore = [f"ALTER SEQUENCE {name} RESTART" if last is None
                   else f"SELECT setval('{name}', {int(last)}, true)" for name, last in sequences]
        # the foreign keys' triggers off for these deletes only: every table is emptied
        return ";".join(["BEGIN", "SET LOCAL session_replication_role = replica",
                         *(f"DELETE FROM {table}" for table in tables),  # noqa: S608
                         *restore, "COMMIT"])

    def create(self) -> str:
        if self.spare:
            return self._url(self.spare.pop())
        return self.clone(self._url(self.template))

    def clone(self, url: str) -> str:
        """A copy of another test database nobody is connected to (CREATE DATABASE TEMPLATE)."""
        source = sa.engine.make_url(url).database
        name = f"o2c_t_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self._url(name)

    def drop(self, url: str) -> None:
        name = sa.engine.make_url(url).database
        fresh = self._empty(name) if self.emptying is not None else None
        if fresh is not None:
            self.spare.append(fresh)
            return
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _empty(self, name: str) -> str | None:
        """`name` emptied under a new name, or None when it cannot be reused."""
        fresh = f"o2c_t_{uuid.uuid4().hex[:10]}"
        try:
            with self.admin.connect() as conn:
                allowed = conn.execute(sa.text(
                    "SELECT datallowconn FROM pg_database WHERE datname = :name"),
                    {"name": name}).scalar()
                if not allowed:
                    return None
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
                # fails while anyone is still connected: then it is dropped (WITH FORCE)
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
        except sa.exc.DBAPIError:
            return None
        engine = self._engine(fresh)
        try:
            with engine.connect() as conn:
                if conn.exec_driver_sql(SCHEMA_DIGEST).scalar_one() != self.digest:
                    raise LookupError("not the template's schema")
                conn.exec_driver_sql(self.emptying)
        except (sa.exc.DBAPIError, LookupError):
            engine.dispose()
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
            return None
        engine.dispose()
        return fresh

    def close(self) -> None:
        with self.admin.connect() as conn:
            for name in [self.template, *self.spare]:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.spare.clear()
        self.admin.dispose()
