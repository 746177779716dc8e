"""Stripe events on the workflows (payloads as Stripe documents them): a completed payment is
recorded once and applied to its invoice, whichever of its events comes first or twice; a
refund reverses what it paid (unapplied credit first), out of order too; a chargeback takes
the money back and holds the invoice in a dispute until Stripe decides (won: paid again; lost:
a person decides); what is not ours is ignored; the AR invariants hold after each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import permutations

import pytest
from sqlmodel import select

from models import (
    Allocation,
    AuditEvent,
    Customer,
    Dispute,
    Invoice,
    OrderStatus,
    OutboxMessage,
    Payment,
    ProviderEvent,
    Refund,
)
from tests.support import factories as f
from tests.support import meanwhile
from tests.support import stripe_payloads as sp
from tests.support.timetravel import frozen_at
from workflows import shipping, stripe_events
from workflows.invariants import validate_all
from workflows.receivables import aging_by_currency

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def handle(db, event: dict, fetch_fees: bool = False) -> stripe_events.Outcome:
    with db.transaction() as s:
        return stripe_events.handle(s, event, now=NOW, fetch_fees=fetch_fees)


def given_invoices(db, *totals: str) -> list[str]:
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, collector="UCOLL001")
        return [f.invoice(s, f"INV-2026-00000{i}", total=total,
                          due=date(2026, 3, 30)).number for i, total in enumerate(totals, 1)]


def invoice(db, number: str) -> Invoice:
    with db.read_session() as s:
        return s.exec(select(Invoice).where(Invoice.number == number)).one()


def payments(db) -> list[Payment]:
    with db.read_session() as s:
        return list(s.exec(select(Payment).order_by(Payment.id)))


def paid_by_bank(session, number: str, amount: str) -> None:
    """Globex pays `amount` of invoice `number` by bank transfer (not through the link)."""
    from workflows.cash_application import PaymentIn, record_payment

    record_payment(session, PaymentIn(amount=amount, currency="USD", received_at=NOW,
                                      reference=number, customer="C-GLOBEX"), actor="api",
                   apply_to=[number])


def healthy(db) -> None:
    with db.read_session() as s:
        assert validate_all(s) == []


def test_a_completed_checkout_pays_its_invoice_once(db) -> None:
    # given
    [number, other] = given_invoices(db, "500.00", "500.00")
    session = sp.checkout_session(invoice=number, amount=50_000, payment_intent="pi_A")
    # when the event arrives, again, and the PaymentIntent's own event arrives too
    first = handle(db, sp.event("checkout.session.completed", session, event_id="evt_1"))
    again = handle(db, sp.event("checkout.session.completed", session, event_id="evt_1"))
    intent = handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=50_000, pi_id="pi_A")))
    # then one payment, applied to that invoice exactly (not the other of the same amount)
    assert (first.status, again.status, intent.status) == ("processed", "duplicate",
                                                           "processed")
    [payment] = payments(db)
    assert payment.external_id == "stripe:pi_A" and payment.source == "stripe"
    assert payment.amount_minor == 50_000 and payment.status == "applied"
    assert invoice(db, number).balance_minor == 0
    assert invoice(db, other).balance_minor == 50_000
    # and AR and the collector are told, once
    with db.read_session() as s:
        told = [m.payload["channel"] for m in s.exec(select(OutboxMessage))
                if m.payload.get("template") == "provider_payment"]
        assert sorted(told) == ["UCOLL001", "ar"]
    healthy(db)


def test_a_payment_intent_first_then_its_checkout_session(db) -> None:
    [number] = given_invoices(db, "120.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=12_000, pi_id="pi_B")))
    handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=12_000, payment_intent="pi_B")))
    assert len(payments(db)) == 1 and invoice(db, number).balance_minor == 0


def test_a_balance_that_moved_leaves_the_rest_as_unapplied_credit(db) -> None:
    # given an invoice of 500 of which 200 was paid by bank since the link was opened
    [number] = given_invoices(db, "500.00")
    with db.transaction() as s:
        paid_by_bank(s, number, "200.00")
    # when the customer completes a checkout opened for the old 500
    handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=50_000, payment_intent="pi_C")))
    # then the invoice is paid and 200 stays as credit (nothing lost, nothing doubled)
    stripe_payment = payments(db)[-1]
    assert invoice(db, number).balance_minor == 0
    assert stripe_payment.unapplied_minor == 20_000
    assert stripe_payment.status == "partially_applied"
    healthy(db)


def test_money_for_an_invoice_paid_meanwhile_is_its_customers_credit(db) -> None:
    # given Globex's invoice of 500 paid in full by bank transfer while its pay-now page was
    # open, and another customer with an open invoice of the same 500
    [number] = given_invoices(db, "500.00")
    with db.transaction() as s:
        paid_by_bank(s, number, "500.00")
        f.customer(s, "C-INITECH", "Initech")
        other = f.invoice(s, "INV-2026-000900", "C-INITECH", total="500.00",
                          due=date(2026, 3, 30)).number
    # when the checkout completes too (the customer paid twice)
    handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=50_000, payment_intent="pi_TWICE")))
    # then the second 500 is Globex's unapplied credit, to give back or use: not another
    # customer's invoice paid with it, and not a payment of nobody's
    stripe_payment = payments(db)[-1]
    with db.read_session() as s:
        globex = s.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
    assert (stripe_payment.customer_id, stripe_payment.unapplied_minor) == (globex.id, 50_000)
    assert invoice(db, other).balance_minor == 50_000
    # and money in another currency than the customer's is recorded all the same, for a
    # person to place (the customer is billed in USD: it cannot be their credit as such)
    paid = handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=40_000, currency="eur", payment_intent="pi_EUR")))
    assert paid.status == "processed"
    assert (payments(db)[-1].currency, payments(db)[-1].customer_id) == ("EUR", None)
    healthy(db)


def test_what_is_not_ours_or_not_paid_is_ignored(db) -> None:
    [number] = given_invoices(db, "100.00")
    foreign = handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=None, amount=999, pi_id="pi_X")))
    unpaid = handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=10_000, payment_intent="pi_Y", payment_status="unpaid")))
    unknown = handle(db, sp.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert [foreign.status, unpaid.status, unknown.status] == ["ignored"] * 3
    assert payments(db) == []
    with db.read_session() as s:
        assert len(s.exec(select(ProviderEvent)).all()) == 3


def test_an_async_payment_is_recorded_when_it_succeeds(db) -> None:
    [number] = given_invoices(db, "100.00")
    pending = sp.checkout_session(invoice=number, amount=10_000, payment_intent="pi_D",
                                  payment_status="unpaid")
    handle(db, sp.event("checkout.session.completed", pending))
    paid = {**pending, "payment_status": "paid"}
    handle(db, sp.event("checkout.session.async_payment_succeeded", paid))
    assert invoice(db, number).balance_minor == 0


def test_a_refund_reopens_the_invoice_from_its_date(db) -> None:
    # given an order's invoice paid through Stripe on 2 March
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.product(s, price="100.00")
        order = f.order(s, now=NOW)
        shipping.ship_order(s, order_number=order.number, carrier="UPS", tracking_number="1",
                            shipped_at=NOW, lines=None, actor="api", now=NOW)
        number = s.exec(select(Invoice)).one().number
        order_id = order.id
    handle(db, sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=20_000, payment_intent="pi_R")))
    with db.read_session() as s:
        assert s.get(type(order), order_id).status == OrderStatus.PAID
    # when 80.00 is refunded on 10 March
    later = int((NOW + timedelta(days=8)).timestamp())
    refunded = sp.charge(payment_intent="pi_R", amount=20_000, amount_refunded=8_000,
                         charge_id="ch_R")
    outcome = handle(db, sp.event("charge.refunded", refunded, created=later))
    # then the invoice is open for 80.00 again, from 10 March, and the order is invoiced
    assert outcome.status == "processed"
    assert invoice(db, number).balance_minor == 8_000 and invoice(db, number).paid_at is None
    with db.read_session() as s:
        assert s.get(type(order), order_id).status == OrderStatus.INVOICED
        reversal = s.exec(select(Allocation).where(Allocation.amount_minor < 0)).one()
        assert reversal.method == "refund" and reversal.value_date == date(2026, 3, 10)
        before = aging_by_currency(s, date(2026, 3, 9))["USD"].total
        after = aging_by_currency(s, date(2026, 3, 10))["USD"].total
        assert (before, after) == (0, 8_000)
        [payment] = s.exec(select(Payment)).all()
        assert payment.refunded_minor == 8_000 and payment.status == "applied"
    healthy(db)


def test_two_partial_refunds_out_of_order_give_back_the_total_once(db) -> None:
    [number] = given_invoices(db, "300.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=30_000, pi_id="pi_P")))
    first = sp.event("charge.refunded", sp.charge(payment_intent="pi_P", amount=30_000,
                                                  amount_refunded=10_000, charge_id="ch_P"))
    second = sp.event("charge.refunded", sp.charge(payment_intent="pi_P", amount=30_000,
                                                   amount_refunded=25_000, charge_id="ch_P"))
    # when the later refund's event arrives first, then the earlier one, then again
    handle(db, second)
    stale = handle(db, first)
    handle(db, second)
    # then 250.00 went back, once
    assert stale.detail == "refunded before"
    assert invoice(db, number).balance_minor == 25_000
    with db.read_session() as s:
        assert [r.amount_minor for r in s.exec(select(Refund))] == [25_000]
    healthy(db)


def test_a_refund_takes_unapplied_credit_first(db) -> None:
    # given a Stripe payment of 150 on an invoice of 100 (50 left as credit)
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=15_000, pi_id="pi_U")))
    # when 70 is refunded
    handle(db, sp.event("charge.refunded", sp.charge(payment_intent="pi_U", amount=15_000,
                                                     amount_refunded=7_000)))
    # then the 50 of credit and 20 of the invoice went back
    [payment] = payments(db)
    assert payment.unapplied_minor == 0 and payment.refunded_minor == 7_000
    assert invoice(db, number).balance_minor == 2_000
    with db.read_session() as s:
        assert s.exec(select(Refund)).one().from_unapplied_minor == 5_000
    healthy(db)


def test_a_refund_before_its_payment_waits_for_it(db) -> None:
    [number] = given_invoices(db, "100.00")
    early = handle(db, sp.event("charge.refunded", sp.charge(
        payment_intent="pi_W", amount=10_000, amount_refunded=10_000)))
    assert early.status == "waiting"
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_W")))
    [payment] = payments(db)
    assert payment.status == "refunded" and invoice(db, number).balance_minor == 10_000
    with db.read_session() as s:
        assert {e.status for e in s.exec(select(ProviderEvent))} == {"processed"}
    healthy(db)


@pytest.mark.parametrize("kind", ["refund", "chargeback"])
def test_an_event_waiting_while_its_payment_is_recorded_at_the_same_moment_is_not_left_waiting(
        db, kind: str) -> None:
    # given an invoice, and a refund (or chargeback) of its Stripe payment arriving before the
    # payment: its transaction has found no payment and is about to commit "waiting"
    [number] = given_invoices(db, "100.00")
    early = (refund_event(10_000) if kind == "refund" else dispute_event())
    paid = sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1"))
    with db.session() as held:
        assert stripe_events.handle(held, early, now=NOW, fetch_fees=False).status == "waiting"
        # when another server process records the payment at that very moment
        outcome, waited = meanwhile.second_writer(db, held, lambda s: stripe_events.handle(
            s, paid, now=NOW, fetch_fees=False))
    # then (on PostgreSQL it waited for the first: one PaymentIntent's events are processed
    # one at a time) the payment is recorded and the waiting event applied, none left waiting
    assert outcome.status == "processed"
    assert waited == db.is_postgres
    assert invoice(db, number).balance_minor == 10_000
    settled(db)
    healthy(db)


def charged_back(db, amount: int = 10_000, *, total: str = "100.00",
                 status: str = "needs_response") -> tuple[str, stripe_events.Outcome]:
    """An invoice paid through Stripe (pi_D1), then charged back as dp_1."""
    [number] = given_invoices(db, total)
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=int(total.replace(".", "")), pi_id="pi_D1")))
    outcome = handle(db, sp.event("charge.dispute.created", sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=amount, status=status,
        dispute_id="dp_1")))
    return number, outcome


def chargeback_disputes(db) -> list[Dispute]:
    with db.read_session() as s:
        return list(s.exec(select(Dispute).where(Dispute.external_id == "stripe:dp_1")))


def cards(db, template: str) -> list[dict]:
    with db.read_session() as s:
        return [m.payload for m in s.exec(select(OutboxMessage).order_by(OutboxMessage.id))
                if m.payload.get("template") == template]


def test_a_chargeback_takes_the_money_back_and_holds_the_invoice_in_dispute(db) -> None:
    # given a paid invoice; when the customer's bank charges 100.00 back
    number, outcome = charged_back(db)
    # then the payment gives it back and the invoice is open again, held in a dispute
    assert outcome.status == "processed" and "took back 100.00" in outcome.detail
    [payment] = payments(db)
    assert (payment.refunded_minor, payment.status) == (10_000, "refunded")
    reopened = invoice(db, number)
    assert (reopened.balance_minor, reopened.disputed_minor) == (10_000, 10_000)
    [dispute] = chargeback_disputes(db)
    assert (dispute.source, dispute.reason, dispute.status, dispute.held_minor,
            dispute.opened_by) == ("chargeback", "not_received", "open", 10_000, "stripe")
    # and AR and the collector hear what it did
    told = cards(db, "provider_dispute")
    assert sorted(c["channel"] for c in told) == ["UCOLL001", "ar"]
    assert told[0]["context"]["held"] == [{"invoice": number, "amount_minor": 10_000,
                                           "dispute": dispute.id}]
    healthy(db)


def test_a_partial_chargeback_holds_only_what_was_taken(db) -> None:
    number, _ = charged_back(db, 4_000)
    assert invoice(db, number).balance_minor == 4_000
    assert [d.amount_minor for d in chargeback_disputes(db)] == [4_000]
    healthy(db)


def test_an_inquiry_takes_nothing_back(db) -> None:
    number, outcome = charged_back(db, status="warning_needs_response")
    assert "inquiry" in outcome.detail
    assert invoice(db, number).balance_minor == 0 and chargeback_disputes(db) == []
    assert cards(db, "provider_dispute")[0]["context"]["inquiry"] is True
    healthy(db)


def test_a_won_chargeback_pays_the_invoice_again_and_closes_its_dispute(db) -> None:
    number, _ = charged_back(db)
    won = sp.event("charge.dispute.closed", sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=10_000, status="won",
        dispute_id="dp_1"))
    # when Stripe decides for us, and says so twice
    first, again = handle(db, won), handle(db, won)
    # then the money is a payment on the invoice again, once, and the dispute is closed
    assert (first.status, again.status) == ("processed", "duplicate")
    assert invoice(db, number).balance_minor == 0
    back = payments(db)[-1]
    assert (back.external_id, back.amount_minor, back.status) == (
        "stripe:dp_1:reinstated", 10_000, "applied")
    [dispute] = chargeback_disputes(db)
    assert (dispute.status, dispute.resolved_by, dispute.held_minor) == ("rejected", "stripe", 0)
    assert cards(db, "provider_dispute_closed")[0]["context"]["payment_back"] == back.id
    healthy(db)


def test_a_lost_chargeback_leaves_the_dispute_to_a_person(db) -> None:
    number, _ = charged_back(db)
    handle(db, sp.event("charge.dispute.closed", sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=10_000, status="lost",
        dispute_id="dp_1")))
    # then the invoice stays open and held, and AR is asked to decide the dispute
    [dispute] = chargeback_disputes(db)
    assert dispute.status == "open" and invoice(db, number).balance_minor == 10_000
    assert cards(db, "provider_dispute_closed")[0]["context"]["disputes"] == [dispute.id]
    assert len(payments(db)) == 1
    healthy(db)


def test_a_chargeback_before_its_payment_waits_for_it(db) -> None:
    [number] = given_invoices(db, "100.00")
    early = handle(db, sp.event("charge.dispute.created", sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=10_000, dispute_id="dp_1")))
    assert early.status == "waiting"
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    assert invoice(db, number).balance_minor == 10_000
    assert [d.status for d in chargeback_disputes(db)] == ["open"]
    healthy(db)


def dispute_event(status: str = "needs_response", amount: int = 10_000,
                  event_id: str | None = None) -> dict:
    """Stripe's charge.dispute.created (needs_response) or .closed (won, lost) for dp_1."""
    kind = "charge.dispute.closed" if status in ("won", "lost") else "charge.dispute.created"
    return sp.event(kind, sp.dispute(payment_intent="pi_D1", charge_id="ch_D1", amount=amount,
                                     status=status, dispute_id="dp_1"), event_id=event_id)


