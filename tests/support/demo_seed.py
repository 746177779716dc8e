"""The demo company for sandbox tests: `bot.seed.seed_demo` with its demo user ids."""

from __future__ import annotations

from datetime import date

from bot.db import Database
from bot.seed import ADMIN, COLLECTOR_EU, COLLECTOR_US, CREDIT, DISCOUNT, SALES_1, SALES_2
from bot.seed import seed_demo as _seed_demo

SALES = SALES_1
CREDIT_APPROVER = CREDIT
DISCOUNT_APPROVER = DISCOUNT
COLLECTOR = COLLECTOR_US
COLLECTOR_2 = COLLECTOR_EU
GLOBEX = "C-1001"  # "Globex Corporation" in bot.seed

__all__ = ["ADMIN", "COLLECTOR", "COLLECTOR_2", "CREDIT_APPROVER", "DISCOUNT_APPROVER",
           "GLOBEX", "SALES", "SALES_2", "install", "seed"]


def install() -> None:
    """Kept for the demo subprocess test, which imports it before `o2c demo` runs."""


def seed(db: Database, today: date) -> dict:
    return _seed_demo(db, today=today)
