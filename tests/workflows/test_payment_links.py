"""The "Pay now" link's checkout on the workflows and at the Stripe gateway (Stripe's API mocked
at the HTTP layer with `responses`): amounts in Stripe's units per currency (ISK is two-decimal
in Stripe's API although ISO 4217 gives it none; three-decimal amounts must end in 0), a
balance no card can pay refused with a clear reason, and the session a click replaces expired
at Stripe through the outbox (durably), not by a best-effort call that a failure forgets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import responses
import sqlalchemy as sa
from sqlmodel import select

from bot.stripe_pay import StripeGateway
from models import (
    AuditEvent,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentLink,
    ProviderEvent,
    WriteOff,
)
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from tests.support.timetravel import frozen_at
from workflows import payment_links, stripe_events

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAY_SECRETS = ["pay-link-secret-of-the-tests-0123456789abcdef"]
frozen_time = frozen_at(NOW)


def given_invoice(db, total: str, currency: str) -> tuple[str, str]:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, currency=currency, collector="UCOLL001", credit_limit="50000")
        inv = f.invoice(s, "INV-2026-000001", total=total, currency=currency,
                        due=date(2026, 3, 30))
        return inv.number, payment_links.token_for(s, inv, PAY_SECRETS)


def plan(db, token: str, previous: str | None = None) -> payment_links.Checkout:
    with db.transaction() as s:
        return payment_links.plan_checkout(s, token=token, now=NOW, previous_status=previous)


@pytest.mark.parametrize(("currency", "minor", "sent"), [
    ("USD", 20_000, 20_000), ("JPY", 5_000, 5_000), ("KWD", 12_340, 12_340),
    ("ISK", 5_000, 500_000)])
def test_the_session_asks_stripe_for_the_amount_in_its_units(currency, minor, sent) -> None:
    # ISK: ISO 4217 has no decimals (our 5000 is ISK 5,000) but Stripe's API keeps it
    # two-decimal (100 = 1 krona): sending 5000 charged ISK 50
    gateway = StripeGateway(sp.API_KEY)
    with responses.RequestsMock() as mock:
        created = mock.post(f"{sp.API}/v1/checkout/sessions", json=sp.checkout_session(
            invoice="INV-1", amount=sent, currency=currency.lower(), session_id="cs_1",
            status="open", payment_status="unpaid", url="https://checkout.stripe.com/c/1"))
        gateway.create_session(link_id=1, generation=1, idempotency_key="o2c-pay-k-1",
                               invoice_number="INV-1", amount_minor=minor, currency=currency,
                               expires_at=NOW + timedelta(hours=23), customer_email=None,
                               success_url="https://o2c.example/pay/done",
                               cancel_url="https://o2c.example/pay/back")
    body = parse_qs(created.calls[0].request.body)
    assert body["line_items[0][price_data][unit_amount]"] == [str(sent)]
    assert body["line_items[0][price_data][currency]"] == [currency.lower()]


def test_an_isk_payment_from_stripe_is_recorded_in_kronur(db) -> None:
    # given an invoice of ISK 5,000 paid through its link: Stripe reports 500000 (its units)
    number, _ = given_invoice(db, "5000", "ISK")
    event = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=500_000, currency="isk", payment_intent="pi_isk"))
    with db.transaction() as s:
        outcome = stripe_events.handle(s, event, now=NOW, fetch_fees=False)
    # then the payment is ISK 5,000 (not ISK 500,000 with 495,000 of invented credit)
    assert outcome.status == "processed"
    with db.read_session() as s:
        [payment] = s.exec(select(Payment)).all()
        assert (payment.amount_minor, payment.unapplied_minor) == (5_000, 0)
        assert s.exec(select(Invoice)).one().balance_minor == 0
    # and a refund of ISK 2,000 (200000 in Stripe's units) gives back ISK 2,000
    refund = sp.event("charge.refunded", sp.charge(payment_intent="pi_isk", amount=500_000,
                                                   amount_refunded=200_000, currency="isk"))
    with db.transaction() as s:
        assert stripe_events.handle(s, refund, now=NOW, fetch_fees=False).status == "processed"
    with db.read_session() as s:
        assert s.exec(select(Invoice)).one().balance_minor == 2_000


@pytest.mark.parametrize("total", ["12.345", "12.341"])
def test_a_three_decimal_balance_no_card_can_pay_is_refused_clearly(db, total) -> None:
    # Stripe takes three-decimal amounts only with a last digit of 0: KWD 12.345 would be a
    # 400 from Stripe, shown to the customer as "try again in a few minutes", for ever
    _, token = given_invoice(db, total, "KWD")
    checkout = plan(db, token)
    assert checkout.action == "refused"
    assert f"KWD {total}" in checkout.note and "bank transfer" in checkout.note
    with db.read_session() as s:  # no generation claimed: nothing to create at Stripe
        link = s.exec(select(PaymentLink)).one()
        assert (link.generation, link.amount_minor) == (0, None)


def test_a_payable_three_decimal_balance_is_planned(db) -> None:
    _, token = given_invoice(db, "12.340", "KWD")
    checkout = plan(db, token)
    assert (checkout.action, checkout.amount_minor, checkout.currency) == (
        "create", 12_340, "KWD")


def test_the_session_a_click_replaces_is_expired_through_the_outbox(db) -> None:
    # given a session open for the whole balance, about to expire (not handed out again)
    number, token = given_invoice(db, "200.00", "USD")
    first = plan(db, token)
    with db.transaction() as s:
        assert payment_links.store_session(s, token=token, generation=first.generation,
                                           session_id="cs_old", url="https://c.example/old")
        link = s.exec(select(PaymentLink)).one()
        link.expires_at = NOW + timedelta(minutes=5)
        s.add(link)
    # when the customer clicks again
    second = plan(db, token, previous="open")
    # then a new session is planned, and the old one's expiry is queued with the claim (in
    # the same transaction): a failure creating the new session, or expiring the old one,
    # can no longer leave a payable tab for the same amount behind, forgotten
    assert (second.action, second.generation, second.replaces) == ("create", 2, "cs_old")
    with db.read_session() as s:
        [expire] = s.exec(select(OutboxMessage).where(
            OutboxMessage.transport == "stripe")).all()
        assert (expire.method, expire.dedupe_key, expire.payload["session_id"]) == (
            "session.expire", "stripe-expire:cs_old", "cs_old")
        assert expire.payload["invoice"] == number


def test_the_link_asks_for_what_is_not_in_question(db) -> None:
    # given USD 1,000.00 open, of which the customer questions 300.00 (the dunning e-mails
    # carrying the link ask for 700.00 and leave the rest out)
    number, token = given_invoice(db, "1000.00", "USD")
    with db.transaction() as s:
        f.dispute(s, number, amount="300.00", now=NOW)
    # then the link's checkout is for USD 700.00, not the 1,000.00 they dispute part of
    checkout = plan(db, token)
    assert (checkout.action, checkout.amount_minor) == ("create", 70_000)


def test_a_session_open_when_a_dispute_opens_is_expired(db) -> None:
    # given a checkout open for the whole USD 1,000.00
    number, token = given_invoice(db, "1000.00", "USD")
    first = plan(db, token)
    with db.transaction() as s:
        payment_links.store_session(s, token=token, generation=first.generation,
                                    session_id="cs_whole", url="https://c.example/whole")
    # when the customer questions 300.00 of it (their page's form, the API, Slack)
    with db.transaction() as s:
        f.dispute(s, number, amount="300.00", now=NOW)
    # then that tab can no longer pay the 1,000.00: expired at Stripe, forgotten here
    with db.read_session() as s:
        link = s.exec(select(PaymentLink)).one()
        assert link.session_id is None
        [expire] = s.exec(select(OutboxMessage).where(
            OutboxMessage.transport == "stripe")).all()
        assert expire.dedupe_key == "stripe-expire:cs_whole"
    # and the next click pays the 700.00
    assert plan(db, token).amount_minor == 70_000


def test_a_wholly_disputed_invoice_has_nothing_to_pay_by_link(db) -> None:
    # (a chargeback holds the invoice it reopened in a dispute while Stripe decides: paying it
    # again then pays twice if Stripe rules for us)
    number, token = given_invoice(db, "1000.00", "USD")
    with db.transaction() as s:
        f.dispute(s, number, now=NOW)  # the whole open balance
    checkout = plan(db, token)
    assert (checkout.action, checkout.amount_minor) == ("disputed", 0)
    with db.read_session() as s:
        assert s.exec(select(PaymentLink)).one().generation == 0


# -- the early-payment discount of `d/n NETm` terms ----------------------------------------------
def given_terms_invoice(db, *, issued: date, terms: str = "2/10 NET30",
                        total: str = "1000.00") -> tuple[str, str]:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, currency="USD", collector="UCOLL001", credit_limit="50000")
        inv = f.invoice(s, "INV-2026-000001", total=total, currency="USD", issued=issued,
                        due=issued + timedelta(days=30), terms=terms)
        return inv.number, payment_links.token_for(s, inv, PAY_SECRETS)


def open_session(db, token: str) -> None:
    """The link's checkout session, planned now and made at Stripe ("cs_early")."""
    checkout = plan(db, token)
    with db.transaction() as s:
        payment_links.store_session(s, token=token, generation=checkout.generation,
                                    session_id="cs_early", url="https://c.example/early")