def refund_event(amount_refunded: int, amount: int = 10_000) -> dict:
    return sp.event("charge.refunded", sp.charge(payment_intent="pi_D1", amount=amount,
                                                 amount_refunded=amount_refunded,
                                                 charge_id="ch_D1"))


def audited(db, action: str) -> list[AuditEvent]:
    with db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def settled(db) -> None:
    """Every event processed, none left waiting."""
    with db.read_session() as s:
        assert {e.status for e in s.exec(select(ProviderEvent))} == {"processed"}
        assert stripe_events.waiting(s) == 0


def test_a_won_close_before_its_chargeback_waits_for_it_and_pays_the_invoice_again(db) -> None:
    # given an invoice paid through Stripe
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    # when Stripe's close (won) is delivered before the chargeback it closes
    early = handle(db, dispute_event("won"))
    # then it waits (audited as such), changing nothing yet
    assert (early.status, early.object_id) == ("waiting", "dp_1")
    assert [a.to_state for a in audited(db, "payment.chargeback_closed")] == ["waiting"]
    assert invoice(db, number).balance_minor == 0 and len(payments(db)) == 1
    # when the chargeback arrives
    created = handle(db, dispute_event())
    # then it takes the money back and the waiting close gives it back: paid, dispute closed
    assert created.status == "processed"
    paid = invoice(db, number)
    assert (paid.balance_minor, paid.disputed_minor) == (0, 0)
    back = payments(db)[-1]
    assert (back.external_id, back.amount_minor, back.status) == (
        "stripe:dp_1:reinstated", 10_000, "applied")
    [dispute] = chargeback_disputes(db)
    assert (dispute.status, dispute.resolved_by, dispute.held_minor) == ("rejected", "stripe", 0)
    assert [a.to_state for a in audited(db, "payment.chargeback_closed")] == ["waiting", "won"]
    settled(db)
    healthy(db)


