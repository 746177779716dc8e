"""Links sent to customers (issue 19): a row per link, so a link can expire, be revoked from
Slack, and be used once where it decides something (a backorder choice).

The URL carries `<link id>.<HMAC>` (`bot.customer_links`): the signature proves we made it,
this row says what it may do, for whom, until when, and whether it still may. No secret is
stored here, so a copy of the database cannot mint links.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import ts_field


class LinkScope(StrEnum):
    PORTAL = "portal"  # the customer's self-serve page (read-only but for its two forms)
    BACKORDER = "backorder"  # one order's backorder choice, used once


class BackorderChoice(StrEnum):
    SHIP_NOW = "ship_now"  # ship what is reserved now, the rest when it comes
    WAIT = "wait"  # ship everything together when the rest comes
    CANCEL_SHORT = "cancel_short"  # cancel the short quantities; ship what is reserved


class CustomerLink(SQLModel, table=True):
    __tablename__ = "customer_links"
    # one backorder link per order (portal links have no order: NULLs never clash)
    __table_args__ = (sa.UniqueConstraint("order_id", "scope", name="uq_customer_links_order"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    scope: str = Field(max_length=16)  # LinkScope
    order_id: int | None = Field(default=None, foreign_key="orders.id")
    created_by: str = Field(max_length=64)  # Slack user id, or "system"
    created_at: datetime = ts_field(nullable=False)
    expires_at: datetime = ts_field(nullable=False)
    revoked_at: datetime | None = ts_field()
    revoked_by: str | None = Field(default=None, max_length=64)
    # a backorder link, once used: what the customer chose and when (set once, conditionally)
    choice: str | None = Field(default=None, max_length=16)
    used_at: datetime | None = ts_field()
    last_seen_at: datetime | None = ts_field()