def paid_by_card(db, number: str, amount: int, at: datetime):
    event = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=amount, payment_intent="pi_early"), created=int(at.timestamp()))
    with db.transaction() as s:
        return stripe_events.handle(s, event, now=at, fetch_fees=False)


@pytest.mark.parametrize(("days_ago", "asked"), [(0, 98_000), (10, 98_000), (11, 100_000)])
def test_the_link_asks_for_the_discounted_amount_within_the_discount_window(
        db, days_ago, asked) -> None:
    # given USD 1,000.00 on 2/10 NET30, issued `days_ago` days before the click: a bank
    # transfer of 980.00 within ten days settles it (the matching engine's rule), so the
    # card link asks for the same, and for the whole amount once the ten days are over
    _, token = given_terms_invoice(db, issued=NOW.date() - timedelta(days=days_ago))
    checkout = plan(db, token)
    assert (checkout.action, checkout.amount_minor) == ("create", asked)


def test_no_discount_on_a_part_paid_or_part_disputed_invoice(db) -> None:
    number, token = given_terms_invoice(db, issued=NOW.date() - timedelta(days=2))
    with db.transaction() as s:
        f.dispute(s, number, amount="300.00", now=NOW)
    # the terms' discount is on the whole invoice paid early, not on what is not in question
    assert plan(db, token).amount_minor == 70_000


