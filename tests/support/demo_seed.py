"""The demo company for sandbox tests: `bot.seed.seed_demo` when it exists, else a small
stand-in with the same interface and the same demo users (tests only).

Why a stand-in: `bot.seed` is written in parallel with the sandbox. The sandbox tests only
need what every demo has — the demo users with their roles and time zones, a few customers,
orders and overdue invoices, and one order waiting for credit approval — so they are written
against `seed_demo(db, today)` and `DEMO_USERS` and use the real seed as soon as it is merged.
Delete `_stand_in_seed` then.
"""

from __future__ import annotations

import sys
import types
from datetime import date, timedelta

from bot.db import Database
from tests.support import factories as f

ADMIN = "U0ADMIN01"
SALES = "U0SALES01"
SALES_2 = "U0SALES02"
CREDIT_APPROVER = "U0CREDIT1"
DISCOUNT_APPROVER = "U0DISC001"
COLLECTOR = "U0COLL001"
COLLECTOR_2 = "U0COLL002"

_USERS = [  # (id, name, role, time zone)
    (ADMIN, "Ada Admin", "admin", "Europe/London"),
    (SALES, "Sam Sales", "sales", "America/New_York"),
    (SALES_2, "Sue Sales", "sales", "America/Chicago"),
    (CREDIT_APPROVER, "Carl Credit", "credit_approver", "Europe/Berlin"),
    (DISCOUNT_APPROVER, "Dana Discount", "discount_approver", "Europe/Paris"),
    (COLLECTOR, "Cole Collector", "collector", "America/Los_Angeles"),
    (COLLECTOR_2, "Cleo Collector", "collector", "Asia/Singapore"),
]


def _stand_in_seed(db: Database, today: date) -> dict:
    with db.transaction() as s:
        for user_id, name, role, tz in _USERS:
            f.user(s, user_id, role, name=name, timezone=tz)
        f.customer(s, "C-GLOBEX", "Globex Corporation", collector=COLLECTOR, sales_rep=SALES)
        f.customer(s, "C-INITECH", "Initech", collector=COLLECTOR, sales_rep=SALES)
        f.customer(s, "C-UMBRELLA", "Umbrella Retail", collector=COLLECTOR_2, sales_rep=SALES_2,
                   reviewed=False)
        f.product(s, "WID-1", price="100.00", name="Widget")
        f.product(s, "GAD-2", price="250.00", name="Gadget")
        f.order(s, "C-GLOBEX", rep=SALES, lines=[("WID-1", 3), ("GAD-2", 1)])
        f.order(s, "C-UMBRELLA", rep=SALES_2, lines=[("GAD-2", 4)])  # new customer: approval
        f.invoice(s, "INV-DEMO-1", "C-GLOBEX", total="1200.00", due=today - timedelta(days=45))
        f.invoice(s, "INV-DEMO-2", "C-INITECH", total="800.00", due=today - timedelta(days=5))
    return {"users": len(_USERS), "customers": 3, "orders": 2, "invoices": 2}


def seed_module() -> types.ModuleType:
    """`bot.seed` if it exists, else a module with the stand-in under the same names."""
    try:
        import bot.seed as real
        return real
    except ImportError:
        module = types.ModuleType("bot.seed")
        module.seed_demo = _stand_in_seed
        module.DEMO_USERS = [u[0] for u in _USERS]
        module.SeedError = type("SeedError", (Exception,), {})
        return module


def install() -> types.ModuleType:
    """Make `import bot.seed` work (the stand-in only when the real one is missing)."""
    module = seed_module()
    sys.modules.setdefault("bot.seed", module)
    return module


def seed(db: Database, today: date) -> dict:
    return seed_module().seed_demo(db, today=today)
