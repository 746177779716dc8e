"""Migration 0003_i5: invoices issued before it get their number key, and it downgrades."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import normalize_url
from bot.migrate import downgrade, upgrade


def test_existing_invoices_get_their_number_key_and_the_migration_reverses(database_url) -> None:
    # given a database as it was before 0003_i5, with an invoice in it
    downgrade(database_url, "0003_i4")
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO customers (external_id, name, currency, credit_limit_minor, "
                "payment_terms, tax_rate_bp, credit_reviewed, credit_hold, created_at, "
                "updated_at) VALUES ('C1', 'Globex', 'USD', 0, 'NET30', 0, false, false, "
                "'2026-11-01', '2026-11-01')"))
            conn.execute(sa.text(
                "INSERT INTO invoices (number, customer_id, source, currency, issue_date, "
                "due_date, payment_terms, subtotal_minor, discount_minor, fees_minor, "
                "tax_minor, total_minor, balance_minor, disputed, created_at) "
                "SELECT 'INV-2026-000123', id, 'erp', 'USD', '2026-11-01', '2026-12-01', "
                "'NET30', 100, 0, 0, 0, 100, 100, false, '2026-11-01' FROM customers"))
        # when
        upgrade(database_url)
        # then
        with engine.connect() as conn:
            key = conn.execute(sa.text("SELECT number_key FROM invoices")).scalar()
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("invoices")}
        assert key == "226123"
        assert {"ix_invoices_number_key", "ix_invoices_open_amount"} <= indexes
        # and back down
        downgrade(database_url, "0003_i4")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("invoices")}
        assert "number_key" not in columns
    finally:
        engine.dispose()
        upgrade(database_url)