def test_a_card_payment_of_the_discounted_amount_closes_the_invoice(db) -> None:
    # given the link's session planned on the tenth day for USD 980.00
    number, token = given_terms_invoice(db, issued=NOW.date() - timedelta(days=10))
    open_session(db, token)
    # when the customer pays that tab the next morning (day 11: past the window, but the page
    # offered 980.00 and Stripe kept the session payable)
    outcome = paid_by_card(db, number, 98_000, NOW + timedelta(hours=20))
    # then the 980.00 is applied and the 20.00 written off as the terms' discount: the
    # invoice is paid (it stayed open for 20.00 before, and was dunned for it)
    assert outcome.status == "processed"
    with db.read_session() as s:
        invoice = s.exec(select(Invoice)).one()
        payment = s.exec(select(Payment)).one()
        [write_off] = s.exec(select(WriteOff)).all()
        assert (invoice.balance_minor, payment.unapplied_minor) == (0, 0)
        assert (write_off.amount_minor, write_off.reason, write_off.payment_id) == (
            2_000, "early_payment_discount", payment.id)
        assert payment.match_details["write_off_minor"] == 2_000


def test_a_short_card_payment_after_the_window_takes_no_discount(db) -> None:
    # given an invoice issued 12 days ago whose link never offered a discount
    number, _ = given_terms_invoice(db, issued=NOW.date() - timedelta(days=12))
    # when 980.00 arrives by card anyway (a session of another amount, a race)
    paid_by_card(db, number, 98_000, NOW)
    # then nothing is given up: 20.00 stays open
    with db.read_session() as s:
        assert s.exec(select(Invoice)).one().balance_minor == 2_000
        assert s.exec(select(WriteOff)).all() == []


def test_a_discounted_session_is_kept_while_nothing_changed(db) -> None:
    # given a session open for the discounted 980.00
    number, token = given_terms_invoice(db, issued=NOW.date() - timedelta(days=3))
    open_session(db, token)
    # when something asks whether the balance moved while it did not
    with db.transaction() as s:
        payment_links.balance_changed(s, s.exec(select(Invoice)).one())
    # then the session stays (it asks what the link asks for on the day it was planned)
    with db.read_session() as s:
        assert s.exec(select(PaymentLink)).one().session_id == "cs_early"
        assert s.exec(select(OutboxMessage).where(OutboxMessage.transport == "stripe")
                      ).all() == []


# -- the token never goes to Stripe --------------------------------------------------------------
def create_at_stripe(gateway: StripeGateway, checkout: payment_links.Checkout, number: str
                     ) -> None:
    """As `POST /pay/<token>` makes the session of a "create" (`api.inbound.pay_now`)."""
    gateway.create_session(
        link_id=checkout.link_id, generation=checkout.generation,
        idempotency_key=checkout.idempotency_key, invoice_number=number,
        amount_minor=checkout.amount_minor, currency=checkout.currency,
        expires_at=checkout.expires_at, customer_email="ap@globex.example",
        success_url="https://o2c.example/pay/done", cancel_url="https://o2c.example/pay/back")