def test_a_lost_close_before_its_chargeback_still_takes_the_money_back(db) -> None:
    # given an invoice paid through Stripe; when the close (lost) comes before the chargeback
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    assert handle(db, dispute_event("lost")).status == "waiting"
    handle(db, dispute_event())
    # then the money is gone: the invoice is open and held, and AR is asked to decide
    reopened = invoice(db, number)
    assert (reopened.balance_minor, reopened.disputed_minor) == (10_000, 10_000)
    [dispute] = chargeback_disputes(db)
    assert dispute.status == "open"
    assert cards(db, "provider_dispute_closed")[0]["context"]["disputes"] == [dispute.id]
    settled(db)
    healthy(db)


def ledger(db) -> dict:
    """What the books say about the chargeback, without row ids: payments, refunds, what each
    payment has on the invoice, the invoice, its disputes, the events, what AR was told."""
    with db.read_session() as s:
        net: dict[tuple[str, str], int] = {}
        for a in s.exec(select(Allocation)):
            key = (s.get(Payment, a.payment_id).external_id, s.get(Invoice, a.invoice_id).number)
            net[key] = net.get(key, 0) + a.amount_minor
        return {
            "payments": sorted((p.external_id, p.amount_minor, p.refunded_minor,
                                p.unapplied_minor, p.status) for p in s.exec(select(Payment))),
            "refunds": sorted((r.external_id, r.amount_minor) for r in s.exec(select(Refund))),
            "applied": net,
            "invoices": [(i.number, i.balance_minor, i.disputed_minor, i.paid_at is not None)
                         for i in s.exec(select(Invoice))],
            "disputes": [(d.external_id, d.amount_minor, d.held_minor, d.status, d.resolved_by)
                         for d in s.exec(select(Dispute))],
            "events": sorted((e.type, e.status) for e in s.exec(select(ProviderEvent))),
            "told_ar": sorted(m.payload["template"] for m in s.exec(select(OutboxMessage))
                              if m.payload.get("channel") == "ar"),
        }


