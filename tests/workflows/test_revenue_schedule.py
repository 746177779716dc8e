"""The arithmetic of SPEC §3 revenue recognition, worked by hand to the cent
(`workflows.revenue_schedule`). Amounts are minor units (USD cents)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from workflows.revenue_schedule import (
    AllocationLine,
    add_months,
    allocate,
    billing_periods,
    cumulative,
    goods_schedule,
    half_up,
    installments,
    service_schedule,
    spread,
    whole_months,
    whole_periods,
)


def test_half_up_rounds_halves_away_from_zero_exactly() -> None:
    assert [half_up(n, 2) for n in (1, 3, 5, -1, -3)] == [1, 2, 3, -1, -2]
    assert half_up(10**24 + 1, 3) == (10**24 + 1 + 1) // 3  # no Decimal precision loss
    with pytest.raises(ValueError):
        half_up(1, 0)


def test_a_mixed_bundle_is_allocated_by_ssp_with_the_rounding_difference_on_the_largest() -> None:
    """A bundle of three obligations of three revenue types:

    | line | what                          | net (after discount) | SSP              |
    | 1    | 2 x Hardware 450.00 less 10 % | 810.00               | 2 x 500.00 = 1000.00 |
    | 2    | Installation 300.00           | 300.00               | 400.00           |
    | 3    | Support 99.00 (no ssp)        |  99.00               |  99.00 (list)    |

    N = 1209.00, sum SSP = 1499.00:
    * hardware     1209.00 x 1000.00 / 1499.00 = 806.5377 -> 806.54
    * installation 1209.00 x  400.00 / 1499.00 = 322.6151 -> 322.62
    * support      1209.00 x   99.00 / 1499.00 =  79.8472 ->  79.85
    Sum 1209.01: one cent too many, taken off the largest SSP (hardware): 806.53."""
    # given
    lines = [AllocationLine(1, "goods", 81000, 100000),
             AllocationLine(2, "service", 30000, 40000),
             AllocationLine(3, "subscription", 9900, 9900)]
    # when
    allocated = allocate(lines)
    # then
    assert allocated == {1: 80653, 2: 32262, 3: 7985}
    assert sum(allocated.values()) == 120900


def test_one_revenue_type_keeps_each_lines_net_amount() -> None:
    lines = [AllocationLine(1, "goods", 81000, 100000), AllocationLine(2, "goods", 100, 99999)]
    assert allocate(lines) == {1: 81000, 2: 100}


def test_a_free_bundle_keeps_net_amounts() -> None:
    lines = [AllocationLine(1, "goods", 0, 0), AllocationLine(2, "service", 0, 0)]
    assert allocate(lines) == {1: 0, 2: 0}


def test_the_rounding_difference_never_leaves_the_largest_line_negative() -> None:
    """A bundle of 0.03 over five lines: goods of SSP 2 and four services of SSP 1 (N = 3,
    sum SSP = 6). Half-up, the goods get 3 x 2/6 = 1 and each service 3 x 1/6 = 0.5 -> 1:
    5 allocated, 2 too many. On the largest SSP alone that was -1 for the goods (a negative
    price for an obligation: revenue reversed when the goods ship). The largest line goes to
    zero and the rest of the difference comes off the next largest (the first on a tie)."""
    # given
    lines = [AllocationLine(1, "goods", 3, 2), *(AllocationLine(k, "service", 0, 1)
                                                 for k in (2, 3, 4, 5))]
    # when
    allocated = allocate(lines)
    # then
    assert allocated == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}


@given(lines=st.lists(st.tuples(st.sampled_from(["goods", "service", "subscription"]),
                                st.integers(0, 12), st.integers(0, 5)), min_size=1,
                      max_size=9))
@example(lines=[("goods", 3, 2), *[("service", 0, 1)] * 4])  # the case above
def test_allocations_sum_exactly_and_are_never_negative(lines: list[tuple[str, int, int]]
                                                        ) -> None:
    allocated = allocate([AllocationLine(k, kind, net, ssp)
                          for k, (kind, net, ssp) in enumerate(lines)])
    assert sum(allocated.values()) == sum(net for _, net, _ in lines)
    assert min(allocated.values()) >= 0


def test_partial_shipments_recognise_pro_rata_and_the_last_takes_the_remainder() -> None:
    """7 units allocated 100.00, shipped 2, 4, then 1:
    * 100.00 x 2/7 = 28.571 -> 28.57 on 3 March
    * 100.00 x 4/7 = 57.142 -> 57.14 on 20 March
    * the last unit completes the line: 100.00 - 85.71 = 14.29 on 2 April."""
    # when
    entries = goods_schedule(10000, 7, [(date(2026, 3, 3), 2), (date(2026, 3, 20), 4),
                                        (date(2026, 4, 2), 1)])
    # then
    assert entries == [(date(2026, 3, 3), 2857), (date(2026, 3, 20), 5714),
                       (date(2026, 4, 2), 1429)]
    assert cumulative(entries, date(2026, 3, 31)) == 8571
    assert cumulative(entries, date(2026, 3, 2)) == 0  # nothing before the first shipment


def test_a_service_over_a_leap_february_is_recognised_by_day() -> None:
    """1000.00 over 15 January to 14 March 2028 (a leap year): 17 + 29 + 14 = 60 days.
    * January  1000.00 x 17/60 = 283.333 -> 283.33 (on 31 January)
    * February 1000.00 x 29/60 = 483.333 -> 483.33 (on 29 February)
    * March, the last month, takes the rest: 1000.00 - 766.66 = 233.34 (on 14 March)."""
    # when
    entries = service_schedule(100000, date(2028, 1, 15), date(2028, 3, 14))
    # then
    assert entries == [(date(2028, 1, 31), 28333), (date(2028, 2, 29), 48333),
                       (date(2028, 3, 14), 23334)]
    assert cumulative(entries, date(2028, 1, 14)) == 0


def test_a_credit_note_mid_period_reduces_what_is_left_from_its_month_on() -> None:
    """3650.00 over 2026 (365 days: 10.00 a day), a credit of 100.00 dated 15 April.
    January to March keep 310.00 + 280.00 + 310.00 = 900.00. Left: 2750.00 - 100.00 =
    2650.00 over April to December (275 days):
    * 30-day months 2650.00 x 30/275 = 289.0909 -> 289.09 (April, June, September, November)
    * 31-day months 2650.00 x 31/275 = 298.7272 -> 298.73 (May, July, August, October)
    * December, the last, takes the rest: 2650.00 - 4 x 289.09 - 4 x 298.73 = 298.72.
    The year recognises 3550.00 = 3650.00 - 100.00."""
    # when
    entries = service_schedule(365000, date(2026, 1, 1), date(2026, 12, 31),
                               credits=[(date(2026, 4, 15), 10000)])
    # then
    by_month = {day.month: amount for day, amount in entries}
    assert [by_month[m] for m in (1, 2, 3)] == [31000, 28000, 31000]
    assert [by_month[m] for m in (4, 6, 9, 11)] == [28909] * 4
    assert [by_month[m] for m in (5, 7, 8, 10)] == [29873] * 4
    assert by_month[12] == 29872
    assert sum(by_month.values()) == 355000


def test_a_credit_larger_than_what_is_left_reduces_revenue_on_its_date() -> None:
    """Goods of 100.00 all shipped on 3 March; a credit of 30.00 on 10 March has nothing left
    to reduce: revenue goes down by 30.00 that day."""
    entries = goods_schedule(10000, 1, [(date(2026, 3, 3), 1)],
                             credits=[(date(2026, 3, 10), 3000)])
    assert entries == [(date(2026, 3, 3), 10000), (date(2026, 3, 10), -3000)]


def test_a_credit_before_any_shipment_lowers_every_later_shipment() -> None:
    """4 units allocated 100.00; a credit of 20.00 before shipping leaves 80.00 for 4 units:
    2 units ship for 40.00, the last 2 for the remaining 40.00."""
    entries = goods_schedule(10000, 4, [(date(2026, 5, 2), 2), (date(2026, 5, 9), 2)],
                             credits=[(date(2026, 5, 1), 2000)])
    assert entries == [(date(2026, 5, 2), 4000), (date(2026, 5, 9), 4000)]


def test_a_few_cents_over_many_months_never_run_ahead_of_the_allocated_price() -> None:
    """7 cents over a year: per SPEC each 31-day month would round 7 x 31/365 = 0.59 up to 1
    cent, 11 months would take 11 cents and the last -4. The guard caps each month at what is
    left: the schedule never exceeds 7 cents and never goes negative."""
    entries = service_schedule(7, date(2026, 1, 1), date(2026, 12, 31))
    running = 0
    for _, amount in entries:
        assert amount > 0
        running += amount
        assert running <= 7
    assert running == 7


@given(amount=st.integers(0, 10**15), weights=st.lists(st.integers(0, 400), min_size=1,
                                                      max_size=40))
def test_spread_sums_exactly_and_never_overshoots(amount: int, weights: list[int]) -> None:
    shares = spread(amount, weights)
    assert sum(shares) == amount
    assert all(share >= 0 for share in shares)


def test_billing_periods_are_counted_from_the_start() -> None:
    """Monthly from 31 January: 31 Jan - 27 Feb, 28 Feb - 30 Mar, 31 Mar - 29 Apr."""
    assert billing_periods(date(2026, 1, 31), date(2026, 4, 29), 1) == [
        (date(2026, 1, 31), date(2026, 2, 27)), (date(2026, 2, 28), date(2026, 3, 30)),
        (date(2026, 3, 31), date(2026, 4, 29))]
    assert whole_periods(date(2026, 1, 31), date(2026, 4, 29), 1)
    assert not whole_periods(date(2026, 1, 31), date(2026, 4, 30), 1)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)


def test_installments_are_equal_to_a_cent_and_sum_exactly() -> None:
    """100.00 in 3: half_up(100.00 x k/3) = 33.33, 66.67, 100.00 -> 33.33, 33.34, 33.33."""
    assert installments(10000, 3) == [3333, 3334, 3333]
    # 7 cents in 12: half_up(7k/12) = 1 1 2 2 3 4 4 5 5 6 6 7
    assert installments(7, 12) == [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    assert sum(installments(7, 12)) == 7


def test_a_credit_beyond_the_allocated_price_before_the_service_starts() -> None:
    """A bundle's service allocated 0.36, invoiced 0.42 on delivery (5 January) and credited
    in full the same day, starting 23 February: the 0.36 is never recognised and the 0.06
    beyond it reduces revenue on 23 February, not before the service starts (found by the
    property test)."""
    entries = service_schedule(36, date(2026, 2, 23), date(2026, 3, 31),
                               credits=[(date(2026, 1, 5), 42)])
    assert entries == [(date(2026, 2, 23), -6)]


def test_whole_months_are_counted_as_add_months_counts_them() -> None:
    assert whole_months(date(2027, 1, 1), date(2027, 12, 31)) == 12
    assert whole_months(date(2028, 1, 1), date(2028, 12, 31)) == 12
    assert whole_months(date(2026, 1, 31), date(2026, 2, 27)) == 1
    assert whole_months(date(2026, 2, 1), date(2026, 2, 28)) == 1
    assert whole_months(date(2026, 1, 10), date(2026, 2, 18)) == 0
    assert whole_months(date(2026, 1, 10), date(2026, 1, 10)) == 0


@given(start=st.dates(date(1900, 1, 1), date(2999, 1, 1)), months=st.integers(1, 120))
def test_a_term_of_whole_months_is_recognised_as_such(start: date, months: int) -> None:
    assert whole_months(start, add_months(start, months) - timedelta(days=1)) == months
