"""The day a payment counts on is the books' business date (policy `business_timezone`), the
calendar the invoice's own dates use, on every way it arrives: the "Pay now" link's amount,
Stripe's payment (its discount and its value date) and the matching engine's early-payment
discount agree. USD 1,000.00 on 2/10 NET30 issued 1 Nov says "Pay USD 980.00 by 11 Nov":
11 Nov 17:00 in Los Angeles (12 Nov 01:00 UTC) still pays 980.00; 12 Nov 08:00 in Tokyo
(11 Nov 23:00 UTC) no longer does."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import select

from models import Invoice, Payment, WriteOff
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from workflows import payment_links, policy, stripe_events
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

PAY_SECRETS = ["pay-link-secret-of-the-tests-0123456789abcdef"]
ISSUED = date(2026, 11, 1)  # 2/10 NET30: the discount window ends on 11 Nov
# (zone of the books, the moment, in that zone, whether it is within the window)
LOS_ANGELES = ("America/Los_Angeles", datetime(2026, 11, 12, 1, 0, tzinfo=UTC),
               "2026-11-11T17:00:00-08:00", True)
TOKYO = ("Asia/Tokyo", datetime(2026, 11, 11, 23, 0, tzinfo=UTC),
         "2026-11-12T08:00:00+09:00", False)
CASES = pytest.mark.parametrize(("zone", "moment", "local", "within"), [LOS_ANGELES, TOKYO],
                                ids=["los-angeles-11-nov-17h", "tokyo-12-nov-08h"])


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False):
        yield


def books_in(db, zone: str) -> tuple[str, str]:
    with db.transaction() as s:
        policy.set_value(s, key="business_timezone", value=zone, actor="test")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, currency="USD", collector="UCOLL001", credit_limit="50000",
                   terms="2/10 NET30")
        inv = f.invoice(s, "INV-2026-000001", total="1000.00", currency="USD", issued=ISSUED,
                        due=date(2026, 12, 1), terms="2/10 NET30")
        return inv.number, payment_links.token_for(s, inv, PAY_SECRETS)


def settled(db) -> tuple[int, list[tuple[int, str]], Payment]:
    with db.read_session() as s:
        return (s.exec(select(Invoice)).one().balance_minor,
                [(w.amount_minor, w.reason) for w in s.exec(select(WriteOff)).all()],
                s.exec(select(Payment)).one())


@CASES
def test_the_link_asks_by_the_business_date(db, zone, moment, local, within) -> None:
    # given the books in `zone` and the invoice's discount window ending on 11 Nov
    _, token = books_in(db, zone)
    # when the customer clicks Pay at `moment`
    with db.transaction() as s:
        checkout = payment_links.plan_checkout(s, token=token, now=moment)
    # then the checkout asks for 980.00 on the books' 11 Nov, for 1,000.00 on their 12 Nov
    assert (checkout.action, checkout.amount_minor) == ("create",
                                                        98_000 if within else 100_000)
    with db.read_session() as s:
        invoice = s.exec(select(Invoice)).one()
        assert payment_links.today(s, moment) == (date(2026, 11, 11) if within
                                                  else date(2026, 11, 12))
        assert payment_links.early_discount(invoice, payment_links.today(s, moment)) == (
            2_000 if within else 0)


@CASES
def test_a_card_payment_takes_the_discount_by_the_business_date(db, zone, moment, local,
                                                                 within) -> None:
    # given the books in `zone`; no session was planned (a tab of another link, a race)
    number, _ = books_in(db, zone)
    # when Stripe reports 980.00 paid at `moment`
    event = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=98_000, payment_intent="pi_day"), created=int(moment.timestamp()))
    with db.transaction() as s:
        assert stripe_events.handle(s, event, now=moment, fetch_fees=False).status == "processed"
    balance, write_offs, payment = settled(db)
    # then on the books' 11 Nov the 20.00 is the terms' discount, written off; on their
    # 12 Nov it stays open
    if within:
        assert (balance, write_offs) == (0, [(2_000, "early_payment_discount")])
    else:
        assert (balance, write_offs) == (2_000, [])
    # and the payment is valued on the books' day, the day its discount was judged on
    assert payment.value_date == (date(2026, 11, 11) if within else date(2026, 11, 12))


@CASES
def test_a_bank_transfer_takes_the_discount_by_its_day(db, zone, moment, local,
                                                       within) -> None:
    # given the books in `zone`
    books_in(db, zone)
    # when the bank reports 980.00 for the invoice received at `moment`, stated in the
    # books' own offset
    with db.transaction() as s:
        record_payment(s, PaymentIn(amount="980.00", currency="USD", received_at=local,
                                    reference="INV-2026-000001", payer_name="GLOBEX"),
                       actor="test")
    balance, write_offs, payment = settled(db)
    # then the engine gives the discount on the 11th, as the link and Stripe do; on the 12th
    # the 20.00 short is not written off
    assert payment.value_date == (date(2026, 11, 11) if within else date(2026, 11, 12))
    if within:
        assert (balance, write_offs) == (0, [(2_000, "early_payment_discount")])
    else:
        assert write_offs == []


def test_a_card_payment_late_in_the_evening_is_valued_on_the_books_day(db) -> None:
    # given books in Los Angeles
    number, _ = books_in(db, "America/Los_Angeles")
    # when Stripe reports a payment at 23:30 there on 30 Nov (07:30 UTC on 1 Dec)
    at = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    event = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=100_000, payment_intent="pi_late"), created=int(at.timestamp()))
    with db.transaction() as s:
        stripe_events.handle(s, event, now=at, fetch_fees=False)
    # then it counts in November's books, not December's
    balance, _, payment = settled(db)
    assert (balance, payment.value_date) == (0, date(2026, 11, 30))