def expected_ledger(number: str, status: str) -> dict:
    """The chargeback's books when its events arrive in Stripe's order."""
    events = [("charge.dispute.closed", "processed"), ("charge.dispute.created", "processed"),
              ("payment_intent.succeeded", "processed")]
    told = ["dispute_card", "provider_dispute", "provider_dispute_closed", "provider_payment"]
    if status == "won":
        return {"payments": [("stripe:dp_1:reinstated", 10_000, 0, 0, "applied"),
                             ("stripe:pi_D1", 10_000, 10_000, 0, "refunded")],
                "refunds": [("stripe:dp_1:withdrawn", 10_000)],
                "applied": {("stripe:pi_D1", number): 0,
                            ("stripe:dp_1:reinstated", number): 10_000},
                "invoices": [(number, 0, 0, True)],
                "disputes": [("stripe:dp_1", 10_000, 0, "rejected", "stripe")],
                "events": events, "told_ar": told}
    return {"payments": [("stripe:pi_D1", 10_000, 10_000, 0, "refunded")],
            "refunds": [("stripe:dp_1:withdrawn", 10_000)],
            "applied": {("stripe:pi_D1", number): 0},
            "invoices": [(number, 10_000, 10_000, False)],
            "disputes": [("stripe:dp_1", 10_000, 10_000, "open", None)],
            "events": events, "told_ar": told}


