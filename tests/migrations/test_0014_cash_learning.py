"""Migration 0014_cash_learning: suggestions written as JSON into `payments.match_details` by
the code before it move into `payment_suggestions` (the API answers and the card show the same),
learned rules get their table, and it downgrades putting the suggestions back. The revision
before it is read from Alembic (the lead chains the branches' migrations when merging)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import select

from bot.db import Database, normalize_url
from bot.migrate import alembic_config, downgrade, upgrade
from models import Payment, PaymentSuggestion
from tests.support import factories as f
from workflows.cash_application import (
    PaymentIn,
    apply_suggestion,
    record_payment,
    review_card_context,
    suggestions_of,
)

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
ISSUED = date(2026, 11, 1)

REVISION = "0014_cash_learning"
# A payment waiting for review as the code before 0014 stored it (suggestions as shown,
# options as applied, the card's outbox id), for invoices 1 and 2 of customer 1.
OLD_DETAILS = {
    "engine": "cashapp-1", "outcome": "review", "write_off_minor": 0, "card_outbox_id": None,
    "suggestions": [
        {"rank": 1, "customer": "C-GLOBEX", "customer_name": "Globex Corporation",
         "confidence": "0.49", "fit": "exact",
         "invoices": [{"invoice": "INV-2026-000001", "amount": "250.00"}],
         "write_off": "0.00", "unapplied_amount": "0.00",
         "reasons": ["amount equals the open balance"], "concerns": ["other plans"]},
        {"rank": 2, "customer": "C-GLOBEX", "customer_name": "Globex Corporation",
         "confidence": "0.48", "fit": "fee",
         "invoices": [{"invoice": "INV-2026-000002", "amount": "249.00"}],
         "write_off": "1.00", "unapplied_amount": "0.00",
         "reasons": ["within a bank fee"], "concerns": []}],
    "options": [
        {"rank": 1, "customer_id": None, "kind": "amount", "fit": "exact",
         "lines": [{"invoice_id": None, "number": "INV-2026-000001", "allocate_minor": 25_000,
                    "write_offs": [], "deduction_minor": 0}],
         "signals": [{"signal": "amount", "weight": 3.0,
                      "detail": "amount equals the open balance"}]},
        {"rank": 2, "customer_id": None, "kind": "amount", "fit": "fee",
         "lines": [{"invoice_id": None, "number": "INV-2026-000002", "allocate_minor": 24_900,
                    "write_offs": [[100, "bank_fee"]], "deduction_minor": 0}],
         "signals": [{"signal": "amount_fee", "weight": 2.7,
                      "detail": "within a bank fee"}]}],
}


def _before(database_url: str) -> str:
    """The revision this migration follows, as Alembic chains them."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    return script.get_revision(REVISION).down_revision


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)