def test_stripe_is_never_sent_the_token_and_a_retry_reuses_the_key(db) -> None:
    # given an invoice whose link also still opens by the URL e-mailed before 0030
    number, token = given_invoice(db, "200.00", "USD")
    old_token = "pre-0030-random-token_AbCdEfGhIjKlMnOp"
    with db.transaction() as s:
        link = s.exec(select(PaymentLink)).one()
        link.legacy_token_hash = payment_links.hash_token(old_token)
        s.add(link)
        link_id, link_key = link.id, link.token_hash
    gateway = StripeGateway(sp.API_KEY)
    with responses.RequestsMock() as mock:
        created = mock.post(f"{sp.API}/v1/checkout/sessions", json=sp.checkout_session(
            invoice=number, amount=20_000, session_id="cs_1", status="open",
            payment_status="unpaid", url="https://checkout.stripe.com/c/1"))
        # when the customer clicks, the answer times out (nothing stored), and they click
        # again: by the same URL, then by the one e-mailed before 0030
        first = plan(db, token)
        create_at_stripe(gateway, first, number)
        again = plan(db, token)
        create_at_stripe(gateway, again, number)
        old = plan(db, old_token)
        create_at_stripe(gateway, old, number)
    # then each asked Stripe for the session of one generation under one key (Stripe answers
    # the first session to all three), whichever URL the click came by
    assert first.generation == again.generation == old.generation == 1
    keys = [call.request.headers["Idempotency-Key"] for call in created.calls]
    assert keys == [f"o2c-pay-{link_key}-1"] * 3
    # and nothing Stripe was sent carries the token, new or old: not the metadata (the link's
    # id), not the key (the token's hash), not the return URLs, not any header
    for call in created.calls:
        request = call.request
        sent = [request.url, request.body, *request.headers.values()]
        assert not [part for part in sent if token in part or old_token in part]
        body = parse_qs(request.body)
        assert body["metadata[o2c_link_id]"] == [str(link_id)]
        assert body["payment_intent_data[metadata][o2c_link_id]"] == [str(link_id)]
        assert "metadata[o2c_link]" not in body


def stored_text(db) -> str:
    """Everything the events, the audit log and the outbox keep, as text."""
    with db.read_session() as s:
        return " ".join(str(row) for model in (ProviderEvent, AuditEvent, OutboxMessage)
                        for row in s.execute(sa.select(model.__table__)).all())


def test_an_old_sessions_payment_is_applied_once_and_its_token_kept_nowhere(db) -> None:
    # given a session made before the token stopped going to Stripe (in its metadata and
    # return URLs), paid by card
    number, token = given_invoice(db, "200.00", "USD")
    paid = sp.event("checkout.session.completed", sp.old_style_session(
        token, invoice=number, amount=20_000, payment_intent="pi_old"))
    intent = sp.event("payment_intent.succeeded", {**sp.payment_intent(
        invoice=number, amount=20_000, pi_id="pi_old"), "metadata": {
        "o2c_invoice": number, "o2c_link": token, "o2c_generation": "1"}})
    # when Stripe delivers its events, one of them twice
    with db.transaction() as s:
        outcomes = [stripe_events.handle(s, e, now=NOW, fetch_fees=False).status
                    for e in (paid, paid, intent)]
    # then the payment is applied once, to its invoice
    assert outcomes == ["processed", "duplicate", "processed"]
    with db.read_session() as s:
        [payment] = s.exec(select(Payment)).all()
        assert (payment.amount_minor, payment.unapplied_minor) == (20_000, 0)
        assert s.exec(select(Invoice)).one().balance_minor == 0
    # and nothing kept (events, audit log, outbox: the AR post) holds the token
    assert token not in stored_text(db)


def test_a_failed_old_style_event_is_kept_without_the_token(db) -> None:
    # given an old session's event that cannot be applied (a fraction of a krona), kept for a
    # person to look at
    number, token = given_invoice(db, "5000", "ISK")
    event = sp.event("checkout.session.completed", sp.old_style_session(
        token, invoice=number, amount=500_050, currency="isk", payment_intent="pi_isk"))
    with db.transaction() as s:
        assert stripe_events.handle(s, event, now=NOW, fetch_fees=False).status == "failed"
    # then it is kept without the token (which opens the customer's page): its hash instead
    with db.read_session() as s:
        kept = s.exec(select(ProviderEvent)).one().payload
    assert token not in str(kept) and token not in stored_text(db)
    session = kept["data"]["object"]
    assert session["metadata"] == {"o2c_invoice": number, "o2c_generation": "1",
                                   "o2c_link_hash": payment_links.hash_token(token)}
    assert (session["success_url"], session["cancel_url"]) == (
        "https://o2c.example/pay/<link>/done", "https://o2c.example/pay/<link>")
    assert session["amount_total"] == 500_050 and session["client_reference_id"] == number