def delivered_in_order(db, events: dict[str, dict], order: tuple[str, ...]) -> list[str]:
    """Stripe delivers `events` in `order`, the AR invariants checked after each, then all of
    them again: what the replay answered, in order."""
    for name in order:
        handle(db, events[name])
        healthy(db)
    return [handle(db, events[name]).status for name in order]


ORDERS = list(permutations(("payment", "created", "closed")))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
@pytest.mark.parametrize("status", ["won", "lost"])
def test_a_chargeback_ends_the_same_whatever_order_its_events_arrive_in(
        db, status: str, order: tuple[str, ...]) -> None:
    # given an invoice paid through Stripe, charged back, and the chargeback decided
    [number] = given_invoices(db, "100.00")
    events = {"payment": sp.event("payment_intent.succeeded", sp.payment_intent(
                  invoice=number, amount=10_000, pi_id="pi_D1"), event_id="evt_pay"),
              "created": dispute_event(event_id="evt_created"),
              "closed": dispute_event(status, event_id="evt_closed")}
    # when Stripe delivers the three events in this order (the books checked after each),
    # then all again
    replayed = delivered_in_order(db, events, order)
    # then the books are those of Stripe's own order, and the replay changed nothing
    assert replayed == ["duplicate"] * 3
    assert ledger(db) == expected_ledger(number, status)
    settled(db)
    healthy(db)


def escalation_event(kind: str, event_id: str | None = None) -> dict:
    """An inquiry on dp_1 that became a chargeback, as Stripe reports it: created as an
    inquiry (nothing withdrawn), its funds withdrawn (now `needs_response`), closed won (money
    withdrawn and reinstated) or lost (withdrawn)."""
    status, event_type, moved = {
        "inquiry": ("warning_needs_response", "charge.dispute.created", []),
        "withdrawn": ("needs_response", "charge.dispute.funds_withdrawn", [-10_000]),
        "won": ("won", "charge.dispute.closed", [-10_000, 10_000]),
        "lost": ("lost", "charge.dispute.closed", [-10_000]),
    }[kind]
    return sp.event(event_type, sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=10_000, status=status,
        dispute_id="dp_1", balance_transactions=moved), event_id=event_id)


def chargeback_cards(db) -> list[dict]:
    """What AR was told of dp_1 taking money back (not the inquiry's notice)."""
    return [c["context"] for c in cards(db, "provider_dispute")
            if c["channel"] == "ar" and not c["context"]["inquiry"]]


