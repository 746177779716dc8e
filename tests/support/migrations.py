"""What the migration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import Session

from bot.db import Database, normalize_url
from bot.migrate import alembic_config, downgrade
from tests.support import factories as f
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn


def previous_revision(database_url: str, revision: str) -> str:
    """The revision `revision` upgrades from, as Alembic reads it from the scripts (never
    hard-coded: branches add migrations and are chained when merged)."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    down = script.get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


@contextmanager
def opened(database_url: str) -> Iterator[Database]:
    """The app's database object for a while (disposed after: the migration needs the
    database to itself)."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def plain_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine that keeps no connection between uses, to look at the tables around
    `downgrade` and `upgrade`."""
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def rollup_book(s: Session) -> None:
    """The small book the KPI rollup migrations are tried on: invoices in two currencies on
    three days, and a payment applied to one of them."""
    f.customer(s)
    f.customer(s, "C-INITECH", "Initech", currency="EUR")
    f.invoice(s, "INV-2026-000001", issued=date(2026, 10, 1), total="500.00")
    f.invoice(s, "INV-2026-000002", issued=date(2026, 11, 2), total="300.00")
    f.invoice(s, "INV-2026-000003", "C-INITECH", issued=date(2026, 11, 3), total="200.00",
              currency="EUR")
    record_payment(s, PaymentIn(amount="120.00", currency="USD",
                                received_at=datetime(2026, 11, 20, 9, tzinfo=UTC)),
                   actor="test", apply_to=["INV-2026-000001"])


def rollup_book_below(database_url: str, revision: str) -> str:
    """`rollup_book` written at the head (where the database is made), then the database taken
    down to the revision `revision` upgrades from, which is returned."""
    with opened(database_url) as db, db.transaction() as s:
        rollup_book(s)
    before = previous_revision(database_url, revision)
    downgrade(database_url, before)
    return before
