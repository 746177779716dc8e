"""KPI figures a finance controller checks by hand (SPEC §3 "KPIs", `workflows/kpis.py`), on
small books where every figure is known exactly — the edges the worked example of issue 21
does not reach: business days in another time zone than UTC, the home currency of a window
with no open AR."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session

from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import kpis, orders, policy, shipping
from workflows.cash_application import record_payment
from workflows.inputs import OrderIn, OrderLineIn, PaymentIn

NOW = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
NEW_YORK = "America/New_York"  # UTC-4 in summer


def _order_shipped(session: Session, sku: str, *, ordered: datetime, shipped: datetime) -> None:
    f.product(session, sku, price="100.00", on_hand=5)
    order = orders.create_order(session, OrderIn(
        customer="C-GLOBEX", sales_rep="USALES01", currency="USD",
        lines=[OrderLineIn(sku=sku, quantity=1)]), actor="USALES01", now=ordered)
    shipping.ship_order(session, order_number=order.number, carrier="UPS",
                        tracking_number=f"1Z-{sku}", shipped_at=shipped, actor="api",
                        now=shipped)


@pytest.fixture
def shipped_in_new_york(session: Session) -> Session:
    """The books kept in New York time. Two orders, each shipped once:

    | order | ordered (business day)         | first shipment (business day)            | days |
    | A     | 06-25 10:00 New York (06-25)   | 06-30 23:30 New York = 07-01 03:30Z (06-30) | 5 |
    | B     | 06-28 11:00 New York (06-28)   | 06-29 08:00 New York (06-29)             | 1    |

    A's invoice is dated 06-30, the day it shipped in business time. As of 06-30 both orders
    were first shipped in the window: order cycle time = (5 + 1) / 2 = **3.00** days; as of
    07-01 still the same two orders and the same **3.00** (A took 5 days, not 6)."""
    policy.set_value(session, key="business_timezone", value=NEW_YORK, actor="test")
    f.user(session, "USALES01", "sales")
    f.customer(session, sales_rep="USALES01", credit_limit="100000.00")
    _order_shipped(session, "SKU-A", ordered=datetime(2026, 6, 25, 14, tzinfo=UTC),
                   shipped=datetime(2026, 7, 1, 3, 30, tzinfo=UTC))
    _order_shipped(session, "SKU-B", ordered=datetime(2026, 6, 28, 15, tzinfo=UTC),
                   shipped=datetime(2026, 6, 29, 12, tzinfo=UTC))
    session.commit()
    return session


@pytest.mark.parametrize("rollups", [True, False])
def test_order_cycle_time_counts_business_days_of_the_books_time_zone(
        shipped_in_new_york: Session, rollups: bool) -> None:
    # when
    june_30 = kpis.compute(shipped_in_new_york, date(2026, 6, 30), rollups=rollups)
    july_1 = kpis.compute(shipped_in_new_york, date(2026, 7, 1), rollups=rollups)
    # then: A shipped on 06-30 in business time (its invoice's date), 5 days after its order
    assert june_30.order_cycle_days == july_1.order_cycle_days == kpis.Decimal("3.00")
    # and before A shipped (06-29), B alone: 1 day
    assert kpis.compute(shipped_in_new_york, date(2026, 6, 29),
                        rollups=rollups).order_cycle_days == kpis.Decimal("1.00")


def _paid(session: Session, number: str, amount: str, currency: str, day: date) -> None:
    record_payment(session, PaymentIn(amount=amount, currency=currency,
                                      received_at=datetime.combine(day, datetime.min.time(),
                                                                   tzinfo=UTC)
                   + timedelta(hours=10)), actor="test", apply_to=[number])


@pytest.fixture
def all_collected(session: Session) -> Session:
    """Nothing open at 06-30 in either currency, so the home currency is the one with the most
    credit sales in the window:

    | invoice | currency | issued | total    | late fee? | paid  |
    | U1      | USD      | 06-01  | 1,000.00 | no        | 06-10 |
    | E1      | EUR      | 06-01  |   600.00 | no        | 06-10 |
    | EF      | EUR      | 06-15  |   500.00 | fee on E1 | 06-20 |

    Credit sales: USD 1,000.00, EUR 600.00 (a late fee is not a sale) — the home currency is
    **USD**, whose credit sales are **1,000.00**; EUR's 1,100.00 billed, fee included, does
    not make it the home currency."""
    f.customer(session)
    f.customer(session, "C-EURO", "Euro GmbH", currency="EUR")
    f.invoice(session, "INV-2026-000001", total="1000.00", issued=date(2026, 6, 1))
    original = f.invoice(session, "INV-2026-000002", "C-EURO", total="600.00",
                         issued=date(2026, 6, 1), currency="EUR")
    fee = f.invoice(session, "INV-2026-000003", "C-EURO", total="500.00",
                    issued=date(2026, 6, 15), currency="EUR")
    fee.fee_for_invoice_id = original.id  # (as `workflows.late_fees` charges one)
    session.add(fee)
    session.flush()
    _paid(session, "INV-2026-000001", "1000.00", "USD", date(2026, 6, 10))
    _paid(session, "INV-2026-000002", "600.00", "EUR", date(2026, 6, 10))
    _paid(session, "INV-2026-000003", "500.00", "EUR", date(2026, 6, 20))
    session.commit()
    return session


@pytest.mark.parametrize("rollups", [True, False])
def test_with_nothing_open_the_home_currency_has_the_most_credit_sales_fees_left_out(
        all_collected: Session, rollups: bool) -> None:
    # when
    report = kpis.compute(all_collected, date(2026, 6, 30), rollups=rollups)
    # then
    assert (report.currency, report.ar_minor, report.credit_sales_minor) == ("USD", 0, 100_000)
    assert (report.dso, report.best_possible_dso, report.count_back_dso) == (
        kpis.Decimal("0.00"), kpis.Decimal("0.00"), kpis.Decimal("0.00"))