def test_an_inquiry_that_becomes_a_chargeback_takes_the_money_when_it_is_withdrawn(db) -> None:
    # given an invoice paid through Stripe, and an inquiry on the payment (nothing taken)
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    assert "inquiry" in handle(db, escalation_event("inquiry")).detail
    assert invoice(db, number).balance_minor == 0
    # when the inquiry becomes a chargeback: Stripe withdraws the money
    outcome = handle(db, escalation_event("withdrawn"))
    # then the payment gives it back and the invoice is open again, held in a dispute
    assert outcome.status == "processed" and "took back 100.00" in outcome.detail
    [payment] = payments(db)
    assert (payment.refunded_minor, payment.status) == (10_000, "refunded")
    reopened = invoice(db, number)
    assert (reopened.balance_minor, reopened.disputed_minor) == (10_000, 10_000)
    [dispute] = chargeback_disputes(db)
    assert (dispute.status, dispute.held_minor) == ("open", 10_000)
    # and AR heard of the inquiry, then of the chargeback
    told = [c["context"]["inquiry"] for c in cards(db, "provider_dispute")
            if c["channel"] == "ar"]
    assert told == [True, False]
    assert chargeback_cards(db)[0]["held"] == [{"invoice": number, "amount_minor": 10_000,
                                                "dispute": dispute.id}]
    healthy(db)


@pytest.mark.parametrize("withdrawn_first", [False, True])
def test_a_chargeback_and_its_funds_withdrawn_take_the_money_once(
        db, withdrawn_first: bool) -> None:
    # given an invoice paid through Stripe
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    # when Stripe reports one chargeback twice: created, and its funds withdrawn
    events = [dispute_event(), escalation_event("withdrawn")]
    outcomes = [handle(db, e) for e in (events[::-1] if withdrawn_first else events)]
    # then the money is taken back once, one dispute holds the invoice, AR is told once
    assert [o.status for o in outcomes] == ["processed", "processed"]
    assert "taken back before" in outcomes[1].detail
    with db.read_session() as s:
        assert [(r.external_id, r.amount_minor) for r in s.exec(select(Refund))] == [
            ("stripe:dp_1:withdrawn", 10_000)]
    reopened = invoice(db, number)
    assert (reopened.balance_minor, reopened.disputed_minor) == (10_000, 10_000)
    assert len(chargeback_disputes(db)) == 1 and len(chargeback_cards(db)) == 1
    healthy(db)


ESCALATION_ORDERS = list(permutations(("payment", "inquiry", "withdrawn", "closed")))


@pytest.mark.parametrize("order", ESCALATION_ORDERS,
                         ids=["-".join(o) for o in ESCALATION_ORDERS])
@pytest.mark.parametrize("status", ["won", "lost"])
def test_an_inquiry_become_chargeback_ends_the_same_whatever_order_its_events_arrive_in(
        db, status: str, order: tuple[str, ...]) -> None:
    # given an invoice paid through Stripe, an inquiry on it that became a chargeback, and
    # the chargeback decided
    [number] = given_invoices(db, "100.00")
    events = {"payment": sp.event("payment_intent.succeeded", sp.payment_intent(
                  invoice=number, amount=10_000, pi_id="pi_D1"), event_id="evt_pay"),
              "inquiry": escalation_event("inquiry", "evt_inquiry"),
              "withdrawn": escalation_event("withdrawn", "evt_withdrawn"),
              "closed": escalation_event(status, "evt_closed")}
    # when Stripe delivers the four events in this order (the books checked after each),
    # then all again
    replayed = delivered_in_order(db, events, order)
    # then the money is where a chargeback decided so leaves it, taken back once and (won)
    # given back once, whatever the order; a replay changes nothing
    assert replayed == ["duplicate"] * 4
    books = ledger(db)
    expected = expected_ledger(number, status)
    assert {k: books[k] for k in ("payments", "refunds", "applied", "invoices", "disputes")} \
        == {k: expected[k] for k in ("payments", "refunds", "applied", "invoices", "disputes")}
    [told] = chargeback_cards(db)
    assert [h["amount_minor"] for h in told["held"]] == [10_000]
    assert books["told_ar"].count("provider_dispute_closed") == 1
    settled(db)
    healthy(db)


def test_a_refund_after_a_won_chargeback_gives_back_the_money_it_reinstated(db) -> None:
    # given a chargeback Stripe closed as won (the invoice is paid again)
    number, _ = charged_back(db)
    handle(db, dispute_event("won"))
    # when the charge is then refunded in full, and Stripe says so twice
    refunded = handle(db, refund_event(10_000))
    again = handle(db, refund_event(10_000))
    # then the money the chargeback reinstated goes back, once: the invoice is open again
    assert (refunded.status, refunded.detail) == ("processed", "refunded 100.00")
    assert again.detail == "refunded before"
    assert invoice(db, number).balance_minor == 10_000
    [original, back] = payments(db)
    assert (original.refunded_minor, original.status) == (10_000, "refunded")
    assert (back.external_id, back.refunded_minor, back.status) == (
        "stripe:dp_1:reinstated", 10_000, "refunded")
    with db.read_session() as s:
        assert sorted((r.external_id, r.amount_minor) for r in s.exec(select(Refund))) == [
            ("stripe:ch_D1:refunded:10000:dp_1", 10_000), ("stripe:dp_1:withdrawn", 10_000)]
    assert cards(db, "provider_refund")[0]["context"]["reopened"] == [
        {"invoice": number, "amount": "100.00"}]
    healthy(db)


