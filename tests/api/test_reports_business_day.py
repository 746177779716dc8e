"""The reports' default day (`as_of` left out) is today in the business time zone the books
keep — the policy's, which an admin may change (`workflows.policy.business_date`) — as the
revenue report, the jobs and the KPI snapshot take it, not the setting's."""

from __future__ import annotations

from datetime import UTC, date, datetime

import time_machine

from tests.support import factories as f
from workflows import policy


def test_the_default_as_of_is_today_in_the_policys_business_time_zone(server, api) -> None:
    # given: the business runs on Auckland time (the setting says UTC); 1000.00 issued on
    # 2026-12-08, due on receipt
    with server.db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="Pacific/Auckland", actor="test")
        f.customer(s)
        f.invoice(s, "INV-2026-000601", total="1000.00", issued=date(2026, 12, 8),
                  due=date(2026, 12, 8))
    # when the reports are asked at 2026-12-07 20:00 UTC, which is 2026-12-08 09:00 in
    # Auckland, without `as_of`
    with time_machine.travel(datetime(2026, 12, 7, 20, tzinfo=UTC), tick=False):
        aging = api.get("/reports/aging").json()
        kpis = api.get("/reports/kpis").json()
        customer = api.get("/customers/C-GLOBEX").json()
    # then: they are as of the business day, 2026-12-08, and count the invoice issued then
    assert aging["as_of"] == "2026-12-08"
    assert aging["currencies"]["USD"]["buckets"]["current"] == "1000.00"
    assert (kpis["as_of"], kpis["ar"]) == ("2026-12-08", "1000.00")
    assert (customer["balances"]["as_of"], customer["balances"]["open"]) == ("2026-12-08",
                                                                      "1000.00")
