"""A payment nobody could place leads somewhere (issue 13, point 5): its card in the AR
channel offers Find customer, Apply to invoices (a multi external select of open invoices)
and Refund or return (a reason; the refund booked once, audited) — through signed requests
to the real server and the Slack stand-in."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import select

from blocks import ids
from models import Allocation, AuditEvent, Invoice, OutboxMessage, Payment, Refund, UserRole
from sandbox.driver import FORM
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, burst, prepared_click, refusals_audited, text_of
from tests.support.timetravel import frozen_at
from workflows import invariants

TODAY = date(2026, 11, 24)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)
AR = "CAR000001"
WAIT = 10.0


def unplaced(server, api, standin, external_id: str) -> tuple[int, dict]:
    paid = api.post("/payments", json={
        "amount": "321.00", "currency": "USD", "received_at": f"{TODAY}T12:00:00+00:00",
        "payer_name": "ZZ TRADING", "reference": "?", "external_id": external_id})
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["id"]
    card = standin.api.wait_for(lambda: next((m for m in standin.api.messages(AR)
                                              if f"Payment #{payment_id}" in text_of(m)), None),
                                WAIT, "the card")
    return payment_id, card


def current(api, message: dict) -> str:
    now = api.message(message["channel"], message["ts"])
    return text_of({"text": now["text"], "blocks": now["blocks"]})


def test_an_unplaced_payment_is_applied_to_invoices_picked_on_its_card(server, slack, standin,
                                                                       api) -> None:
    # given two open invoices of one customer, and a payment nothing fits
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.invoice(s, "INV-A-1", total="200.00", due=TODAY + timedelta(days=5))
        f.invoice(s, "INV-A-2", total="121.00", due=TODAY + timedelta(days=9))
    payment_id, card = unplaced(server, api, standin, "BANK-1")
    shown = text_of(card)
    # then the card offers the three ways forward
    assert "Unidentified payment" in shown
    for action in (ids.CASHAPP_ASSIGN, ids.CASHAPP_APPLY_INVOICES, ids.CASHAPP_RETURN):
        assert action in shown, action
    assert "Find customer" in shown
    # when the collector searches open invoices in the select
    options = slack.block_suggestion("UCOLL001", card, ids.CASHAPP_APPLY_INVOICES, "INV-A").json()
    assert [o["value"] for o in options["options"]] == ["INV-A-1", "INV-A-2"]
    # and picks both
    slack.click("UCOLL001", card, ids.CASHAPP_APPLY_INVOICES,
                selected=options["options"], block_id=f"{ids.CASHAPP_ACTIONS_BLOCK}:{payment_id}")
    # then the payment pays them, and the card says who applied it
    standin.api.wait_for(lambda: "Applied to other invoices" in current(standin.api, card)
                         or None, WAIT, "the updated card")
    with server.db.read_session() as s:
        assert sorted(a.amount_minor for a in s.exec(select(Allocation))) == [12100, 20000]
    assert ids.CASHAPP_RETURN not in current(standin.api, card)


def test_the_cards_selects_show_nothing_to_someone_who_may_not_place_the_payment(
        server, slack, standin, api) -> None:
    # given a payment nothing fits; its card is in the AR channel, where anyone can type into
    # its selects
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.invoice(s, "INV-A-1", total="200.00", due=TODAY + timedelta(days=5))
    payment_id, card = unplaced(server, api, standin, "BANK-3")
    # when someone with no role, then a sales rep, search both selects
    for user in ("UNOBODY1", "USALES01"):
        invoices = slack.block_suggestion(user, card, ids.CASHAPP_APPLY_INVOICES, "INV")
        customers = slack.block_suggestion(user, card, ids.CASHAPP_ASSIGN, "globex")
        # then neither offers anything: no invoice numbers, open amounts or customer names
        assert (invoices.status_code, invoices.json()) == (200, {"options": []})
        assert (customers.status_code, customers.json()) == (200, {"options": []})
    # and each refusal is audited, against the payment, as the action's own would be
    assert refusals_audited(server.db, standin.api, 4) == [
        (user, action, "payment", str(payment_id)) for user in ("UNOBODY1", "USALES01")
        for action in ("refused.payment.correct", "refused.payment.identify")]
    # when the collector and an admin search them
    for user in ("UCOLL001", ADMIN):
        invoices = slack.block_suggestion(user, card, ids.CASHAPP_APPLY_INVOICES, "INV")
        customers = slack.block_suggestion(user, card, ids.CASHAPP_ASSIGN, "globex")
        # then they find the open invoice and the customer
        assert [(o["value"], o["text"]["text"]) for o in invoices.json()["options"]] == [
            ("INV-A-1", "INV-A-1 — USD 200.00 open")]
        assert [o["value"] for o in customers.json()["options"]] == ["C-GLOBEX"]
    with server.db.read_session() as s:
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action.startswith("refused."))).all()) == 4


def test_a_replayed_pick_cannot_undo_a_later_correction(server, slack, standin, api) -> None:
    # given two open invoices of one customer, and a payment nothing fits
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.invoice(s, "INV-A-1", total="200.00", due=TODAY + timedelta(days=5))
        f.invoice(s, "INV-A-2", total="121.00", due=TODAY + timedelta(days=9))
    payment_id, card = unplaced(server, api, standin, "BANK-4")
    block = f"{ids.CASHAPP_ACTIONS_BLOCK}:{payment_id}"
    [first] = slack.block_suggestion("UCOLL001", card, ids.CASHAPP_APPLY_INVOICES,
                                     "INV-A-1").json()["options"]
    # and two picks of INV-A-1 on the card as the collector's Slack shows it (captured: the
    # second is a later click, with its own action_ts)
    pick = prepared_click(slack, "UCOLL001", card, ids.CASHAPP_APPLY_INVOICES,
                          selected=[first], block_id=block)
    clock.sleep(0.01)
    later_pick = prepared_click(slack, "UCOLL001", card, ids.CASHAPP_APPLY_INVOICES,
                                selected=[first], block_id=block)
    assert later_pick != pick
    # when the collector picks INV-A-1
    assert slack.send(pick, FORM).status_code == 200
    answer = standin.api.wait_for(lambda: next((r for r in standin.api.responses
                                                if r["user"] == "UCOLL001"), None), WAIT,
                                  "the answer to the pick")
    assert "applied to the invoices you picked" in text_of(answer["payload"])
    # and then corrects it: the payment goes to INV-A-2
    assert "Applied as you said" in text_of(ask(
        slack, standin.api, "UCOLL001", f"payment {payment_id} apply INV-A-2"))
    assert placed(server, payment_id) == [("INV-A-2", 12100)]
    corrected, messages = counts(server)
    seen = len(standin.api.responses)
    # when the first pick is replayed, once and then 3 copies at once (its response_url
    # takes 5 answers, as Slack's does)
    assert slack.send(pick, FORM).status_code == 200
    assert burst(slack, pick, copies=3) == [200] * 3
    replies = standin.api.wait_for(lambda: standin.api.responses[seen:][3:] and
                                   standin.api.responses[seen:], WAIT, "4 answers")
    # then nothing moved back: no correction, no card update, no DM
    assert placed(server, payment_id) == [("INV-A-2", 12100)]
    assert counts(server) == (corrected, messages)
    # and each copy is told what the first pick was told
    assert {text_of(r["payload"]) for r in replies} == {text_of(answer["payload"])}
    # when the later pick arrives, a click of its own
    assert slack.send(later_pick, FORM).status_code == 200
    # then it corrects the payment as any pick does
    standin.api.wait_for(lambda: placed(server, payment_id) == [("INV-A-1", 20000)], WAIT,
                         "the later pick applied")
    assert counts(server)[0] == corrected + 1


def placed(server, payment_id: int) -> list[tuple[str, int]]:
    """Where the payment is applied now: (invoice, amount) of its allocations in force."""
    with server.db.read_session() as s:
        return [(number, amount) for number, amount in s.exec(
            select(Invoice.number, Allocation.amount_minor)
            .join(Invoice, Invoice.id == Allocation.invoice_id)
            .where(Allocation.payment_id == payment_id).order_by(Invoice.number))]


def counts(server) -> tuple[int, int]:
    """How many corrections were audited, and how many messages were written to be sent."""
    with server.db.read_session() as s:
        corrected = s.exec(select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "payment.corrected")).one()
        messages = s.exec(select(sa.func.count()).select_from(OutboxMessage)).one()
    return corrected, messages


def test_refund_or_return_books_the_refund_once_and_the_card_says_who(server, slack, standin,
                                                                     api) -> None:
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCOLL002", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
    payment_id, card = unplaced(server, api, standin, "BANK-2")
    # when a sales rep clicks Refund or return, it is refused
    slack.click("USALES01", card, ids.CASHAPP_RETURN)
    standin.api.wait_for(lambda: [e for e in standin.api.ephemerals("USALES01")
                                  if "Only a collector" in text_of(e)] or None, WAIT,
                         "the refusal")
    assert standin.api.views_for("USALES01") == []
    # when two collectors click it, a reason is asked of each
    slack.click("UCOLL001", card, ids.CASHAPP_RETURN)
    slack.click("UCOLL002", card, ids.CASHAPP_RETURN)
    modal = standin.api.wait_for(lambda: standin.api.views_for("UCOLL001") or None, WAIT,
                                 "the modal")[-1]
    other = standin.api.wait_for(lambda: standin.api.views_for("UCOLL002") or None, WAIT,
                                 "the second modal")[-1]
    slack.submit_view("UCOLL001", modal, {ids.CASHAPP_RETURN_REASON_BLOCK: {
        ids.CASHAPP_RETURN_REASON_INPUT: " "}}, check_required=False)
    assert "say why" in standin.api.view_errors(modal["id"])[ids.CASHAPP_RETURN_REASON_BLOCK]
    # and the first one's role is taken away before they submit: refused on submit
    with server.db.transaction() as s:
        s.exec(sa.delete(UserRole).where(UserRole.user_id == "UCOLL002"))
    slack.submit_view("UCOLL002", other, {ids.CASHAPP_RETURN_REASON_BLOCK: {
        ids.CASHAPP_RETURN_REASON_INPUT: "mine"}})
    assert "collector" in standin.api.view_errors(other["id"])[ids.CASHAPP_RETURN_REASON_BLOCK]
    reason = {ids.CASHAPP_RETURN_REASON_BLOCK: {
        ids.CASHAPP_RETURN_REASON_INPUT: "Not our customer: sent by mistake"}}
    slack.submit_view("UCOLL001", modal, reason)
    slack.submit_view("UCOLL001", modal, reason)  # Slack retries the submission
    # then the card says who refunded it, when, and what the bank is to send back
    standin.api.wait_for(lambda: "Refunded" in current(standin.api, card) or None, WAIT,
                         "the updated card")
    shown = current(standin.api, card)
    assert "Payment refunded — USD 321.00" in shown
    assert "*Refunded* USD 321.00 by <@UCOLL001>" in shown
    assert "Not our customer: sent by mistake" in shown
    assert "Return it from your bank: *USD 321.00* to *ZZ TRADING*" in shown
    assert ids.CASHAPP_APPLY_INVOICES not in shown and ids.CASHAPP_RETURN not in shown
    assert ids.CASHAPP_ASSIGN not in shown
    server.worker.drain()
    # and the books show the money gone, once, audited, the invariants holding
    with server.db.read_session() as s:
        payment = s.get(Payment, payment_id)
        assert (payment.status, payment.unapplied_minor, payment.refunded_minor) == (
            "refunded", 0, 32100)
        [refund] = s.exec(select(Refund)).all()
        assert (refund.payment_id, refund.amount_minor, refund.from_unapplied_minor,
                refund.reason) == (payment_id, 32100, 32100, "Not our customer: sent by mistake")
        assert refund.value_date == TODAY
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "payment.returned")).all()
        assert (event.actor, event.entity_id) == ("UCOLL001", str(payment_id))
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "payment.refunded")).all()) == 1
        assert invariants.validate_all(s) == []
    # and the payments API reports it refunded
    assert api.get(f"/payments/{payment_id}").json()["status"] == "refunded"


def test_refund_or_return_of_a_stripe_payment_is_refused_at_the_button(server, slack, standin,
                                                                       api) -> None:
    # given a payment nobody could place that came through Stripe (keyed by its PaymentIntent)
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
    payment_id, card = unplaced(server, api, standin, "stripe:pi_UNPLACED")
    # when a collector clicks Refund or return: refused, no modal, audited
    slack.click("UCOLL001", card, ids.CASHAPP_RETURN)
    standin.api.wait_for(lambda: [e for e in standin.api.ephemerals("UCOLL001")
                                  if "refund it in the Stripe dashboard" in text_of(e)] or None,
                         WAIT, "the refusal")
    assert standin.api.views_for("UCOLL001") == []
    with server.db.read_session() as s:
        assert s.exec(select(Refund)).all() == []
        assert s.get(Payment, payment_id).refunded_minor == 0
        [refused] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.payment.return")).all()
        assert (refused.actor, refused.entity_id) == ("UCOLL001", str(payment_id))