def test_a_full_refund_after_a_partial_chargeback_won_takes_from_both_payments(db) -> None:
    # given 40.00 of a 100.00 payment charged back, then won back
    number, _ = charged_back(db, 4_000)
    handle(db, dispute_event("won", amount=4_000))
    assert invoice(db, number).balance_minor == 0
    # when all 100.00 of the charge is refunded
    handle(db, refund_event(10_000))
    # then 60.00 comes from the payment and 40.00 from what the chargeback gave back
    assert invoice(db, number).balance_minor == 10_000
    with db.read_session() as s:
        assert sorted((r.external_id, r.amount_minor) for r in s.exec(select(Refund))) == [
            ("stripe:ch_D1:refunded:10000", 6_000), ("stripe:ch_D1:refunded:10000:dp_1", 4_000),
            ("stripe:dp_1:withdrawn", 4_000)]
    assert [(p.refunded_minor, p.status) for p in payments(db)] == [
        (10_000, "refunded"), (4_000, "refunded")]
    healthy(db)


def test_a_refund_before_the_won_close_waits_for_it(db) -> None:
    # given a chargeback; when its refund (made after Stripe closed it as won) comes first
    number, _ = charged_back(db)
    early = handle(db, refund_event(10_000))
    assert (early.status, early.object_id) == ("waiting", "dp_1")
    assert invoice(db, number).balance_minor == 10_000  # nothing changed yet
    # when the close arrives
    handle(db, dispute_event("won"))
    # then the money came back and went back: the invoice is open, nothing waits
    assert invoice(db, number).balance_minor == 10_000
    assert [(p.refunded_minor, p.status) for p in payments(db)] == [
        (10_000, "refunded"), (10_000, "refunded")]
    settled(db)
    healthy(db)


def test_a_refund_of_money_no_longer_held_changes_nothing_and_tells_ar(db) -> None:
    # given a chargeback Stripe closed as lost: none of the charge's money is held here
    number, _ = charged_back(db)
    handle(db, dispute_event("lost"))
    before = ledger(db)
    # when a refund of the charge arrives
    outcome = handle(db, refund_event(10_000))
    # then it is refused, kept, audited, and AR is asked to look; the books are unchanged
    assert outcome.status == "failed" and "only 0.00" in outcome.detail
    after = ledger(db)
    assert after["events"] == sorted([*before["events"], ("charge.refunded", "failed")])
    assert {k: v for k, v in after.items() if k not in ("events", "told_ar")} == {
        k: v for k, v in before.items() if k not in ("events", "told_ar")}
    assert after["told_ar"] == sorted([*before["told_ar"], "text"])
    assert [a.data["charge"] for a in audited(db, "payment.refund_refused")] == ["ch_D1"]
    with db.read_session() as s:
        kept = s.exec(select(ProviderEvent).where(ProviderEvent.status == "failed")).one()
        assert kept.payload["type"] == "charge.refunded"
    healthy(db)


def test_the_fee_is_queued_for_lookup_and_recorded_once(db) -> None:
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_F")), fetch_fees=True)
    with db.transaction() as s:
        [row] = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "stripe")).all()
        assert row.method == "fee.fetch" and row.payload["payment_intent"] == "pi_F"
        assert stripe_events.record_fee(s, payment_id=row.payload["payment_id"],
                                        external_id="txn_1", fee_minor=320, currency="usd",
                                        net_minor=9_680, description="Stripe processing fees")
        assert not stripe_events.record_fee(s, payment_id=row.payload["payment_id"],
                                            external_id="txn_1", fee_minor=320,
                                            currency="usd", net_minor=9_680, description=None)
    # the invoice is paid in full: the fee is not a short payment
    assert invoice(db, number).balance_minor == 0
    assert payments(db)[0].status == "applied"


def test_a_refund_in_another_currency_than_its_payment_changes_nothing_and_tells_ar(db) -> None:
    # given a USD invoice of 100.00 paid through Stripe
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    before = ledger(db)
    # when a refund of its charge arrives in yen (10,000 JPY: it was read as 100.00 USD,
    # the whole payment given back)
    outcome = handle(db, sp.event("charge.refunded", sp.charge(
        payment_intent="pi_D1", amount=10_000, amount_refunded=10_000, currency="jpy",
        charge_id="ch_D1")))
    # then it is refused with the reason, kept as failed, audited, and AR is asked to look;
    # the payment and its invoice are as they were
    assert outcome.status == "failed"
    assert "is in JPY, but payment" in outcome.detail and "received in USD" in outcome.detail
    after = ledger(db)
    assert after["events"] == sorted([*before["events"], ("charge.refunded", "failed")])
    assert {k: v for k, v in after.items() if k not in ("events", "told_ar")} == {
        k: v for k, v in before.items() if k not in ("events", "told_ar")}
    assert after["told_ar"] == sorted([*before["told_ar"], "text"])
    assert [a.data["currency"] for a in audited(db, "payment.provider_currency_refused")] == [
        "JPY"]
    assert invoice(db, number).balance_minor == 0
    with db.read_session() as s:
        kept = s.exec(select(ProviderEvent).where(ProviderEvent.status == "failed")).one()
        assert kept.payload["type"] == "charge.refunded" and kept.detail == outcome.detail
    # and the same refund in dollars afterwards is given back as usual
    handle(db, refund_event(10_000))
    assert invoice(db, number).balance_minor == 10_000
    assert payments(db)[0].refunded_minor == 10_000
    healthy(db)


