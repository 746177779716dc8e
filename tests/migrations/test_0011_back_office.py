"""Migration 0011_back_office on a populated database: orders with approvals, invoices,
payments with a deduction, a credit note and an invoice flagged as disputed before disputes
existed all survive the upgrade; the flagged invoice gets an open dispute for its balance (so
dunning keeps skipping it and the invariants hold); the back office then works on the upgraded
data; and it goes down and up again."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import select

from bot.clock import Clock
from bot.db import Database, normalize_url
from bot.migrate import alembic_config, downgrade, upgrade
from models import Approval, CreditNote, Deduction, Dispute, Invoice
from tests.support import factories as f
from workflows import approvals, credit_notes, invariants
from workflows.cash_application import PaymentIn, record_payment
from workflows.invoicing import issue_credit_note

# the revision before this one, as Alembic chains them (the lead orders the branches' ones)
BEFORE = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(
    "0011_back_office").down_revision


def test_upgrade_keeps_data_and_holds_flagged_invoices_in_dispute(database_url) -> None:
    # given a populated book
    now = Clock().now()
    today = now.date()
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "USALES01", "sales")
            f.user(s, "UCOLL001", "collector")
            f.user(s, "UCREDIT1", "credit_approver")
            f.customer(s, "C-NEW", "Newco", reviewed=False, sales_rep="USALES01")
            f.customer(s, sales_rep="USALES01", collector="UCOLL001")
            f.product(s, "WID-1")
            f.order(s, "C-NEW")  # a pending credit approval
            for n in (1, 2, 3):
                f.invoice(s, f"INV-2026-00000{n}", total="1000.00",
                          issued=today - timedelta(days=40), due=today - timedelta(days=10))
            record_payment(s, PaymentIn(amount="900.00", currency="USD", received_at=now,
                                        reference="INV-2026-000001"), actor="test")
            issue_credit_note(s, invoice_number="INV-2026-000002", amount="100.00",
                              reason="damaged", actor="UCOLL001", now=now)
    finally:
        db.dispose()
    downgrade(database_url, BEFORE)
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:  # flagged by hand (an import, a script) before 0011
            conn.execute(sa.text("UPDATE invoices SET disputed = true "
                                 "WHERE number IN ('INV-2026-000003', 'INV-2026-000001')"))
            conn.execute(sa.text("UPDATE invoices SET balance_minor = 0, paid_at = "
                                 "CURRENT_TIMESTAMP WHERE number = 'INV-2026-000001'"))
            conn.execute(sa.text("INSERT INTO allocations (payment_id, invoice_id, "
                                 "amount_minor, method, created_by, created_at, value_date, "
                                 "effective_date) SELECT 1, id, 10000, 'manual', 'test', "
                                 "CURRENT_TIMESTAMP, :d, :d FROM invoices "
                                 "WHERE number = 'INV-2026-000001'"), {"d": today})
            conn.execute(sa.text("UPDATE payments SET amount_minor = 100000"))
        # when
        upgrade(database_url)
        # then nothing was lost, and the flagged open invoice is held by a real dispute
        if sqlite:
            with engine.connect() as conn:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        db = Database(database_url)
        try:
            with db.read_session() as s:
                three = s.exec(select(Invoice).where(Invoice.number == "INV-2026-000003")).one()
                one = s.exec(select(Invoice).where(Invoice.number == "INV-2026-000001")).one()
                [dispute] = s.exec(select(Dispute)).all()
                [approval] = s.exec(select(Approval)).all()
                [note] = s.exec(select(CreditNote)).all()
                [deduction] = s.exec(select(Deduction)).all()
                assert (three.disputed, three.disputed_minor) == (True, 100_000)
                assert (dispute.invoice_id, dispute.held_minor, dispute.opened_by) == (
                    three.id, 100_000, "migration")
                assert (one.disputed, one.disputed_minor) == (False, 0)
                assert (approval.amount_minor, approval.currency, approval.subject_id) == (
                    20_000, "USD", None)
                assert (note.customer_credit_minor, note.source, note.request_id) == (
                    0, "o2c", None)
                assert (deduction.status, deduction.bill_backs) == ("open", 0)
                assert invariants.validate_all(s) == []
            # and the back office works on the upgraded book
            with db.transaction() as s:
                request, _ = credit_notes.request_credit_note(s, credit_notes.CreditNoteIn(
                    invoice="INV-2026-000002", reason="price", amount="50.00"),
                    actor="UCOLL001", now=now)
                approvals.decide(session=s, approval_id=request.approval_id,
                                 user_id="UCREDIT1", approve=True,
                                 now=now + timedelta(minutes=1))
            with db.read_session() as s:
                assert len(s.exec(select(CreditNote)).all()) == 2
                assert invariants.validate_all(s) == []
        finally:
            db.dispose()
        # and down again (the back-office requests go with their tables), then up
        downgrade(database_url, BEFORE)
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert "disputes" not in inspector.get_table_names()
            assert "disputed_minor" not in {c["name"] for c in inspector.get_columns("invoices")}
            assert conn.execute(sa.text("SELECT count(*) FROM approvals")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM credit_notes")).scalar() == 2
            if sqlite:
                assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
    finally:
        engine.dispose()
        upgrade(database_url)
