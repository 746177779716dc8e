"""cash application: suggestions in their own table; rules learned from people

* `payment_suggestions`: what the engine offered a person for a payment it was not sure
  about, one row per candidate. Until now they were JSON in `payments.match_details`
  ("suggestions" as shown, "options" as applied, written twice with the card's outbox id).
  Existing payments' suggestions are moved into the table (round 1, their ranks); a payment
  already decided keeps what it was offered (its confidence is not known any more: NULL). The
  keys "suggestions", "options" and "card_outbox_id" leave `match_details` (the card is found
  by its dedupe key `cashapp-review:<payment id>`).
* `cash_rules`: payer aliases and remittance patterns taught by people (`workflows.cash_rules`).

Downgrading puts the suggestions back into `match_details` (and the card's outbox id) and
drops both tables; the learned rules are lost (they are in the audit log).

Revision ID: 0014_cash_learning
Revises: 0013_integrations
Create Date: 2026-12-08
"""
from collections.abc import Iterator, Sequence
from decimal import Decimal

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base  # noqa: F401 - custom column types (UTCDateTime)

revision: str = "0014_cash_learning"
down_revision: str | None = "0013_integrations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 1000

# Frozen here (not read from the models) so the migration never changes meaning.
payments = sa.table("payments", sa.column("id", sa.Integer),
                    sa.column("amount_minor", sa.BigInteger), sa.column("status", sa.String),
                    sa.column("currency", sa.String), sa.column("match_details", JSON))
suggestions = sa.table(
    "payment_suggestions", sa.column("id", sa.Integer), sa.column("payment_id", sa.Integer),
    sa.column("round", sa.Integer), sa.column("rank", sa.Integer),
    sa.column("customer_id", sa.Integer), sa.column("kind", sa.String),
    sa.column("fit", sa.String), sa.column("confidence_bp", sa.Integer),
    sa.column("write_off_minor", sa.BigInteger), sa.column("deduction_minor", sa.BigInteger),
    sa.column("unapplied_minor", sa.BigInteger), sa.column("lines", JSON),
    sa.column("reasons", JSON), sa.column("concerns", JSON), sa.column("signals", JSON),
    sa.column("created_at", models.base.UTCDateTime(timezone=True)))
outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("dedupe_key", sa.String))
customers = sa.table("customers", sa.column("id", sa.Integer),
                     sa.column("external_id", sa.String), sa.column("name", sa.String))
MOVED = ("suggestions", "options", "card_outbox_id")


