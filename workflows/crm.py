"""The CRM connector's side of the O2C rules (HubSpot; plain data, no HTTP here).

A closed-won deal becomes an order (`import_deal`), credit- and discount-checked like any
other; the order is linked to its deal (`crm_deals`, once per deal). From then on every
outbound event about that order (`workflows.webhooks.emit` calls `on_event`) queues a deal
update in the outbox (transport "hubspot"); the worker computes the deal's properties at
delivery time from the order as it is then (`deal_status`), so updates delivered late or out
of order still leave the deal showing the latest state.
"""

from __future__ import annotations

from sqlalchemy import select as sa_select
from sqlmodel import Session

from models import CrmDeal, Invoice
from workflows import outbox

TRANSPORT = "hubspot"
_CACHE = "crm.linked"


def any_linked(session: Session) -> bool:
    """Whether any order came from a CRM deal (read once per transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is None or cached[0] is not transaction:
        table = CrmDeal.__table__
        found = session.execute(sa_select(table.c.id).where(
            table.c.order_id.is_not(None)).limit(1)).first() is not None
        cached = (transaction, found)
        session.info[_CACHE] = cached
    return cached[1]


def _order_numbers(session: Session, event_type: str, data: dict) -> set[str]:
    if event_type.startswith("order."):
        return {data["order"]["number"]}
    if event_type.startswith("invoice."):
        return {data["invoice"]["order"]} if data["invoice"].get("order") else set()
    if event_type.startswith("payment."):
        numbers = [a["invoice"] for a in data["payment"].get("allocations") or []]
        if not numbers:
            return set()
        from models import Order

        rows = session.execute(sa_select(Order.__table__.c.number)
                               .join(Invoice.__table__,
                                     Invoice.__table__.c.order_id == Order.__table__.c.id)
                               .where(Invoice.__table__.c.number.in_(numbers))).all()
        return {number for (number,) in rows}
    return set()


def on_event(session: Session, event_type: str, data: dict) -> None:
    """Queue an update of the deal of every order the event is about."""
    numbers = _order_numbers(session, event_type, data)
    if not numbers:
        return
    from models import Order

    deals = CrmDeal.__table__
    orders = Order.__table__
    rows = session.execute(sa_select(deals.c.provider, deals.c.deal_id, orders.c.id)
                           .join(orders, orders.c.id == deals.c.order_id)
                           .where(orders.c.number.in_(sorted(numbers)))).all()
    for provider, deal_id, order_id in rows:
        outbox._add(session, transport=provider, method="deal.update",
                    payload={"deal_id": deal_id, "order_id": order_id, "event": event_type})
