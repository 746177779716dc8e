"""Migration 0006_money_bigint: a populated 0005 database upgrades in place without loss (values,
CHECK constraints, partial indexes kept), money and quantity columns are 64-bit on PostgreSQL,
and afterwards the API stores and reads back amounts that did not fit before."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from bot.db import Database, normalize_url
from bot.migrate import downgrade, upgrade
from tests.conftest import API_TOKEN, start_server, test_settings
from tests.support import factories as f

MONEY = {"payments": "amount_minor", "invoices": "balance_minor", "products": "on_hand",
         "order_lines": "quantity", "customers": "credit_limit_minor"}


def dump(conn: sa.Connection) -> dict[str, list]:
    """Every row of the tables that change, in id order."""
    return {table: [tuple(r) for r in conn.execute(sa.text(
        f"SELECT * FROM {table} ORDER BY id"))]  # noqa: S608 - our own table names
        for table in ("customers", "products", "orders", "order_lines", "invoices", "payments",
                      "allocations")}


def test_a_populated_0005_database_upgrades_and_then_holds_real_amounts(database_url,
                                                                        standin) -> None:
    # given a company with an order, an invoice and a payment applied to it
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s, credit_limit="2000000.00")
            f.product(s, "WID-1", on_hand=500)
            f.order(s, lines=[("WID-1", 7)])
            f.invoice(s, "INV-2026-000001", total="21474836.47")  # the largest 32-bit amount
        with db.transaction() as s:
            from workflows.cash_application import record_payment
            from workflows.inputs import PaymentIn

            record_payment(s, PaymentIn(amount="1000.00", currency="USD",
                                        received_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
                                        reference="INV-2026-000001"), actor="test")
    finally:
        db.dispose()
    # and the database at 0005_fulfil, as deployed before this release
    downgrade(database_url, "0005_fulfil")
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            before = dump(conn)
        # when
        upgrade(database_url, "0006_money_bigint")
        # then nothing is lost or changed
        with engine.connect() as conn:
            assert dump(conn) == before
            inspector = sa.inspect(conn)
            if engine.dialect.name == "postgresql":
                for table, column in MONEY.items():
                    kind = next(c["type"] for c in inspector.get_columns(table)
                                if c["name"] == column)
                    assert isinstance(kind, sa.BigInteger), (table, column, kind)
            checks = {c["name"] for c in inspector.get_check_constraints("products")}
            assert {"ck_products_reserved_not_negative",
                    "ck_products_reserved_le_on_hand"} <= checks
            assert "ix_invoices_open_aging" in {i["name"] for i in
                                                inspector.get_indexes("invoices")}
        # and the checks still hold in the database
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET reserved = on_hand + 1"))
        upgrade(database_url)  # the later migrations, for the API below
    finally:
        engine.dispose()
    upgrade(database_url)
    # and through the API, amounts far beyond 32 bits go in and come back exactly
    running = start_server(test_settings(database_url, standin.api_url))
    try:
        with httpx.Client(base_url=f"{running.base_url}/api/v1", timeout=30,
                          headers={"Authorization": f"Bearer {API_TOKEN}"}) as api:
            paid = api.post("/payments", json={"amount": "9000000000000.00", "currency": "USD",
                                               "received_at": "2026-11-21T10:00:00Z"})
            assert paid.status_code == 201, paid.text
            assert api.get(f"/payments/{paid.json()['id']}").json()["amount"] == \
                "9000000000000.00"
            idr = api.post("/customers", json={
                "external_id": "C-JKT", "name": "PT Jakarta", "currency": "IDR",
                "credit_limit": "1000000000.00", "payment_terms": "NET30"})
            assert idr.status_code == 201, idr.text
            assert api.get("/customers/C-JKT").json()["credit_limit"] == "1000000000.00"
            stock = api.post("/products", json={"sku": "BOLT", "name": "Bolt",
                                                "unit_price": "0.01", "currency": "USD",
                                                "on_hand": 1_000_000_000})
            assert stock.status_code == 201 and stock.json()["on_hand"] == 1_000_000_000
    finally:
        running.stop()
        running.db.dispose()


def test_downgrade_refuses_while_an_amount_does_not_fit_in_32_bits(database_url) -> None:
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s, credit_limit="30000000.00")  # 3,000,000,000 cents
    finally:
        db.dispose()
    if not database_url.startswith("postgresql"):
        downgrade(database_url, "0005_fulfil")  # SQLite: nothing to narrow
    else:
        with pytest.raises(RuntimeError, match="customers.credit_limit_minor"):
            downgrade(database_url, "0005_fulfil")
    upgrade(database_url)
    db = Database(database_url)
    try:
        with db.read_session() as s:
            assert s.exec(sa.text("SELECT credit_limit_minor FROM customers")).one()[0] == \
                3_000_000_000
    finally:
        db.dispose()
