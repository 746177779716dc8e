"""Reads at once (`workflows.snapshot_reads`) take only the pooled connections a database has
to spare: more KPI requests at once than the pool holds all answer, the same figures, instead
of each holding a connection while waiting for more until the pool gives up on all of them."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from bot.db import Database, spare_connections
from tests.support import factories as f
from tests.support.meanwhile import at_once
from workflows import kpis, policy, snapshot_reads
from workflows.snapshot_reads import CONNECTIONS_KEY, Connections

AS_OF = date(2026, 11, 23)


def test_connections_are_lent_as_far_as_there_are_some_and_given_back() -> None:
    connections = Connections(5)
    with (connections.taken(4) as first, connections.taken(4) as second,
          connections.taken(4) as third):
        assert (first, second, third) == (4, 1, 0)
    with connections.taken(9) as again:
        assert again == 5
    with Connections(0).taken(4) as none:
        assert none == 0


def test_a_database_lends_a_third_of_its_pool_to_reads_at_once(database_url) -> None:
    sized = Database(database_url, pool_size=6, max_overflow=3)
    try:
        assert spare_connections(sized.engine) == 3
        with sized.read_session() as session:
            assert session.info[CONNECTIONS_KEY].limit == 3
    finally:
        sized.dispose()


def test_reads_at_once_run_in_the_callers_session_when_none_are_to_spare(db) -> None:
    with db.transaction() as s:
        f.customer(s)

    def where(session):
        return lambda s: s is session

    with db.read_session() as session:
        # when nothing else takes connections, and when all but one are taken meanwhile
        free = snapshot_reads.run(session, [where(session)] * 4, concurrently=True)
        connections = session.info[CONNECTIONS_KEY]
        with connections.taken(connections.limit - 1):
            short = snapshot_reads.run(session, [where(session)] * 4, concurrently=True)
    # then PostgreSQL reads on other connections only while it may take two or more
    assert free == [not db.is_postgres] * 4
    assert short == [True] * 4


def test_more_kpi_requests_at_once_than_the_pool_holds_all_answer(database_url) -> None:
    # given: a book, and a process whose pool holds four connections. (Requests that each
    # held one while waiting for more would wait for ever, whatever the pool's timeout; the
    # timeout is generous so that the fifth and sixth request, which wait for the first four
    # to finish, do not fail on a loaded CI machine: a leap-day lane once took over 2 s.)
    small = Database(database_url, pool_size=4, max_overflow=0, pool_timeout=30)
    try:
        with small.transaction() as s:
            f.customer(s)
            f.invoice(s, "INV-2026-000001", issued=date(2026, 10, 1), total="500.00")
        with small.read_session() as session:
            expected = kpis.to_json(kpis.compute(session, AS_OF))
        # when six requests ask for the KPIs at the same moment, each in its own session
        def ask() -> dict:
            with small.read_session() as session:
                return kpis.to_json(kpis.compute(session, AS_OF, concurrently=True))

        # then every one answers (none fails), with the same figures
        assert at_once(ask, 6) == [expected] * 6
    finally:
        small.dispose()


def test_reads_in_the_callers_session_see_one_snapshot_whatever_commits_meanwhile(db) -> None:
    # given a book of one invoice
    with db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000001", issued=date(2026, 10, 1))

    def invoices(session) -> int:
        return session.execute(sa.text("SELECT count(*) FROM invoices")).scalar_one()

    def then_another_is_committed(session) -> int:
        seen = invoices(session)
        with db.transaction() as other:
            f.invoice(other, "INV-2026-000002", issued=date(2026, 10, 2))
        return seen

    # when a report's reads run one after another in its read session (no connection to
    # spare) and an invoice is committed between them
    with db.read_session() as session:
        connections = session.info[CONNECTIONS_KEY]
        with connections.taken(connections.limit):
            read = snapshot_reads.run(session, [then_another_is_committed, invoices],
                                      concurrently=True)
    # then both saw the same book (PostgreSQL: one REPEATABLE READ snapshot, as SQLite's read
    # transaction is), and the next session sees the new invoice
    assert read == [1, 1]
    with db.read_session() as session:
        assert invoices(session) == 2


def test_a_read_sessions_connection_writes_again_once_back_in_the_pool(database_url) -> None:
    # given a database whose pool holds one connection, used first by a read session
    single = Database(database_url, pool_size=1, max_overflow=0)
    try:
        with single.read_session() as session:
            session.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
            if single.is_postgres:  # (read only, one snapshot)
                assert session.execute(sa.text("SHOW transaction_read_only")).scalar() == "on"
                assert session.execute(sa.text(
                    "SHOW transaction_isolation")).scalar() == "repeatable read"
        # when the same connection serves a write transaction
        with single.transaction() as s:
            f.customer(s)
            if single.is_postgres:  # then it is the writers' again
                assert s.execute(sa.text(
                    "SHOW transaction_isolation")).scalar() == "read committed"
        # then the write is there
        with single.read_session() as session:
            assert session.execute(sa.text("SELECT count(*) FROM customers")).scalar_one() == 1
    finally:
        single.dispose()


def test_reads_at_once_see_the_settings_policy_and_the_kpis_its_home_currency(
        database_url) -> None:
    # given a company whose settings make JPY its home currency (O2C_HOME_CURRENCY), with
    # more open in USD cents (15,000.00 = 1,500,000) than in yen (JPY 20,000)
    from dataclasses import replace

    from workflows.policy import Policy

    books = Database(database_url, policy=replace(Policy(), home_currency="JPY"))
    try:
        with books.transaction() as s:
            f.customer(s, "C-USD", currency="USD")
            f.customer(s, "C-JPY", "Yamada KK", currency="JPY", credit_limit="5000000")
            f.invoice(s, "INV-2026-000001", "C-USD", total="15000.00",
                      issued=date(2026, 10, 1))
            f.invoice(s, "INV-2026-000002", "C-JPY", total="20000", currency="JPY",
                      issued=date(2026, 10, 1))
        # when the KPIs are read, one read after another and at once (PostgreSQL: other
        # connections, whose sessions carried no settings: their reads had Policy()'s USD)
        for concurrently in (False, True):
            with books.read_session() as session:
                report = kpis.compute(session, AS_OF, concurrently=concurrently)
            # then they are in the settings' home currency, not the largest count of units
            assert (report.currency, report.ar_minor) == ("JPY", 20_000)
            with books.read_session() as session:
                assert snapshot_reads.run(session, [lambda s: policy.current(s).home_currency]
                                          * 2, concurrently=concurrently) == ["JPY"] * 2
    finally:
        books.dispose()
