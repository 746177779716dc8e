"""Issue 18: the KPIs' and `/o2c ar`'s big queries can be answered from the indexes made for
them (migration 0017_scale), on SQLite and PostgreSQL — checked on the plans, never on time.

The statements are the ones the workflows really send (captured while they run); each is then
EXPLAINed. On SQLite the plan names the index. On PostgreSQL a table of a few rows is
cheapest to scan whole and equal-cost indexes are picked arbitrarily, so sequential scans are
switched off for the EXPLAIN and the check is that no invoice is read by a scan of the table
(some index fits the query; with none, PostgreSQL still shows a Seq Scan). The plans at a
million invoices on both databases are in bench/RESULTS.md (issue 18).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.support import factories as f
from workflows import kpis, policy, receivables

AS_OF = date(2026, 11, 23)


def captured(db, run) -> list[tuple[str, object]]:
    statements: list[tuple[str, object]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    try:
        with db.read_session() as session:
            run(session)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
    return statements


def plan(db, statement: str, parameters) -> str:
    with db.engine.connect() as conn:
        if db.is_postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        conn.rollback()
    return "\n".join(str(row[-1]) for row in rows)


def uses(db, text: str, *indexes: str) -> bool:
    if db.is_postgres:
        return "Seq Scan on invoices" not in text and "Index" in text
    return any(f"INDEX {name}" in text for name in indexes)


def the_one(statements: list[tuple[str, object]], *fragments: str) -> tuple[str, object]:
    found = [(s, p) for s, p in statements if all(x in s for x in fragments)]
    assert len(found) == 1, (fragments, [s for s, _ in statements])
    return found[0]


@pytest.fixture
def book(db):
    with time_machine.travel(AS_OF, tick=False), db.transaction() as session:
        f.customer(session)
        for n in range(6):
            issued = AS_OF - timedelta(days=20 * n)
            f.invoice(session, f"INV-2026-{n + 1:06d}", issued=issued,
                      due=issued + timedelta(days=30))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return db


def test_kpi_queries_use_the_indexes_made_for_them(book) -> None:
    # given: the statements of the KPIs as of today from the base rows (what `known_at`
    # reads; without it the rollups answer most of them: see the next test)
    statements = captured(book, lambda session: kpis.compute(session, AS_OF, rollups=False))
    # then: aging of the open invoices, from the partial open-invoices-by-currency index
    text = plan(book, *the_one(statements, "sum(invoices.balance_minor)",
                               "GROUP BY invoices.currency"))
    assert uses(book, text, "ix_invoices_open_currency"), text
    # and the AR the day before the window (CEI): its open part summed in that same pass
    # (no statement of its own); its allocations dated later joined by an index (on a book
    # this small SQLite starts from the invoices; at 1M, from the effective-date index)
    assert not [s for s, _ in statements if "coalesce(sum(invoices.balance_minor)" in s]
    text = plan(book, *the_one(statements, "sum(allocations.amount_minor)",
                               "allocations.effective_date >"))
    assert uses(book, text, "ix_allocations_effective", "ix_allocations_invoice_id"), text
    # and credit sales by day (window and count-back) from a range of an issue-date index
    text = plan(book, *the_one(statements, "sum(invoices.total_minor)",
                               "GROUP BY invoices.issue_date"))
    assert uses(book, text, "ix_invoices_sales", "ix_invoices_issued"), text
    # and the sales invoices issued in the window from the issue-date index
    text = plan(book, *the_one(statements, "count(*)", "invoices.fee_for_invoice_id IS NULL"))
    assert uses(book, text, "ix_invoices_issued"), text


def test_kpis_from_the_rollups_read_no_settlement_payment_or_sales_rows(book) -> None:
    # given: the statements of the KPIs as of today (no `known_at`: the rollups answer)
    statements = captured(book, lambda session: kpis.compute(session, AS_OF))
    selects = [s for s, _ in statements if s.lstrip().upper().startswith("SELECT")]
    # then: credit sales, AR the day before the window, bad debt, the invoices issued and
    # cash application are read from kpi_daily — no statement sums settlements, reads the
    # payments or the invoices' totals, or counts the invoices issued (the aging's own probe
    # of settlements dated after today stays)
    assert [s for s in selects if "FROM kpi_daily" in s]
    summed = (("sum(allocations.amount_minor)",), ("sum(credit_notes.amount_minor)",),
              ("sum(write_offs.amount_minor)",), ("FROM payments",),
              ("sum(invoices.total_minor)",), ("count(*)", "fee_for_invoice_id IS NULL"))
    assert not [s for s in selects if any(all(x in s for x in f) for f in summed)], selects
    # and the aging still reads the open invoices from the index made for it
    text = plan(book, *the_one(statements, "sum(invoices.balance_minor)",
                               "GROUP BY invoices.currency"))
    assert uses(book, text, "ix_invoices_open_currency"), text
    # and kpi_daily by its key (currency, day)
    for statement, parameters in statements:
        if "FROM kpi_daily" in statement:
            text = plan(book, statement, parameters)
            assert "kpi_daily" in text, text


def test_ar_overview_groups_open_invoices_from_the_open_aging_index(book) -> None:
    # given: the statements of `/o2c ar`'s top customers
    statements = captured(book, lambda session: receivables.top_balances(session, AS_OF))
    # then
    text = plan(book, *the_one(statements, "GROUP BY invoices.customer_id"))
    assert uses(book, text, "ix_invoices_open_aging", "ix_invoices_customer_open"), text


def test_kpis_in_a_business_time_zone_read_the_payments_at_the_windows_ends_by_index(
        book) -> None:
    # given: the books kept in Los Angeles time (the window's ends fall inside UTC days)
    with book.transaction() as session:
        policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                         actor="test")
    # when: the KPIs as of today from the rollups
    statements = captured(book, lambda session: kpis.compute(session, AS_OF))
    # then: the payments of the hours at either end are read from the received-at index,
    # and that is the only statement reading payments
    reads = [s for s, _ in statements if "FROM payments" in s]
    assert len(reads) == 1, reads
    text = plan(book, *the_one(statements, "FROM payments", "payments.received_at >="))
    assert ("ix_payments_received" in text if not book.is_postgres
            else "Seq Scan on payments" not in text), text


def test_credit_notes_taken_off_credit_sales_are_read_from_their_date_index(book) -> None:
    # given: the statements of the KPIs from the base rows
    statements = captured(book, lambda session: kpis.compute(session, AS_OF, rollups=False))
    # then: the credit notes against sales by day are joined to their invoices by an index
    # (as the allocations dated later are: on a book this small SQLite starts from the
    # invoices, at scale from the effective-date range)
    text = plan(book, *the_one(statements, "sum(credit_notes.amount_minor)",
                               "GROUP BY credit_notes.effective_date"))
    assert uses(book, text, "ix_credit_notes_effective", "ix_credit_notes_invoice_id"), text