def upgrade() -> None:
    op.create_table(
        "payment_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("fit", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("confidence_bp", sa.Integer(), nullable=True),
        sa.Column("write_off_minor", BIG, nullable=False),
        sa.Column("deduction_minor", BIG, nullable=False),
        sa.Column("unapplied_minor", BIG, nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("concerns", JSON, nullable=False),
        sa.Column("signals", JSON, nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payment_id", "round", "rank", name="uq_payment_suggestions_rank"),
    )
    with op.batch_alter_table("payment_suggestions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_suggestions_payment_id"), ["payment_id"],
                              unique=False)
    op.create_table(
        "cash_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("shown", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("seen_on", sa.Date(), nullable=False),
        sa.Column("taught_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("taught_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("removed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("removed_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_reason", sqlmodel.sql.sqltypes.AutoString(length=300),
                  nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cash_rules", schema=None) as batch_op:
        batch_op.create_index("ix_cash_rules_customer", ["customer_id"], unique=False)
        batch_op.create_index("uq_cash_rules_active", ["kind", "value", "customer_id"],
                              unique=True, sqlite_where=sa.text("active"),
                              postgresql_where=sa.text("active"))
    _move_suggestions_into_the_table()


def _payments_with(bind: sa.Connection) -> Iterator[tuple]:
    """Payments whose match_details still hold suggestions (read in id order, in batches, so
    memory stays flat on a large table)."""
    last = 0
    while True:
        rows = bind.execute(sa.select(payments.c.id, payments.c.amount_minor,
                                      payments.c.currency, payments.c.match_details)
                            .where(payments.c.id > last).order_by(payments.c.id)
                            .limit(BATCH)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield from (r for r in rows if isinstance(r[3], dict)
                    and any(k in r[3] for k in MOVED))


def _shown_minor(text: object, currency: str) -> int | None:
    """A suggestion's amount as shown ("1.00") in minor units, or None if not readable."""
    from models import money

    try:
        return money.to_minor(str(text), currency)
    except (money.MoneyError, ValueError, TypeError):
        return None


def _move_suggestions_into_the_table() -> None:
    bind = op.get_bind()
    now = sa.func.now() if bind.dialect.name == "postgresql" else sa.func.current_timestamp()
    for payment_id, amount, currency, details in _payments_with(bind):
        shown = {s.get("rank"): s for s in details.get("suggestions") or []}
        rows = []
        for option in details.get("options") or []:
            rank = option.get("rank")
            lines = option.get("lines") or []
            signals = option.get("signals") or []
            seen = shown.get(rank) or {}
            confidence = seen.get("confidence")
            allocated = sum(int(line.get("allocate_minor") or 0) for line in lines)
            rows.append({
                "payment_id": payment_id, "round": 1, "rank": rank,
                "customer_id": option.get("customer_id"), "kind": option.get("kind") or "",
                "fit": option.get("fit") or "",
                "confidence_bp": (int(Decimal(str(confidence)) * 10000)
                                  if confidence not in (None, "") else None),
                "write_off_minor": sum(int(a) for line in lines
                                       for a, _ in line.get("write_offs") or []),
                "deduction_minor": sum(int(line.get("deduction_minor") or 0)
                                       for line in lines),
                "unapplied_minor": (shown_left if (shown_left := _shown_minor(
                    seen.get("unapplied_amount"), currency)) is not None
                    else max(amount - allocated, 0)),
                "lines": lines,
                "reasons": seen.get("reasons") or [s.get("detail") for s in signals
                                                   if s.get("detail")
                                                   and (s.get("weight") or 0) > 0],
                "concerns": seen.get("concerns") or [s.get("detail") for s in signals
                                                     if s.get("detail")
                                                     and (s.get("weight") or 0) < 0],
                "signals": signals})
        for row in rows:
            bind.execute(sa.insert(suggestions).values(**row, created_at=now))
        kept = {k: v for k, v in details.items() if k not in MOVED}
        bind.execute(sa.update(payments).where(payments.c.id == payment_id)
                     .values(match_details=kept))


def _amount_text(minor: int, currency: str) -> str:
    from models import money  # display only: "12.34" as the old JSON had it

    return money.to_str(minor, currency)


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(suggestions).order_by(suggestions.c.payment_id,
                                                        suggestions.c.round,
                                                        suggestions.c.rank)).mappings().all()
    by_payment: dict[int, list] = {}
    for row in rows:
        by_payment.setdefault(row["payment_id"], []).append(row)
    names = {cid: (ext, name) for cid, ext, name in bind.execute(
        sa.select(customers.c.id, customers.c.external_id, customers.c.name)).all()}
    for payment_id, found in by_payment.items():
        last = max(r["round"] for r in found)
        found = [r for r in found if r["round"] == last]
        pay = bind.execute(sa.select(payments.c.currency, payments.c.match_details,
                                     payments.c.status)
                           .where(payments.c.id == payment_id)).one()
        currency, details, status = pay
        details = dict(details or {})
        options = [{"rank": r["rank"], "customer_id": r["customer_id"], "kind": r["kind"],
                    "fit": r["fit"], "lines": r["lines"], "signals": r["signals"]}
                   for r in found]
        shown = [] if status != "needs_review" else [{
            "rank": r["rank"],
            "customer": names.get(r["customer_id"], (None, None))[0],
            "customer_name": names.get(r["customer_id"], (None, None))[1],
            "confidence": (f"{r['confidence_bp'] / 10000:.2f}"
                           if r["confidence_bp"] is not None else None),
            "fit": r["fit"],
            "invoices": [{"invoice": line["number"],
                          "amount": _amount_text(line["allocate_minor"], currency)}
                         for line in r["lines"]],
            "write_off": _amount_text(r["write_off_minor"], currency),
            "unapplied_amount": _amount_text(r["unapplied_minor"], currency),
            "reasons": r["reasons"], "concerns": r["concerns"]} for r in found]
        details.update(options=options, suggestions=shown)
        card = bind.execute(sa.select(outbox.c.id).where(
            outbox.c.dedupe_key == f"cashapp-review:{payment_id}")).scalar()
        if card is not None:
            details["card_outbox_id"] = card
        bind.execute(sa.update(payments).where(payments.c.id == payment_id)
                     .values(match_details=details))
    with op.batch_alter_table("cash_rules", schema=None) as batch_op:
        batch_op.drop_index("uq_cash_rules_active", sqlite_where=sa.text("active"),
                            postgresql_where=sa.text("active"))
        batch_op.drop_index("ix_cash_rules_customer")
    op.drop_table("cash_rules")
    with op.batch_alter_table("payment_suggestions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_suggestions_payment_id"))
    op.drop_table("payment_suggestions")
