"""The customer names cash application matches payers against (`CustomerNames`, cached per
database) follow what other processes commit — also when their transactions commit out of the
order they wrote in.

PostgreSQL stamps `updated_at` when a row is written: a rename written before another
customer's change and committed after it left the table's latest `updated_at` where it was,
and a directory built between the two commits kept the old name until the next customer
change. SQLite has one writer at a time: there the second writer waits for the first, and the
test checks the same promise in that order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.db import Database
from tests.support import factories as f
from tests.support.meanwhile import second_writer
from workflows.cash_candidates import CustomerNames


@pytest.fixture
def elsewhere(database_url: str) -> Iterator[Database]:
    """Another process's database object: its writes never reach this one's listeners."""
    other = Database(database_url)
    yield other
    other.dispose()


def _names(names: CustomerNames, db: Database) -> set[str]:
    with db.read_session() as s:
        return {c.name for c in names.directory(s).by_id.values()}


def test_a_rename_committed_elsewhere_is_seen_after_the_stamp_interval(db, elsewhere) -> None:
    with db.transaction() as s:
        f.customer(s)
    names = CustomerNames(stamp_every=0)
    assert _names(names, db) == {"Globex Corporation"}
    # when another process renames the customer
    with elsewhere.transaction() as s:
        f.customer(s, name="Globex Holdings")
    # then the next lookup sees the new name
    assert _names(names, db) == {"Globex Holdings"}


def test_a_rename_committed_after_a_later_change_is_seen(db, elsewhere) -> None:
    # given two customers, and this process's directory of them
    with db.transaction() as s:
        f.customer(s)
        f.customer(s, "C-INITECH", "Initech")
    names = CustomerNames(stamp_every=0)
    assert _names(names, db) == {"Globex Corporation", "Initech"}
    # a slow writer elsewhere renames Globex (stamped now) and has not committed yet
    slow = elsewhere.session()
    try:
        f.customer(slow, name="Globex Holdings")
        slow.flush()

        def rename_initech(s) -> None:
            f.customer(s, "C-INITECH", "Initech Systems")

        if db.is_postgres:
            # a quicker one renames Initech later and commits first
            with elsewhere.transaction() as s:
                rename_initech(s)
            # when the directory is looked at in between, then the slow writer commits
            assert _names(names, db) == {"Globex Corporation", "Initech Systems"}
            slow.commit()
        else:  # (the quicker writer waits for the slow one)
            second_writer(elsewhere, slow, rename_initech)
        # then both renames are seen
        assert _names(names, db) == {"Globex Holdings", "Initech Systems"}
    finally:
        slow.close()
