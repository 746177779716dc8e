"""`GET /reports/aging?as_of=` and `/reports/kpis?as_of=` for a past day use that day's AR."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import select

from models import Allocation
from tests.support import factories as f
from workflows.cash_application import PaymentIn, record_payment


def test_reports_as_of_a_past_day(server, api) -> None:  # noqa: ANN001
    # given: 1000.00 issued 03-01 (due 03-31), paid 04-20; 400.00 issued 04-10 (due 05-10)
    paid_on = datetime(2026, 4, 20, 10, tzinfo=UTC)
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000501", total="1000.00", issued=date(2026, 3, 1),
                  due=date(2026, 3, 31))
        f.invoice(s, "INV-2026-000502", total="400.00", issued=date(2026, 4, 10),
                  due=date(2026, 5, 10))
        payment, _ = record_payment(s, PaymentIn(amount="1000.00", currency="USD",
                                                 received_at=paid_on),
                                    actor="test", apply_to=["INV-2026-000501"])
        [allocation] = s.exec(select(Allocation).where(Allocation.payment_id == payment.id))
        table = Allocation.__table__
        s.execute(sa.update(table).where(table.c.id == allocation.id).values(
            created_at=paid_on))
    # when
    aging = api.get("/reports/aging?as_of=2026-04-15").json()
    csv = api.get("/reports/aging?as_of=2026-04-15&format=csv").text
    kpis = api.get("/reports/kpis?as_of=2026-04-15").json()
    after = api.get("/reports/kpis?as_of=2026-04-30").json()
    # then: on 04-15 the first invoice was 15 days late and open, the second not yet due
    usd = aging["currencies"]["USD"]
    assert usd["buckets"] == {"current": "400.00", "1-30": "1000.00", "31-60": "0.00",
                              "61-90": "0.00", "90+": "0.00"}
    assert usd["invoices"]["1-30"] == 1 and usd["overdue"] == "1000.00"
    assert csv.splitlines()[1] == "USD,400.00,1000.00,0.00,0.00,0.00,1400.00"
    # AR 1400 of 1400 sales in the window: DSO 90 days, best possible 400/1400 x 90
    assert (kpis["ar"], kpis["dso"], kpis["best_possible_dso"]) == ("1400.00", "90.00",
                                                                     "25.71")
    # on 04-30 the first one is paid: AR 400
    assert (after["ar"], after["dso"]) == ("400.00", "25.71")