def test_old_suggestions_move_into_their_table_and_answer_the_same(database_url) -> None:
    # given books at 0014 with customers and invoices, then the schema before it
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.customer(s, "C-GLOBEX", "Globex Corporation")
            ids = [f.invoice(s, f"INV-2026-00000{n}", total=total, issued=ISSUED,
                             due=ISSUED + timedelta(days=30)).id
                   for n, total in ((1, "250.00"), (2, "250.00"))]
            customer_id = s.exec(sa.text("SELECT id FROM customers")).one()[0]
    finally:
        db.dispose()
    downgrade(database_url, _before(database_url))
    engine = _engine(database_url)
    try:
        # and a payment with suggestions in its JSON, as the code before 0014 wrote it
        details = {**OLD_DETAILS, "options": [
            {**o, "customer_id": customer_id,
             "lines": [{**o["lines"][0], "invoice_id": ids[i]}]}
            for i, o in enumerate(OLD_DETAILS["options"])]}
        with engine.begin() as conn:
            card = conn.execute(sa.text(
                "INSERT INTO outbox (transport, method, payload, dedupe_key, status, attempts, "
                "next_attempt_at, result, created_at) VALUES ('slack', 'chat.postMessage', "
                "'{}', 'cashapp-review:1', 'pending', 0, :t, '{}', :t) RETURNING id"),
                {"t": RECEIVED}).scalar()
            details["card_outbox_id"] = card
            payments = sa.table("payments", *[sa.column(c) for c in (
                "id", "amount_minor", "currency", "received_at", "value_date", "payer_name",
                "source", "status", "unapplied_minor", "confidence_bp", "created_at")],
                sa.column("match_details", sa.JSON))
            conn.execute(sa.insert(payments).values(
                id=1, amount_minor=25_000, currency="USD", received_at=RECEIVED,
                value_date=RECEIVED.date(), payer_name="GLOBEX", source="api",
                status="needs_review", unapplied_minor=25_000, confidence_bp=4900,
                created_at=RECEIVED, match_details=details))
        # when
        upgrade(database_url)
    finally:
        engine.dispose()
    # then the suggestions are rows, answered as before, and gone from the JSON
    db = Database(database_url)
    try:
        with db.session() as s:
            payment = s.get(Payment, 1)
            rows = s.exec(select(PaymentSuggestion).order_by(PaymentSuggestion.rank)).all()
            assert [(r.payment_id, r.round, r.rank, r.confidence_bp, r.customer_id,
                     r.write_off_minor) for r in rows] == [
                (1, 1, 1, 4900, customer_id, 0), (1, 1, 2, 4800, customer_id, 100)]
            assert suggestions_of(s, payment) == OLD_DETAILS["suggestions"]
            assert set(payment.match_details) == {"engine", "outcome", "write_off_minor"}
            assert review_card_context(s, payment)["suggestions"] == OLD_DETAILS["suggestions"]
            # and Apply still works on them, updating the card the old JSON pointed at
            f.user(s, "UCOLL001", "collector")
            apply_suggestion(s, payment_id=1, rank=1, actor="UCOLL001", now=NOW)
            s.commit()
            assert (payment.status, payment.unapplied_minor) == ("applied", 0)
            update = s.execute(sa.text("SELECT target_outbox_id FROM outbox WHERE method = "
                                       "'chat.update'")).scalar()
            assert update == card
    finally:
        db.dispose()


def test_downgrade_puts_the_suggestions_back_and_up_again_keeps_them(database_url) -> None:
    # given a payment waiting with two suggestions and one applied by a collector
    db = Database(database_url)
    try:
        with db.transaction() as s:
            f.user(s, "UCOLL001", "collector")
            f.customer(s, "C-GLOBEX", "Globex Corporation")
            for n in (1, 2, 3, 4):
                f.invoice(s, f"INV-2026-00000{n}", total="250.00" if n < 3 else "99.00",
                          issued=ISSUED, due=ISSUED + timedelta(days=30))
        with db.transaction() as s:
            waiting, _ = record_payment(s, PaymentIn(amount="250.00", currency="USD",
                                                     received_at=RECEIVED, payer_name="GLOBEX"),
                                        actor="test")
            decided, _ = record_payment(s, PaymentIn(amount="99.00", currency="USD",
                                                     received_at=RECEIVED, payer_name="GLOBEX"),
                                        actor="test")
        with db.transaction() as s:
            apply_suggestion(s, payment_id=decided.id, rank=1, actor="UCOLL001", now=NOW)
        with db.read_session() as s:
            shown = suggestions_of(s, s.get(Payment, waiting.id))
            assert len(shown) == 2
    finally:
        db.dispose()
    # when
    downgrade(database_url, _before(database_url))
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            assert "payment_suggestions" not in sa.inspect(conn).get_table_names()
            assert "cash_rules" not in sa.inspect(conn).get_table_names()
            old = {pid: details for pid, details in conn.execute(
                sa.text("SELECT id, match_details FROM payments")).all()}
    finally:
        engine.dispose()
    old = {pid: (d if isinstance(d, dict) else __import__("json").loads(d))
           for pid, d in old.items()}
    # then the JSON is what the code before 0014 read
    assert old[waiting.id]["suggestions"] == shown
    assert [o["rank"] for o in old[waiting.id]["options"]] == [1, 2]
    assert old[waiting.id]["card_outbox_id"] is not None
    assert old[decided.id]["suggestions"] == [] and old[decided.id]["options"]
    # and up again: the same suggestions
    upgrade(database_url)
    db = Database(database_url)
    try:
        with db.read_session() as s:
            assert suggestions_of(s, s.get(Payment, waiting.id)) == shown
            assert s.exec(select(PaymentSuggestion).where(
                PaymentSuggestion.payment_id == decided.id)).all()
    finally:
        db.dispose()
