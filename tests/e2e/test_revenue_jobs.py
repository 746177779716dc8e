"""The revenue jobs in their own processes (issue 15): `o2c run revenue-close` closes June on
the first working day of July, once, and its summary reaches the AR channel; two
`o2c run subscription-billing` processes at once invoice each period once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import time_machine
from sqlmodel import select

from bot import revenue_jobs
from bot.cli import main
from bot.scheduler import run_exclusive
from models import ClosedPeriod, Invoice, OutboxMessage
from models.revenue import RevenueClose, SubscriptionBilling
from tests.support import factories as f
from tests.support.processes import ROOT, o2c_env, o2c_run
from tests.support.timetravel import child_env
from workflows import orders, shipping, subscriptions
from workflows.inputs import OrderIn, OrderLineIn

JULY_1 = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)  # a Wednesday: July's first working day


def at(m: int, d: int, h: int = 9) -> datetime:
    return datetime(2026, m, d, h, tzinfo=UTC)


def june_business(db) -> None:
    """Hardware 2 x 450.00 less 10 % shipped 10 June (810.00); installation 300.00 from 1 June
    to 31 August delivered 1 June; 1 x CLOUD 1200.00 a year from 1 June billed monthly
    (100.00 invoiced 1 June)."""
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, credit_limit="1000000.00")
        f.product(s, "HW-1", price="450.00")
        f.product(s, "INST", price="300.00", revenue_type="service")
        f.product(s, "CLOUD", price="1200.00", revenue_type="subscription")
        numbers = [orders.create_order(s, OrderIn(
            customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
            lines=[OrderLineIn(**line)]), actor="USALES01", now=at(5, 25)).number
            for line in ({"sku": "HW-1", "quantity": 2, "discount_pct": "10"},
                         {"sku": "INST", "quantity": 1, "service_start": "2026-06-01",
                          "service_end": "2026-08-31"},
                         {"sku": "CLOUD", "quantity": 1, "service_start": "2026-06-01",
                          "service_end": "2027-05-31", "billing": "monthly"})]
        for number, day in ((numbers[0], at(6, 10)), (numbers[1], at(6, 1))):
            shipping.ship_order(s, order_number=number, carrier="UPS", tracking_number="1Z",
                                shipped_at=day, actor="USALES01", now=day)
        [due] = subscriptions.due_periods(s, at(6, 1).date())
        subscriptions.bill_period(s, order_line_id=due.order_line_id,
                                  period_start=due.period_start, as_of=at(6, 1).date(),
                                  now=at(6, 1, 6))


def close(env: dict, *args: str) -> dict:
    done = o2c_run(env, "run", "revenue-close", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_monthly_close_through_the_job(server, standin, database_url) -> None:
    """June recognises 810.00 of goods, 97.83 of installation (300.00 x 30/92) and 98.63 of
    subscription (1200.00 x 30/365): 1006.46. Deferred at the end of June: 202.17 of
    installation and 1.37 of subscription (100.00 invoiced less 98.63): 203.54. May had
    nothing. The close that does it is `o2c run revenue-close` in a process of its own; the
    runs around it (not due yet, due again, by hand) are the same job in this process."""
    # given
    june_business(server.db)
    env = o2c_env(database_url, standin.api_url)
    with time_machine.travel(JULY_1, tick=True) as traveller:
        # when: before 06:00 on the first working day, then after, then again, then by hand
        early = revenue_jobs.revenue_close(server.deps, None)
        traveller.move_to(datetime(2026, 7, 1, 7, 0, tzinfo=UTC))
        closed = close(env)
        again = revenue_jobs.revenue_close(server.deps, None)
        by_hand = run_exclusive(server.deps, "revenue-close", None, period="2026-06")
    # then: closed once, at the right time
    assert early == {"period": "2026-06", "closed": False,
                     "reason": "not due before 2026-07-01T06:00:00+00:00"}
    assert (closed["period"], closed["closed_now"], closed["recorded"]) == ("2026-06", True,
                                                                           True)
    assert closed["currencies"]["USD"] == {
        "recognized": "1006.46",
        "by_type": {"goods": "810.00", "service": "97.83", "subscription": "98.63"},
        "deferred": "203.54", "unbilled": "0.00",
        "previous": {"month": "2026-05", "recognized": "0.00", "deferred": "0.00",
                     "unbilled": "0.00"}}
    assert again["closed"] is False and "already closed" in again["reason"]
    assert (by_hand["closed_now"], by_hand["recorded"]) == (False, False)
    with server.db.read_session() as s:
        assert s.get(ClosedPeriod, "2026-06").source == "revenue"
        assert [c.period for c in s.exec(select(RevenueClose))] == ["2026-06"]
        posts = s.exec(select(OutboxMessage).where(
            OutboxMessage.dedupe_key == "revenue-close:2026-06")).all()
    assert len(posts) == 1
    # and the summary reaches the AR channel (the server's outbox worker delivers it)
    server.deps.notify_outbox()
    def closes() -> list:
        return [m for m in standin.api.messages("CAR000001") if "Revenue closed" in str(m)]
    standin.api.wait_for(lambda: closes() or None)
    [message] = closes()
    assert "Revenue closed for 2026-06: USD 1006.46 recognised, 203.54 deferred" in str(message)
    assert "+USD 203.54 vs 2026-05" in str(message)


def test_a_period_that_has_not_ended_is_refused(database_url, monkeypatch, capsys) -> None:
    # given `o2c run` (in this process) on the first of July
    monkeypatch.setenv("DATABASE_URL", database_url)
    with time_machine.travel(JULY_1, tick=True):
        # when
        done = main(["run", "revenue-close", "--period", "2026-07"])
        done_err = capsys.readouterr().err
        wrong = main(["run", "digest", "--period", "2026-06"])
        wrong_err = capsys.readouterr().err
    # then: one clear line each, exit 2
    assert done == 2 and "2026-07 has not ended yet" in done_err
    assert wrong == 2 and "--period is an option of revenue-close" in wrong_err


def test_two_billing_processes_invoice_each_period_once(db, database_url, standin) -> None:
    """Three subscriptions billed monthly since 1 April; on 1 July two `o2c run
    subscription-billing` start together: April to July of each, 12 invoices, once."""
    # given
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, credit_limit="1000000.00")
        f.product(s, "CLOUD", price="1200.00", revenue_type="subscription")
        for _ in range(3):
            orders.create_order(s, OrderIn(
                customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
                lines=[OrderLineIn(sku="CLOUD", quantity=1, service_start="2026-04-01",
                                     service_end="2027-03-31", billing="monthly")]),
                actor="USALES01", now=at(3, 20))
    env = o2c_env(database_url, standin.api_url)
    # when
    with time_machine.travel(datetime(2026, 7, 1, 10, tzinfo=UTC), tick=True):
        runs = [subprocess.Popen([sys.executable, "-m", "bot.cli", "run",
                                  "subscription-billing"], cwd=ROOT, env=child_env(env),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
    # then
    assert [run.returncode for run in runs] == [0, 0], outputs
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["invoiced"] for s in summaries) == 12
    assert {s["as_of"] for s in summaries} == {"2026-07-01"}
    with db.read_session() as s:
        billings = s.exec(select(SubscriptionBilling)).all()
        invoices = s.exec(select(Invoice)).all()
    assert len(billings) == 12 and len(invoices) == 12
    assert len({(b.order_line_id, b.period_start) for b in billings}) == 12
    assert sorted({b.period_start.month for b in billings}) == [4, 5, 6, 7]
