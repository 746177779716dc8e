"""A customer's credit exposure moved: its credit-approval cards still waiting show it.

Exposure (SPEC §3: open invoice balances + approved orders not yet invoiced) moves whenever an
invoice is issued, a payment is applied, unapplied or refunded, a credit note or write-off is
posted, or an order is approved, shipped or cancelled (and the card's share moves with a new
credit limit). The workflows that do so call
`moved(session, customer_id)` — a mark in the session, nothing read or written — and when the
transaction commits, `refresh(session)` (the `before_commit` listener `bot.db.Database`
registers on its sessions) updates each waiting credit card of the marked customers in place,
through the outbox in the same transaction (`workflows.approvals.refresh_waiting_cards`): once
per transaction however many invoices it touched, only when the exposure or the limit shown
on the card differs from what the card says, and not at all when nothing waits.

The marks belong to the session's current transaction (a rolled-back transaction's marks are
forgotten), so nothing is kept between transactions or in the process.
"""

from __future__ import annotations

from sqlmodel import Session

_KEY = "exposure.moved"


def moved(session: Session, customer_id: int | None) -> None:
    """The exposure of `customer_id` may have changed in this transaction."""
    if customer_id is None:
        return
    transaction = session.get_transaction()
    marked = session.info.get(_KEY)
    if marked is None or marked[0] is not transaction:
        marked = (transaction, set())
        session.info[_KEY] = marked
    marked[1].add(customer_id)


def pending(session: Session) -> set[int]:
    """The customers marked in the current transaction (and forget them)."""
    marked = session.info.pop(_KEY, None)
    if marked is None or marked[0] is not session.get_transaction():
        return set()
    return marked[1]


def refresh(session: Session) -> None:
    """At commit: refresh the waiting cards of the customers marked (see the module doc).
    SQLAlchemy also calls `before_commit` when a savepoint is released: the marks wait for
    the transaction itself."""
    if session.in_nested_transaction():
        return
    customers = pending(session)
    if not customers:
        return
    from workflows.approvals import refresh_waiting_cards  # approvals imports this module

    refresh_waiting_cards(session, customers)
