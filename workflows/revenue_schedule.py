"""The arithmetic of revenue recognition (SPEC §3), as pure functions on integers.

Amounts are integer minor units. Every division rounds half-up to the minor unit with exact
integer arithmetic (`half_up`): an allocation multiplies an order's net amount by a line's
standalone selling price, which at the bounds (10^15 minor units x 10^9 units) has more
digits than `Decimal`'s default 28-digit context keeps.

* **Allocation** (`allocate`): each order line is a performance obligation. When all the
  order's lines have one revenue type, a line's allocated price is its own net amount. When
  the order mixes types, the order's total net amount N is spread in proportion to each line's
  standalone selling price (SSP = unit SSP x quantity): `half_up(N x SSP_i / sum SSP)`, and
  the rounding difference goes to the line with the largest SSP (the first such line on a
  tie), so the allocations sum exactly to N. Without any SSP (all free) each line keeps its
  net amount. Should the difference take that line below zero — only when N is under about
  half a minor unit per line, e.g. 0.03 over five lines whose halves all round up — it gets
  zero and the rest of the difference comes off the next largest SSPs in turn: never a
  negative price for an obligation (revenue reversed on delivering it).
* **Goods** (`goods_schedule`): recognised on each shipment date for the quantity shipped,
  `half_up(allocated x shipped / ordered)`; the shipment that completes the line takes what
  is left.
* **Services and subscriptions** (`service_schedule`): ratably by day over
  [service_start, service_end], both days included: a month's amount is
  `half_up(allocated x days of the period in the month / days in the period)` and the last
  month takes what is left. It is dated on the month's last day (or the period's, if sooner).
* **Credit notes** reduce what is not yet recognised: the months (or units) before the credit
  keep their amounts; what is left, less the credit, is spread again over the remaining months
  from the credit's month on (or over the quantity still to ship) by the same rules. A credit
  larger than what is left reduces revenue on its own date by the excess (a credit on goods
  already delivered, or on a service already performed).

One guard beyond SPEC §3's words: an amount is never more than what is still to recognise
(`min(half_up(...), left)`). SPEC's per-month rounding could otherwise schedule more than the
allocated price before the last month when the price is a few cents spread over many months
(7 cents over 12 months: eleven months of 1 cent, then -4); with the guard the schedule never
exceeds the allocated price at any date and never goes below zero before a credit. For any
amount of at least half a minor unit per month or unit the guard never bites.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

_ONE_DAY = timedelta(days=1)
Entry = tuple[date, int]  # (the day it is recognised on, amount in minor units)


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up (away from zero), exactly, for integers."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


# -- allocation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AllocationLine:
    key: int  # e.g. the order line's id
    revenue_type: str
    net_minor: int  # after discount, before tax
    ssp_minor: int  # standalone selling price of the line: unit SSP x quantity


def allocate(lines: Sequence[AllocationLine]) -> dict[int, int]:
    """Allocated price per line key (see the module docstring)."""
    if len({line.revenue_type for line in lines}) <= 1:
        return {line.key: line.net_minor for line in lines}
    total_net = sum(line.net_minor for line in lines)
    total_ssp = sum(line.ssp_minor for line in lines)
    if total_ssp <= 0:
        return {line.key: line.net_minor for line in lines}
    allocated = {line.key: half_up(total_net * line.ssp_minor, total_ssp) for line in lines}
    # by SSP, largest first; sorted is stable: the first line on a tie
    by_ssp = sorted(lines, key=lambda line: -line.ssp_minor)
    allocated[by_ssp[0].key] += total_net - sum(allocated.values())
    short = -allocated[by_ssp[0].key]
    if short > 0:  # a tiny order over many lines: never a negative price (module docstring)
        allocated[by_ssp[0].key] = 0
        for line in by_ssp[1:]:
            taken = min(short, allocated[line.key])
            allocated[line.key] -= taken
            short -= taken
    return allocated


def spread(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` over `weights` in proportion, half-up each, never more than is left, the last
    taking the remainder: the amounts sum exactly to `amount` (>= 0)."""
    total = sum(weights)
    out: list[int] = []
    left = amount
    for i, weight in enumerate(weights):
        if i == len(weights) - 1:
            share = left
        else:
            share = min(half_up(amount * weight, total), left) if total else 0
        out.append(share)
        left -= share
    return out


