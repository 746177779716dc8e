"""Money arithmetic: exact, half-up per line, never a float (SPEC §3). Hypothesis properties
plus the edge cases a finance team would check by hand."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import limits, money
from models.orders import Order, OrderLine
from tests.support.amounts import CURRENCIES as BOUND_CURRENCIES
from tests.support.amounts import (
    NOT_AMOUNTS,
    amount_text,
    beyond_bound,
    minor_amounts,
    quantities,
)
from workflows import validation
from workflows.errors import ValidationFailed
from workflows.orders import compute_totals

CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "GBP"])
amounts = st.one_of(st.just(0), minor_amounts())


@given(minor=amounts, currency=CURRENCIES)
def test_minor_units_round_trip_exactly(minor: int, currency: str) -> None:
    assert money.to_minor(money.to_str(minor, currency), currency) == minor
    assert money.to_minor(money.from_minor(minor, currency), currency) == minor


@given(value=st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False),
       currency=CURRENCIES)
def test_round_half_up_is_within_half_a_minor_unit(value: Decimal, currency: str) -> None:
    rounded = money.round_half_up(value, currency)
    half = money.quantum(currency) / 2
    assert abs(rounded - value) <= half
    assert rounded.as_tuple().exponent == -money.exponent(currency)


@given(qty=st.integers(1, 10_000), price=st.integers(0, 10**8),
       discount=st.integers(0, 10_000), currency=CURRENCIES)
def test_line_total_is_decimal_exact_half_up(qty: int, price: int, discount: int,
                                             currency: str) -> None:
    total = money.line_total(qty, price, discount, currency)
    exact = Decimal(qty) * money.from_minor(price, currency) * (10000 - discount) / 10000
    assert money.from_minor(total, currency) == money.round_half_up(exact, currency)
    assert 0 <= total <= qty * price
    assert isinstance(total, int)


@given(lines=st.lists(st.tuples(st.integers(1, 500), st.integers(0, 10**6),
                                st.integers(0, 10_000)), min_size=1, max_size=20),
       tax_bp=st.integers(0, 3000), currency=CURRENCIES)
def test_order_totals_add_up(lines: list, tax_bp: int, currency: str) -> None:
    order = Order(number="SO-T", customer_id=1, sales_rep_id="U1", currency=currency,
                  order_date="2026-01-01")
    rows = [OrderLine(order_id=1, line_no=i, product_id=1, sku="S", description="d",
                      quantity=q, unit_price_minor=p, discount_bp=d,
                      line_total_minor=money.line_total(q, p, d, currency))
            for i, (q, p, d) in enumerate(lines)]
    compute_totals(order, rows, tax_bp)
    net = sum(r.line_total_minor for r in rows)
    assert order.total_minor == net + order.tax_minor
    assert order.subtotal_minor - order.discount_minor == net
    assert order.discount_minor >= 0 and order.tax_minor >= 0


def test_known_values() -> None:
    assert money.line_total(3, 1999, 1250, "USD") == 5247  # 52.47375 -> 52.47
    assert money.line_total(1, 5, 5000, "USD") == 3  # 0.025 -> 0.03 (half up)
    assert money.line_total(1, 101, 5000, "JPY") == 51  # 50.5 yen -> 51
    assert money.format_money(123456789, "USD") == "USD 1,234,567.89"
    assert money.format_money(-1200, "EUR") == "-EUR 12.00"
    assert money.format_money(1500, "JPY") == "JPY 1,500"
    assert money.to_str(1234567, "KWD") == "1234.567"


@pytest.mark.parametrize("bad", ["1.234", "abc", "NaN", "Infinity", ""])
def test_inexact_or_garbage_amounts_are_refused(bad: str) -> None:
    with pytest.raises(money.MoneyError):
        money.to_minor(bad, "USD")


def test_floats_are_refused() -> None:
    with pytest.raises(money.MoneyError):
        money.D(0.1)  # type: ignore[arg-type]
    with pytest.raises(money.MoneyError):
        money.to_minor(10.5, "USD")  # type: ignore[arg-type]


# Modules whose floats are probabilities, similarities or timings, never amounts: the
# matching engine's log-odds confidence (math.exp), rapidfuzz name scores, the chance of a
# coincidental subset sum, a cache's refresh interval; and the seconds a webhook destination's
# name may take to resolve (`destinations.py`, no money in it). Amounts there are integer
# minor units.
SCORING_MODULES = {"matching.py", "payer_names.py", "subsets.py", "cash_candidates.py",
                   "destinations.py"}


def test_no_float_in_money_paths() -> None:
    """No float() call, float literal or float annotation in models/ and workflows/ outside
    the scoring modules (refusing floats with isinstance checks is fine)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for folder in ("models", "workflows"):
        for path in (root / folder).rglob("*.py"):
            if path.name in SCORING_MODULES:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "float"):
                    offenders.append(f"{path.name}:{node.lineno} float()")
                if isinstance(node, ast.Constant) and isinstance(node.value, float):
                    offenders.append(f"{path.name}:{node.lineno} literal {node.value}")
                annotation = getattr(node, "annotation", None) or getattr(node, "returns", None)
                if annotation is not None and "float" in ast.unparse(annotation):
                    offenders.append(f"{path.name}:{node.lineno} float annotation")
    assert offenders == []


