"""`workflows.bulk.insert_many` stores exactly what SQLAlchemy's executemany stores: the same
rows, in the same order, with the same types (UTC timestamps, JSON, NULLs) and the same
Python-side defaults (`at` stamped with the recording time, JSON defaults)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.exc import IntegrityError

from models import AuditEvent, OutboxMessage, Payment, WriteOff
from tests.support import factories as f
from workflows import audit, bulk, invariants

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 13, 30, 15, 123456, tzinfo=UTC)


def _events(tag: str) -> list[dict]:
    # (text a COPY must escape, in a text column and in the JSON: tab, newline, \N, \)
    odd = "Ünïcode & \"quotes\"\ttab\nnew line \\N \\backslash"
    return [audit.row(actor=f"import {odd}", action=f"{tag}.received", entity_type="payment",
                      entity_id=n, amount_minor=10 ** 12 + n, note=odd,
                      nested={"lines": [[1, "fee"], [2, None]]}, flag=n % 2 == 0)
            for n in range(5)]


def _stored(session, table: sa.Table, tag: str, column: str) -> list[dict]:
    """The rows whose `column` starts with `tag`, in id order, without id and `column`."""
    rows = session.connection().execute(
        sa.select(table).where(table.c[column].like(f"{tag}%")).order_by(table.c.id)).all()
    return [{k: v for k, v in row._mapping.items() if k not in ("id", column)}
            for row in rows]


def test_audit_rows_are_stored_as_sqlalchemy_stores_them(session):
    # given the same events written both ways, at the same recording time
    table = AuditEvent.__table__
    with time_machine.travel(AT, tick=False):
        session.connection().execute(sa.insert(table), _events("core"))
        bulk.insert_many(session, table, _events("fast"))
        # and events with their own time
        timed = [{**e, "at": LATER} for e in _events("core-timed")]
        session.connection().execute(sa.insert(table), timed)
        bulk.insert_many(session, table, [{**e, "at": LATER} for e in _events("fast-timed")])
    # then every column reads back the same
    core, fast = (_stored(session, table, t, "action") for t in ("core.", "fast."))
    assert len(core) == 5
    assert core == fast
    assert core[0]["at"] == AT and fast[0]["at"] == AT
    core_t, fast_t = (_stored(session, table, t, "action") for t in ("core-timed", "fast-timed"))
    assert core_t == fast_t and fast_t[0]["at"] == LATER
    assert fast[0]["data"]["nested"] == {"lines": [[1, "fee"], [2, None]]}
    assert fast[0]["actor"] == "import " + fast[0]["data"]["note"] == \
        "import Ünïcode & \"quotes\"\ttab\nnew line \\N \\backslash"
    # and as the database holds them (text of the JSON and the timestamp, before any
    # conversion on the way out)
    raw = {tag: session.connection().execute(sa.text(
        "SELECT CAST(at AS TEXT), CAST(data AS TEXT) FROM audit_log WHERE action LIKE :tag "
        "ORDER BY id"), {"tag": f"{tag}%"}).all() for tag in ("core.", "fast.")}
    assert raw["core."] == raw["fast."] and len(raw["fast."]) == 5


def test_rows_with_defaulted_columns(session):
    # given outbox rows that leave defaulted columns out (attempts, status, timestamps)
    table = OutboxMessage.__table__
    rows = [{"transport": "slack", "method": "chat.postMessage", "dedupe_key": f"{tag}:{n}",
             "payload": {"channel": "ar", "n": n}} for tag in ("core", "fast") for n in range(3)]
    with time_machine.travel(AT, tick=False):
        session.connection().execute(sa.insert(table), rows[:3])
        bulk.insert_many(session, table, rows[3:])
    # then both ways store the same rows
    core, fast = (_stored(session, table, t, "dedupe_key") for t in ("core:", "fast:"))
    assert len(core) == 3
    assert core == fast


def test_many_settlements_reach_the_database_in_one_statement(session):
    # given 2,500 write-offs of one invoice, written at once
    f.customer(session)
    invoice = f.invoice(session, "INV-2026-000001", total="5000.00")
    rows = [{"invoice_id": invoice.id, "amount_minor": 1, "reason": "bank_fee",
             "created_by": "test", "value_date": AT.date(), "effective_date": AT.date()}
            for _ in range(2_500)]
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    sent = []

    @sa.event.listens_for(conn, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO write_offs"):
            sent.append(len(parameters))

    if pg:  # (a statement trigger as the KPI rollups' (migration 0024), counting its runs)
        conn.exec_driver_sql("CREATE TABLE test_statements (rows integer)")
        conn.exec_driver_sql(
            "CREATE FUNCTION test_count() RETURNS trigger AS $$ BEGIN INSERT INTO "
            "test_statements SELECT COUNT(*) FROM new_rows; RETURN NULL; END $$ "
            "LANGUAGE plpgsql")
        conn.exec_driver_sql(
            "CREATE TRIGGER test_count AFTER INSERT ON write_offs REFERENCING NEW TABLE AS "
            "new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_count()")
    with time_machine.travel(AT, tick=False):
        bulk.insert_many(session, WriteOff.__table__, rows)
    # then PostgreSQL gets them in one statement (a COPY), so a statement trigger runs once;
    # SQLite in one executemany
    if pg:
        assert conn.exec_driver_sql("SELECT rows FROM test_statements").scalars().all() == [
            2_500]
        assert sent == []  # (no INSERT: a COPY)
        conn.exec_driver_sql("DROP TRIGGER test_count ON write_offs")
        conn.exec_driver_sql("DROP FUNCTION test_count()")
        conn.exec_driver_sql("DROP TABLE test_statements")
    else:
        assert sent == [2_500]
    # and every row is there, as SQLAlchemy would have stored it, and in the rollups
    table = WriteOff.__table__
    assert conn.execute(sa.select(sa.func.count(), sa.func.sum(table.c.amount_minor))).one() \
        == (2_500, 2_500)
    assert conn.execute(sa.select(table.c.created_at, table.c.payment_id).distinct()).all() \
        == [(AT, None)]
    assert invariants.validate_kpi_rollups(session) == []


def test_rows_inserted_with_their_ids_in_order(session):
    # given payments already there, and three new ones written at once
    table = Payment.__table__
    rows = [{"amount_minor": 100 * n, "currency": "USD", "received_at": AT,
             "value_date": AT.date(), "external_id": f"BANK-{n}"} for n in range(1, 6)]
    first = bulk.insert_with_ids(session, table, rows[:2])
    with time_machine.travel(AT, tick=False):
        ids = bulk.insert_with_ids(session, table, rows[2:])
    # then each id is its row's, new and increasing in the rows' order
    stored = dict(session.connection().execute(
        sa.select(table.c.external_id, table.c.id)).all())
    assert [stored[f"BANK-{n}"] for n in range(1, 6)] == first + ids
    assert first[0] < first[1] < ids[0] < ids[1] < ids[2]
    # and the database's own sequence carries on after them
    (later,) = bulk.insert_with_ids(session, table, [{**rows[0], "external_id": "BANK-9"}])
    assert later > ids[-1]
    assert bulk.insert_with_ids(session, table, []) == []


def test_a_clash_is_sqlalchemys_integrity_error_and_the_savepoint_recovers(session):
    # given a payment with a bank reference
    table = Payment.__table__
    row = {"amount_minor": 100, "currency": "USD", "received_at": AT, "value_date": AT.date(),
           "external_id": "BANK-1"}
    (first,) = bulk.insert_with_ids(session, table, [row])
    # when a batch holding the same reference is written in a savepoint (as a cash run does
    # when another import stored it meanwhile)
    with pytest.raises(IntegrityError), session.begin_nested():
        bulk.insert_with_ids(session, table, [{**row, "external_id": "BANK-2"}, row])
    # then it is SQLAlchemy's IntegrityError (the run retries on it), nothing of the batch is
    # stored, and the transaction goes on
    assert bulk.insert_with_ids(session, table, [{**row, "external_id": "BANK-3"}])[0] > first
    stored = session.connection().execute(sa.select(table.c.external_id)).scalars().all()
    assert sorted(stored) == ["BANK-1", "BANK-3"]
