"""Migration 0012_revenue on a populated database: existing order lines get their revenue
type and SSP (the product's list price, or the line's own price in another currency),
existing shipment invoice lines find their order line again (an ERP's own lines stay
without), revenue can be reported straight away, and it downgrades."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from bot.db import Database, normalize_url
from bot.migrate import alembic_config, downgrade, upgrade
from tests.support import factories as f
from workflows import orders, revenue, shipping
from workflows.inputs import OrderIn, OrderLineIn, ShipmentLineIn

NOW = datetime(2026, 5, 4, 10, tzinfo=UTC)


def before_0012(database_url: str) -> str:
    """The revision 0012_revenue comes after, as Alembic chains it (not written here: the
    branches' migrations are chained when they are merged)."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    return script.get_revision("0012_revenue").down_revision


def populate(database_url: str) -> dict[str, str]:
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.customer(s, credit_limit="100000.00")
            f.customer(s, "C-EU", "Zorg SA", currency="EUR", credit_limit="100000.00")
            f.product(s, "WID", price="10.00")
            f.product(s, "GAD", price="25.00")
            f.product(s, "INST", price="300.00", revenue_type="service")
            usd = orders.create_order(s, OrderIn(
                customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=[
                    OrderLineIn(sku="WID", quantity=5), OrderLineIn(sku="GAD", quantity=2),
                    OrderLineIn(sku="INST", quantity=1, service_start="2026-05-01",
                                  service_end="2026-05-31")]), actor="USALES01", now=NOW)
            eur = orders.create_order(s, OrderIn(
                customer="C-EU", sales_rep="USALES01", currency="EUR",
                lines=[OrderLineIn(sku="WID", quantity=3, unit_price="9.00")]),
                actor="USALES01", now=NOW)
            for number, lines in ((usd.number, [("WID", 2)]), (usd.number, None),
                                  (eur.number, None)):
                shipping.ship_order(
                    s, order_number=number, carrier="UPS", tracking_number="1Z",
                    shipped_at=NOW, actor="USALES01", now=NOW,
                    lines=[ShipmentLineIn(sku=k, quantity=q) for k, q in lines]
                    if lines else None)
            f.invoice(s, "ERP-1", total="50.00", issued=date(2026, 5, 1))
            return {"usd": usd.number, "eur": eur.number}
    finally:
        db.dispose()


def test_existing_lines_get_revenue_fields_and_invoice_lines_their_order_line(
        database_url) -> None:
    # given: orders shipped in three shipments, and an ERP invoice, before 0012
    numbers = populate(database_url)
    previous = before_0012(database_url)
    downgrade(database_url, previous)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:  # what came before 0012: services had no period
            conn.execute(sa.text("INSERT INTO invoice_lines (invoice_id, line_no, sku, "
                                 "description, quantity, unit_price_minor, discount_bp, "
                                 "line_total_minor, tax_minor, revenue_type) SELECT id, 1, "
                                 "NULL, 'ERP work', 1, 5000, 0, 5000, 0, 'goods' FROM "
                                 "invoices WHERE number = 'ERP-1'"))
        # when
        upgrade(database_url)
        # then
        with engine.connect() as conn:
            lines = conn.execute(sa.text(
                "SELECT o.number, l.sku, l.revenue_type, l.ssp_minor, l.service_start "
                "FROM order_lines l JOIN orders o ON o.id = l.order_id "
                "ORDER BY o.id, l.line_no")).all()
            billed = conn.execute(sa.text(
                "SELECT i.number, il.line_no, il.sku, ol.sku, o.number FROM invoice_lines il "
                "JOIN invoices i ON i.id = il.invoice_id "
                "LEFT JOIN order_lines ol ON ol.id = il.order_line_id "
                "LEFT JOIN orders o ON o.id = ol.order_id ORDER BY i.id, il.line_no")).all()
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        assert [tuple(r) for r in lines] == [
            (numbers["usd"], "WID", "goods", 1000, None),
            (numbers["usd"], "GAD", "goods", 2500, None),
            (numbers["usd"], "INST", "service", 30000, None),
            (numbers["eur"], "WID", "goods", 900, None)]  # priced in USD: the line's price
        usd, eur = numbers["usd"], numbers["eur"]
        assert [tuple(r) for r in billed] == [
            ("INV-2026-000001", 1, "WID", "WID", usd),
            ("INV-2026-000002", 1, "WID", "WID", usd),
            ("INV-2026-000002", 2, "GAD", "GAD", usd),
            ("INV-2026-000002", 3, "INST", "INST", usd),
            ("INV-2026-000003", 1, "WID", "WID", eur),
            ("ERP-1", 1, None, None, None)]
        # and revenue reads them: the service without a period counts when delivered
        db = Database(database_url)
        try:
            with db.read_session() as s:
                data = revenue.to_json(revenue.report(s, first=date(2026, 5, 1),
                                                      last=date(2026, 5, 1),
                                                      today=date(2026, 5, 4)))
        finally:
            db.dispose()
        may = data["currencies"]["USD"]["months"][0]
        assert may["recognized"] == {"total": "400.00", "by_type": {
            "goods": "100.00", "service": "300.00", "subscription": "0.00"}}
        assert (may["deferred"], may["unbilled"]) == ("0.00", "0.00")
        # and back down
        downgrade(database_url, previous)
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = inspector.get_table_names()
            columns = {c["name"] for c in inspector.get_columns("order_lines")}
            invoice_columns = {c["name"] for c in inspector.get_columns("invoice_lines")}
            count = conn.execute(sa.text("SELECT count(*) FROM invoice_lines")).scalar()
        assert not {"revenue_entries", "revenue_closes", "subscription_billings"} & set(tables)
        assert not {"revenue_type", "ssp_minor", "billing"} & columns
        assert "order_line_id" not in invoice_columns and count == 6
    finally:
        engine.dispose()