# -- goods ----------------------------------------------------------------------------------------
def goods_schedule(allocated: int, quantity: int, shipments: Sequence[tuple[date, int]],
                   credits: Sequence[Entry] = ()) -> list[Entry]:
    """Recognition of goods: on each shipment, for the quantity shipped.

    `quantity` is what the customer still takes (ordered less cancelled); `shipments` and
    `credits` are (day, quantity) and (day, amount). On one day, shipments come before
    credits (goods returned the day they arrived were delivered first)."""
    events = sorted([(day, 0, qty) for day, qty in shipments]
                    + [(day, 1, amount) for day, amount in credits if amount])
    entries: list[Entry] = []
    segment, units = allocated, quantity  # what is left to recognise, over what is left to ship
    done, shipped = 0, 0
    for day, kind, value in events:
        if kind == 0:
            shipped += value
            if shipped >= units:
                amount = segment - done
            else:
                amount = min(half_up(segment * value, units), segment - done)
            done += amount
            entries.append((day, amount))
        else:
            left = segment - done
            taken = min(value, max(left, 0))
            if value > taken:
                entries.append((day, -(value - taken)))
            segment, units, done, shipped = left - taken, units - shipped, 0, 0
    return [entry for entry in entries if entry[1]]


# -- services and subscriptions -------------------------------------------------------------------
@dataclass(frozen=True)
class Month:
    first: date  # first day of the calendar month
    days: int  # days of the service period inside it
    recognised_on: date  # the month's last day, or the period's last day if sooner


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def months_of(start: date, end: date) -> list[Month]:
    """The calendar months of [start, end], both days included, with their days."""
    months = []
    first = first_of_month(start)
    while first <= end:
        last = min(month_end(first), end)
        months.append(Month(first, (last - max(first, start)).days + 1, last))
        first = next_month(first)
    return months


def service_schedule(allocated: int, start: date, end: date,
                     credits: Sequence[Entry] = ()) -> list[Entry]:
    """Ratable recognition by day, month by month (see the module docstring). A credit
    reduces what is left from its own month on; one dated before the period reduces every
    month, one after it is a reduction on its own date. What a credit takes beyond what is
    left (a bundle's line credited more than its allocated price) reduces revenue on its date,
    or on the first day of the service if that is later: nothing is recognised, negative or
    positive, before the obligation starts."""
    months = months_of(start, end)
    amounts = spread(allocated, [m.days for m in months])
    extra: list[Entry] = []
    segment_from, segment = 0, allocated
    for day, credit in sorted(c for c in credits if c[1]):
        index = next((i for i, m in enumerate(months) if m.first >= first_of_month(day)),
                     len(months))
        index = max(index, segment_from)
        left = segment - sum(amounts[segment_from:index])
        taken = min(credit, max(left, 0))
        if credit > taken:  # never before the service starts (a credit in advance)
            extra.append((max(day, start), -(credit - taken)))
        segment_from, segment = index, left - taken
        amounts[index:] = spread(segment, [m.days for m in months[index:]])
    entries = [(m.recognised_on, amount) for m, amount in zip(months, amounts, strict=True)]
    return sorted([entry for entry in entries + extra if entry[1]])


def cumulative(entries: Sequence[Entry], through: date) -> int:
    """What `entries` recognise on or before `through`."""
    return sum(amount for day, amount in entries if day <= through)


# -- subscription billing periods -----------------------------------------------------------------
def add_months(day: date, months: int) -> date:
    """The same day `months` later, on the month's last day when it has fewer days
    (31 January + 1 month = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def whole_months(start: date, end: date) -> int:
    """How many months [start, end] runs when it ends the day before a month counted from
    `start` would start (as `add_months` counts: 31 January to 27 February is one month,
    2027 and 2028 are twelve each); 0 when it does not."""
    following = end + _ONE_DAY
    months = (following.year - start.year) * 12 + following.month - start.month
    return months if months > 0 and add_months(start, months) == following else 0


def billing_periods(start: date, end: date, step_months: int) -> list[tuple[date, date]]:
    """[start, end] cut into billing periods of `step_months`, each counted from `start`
    (so a period starting on the 31st starts on the last day of shorter months). The last
    period ends on `end`."""
    periods = []
    k = 0
    while True:
        first = add_months(start, k * step_months)
        if first > end:
            return periods
        last = min(add_months(start, (k + 1) * step_months) - _ONE_DAY, end)
        periods.append((first, last))
        k += 1


def whole_periods(start: date, end: date, step_months: int) -> bool:
    """Does [start, end] end exactly where a billing period ends?"""
    periods = billing_periods(start, end, step_months)
    return bool(periods) and add_months(start, len(periods) * step_months) - _ONE_DAY == end


def installments(amount: int, count: int) -> list[int]:
    """`amount` billed in `count` equal installments: the k-th bills
    `half_up(amount x k / count) - half_up(amount x (k-1) / count)`, so they differ by at most
    one minor unit, none is negative and they sum exactly to `amount`."""
    return [half_up(amount * k, count) - half_up(amount * (k - 1), count)
            for k in range(1, count + 1)]


def term_installments(start: date, end: date, step_months: int, amount: int
                      ) -> list[tuple[date, date, int]]:
    """A billed subscription's periods with what each invoices: (first, last, net amount)."""
    periods = billing_periods(start, end, step_months)
    return [(first, last, share) for (first, last), share
            in zip(periods, installments(amount, len(periods)), strict=True)]