def test_scoring_modules_never_make_amounts_float() -> None:
    """In the scoring modules, no *_minor value (an amount) is ever built with float()."""
    root = Path(__file__).resolve().parent.parent / "workflows"
    offenders = []
    for name in SCORING_MODULES:
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "float" and "minor" in ast.unparse(node)):
                offenders.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.AnnAssign | ast.arg):
                target = ast.unparse(node.target if isinstance(node, ast.AnnAssign) else node)
                if "minor" in target.split(":")[0] and "float" in ast.unparse(node.annotation):
                    offenders.append(f"{name}:{node.lineno} {target}")
    assert offenders == []


# -- the bounds of models.limits -------------------------------------------------------------------
@given(minor=minor_amounts(), currency=BOUND_CURRENCIES)
def test_every_amount_within_the_bound_parses_back_exactly(minor: int, currency: str) -> None:
    assert money.parse_amount(amount_text(minor, currency), currency) == minor
    assert validation.amount_minor("amount", amount_text(minor, currency), currency) == minor


@given(minor=beyond_bound(), currency=BOUND_CURRENCIES)
def test_amounts_beyond_the_bound_are_refused_naming_the_field(minor: int,
                                                               currency: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        validation.amount_minor("credit_limit", amount_text(minor, currency), currency)
    assert refused.value.errors[0].field == "credit_limit"
    assert "at most" in refused.value.errors[0].detail


@given(text=NOT_AMOUNTS, currency=BOUND_CURRENCIES)
def test_only_ascii_decimal_strings_are_amounts(text: str, currency: str) -> None:
    with pytest.raises(money.MoneyError):
        money.parse_amount(text, currency)


@pytest.mark.parametrize(("text", "currency"), [("1.001", "USD"), ("10.5", "JPY"),
                                                ("1.0000", "KWD"), ("1500.00", "JPY")])
def test_no_more_decimals_than_the_currency_has(text: str, currency: str) -> None:
    with pytest.raises(money.MoneyError, match="decimals"):
        money.parse_amount(text, currency)


def test_the_bound_itself() -> None:
    assert money.parse_amount("9999999999999.99", "USD") == limits.MAX_AMOUNT_MINOR
    assert money.parse_amount("999999999999999", "JPY") == limits.MAX_AMOUNT_MINOR
    assert money.parse_amount("1000000000.00", "IDR") == 100_000_000_000  # a credit limit
    assert money.parse_amount("9000000000000.00", "USD") == 900_000_000_000_000
    for too_much in ("10000000000000.00", "9" * 40, "1" + "0" * 5000):
        with pytest.raises(money.MoneyError, match="at most"):
            money.parse_amount(too_much, "USD")


@given(qty=quantities(), price=minor_amounts(0), discount=st.integers(0, 10_000),
       currency=BOUND_CURRENCIES)
def test_line_totals_of_bounded_lines_are_exact_and_bounded(qty: int, price: int, discount: int,
                                                           currency: str) -> None:
    """What the order workflow stores: a line whose quantity x price is within the bound has
    an exact half-up total within it (no Decimal precision loss at 15 digits); one beyond it
    is refused before anything is stored."""
    if qty * price > limits.MAX_AMOUNT_MINOR:
        with pytest.raises(ValidationFailed):
            validation.within_amount_bound("lines[0].quantity", qty * price, currency)
        return
    total = money.line_total(qty, price, discount, currency)
    exact = Decimal(qty) * money.from_minor(price, currency) * (10000 - discount) / 10000
    assert money.from_minor(total, currency) == money.round_half_up(exact, currency)
    assert 0 <= total <= qty * price <= limits.MAX_AMOUNT_MINOR
    assert money.percent_of(total, 10_000, currency) == total  # a 100 % tax stays exact


@given(many=st.lists(minor_amounts(), min_size=1, max_size=50))
def test_sums_of_bounded_amounts_fit_in_64_bits(many: list[int]) -> None:
    """9,000 amounts at the bound still fit in a BIGINT (aging totals, exposure)."""
    assert sum(many) * (9000 // len(many)) <= 2**63 - 1
