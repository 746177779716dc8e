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
from tests.support.meanwhile import committed_out_of_order
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

        # a quicker one renames Initech later and commits first; when the directory is
        # looked at in between, and the slow writer commits after it
        seen: list[set[str]] = []
        committed_out_of_order(elsewhere, slow, rename_initech,
                               between=lambda: seen.append(_names(names, db)))
        # then the directory had the one rename committed then, and now has both
        assert seen == [{"Globex Corporation" if db.is_postgres else "Globex Holdings",
                         "Initech Systems"}]
        assert _names(names, db) == {"Globex Holdings", "Initech Systems"}
    finally:
        slow.close()