@pytest.mark.parametrize("kind", ["charge.dispute.created", "charge.dispute.funds_withdrawn",
                                  "charge.dispute.closed"])
def test_a_chargeback_in_another_currency_than_its_payment_changes_nothing(db, kind) -> None:
    # given a USD invoice of 100.00 paid through Stripe
    [number] = given_invoices(db, "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=10_000, pi_id="pi_D1")))
    before = ledger(db)
    # when a chargeback of 10,000 JPY arrives (or its funds_withdrawn; or its close, which
    # lists the withdrawal)
    outcome = handle(db, sp.event(kind, sp.dispute(
        payment_intent="pi_D1", charge_id="ch_D1", amount=10_000, currency="jpy",
        dispute_id="dp_1", status="lost" if kind.endswith("closed") else "needs_response",
        balance_transactions=[-10_000] if kind.endswith("closed") else None)))
    # then nothing is taken back (not 100.00 USD), nothing is held in dispute; the event is
    # kept as failed with the reason and AR is asked to look
    assert outcome.status == "failed" and "is in JPY" in outcome.detail
    after = ledger(db)
    assert after["events"] == sorted([*before["events"], (kind, "failed")])
    assert {k: v for k, v in after.items() if k not in ("events", "told_ar")} == {
        k: v for k, v in before.items() if k not in ("events", "told_ar")}
    assert after["told_ar"] == sorted([*before["told_ar"], "text"])
    assert invoice(db, number).balance_minor == 0
    assert len(audited(db, "payment.provider_currency_refused")) == 1
    healthy(db)


def test_a_refund_from_two_payments_locks_their_invoices_in_id_order(db, monkeypatch) -> None:
    from workflows import invoicing
    from workflows.cash_application import correct_application

    # given 200.00 paid through Stripe, a collector's correction putting 100.00 of it on the
    # second invoice, then 100.00 on the first (applied there last) ...
    first, second = given_invoices(db, "100.00", "100.00")
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=first, amount=20_000, pi_id="pi_D1")))
    with db.transaction() as s:
        [payment] = s.exec(select(Payment)).all()
        correct_application(s, payment_id=payment.id, invoices=[second, first],
                            actor="UCOLL001", now=NOW)
    # ... then 100.00 charged back (off the first invoice) and won: that money is a payment
    # on the first invoice, the Stripe payment's rest on the second
    handle(db, dispute_event("needs_response", amount=10_000))
    handle(db, dispute_event("won", amount=10_000))
    ids = {invoice(db, n).id: n for n in (first, second)}
    locked: list[str] = []
    lock = invoicing.lock_invoice

    def spy(session, invoice_id):
        locked.append(ids[invoice_id])
        return lock(session, invoice_id)
    monkeypatch.setattr(invoicing, "lock_invoice", spy)
    # when all 200.00 of the charge is refunded (from the payment, then from the reinstated)
    outcome = handle(db, refund_event(20_000, amount=20_000))
    # then the invoices were locked in id order (the first, then the second) before either
    # was reopened, as corrections lock them: not the second, then the first
    assert outcome.status == "processed"
    assert locked[:2] == [first, second]
    assert (invoice(db, first).balance_minor, invoice(db, second).balance_minor) == (
        10_000, 10_000)
    healthy(db)


@pytest.mark.parametrize(("currency", "total", "paid", "refunded", "open_after"), [
    ("JPY", "30000", 30_000, 12_000, 12_000),  # zero-decimal: 1 in Stripe's API = 1 yen
    ("KWD", "30.000", 30_000, 12_340, 12_340),  # three decimals (Stripe: multiples of ten)
    ("ISK", "30000", 3_000_000, 1_200_000, 12_000),  # Stripe's API: 100 = 1 krona
])
def test_refunds_in_zero_and_three_decimal_currencies_give_back_exactly_that(
        db, currency, total, paid, refunded, open_after) -> None:
    # given an invoice in that currency paid in full through Stripe
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-TOKYO", "Tokyo KK", currency=currency, credit_limit="9000000")
        number = f.invoice(s, "INV-2026-000001", "C-TOKYO", total=total, currency=currency,
                           due=date(2026, 3, 30)).number
    handle(db, sp.event("payment_intent.succeeded", sp.payment_intent(
        invoice=number, amount=paid, currency=currency.lower(), pi_id="pi_X")))
    assert invoice(db, number).balance_minor == 0
    # when part of it is refunded, then the same refund delivered again
    event = sp.event("charge.refunded", sp.charge(
        payment_intent="pi_X", amount=paid, amount_refunded=refunded,
        currency=currency.lower(), charge_id="ch_X"))
    handle(db, event)
    handle(db, sp.event("charge.refunded", event["data"]["object"]))
    # then exactly that much is open again, in the invoice's own minor units, once
    assert invoice(db, number).balance_minor == open_after
    assert [(p.refunded_minor, p.currency) for p in payments(db)] == [(open_after, currency)]
    healthy(db)
