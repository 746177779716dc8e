"""Cash application that learns, end to end (signed requests, real server, Slack stand-in): a
collector names the customer of an unidentified payment on its card, the next payment from that
payer line is applied and says why; admins list and remove what was learned (`/o2c rules`),
others are refused and the refusal is audited; a collector corrects an application
(`/o2c payment <id> apply ...`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from blocks import ids
from models import Allocation, AuditEvent, CashRule
from tests.support import factories as f
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)
NOON = datetime.combine(TODAY, time(12), UTC).isoformat()
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)
AR = "CAR000001"
ISSUED = date(2026, 11, 4)


@pytest.fixture
def company(server):
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UADMIN01", "admin")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.customer(s, "C-INITECH", "Initech LLC")
        for number, customer, total in [("INV-2026-000501", "C-GLOBEX", "600.00"),
                                        ("INV-2026-000502", "C-GLOBEX", "399.99"),
                                        ("INV-2026-000503", "C-GLOBEX", "123.45"),
                                        ("INV-2026-000601", "C-INITECH", "99.95")]:
            f.invoice(s, number, customer, total=total, issued=ISSUED,
                      due=ISSUED + timedelta(days=30))


def post_payment(api, amount: str, payer: str, external_id: str) -> dict:
    response = api.post("/payments", json={
        "amount": amount, "currency": "USD", "received_at": NOON, "payer_name": payer,
        "external_id": external_id})
    assert response.status_code == 201, response.text
    return response.json()


def placed(payment: dict) -> list[tuple[str, str]]:
    """Where a payment went (invoice, amount), as the API answers it."""
    return [(a["invoice"], a["amount"]) for a in payment["allocations"]]


def card_in_ar(standin) -> dict:
    return standin.api.wait_for(lambda: standin.api.messages(AR)[-1] if standin.api.messages(AR)
                                else None, 10, "a card in the AR channel")


def answer_to(standin, user: str, count: int = 1) -> dict:
    return standin.api.wait_for(
        lambda: (r := [r for r in standin.api.responses if r["user"] == user])[count - 1:]
        and r[count - 1], 10, f"answer {count} to {user}")


def test_naming_the_customer_on_the_card_applies_it_and_the_next_one_says_why(
        company, server, api, slack, standin) -> None:
    # given a payment from a payer line that looks like nobody (600.00 + 399.99 of Globex's)
    payment = post_payment(api, "999.99", "GLBX HOLDINGS <!here>", "BANK-1")
    assert payment["status"] == "unapplied"
    card = card_in_ar(standin)
    assert "Unidentified payment" in text_of(card)
    # the select searches customers as you type
    options = slack.block_suggestion("UCOLL001", card, ids.CASHAPP_ASSIGN, "globx").json()
    assert options["options"][0]["value"] == "C-GLOBEX"
    # when the collector picks Globex on the card
    slack.click("UCOLL001", card, ids.CASHAPP_ASSIGN,
                selected={"text": {"type": "plain_text", "text": "Globex Corporation"},
                          "value": "C-GLOBEX"})
    # then they are told what happened and what was learned (escaped)
    told = text_of(answer_to(standin, "UCOLL001")["payload"])
    assert "Globex Corporation's" in told and "now *applied in full*" in told
    assert "Learned: next time, Globex Corporation paid from 'GLBX HOLDINGS &lt;!here&gt;'" \
        in told
    # and the card shows it applied, with no select left
    updated = standin.api.wait_for(
        lambda: (m := standin.api.message(AR, card["ts"])) and m["edited"] and m, 10,
        "the card updated")
    assert "Payment applied" in text_of(updated)
    assert not [b for b in updated["blocks"] if b.get("accessory")]
    assert placed(api.get(f"/payments/{payment['id']}").json()) == [
        ("INV-2026-000501", "600.00"), ("INV-2026-000502", "399.99")]
    # when the same payer line pays again
    again = post_payment(api, "123.45", "GLBX HOLDINGS <!here>", "BANK-2")
    # then it is applied by itself, and the answer says why
    assert again["status"] == "applied"
    assert again["matched_because"] == [
        "Globex Corporation paid from 'GLBX HOLDINGS <!here>' on 24 Nov 2026"]


def teach(api, slack, standin, server) -> int:
    """A collector names Globex on an unidentified payment's card; the rule's id."""
    post_payment(api, "999.99", "GLBX HOLDINGS", "BANK-1")
    slack.click("UCOLL001", card_in_ar(standin), ids.CASHAPP_ASSIGN,
                selected={"text": {"type": "plain_text", "text": "Globex"},
                          "value": "C-GLOBEX"})
    answer_to(standin, "UCOLL001")
    return standin.api.wait_for(lambda: _rule_id(server.db), 10, "a learned rule")


def _rule_id(db) -> int | None:
    with db.read_session() as s:
        return s.exec(select(CashRule.id)).first()


def test_admins_list_and_remove_learned_rules_and_others_are_refused(
        company, server, api, slack, standin) -> None:
    # given a rule a collector taught
    rule_id = teach(api, slack, standin, server)
    # when a collector asks for the rules, or to remove one
    refused = ask(slack, standin.api, "UCOLL001", "rules")
    refused_remove = ask(slack, standin.api, "UCOLL001", f"rules remove {rule_id}")
    # then both are refused, nothing changes, and the refusals are audited
    assert "admin" in text_of(refused) and "admin" in text_of(refused_remove)
    with server.db.read_session() as s:
        assert s.get(CashRule, rule_id).active
        refusals = s.exec(select(AuditEvent).where(AuditEvent.actor == "UCOLL001",
                                                   AuditEvent.action.startswith("refused."))
                          ).all()
    assert len(refusals) == 2
    # when an admin lists them
    listed = text_of(ask(slack, standin.api, "UADMIN01", "rules"))
    assert f"`#{rule_id}`" in listed and "Globex Corporation" in listed
    assert "pays from 'GLBX HOLDINGS'" in listed and "<@UCOLL001>" in listed
    # and removes it
    removed = text_of(ask(slack, standin.api, "UADMIN01", f"rules remove {rule_id}"))
    assert "removed" in removed
    with server.db.read_session() as s:
        rule = s.get(CashRule, rule_id)
        assert (rule.active, rule.removed_by) == (False, "UADMIN01")
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "cash_rule.removed")).one()
    # then the same payer line is no longer recognised
    assert post_payment(api, "123.45", "GLBX HOLDINGS", "BANK-3")["status"] != "applied"


def test_a_collector_corrects_an_application_with_a_command(
        company, server, api, slack, standin) -> None:
    # given a payment the engine applied to Initech's invoice by its number
    payment = api.post("/payments", json={
        "amount": "99.95", "currency": "USD", "received_at": NOON,
        "reference": "INV-2026-000601", "external_id": "BANK-9"}).json()
    assert placed(payment) == [("INV-2026-000601", "99.95")]
    # when the collector says it paid Globex's 123.45 invoice instead (partly)
    answer = text_of(ask(slack, standin.api, "UCOLL001",
                         f"payment {payment['id']} apply INV-2026-000503"))
    # then the money moved, and they see the payment as it is now
    assert "Applied as you said" in answer and "INV-2026-000503" in answer
    after = api.get(f"/payments/{payment['id']}").json()
    assert placed(after) == [("INV-2026-000503", "99.95")]
    assert api.get("/invoices/INV-2026-000601").json()["balance"] == "99.95"
    with server.db.read_session() as s:
        assert [a.created_by for a in s.exec(select(Allocation)).all()] == ["UCOLL001"]
    # and someone without the collector role cannot
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
    refused = text_of(ask(slack, standin.api, "USALES01",
                          f"payment {payment['id']} apply INV-2026-000601"))
    assert "collector" in refused
    assert api.get(f"/payments/{payment['id']}").json()["allocations"] == after["allocations"]


def test_a_replayed_correction_cannot_undo_a_later_one(
        company, server, api, slack, standin) -> None:
    # given a payment the engine applied by its number, corrected to Globex, then back
    payment = api.post("/payments", json={
        "amount": "99.95", "currency": "USD", "received_at": NOON,
        "reference": "INV-2026-000601", "external_id": "BANK-11"}).json()
    bodies: list[str] = []
    send = slack.send

    def keep(body: str, content_type: str, **opts):
        bodies.append(body)
        return send(body, content_type, **opts)

    slack.send = keep
    for target in ("INV-2026-000503", "INV-2026-000601"):
        assert "Applied as you said" in text_of(ask(
            slack, standin.api, "UCOLL001", f"payment {payment['id']} apply {target}"))
    slack.send = send
    # when the first command arrives again (a replay, or Slack's retry), with its trigger_id
    before = len(standin.api.responses)
    assert slack.send(bodies[0], "application/x-www-form-urlencoded").status_code == 200
    told = standin.api.wait_for(lambda: standin.api.responses[before:] or None, 10,
                                "an answer to the replay")
    # then it changes nothing and says so
    assert "handled already" in text_of(told[0]["payload"])
    assert placed(api.get(f"/payments/{payment['id']}").json()) == [("INV-2026-000601",
                                                                      "99.95")]
    with server.db.read_session() as s:
        assert len(s.exec(select(AuditEvent).where(
            AuditEvent.action == "payment.corrected")).all()) == 2


def test_a_correction_to_where_the_payment_already_is_says_there_is_nothing_to_correct(
        company, server, api, slack, standin) -> None:
    # given a payment the engine applied to Initech's invoice by its number
    payment = api.post("/payments", json={
        "amount": "99.95", "currency": "USD", "received_at": NOON,
        "reference": "INV-2026-000601", "external_id": "BANK-12"}).json()
    assert placed(payment) == [("INV-2026-000601", "99.95")]
    # when a collector "corrects" it to that same invoice
    answer = text_of(ask(slack, standin.api, "UCOLL001",
                         f"payment {payment['id']} apply INV-2026-000601"))
    # then they are told it is applied that way already, and nothing was reversed
    assert "already applied that way" in answer and "nothing changed" in answer
    assert "Applied as you said" not in answer
    assert placed(api.get(f"/payments/{payment['id']}").json()) == [("INV-2026-000601",
                                                                      "99.95")]
    with server.db.read_session() as s:
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action.in_(["payment.corrected", "payment.allocation_reversed"]))
        ).all() == []
