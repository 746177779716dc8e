"""Fresh databases per test, cheaply: migrate a template once per session, then copy it
(SQLite: copy the file; PostgreSQL: `CREATE DATABASE ... TEMPLATE`)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import sqlalchemy as sa

from bot.db import normalize_url
from bot.migrate import upgrade


class SqliteFactory:
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


class PostgresFactory:
    kind = "postgresql"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = normalize_url(admin_url)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                                      poolclass=sa.pool.NullPool)
        self.template = f"o2c_tpl_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        upgrade(self._url(self.template))

    def _url(self, name: str) -> str:
        base = sa.engine.make_url(self.admin_url)
        return base.set(database=name).render_as_string(hide_password=False)

    def create(self) -> str:
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
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self.admin.dispose()
