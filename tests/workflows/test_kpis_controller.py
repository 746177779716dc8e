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
from workflows.cash_application import record_payment, write_off
from workflows.inputs import OrderIn, OrderLineIn, PaymentIn
from workflows.invoicing import issue_credit_note

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


def _at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


@pytest.fixture
def ledger(session: Session) -> Session:
    """Every kind of entry a KPI reads, on known days (USD, NET30; W = 04-02 .. 06-30):

    | invoice | issued | due   | total    | what happened                                    |
    | I1      | 03-20  | 04-19 | 3,000.00 | 1,000.00 paid 04-10 (by hand); the 2,000.00 left  |
    |         |        |       |          | written off as bad debt 06-15                    |
    | I2      | 04-15  | 05-15 | 5,000.00 | credit note 500.00 05-01; 2,000.00 paid 05-20 (by |
    |         |        |       |          | hand): 2,500.00 open, 46 days late               |
    | I7      | 04-20  | 05-20 |   700.00 | paid in full 05-05, matched by the engine         |
    | I3      | 05-10  | 05-10 | 1,200.00 | due on receipt, open: 51 days late               |
    | F1      | 06-01  | 06-15 |    50.00 | late fee on I2, open: 15 days late               |
    | I4      | 06-20  | 07-20 | 4,000.00 | open, 1,000.00 of it in dispute since 06-25      |
    | I5      | 06-30  | 07-30 |   800.00 | open, issued on `as_of` itself                   |
    | I6      | 07-01  | 07-31 |   999.00 | after `as_of`: counts nowhere                    |

    By hand, as of 06-30:
    * AR = 2,500 + 1,200 + 50 + 4,000 + 800 = 8,550.00; current = 4,000 + 800 = 4,800.00.
    * Credit sales in W (the fee left out, net of I2's credit note of 05-01) = 5,000 + 700 +
      1,200 + 4,000 + 800 - 500 = 11,200.00.
    * DSO = 8,550 / 11,200 x 90 = 68.7054 = **68.71**; best possible = 4,800 / 11,200 x 90 =
      38.5714 = **38.57**; ADD = 68.71 - 38.57 = **30.14**.
    * Count-back: June 4,800 (30 d) leaves 3,750; May 1,200 - 500 = 700 (31 d) leaves 3,050;
      April 5,700: 3,050 / 5,700 x 30 = 16.0526 d; 30 + 31 + 16.0526 = **77.05**.
    * CEI: AR(04-01) = I1 3,000; billed in W = 11,700 + the 50.00 fee = 11,750;
      (3,000 + 11,750 - 8,550) / (3,000 + 11,750 - 4,800) = 6,200 / 9,950 = **62.31** %.
    * Bad debt 2,000.00 / 11,200 = **17.86** %.
    * Invoice accuracy: 5 sales invoices issued in W (I2, I7, I3, I4, I5), I2 credited:
      4 / 5 = **80.00** %; dispute rate 1 / 5 = **20.00** %.
    * Cash application: 3 payments received in W, 1 matched by the engine: **33.33** %;
      by amount 700 / 3,700 = **18.92** %."""
    f.customer(session)
    book = {name: f.invoice(session, number, total=total, issued=issued, due=due)
            for name, number, issued, due, total in (
                ("I1", "INV-2026-000001", date(2026, 3, 20), date(2026, 4, 19), "3000.00"),
                ("I2", "INV-2026-000002", date(2026, 4, 15), date(2026, 5, 15), "5000.00"),
                ("I7", "INV-2026-000007", date(2026, 4, 20), date(2026, 5, 20), "700.00"),
                ("I3", "INV-2026-000003", date(2026, 5, 10), date(2026, 5, 10), "1200.00"),
                ("F1", "INV-2026-000008", date(2026, 6, 1), date(2026, 6, 15), "50.00"),
                ("I4", "INV-2026-000004", date(2026, 6, 20), date(2026, 7, 20), "4000.00"),
                ("I5", "INV-2026-000005", date(2026, 6, 30), date(2026, 7, 30), "800.00"),
                ("I6", "INV-2026-000006", date(2026, 7, 1), date(2026, 7, 31), "999.00"))}
    book["F1"].fee_for_invoice_id = book["I2"].id
    session.add(book["F1"])
    session.flush()
    record_payment(session, PaymentIn(amount="1000.00", currency="USD",
                                      received_at=_at(date(2026, 4, 10))),
                   actor="test", apply_to=["INV-2026-000001"])
    issue_credit_note(session, invoice_number="INV-2026-000002", amount="500.00",
                      reason="damaged", actor="test", now=_at(date(2026, 5, 1)))
    record_payment(session, PaymentIn(amount="700.00", currency="USD",
                                      received_at=_at(date(2026, 5, 5)),
                                      reference="INV-2026-000007"), actor="api")
    record_payment(session, PaymentIn(amount="2000.00", currency="USD",
                                      received_at=_at(date(2026, 5, 20))),
                   actor="test", apply_to=["INV-2026-000002"])
    write_off(session, invoice=book["I1"], amount_minor=200_000, reason="bad_debt",
              actor="test", now=_at(date(2026, 6, 15)))
    f.dispute(session, "INV-2026-000004", amount="1000.00", now=_at(date(2026, 6, 25)))
    session.commit()
    return session


@pytest.mark.parametrize("rollups", [True, False])
def test_every_figure_of_a_small_ledger_as_worked_by_hand(ledger: Session,
                                                          rollups: bool) -> None:
    # when
    data = kpis.to_json(kpis.compute(ledger, date(2026, 6, 30), rollups=rollups))
    # then: the figures of the fixture's docstring
    assert {k: data[k] for k in ("currency", "ar", "current_ar", "credit_sales")} == {
        "currency": "USD", "ar": "8550.00", "current_ar": "4800.00", "credit_sales": "11200.00"}
    assert {k: data[k] for k in ("dso", "best_possible_dso", "average_days_delinquent",
                                 "count_back_dso", "cei_pct")} == {
        "dso": "68.71", "best_possible_dso": "38.57", "average_days_delinquent": "30.14",
        "count_back_dso": "77.05", "cei_pct": "62.31"}
    assert data["bad_debt"] == {"amount": "2000.00", "ratio_pct": "17.86"}
    assert (data["invoice_accuracy_pct"], data["disputes"]["rate_pct"],
            data["disputes"]["invoices_disputed"]) == ("80.00", "20.00", 1)
    assert data["cash_application"] == {"payments": 3, "auto_match_rate_pct": "33.33",
                                        "auto_match_amount_pct": "18.92",
                                        "amount_currency": "USD"}
    assert data["aging"]["USD"] == {"current": "4800.00", "1-30": "50.00",
                                    "31-60": "3700.00", "61-90": "0.00", "90+": "0.00"}
    assert data["in_dispute"] == {"USD": "1000.00"}
