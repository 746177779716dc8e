"""Document numbers from gap-tolerant counters, safe under concurrent transactions.

`UPDATE counters SET value = value + 1 ... RETURNING value` takes a row lock, so two
transactions never get the same number; the row is created on first use with
`INSERT ... ON CONFLICT DO NOTHING`, which both SQLite and PostgreSQL support.
"""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from models import Counter
from workflows.bulk import upsert_insert

ORDER_START = 1000
_DIGITS = re.compile(r"([0-9]+)")


def next_value(session: Session, name: str, start: int = 0) -> int:
    session.execute(upsert_insert(session, Counter.__table__).values(name=name, value=start)
                    .on_conflict_do_nothing())
    table = Counter.__table__
    result = session.execute(
        sa.update(table).where(table.c.name == name).values(value=table.c.value + 1)
        .returning(table.c.value)
    )
    return int(result.scalar_one())


def number_order(text: str) -> tuple:
    """A sort key putting document numbers (and texts naming them) in the order they were
    issued: runs of digits compare as numbers, so the counter going past 999,999 in a year
    ("INV-2026-1000000", SPEC's 6 digits being a minimum) sorts after "INV-2026-999999"."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text)))


def next_order_number(session: Session) -> str:
    return f"SO-{next_value(session, 'order', ORDER_START)}"


def next_invoice_number(session: Session, issue_date: date) -> str:
    return f"INV-{issue_date.year}-{next_value(session, f'invoice:{issue_date.year}'):06d}"


def next_credit_note_number(session: Session, issue_date: date) -> str:
    return f"CN-{issue_date.year}-{next_value(session, f'credit_note:{issue_date.year}'):06d}"


def next_free_invoice_number(session: Session, issue_date: date) -> str:
    """The next invoice number no invoice has yet: an ERP's own invoices may already use our
    format (`POST /invoices` keeps their numbers), and a clash would make the insert fail."""
    from models import Invoice

    table = Invoice.__table__
    while True:
        number = next_invoice_number(session, issue_date)
        taken = session.execute(sa.select(table.c.id).where(table.c.number == number)).first()
        if taken is None:
            return number
