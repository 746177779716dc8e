"""Migration 0030_pay_token_hash on a populated database: each "Pay now" link's token is
replaced by its SHA-256 in place (the column becomes `token_hash`), so no row holds a token and
the URLs already e-mailed keep opening their link; `legacy_token_hash` is added, empty. Going
down renames the column back and drops the new one.

The revision before this one is read from Alembic, never written here."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from bot.migrate import downgrade, upgrade
from tests.support import factories as f
from tests.support.migrations import plain_engine, previous_revision

REVISION = "0030_pay_token_hash"
TOKENS = {1: "pre-0030-token-one_0123456789abcdef", 2: "pre-0030-token-two_fedcba9876543210"}


def _columns(conn: sa.Connection) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns("payment_links")}


def test_tokens_are_hashed_in_place_and_old_links_still_open(db, database_url) -> None:
    with db.transaction() as s:
        f.customer(s)
        invoices = [f.invoice(s, f"INV-T-{n}").id for n in TOKENS]
    before = previous_revision(database_url, REVISION)
    downgrade(database_url, before)  # (the database is made at the head)
    with plain_engine(database_url) as engine:
        # given two links stored with their token in clear
        with engine.begin() as conn:
            assert "token_hash" not in _columns(conn)
            for (link_id, token), invoice_id in zip(TOKENS.items(), invoices, strict=True):
                conn.execute(sa.text(
                    "INSERT INTO payment_links (id, invoice_id, token, generation, "
                    "session_id, created_at, updated_at) VALUES (:id, :inv, :token, 2, "
                    ":sid, '2026-12-01 09:00:00', '2026-12-01 09:00:00')"),
                    {"id": link_id, "inv": invoice_id, "token": token, "sid": f"cs_{link_id}"})
        # when
        upgrade(database_url, REVISION)
        # then each row holds the hash of its token, nothing else changed
        with engine.begin() as conn:
            assert "token" not in _columns(conn)
            rows = conn.execute(sa.text(
                "SELECT id, invoice_id, token_hash, legacy_token_hash, generation, session_id "
                "FROM payment_links ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [
                (n, invoices[n - 1], hashlib.sha256(TOKENS[n].encode()).hexdigest(), None, 2,
                 f"cs_{n}") for n in TOKENS]
            assert not any(t in str(tuple(r)) for r in rows for t in TOKENS.values())
        # and the hashes stay unique
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE payment_links SET token_hash = :h WHERE id = 2"),
                         {"h": rows[0].token_hash})
    upgrade(database_url)
    # and an old URL opens its link at the head
    from workflows import payment_links

    with db.read_session() as s:
        link, invoice, _ = payment_links.by_token(s, TOKENS[2])
        assert (link.id, invoice.number) == (2, "INV-T-2")
    # and going down renames the column back (the tokens cannot come back), and up again
    downgrade(database_url, before)
    with plain_engine(database_url) as engine, engine.connect() as conn:
        assert "token" in _columns(conn) and "legacy_token_hash" not in _columns(conn)
    upgrade(database_url)
    with plain_engine(database_url) as engine, engine.connect() as conn:
        assert {"token_hash", "legacy_token_hash"} <= _columns(conn)
