"""Cash application end to end: REST API -> matching engine -> suggestion card in the AR
channel -> Apply click (signed requests, real server, Slack stand-in); the `/o2c pay` modal."""

from __future__ import annotations

import threading
import time as time_module
from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from blocks import ids
from models import Allocation, AuditEvent, Payment, User, UserRole
from sandbox.driver import FORM
from tests.support import factories as f
from tests.support.slack import ask, everything_sent, refusals_audited, text_of
from tests.support.timetravel import frozen_at
from workflows import invariants
from workflows.invoicing import issue_credit_note

TODAY = date(2026, 11, 24)  # a Tuesday
# time flows in these tests (the outbox retries), from noon UTC on TODAY
NOON = datetime.combine(TODAY, time(12), UTC).isoformat()
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)

AR = "CAR000001"
ISSUED = date(2026, 11, 4)


@pytest.fixture
def company(server):
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        f.customer(s, "C-INITECH", "Initech LLC")
        f.invoice(s, "INV-2026-000501", total="250.00", issued=ISSUED,
                  due=ISSUED + timedelta(days=30))
        f.invoice(s, "INV-2026-000502", total="250.00", issued=ISSUED,
                  due=ISSUED + timedelta(days=30))
        f.invoice(s, "INV-2026-000503", "C-INITECH", total="99.95", issued=ISSUED,
                  due=ISSUED + timedelta(days=30))


def uncertain_payment(api) -> dict:
    """250.00 from Globex, no invoice number: two open invoices fit equally well."""
    response = api.post("/payments", json={
        "amount": "250.00", "currency": "USD", "received_at": NOON,
        "payer_name": "GLOBEX CORP <!channel>", "reference": "AP RUN 77",
        "external_id": "BANK-77"})
    assert response.status_code == 201, response.text
    return response.json()


def card_in_ar(standin) -> dict:
    return standin.api.wait_for(lambda: standin.api.messages(AR)[-1] if standin.api.messages(AR)
                                else None, 10, "a card in the AR channel")


def allocations(server) -> list[tuple[str, int, str, str]]:
    with server.db.read_session() as s:
        return [(a.created_by, a.amount_minor, a.method, str(a.invoice_id))
                for a in s.exec(select(Allocation)).all()]


def recording_clicks(slack) -> list[str]:
    """Keep the raw body of every request the driver sends, to replay them."""
    bodies: list[str] = []
    send = slack.send

    def keep(body: str, content_type: str, **opts):
        bodies.append(body)
        return send(body, content_type, **opts)

    slack.send = keep
    return bodies


def test_an_uncertain_payment_gets_a_suggestion_card_and_the_api_answer(
        company, server, api, standin) -> None:
    # when
    answer = uncertain_payment(api)
    # then the API answer has the issue's shape
    assert {"id", "status", "allocations", "write_off", "unapplied_amount", "confidence",
            "suggestions"} <= set(answer)
    assert answer["status"] == "needs_review"
    assert (answer["allocations"], answer["write_off"], answer["unapplied_amount"]) == (
        [], "0.00", "250.00")
    assert float(answer["confidence"]) < 0.9
    assert [s["invoices"] for s in answer["suggestions"]] == [
        [{"invoice": "INV-2026-000501", "amount": "250.00"}],
        [{"invoice": "INV-2026-000502", "amount": "250.00"}]]
    assert api.get(f"/payments/{answer['id']}").json() == answer
    # and the AR channel gets the card, with one Apply button per candidate
    card = card_in_ar(standin)
    text = text_of(card)
    assert "Payment needs review" in text and "USD 250.00" in text
    assert "INV-2026-000501" in text and "INV-2026-000502" in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text  # payer name escaped
    accessories = [b["accessory"] for b in card["blocks"] if b.get("accessory")]
    # one Apply button per candidate, and a select to name the customer if none fits
    assert [b["action_id"] for b in accessories] == [ids.CASHAPP_APPLY] * 2 + [
        ids.CASHAPP_ASSIGN]


def test_apply_click_allocates_once_and_updates_the_card(
        company, server, api, slack, standin) -> None:
    # given
    payment = uncertain_payment(api)
    card = card_in_ar(standin)
    bodies = recording_clicks(slack)
    # when the collector clicks Apply on the second suggestion
    response = slack.click("UCOLL001", card, ids.CASHAPP_APPLY,
                           block_id=f"cashapp:{payment['id']}:2")
    assert response.status_code == 200
    # then the card is updated in place
    updated = standin.api.wait_for(
        lambda: (m := standin.api.message(AR, card["ts"])) and m["edited"] and m, 10,
        "the card updated")
    text = text_of(updated)
    assert "Payment applied" in text and "<@UCOLL001>" in text and "INV-2026-000502" in text
    assert not [b for b in updated["blocks"] if b.get("accessory")]  # no buttons or select
    after = api.get(f"/payments/{payment['id']}").json()
    assert after["status"] == "applied"
    assert [(a["invoice"], a["amount"]) for a in after["allocations"]] == [
        ("INV-2026-000502", "250.00")]
    assert [(a[0], a[1], a[2]) for a in allocations(server)] == [("UCOLL001", 25_000, "manual")]
    # when the same click arrives again, twice at once (double click, replay)
    threads = [threading.Thread(target=slack.send, args=(bodies[0], FORM)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then nothing more is allocated, and the clicker is told why
    standin.api.wait_for(lambda: len([r for r in standin.api.responses
                                      if "already applied" in text_of(r["payload"])]) >= 2,
                         10, "two 'already applied' answers")
    assert [(a[0], a[1]) for a in allocations(server)] == [("UCOLL001", 25_000)]
    assert len(standin.api.calls_to("chat.update")) == 1
    assert api.get("/invoices/INV-2026-000501").json()["balance"] == "250.00"


def test_a_click_without_the_collector_role_changes_nothing(
        company, server, api, slack, standin) -> None:
    # given
    payment = uncertain_payment(api)
    card = card_in_ar(standin)
    # when someone without the collector or admin role clicks
    slack.click("UNOBODY1", card, ids.CASHAPP_APPLY, block_id=f"cashapp:{payment['id']}:1")
    # then they get an ephemeral explanation
    answer = standin.api.wait_for(
        lambda: next((r for r in standin.api.responses if r["user"] == "UNOBODY1"), None),
        10, "an answer to the refused click")
    assert answer["payload"]["response_type"] == "ephemeral"
    assert "collector" in text_of(answer["payload"])
    # and nothing changed, but the refusal is audited
    assert allocations(server) == []
    assert api.get(f"/payments/{payment['id']}").json()["status"] == "needs_review"
    assert standin.api.calls_to("chat.update") == []
    with server.db.read_session() as s:
        refusal = s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.payment.apply")).one()
    assert (refusal.actor, refusal.entity_id) == ("UNOBODY1", str(payment["id"]))


def test_a_confident_payment_is_applied_without_a_card(company, server, api, standin) -> None:
    response = api.post("/payments", json={
        "amount": "99.95", "currency": "USD", "received_at": NOON,
        "reference": "inv 2026/503", "payer_name": "INITECH"})
    answer = response.json()
    assert answer["status"] == "applied"
    assert [(a["invoice"], a["amount"]) for a in answer["allocations"]] == [
        ("INV-2026-000503", "99.95")]
    assert answer["suggestions"] == [] and float(answer["confidence"]) >= 0.9
    assert standin.api.messages(AR) == []


def test_api_answers_with_fee_write_off_and_short_payment_deduction(
        company, server, api) -> None:
    now = NOON
    # 250.00 paid as 248.80 naming the invoice: 1.20 is within 0.5 % (1.25) -> bank fee
    fee = api.post("/payments", json={"amount": "248.80", "currency": "USD",
                                      "received_at": now, "reference": "INV-2026-000501"})
    assert fee.json()["status"] == "applied"
    assert (fee.json()["write_off"], fee.json()["deduction"]) == ("1.20", "0.00")
    short = api.post("/payments", json={"amount": "200.00", "currency": "USD",
                                        "received_at": now, "reference": "INV-2026-000502"})
    body = short.json()
    assert (body["status"], body["write_off"], body["deduction"]) == ("applied", "0.00",
                                                                      "50.00")
    assert [(a["invoice"], a["amount"]) for a in body["allocations"]] == [
        ("INV-2026-000502", "200.00")]
    assert api.get("/invoices/INV-2026-000502").json()["balance"] == "50.00"


# -- /o2c pay ------------------------------------------------------------------------------------
def open_pay_modal(slack, standin, user: str = "UCOLL001") -> dict:
    response = slack.slash(user, "pay")
    assert response.status_code == 200
    return standin.api.wait_for(lambda: (standin.api.views_for(user) or [None])[-1], 10,
                                "the payment modal")


def recorded(server) -> Payment | None:
    """The payment recorded from the modal (after its ack), once there is one."""
    with server.db.read_session() as s:
        return s.exec(select(Payment)).one_or_none()


def test_pay_modal_records_and_applies_a_payment(company, server, slack, standin) -> None:
    # given
    view = open_pay_modal(slack, standin)
    assert view["callback_id"] == ids.PAY_MODAL
    # the customer select searches as you type
    options = slack.block_suggestion("UCOLL001", view, ids.PAY_CUSTOMER, "initek").json()
    assert options["options"][0]["value"] == "C-INITECH"
    assert options["options"][0]["text"]["text"] == "Initech LLC (C-INITECH)"
    # when
    slack.submit_view("UCOLL001", view, {
        ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "99.95"},
        ids.PAY_CUSTOMER_BLOCK: {ids.PAY_CUSTOMER: {"text": "Initech LLC",
                                                    "value": "C-INITECH"}},
        ids.PAY_REFERENCE_BLOCK: {ids.PAY_REFERENCE: "remittance for 503"},
        ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
    # then the modal closes, the payment is matched, and the collector is told
    assert standin.api.views_for("UCOLL001") == []
    dm = standin.api.wait_for(lambda: standin.api.dm_messages("UCOLL001") or None, 10, "a DM")
    told = text_of(dm[-1])
    assert "recorded and *applied in full*" in told and "INV-2026-000503" in told
    with server.db.read_session() as s:
        payment = s.exec(select(Payment)).one()
        assert (payment.source, payment.status, payment.amount_minor) == ("slack", "applied",
                                                                           9_995)
        assert payment.external_id == f"slack-view:{view['id']}"


def test_pay_modal_shows_errors_inline(company, server, slack, standin) -> None:
    view = open_pay_modal(slack, standin)
    slack.submit_view("UCOLL001", view, {ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "12,5x"},
                                         ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
    assert ids.PAY_AMOUNT_BLOCK in standin.api.view_errors(view["id"])
    assert standin.api.views_for("UCOLL001")  # still open
    # a customer billed in another currency is refused on the currency field
    slack.submit_view("UCOLL001", view, {
        ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "10.00"},
        ids.PAY_CURRENCY_BLOCK: {ids.PAY_CURRENCY: "EUR"},
        ids.PAY_CUSTOMER_BLOCK: {ids.PAY_CUSTOMER: {"text": "Globex", "value": "C-GLOBEX"}}})
    assert "billed in USD" in standin.api.view_errors(view["id"])[ids.PAY_CURRENCY_BLOCK]
    with server.db.read_session() as s:
        assert s.exec(select(Payment)).all() == []


def test_pay_modals_selects_show_nothing_once_the_collector_role_is_gone(
        company, server, slack, standin) -> None:
    # given a collector's payment modal, whose selects find customers and open invoices
    view = open_pay_modal(slack, standin)
    customers = slack.block_suggestion("UCOLL001", view, ids.PAY_CUSTOMER, "initech").json()
    invoices = slack.block_suggestion("UCOLL001", view, ids.PAY_INVOICES, "000503").json()
    assert customers["options"][0]["value"] == "C-INITECH"
    assert [o["value"] for o in invoices["options"]] == ["INV-2026-000503"]
    # when their role is taken away while the modal is still open
    with server.db.transaction() as s:
        s.exec(sa.delete(UserRole).where(UserRole.user_id == "UCOLL001"))
    customers = slack.block_suggestion("UCOLL001", view, ids.PAY_CUSTOMER, "initech")
    invoices = slack.block_suggestion("UCOLL001", view, ids.PAY_INVOICES, "000503")
    # then the selects offer nothing more
    assert (customers.status_code, customers.json()) == (200, {"options": []})
    assert (invoices.status_code, invoices.json()) == (200, {"options": []})
    # and each refusal is audited, as `/o2c pay`'s own would be
    assert refusals_audited(server.db, standin.api, 2) == [
        ("UCOLL001", "refused.payment.record", "command", "pay")] * 2


def test_pay_is_for_collectors(company, slack, standin) -> None:
    answer = ask(slack, standin.api, "USALES01", "pay")
    assert "collector" in text_of(answer)
    assert standin.api.views_for("USALES01") == []


# -- escaping: what a bank, a payer or the ERP wrote is never mrkdwn -------------------------------
FORGED = "<!channel> <https://x.example|Bank>"


def test_erp_invoice_numbers_and_payer_names_are_escaped_on_card_and_answers(
        server, api, slack, standin) -> None:
    # given ERP invoices whose numbers try to ping the channel and forge a link
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        for n in (1, 2):
            f.invoice(s, f"{FORGED} {n}", total="250.00", issued=ISSUED,
                      due=ISSUED + timedelta(days=30))
    # and a payment from a payer named the same way, which the engine is unsure about
    payment = api.post("/payments", json={
        "amount": "250.00", "currency": "USD", "received_at": NOON,
        "payer_name": FORGED, "reference": "<!here> remittance <https://x.example|see>",
        "customer": "C-GLOBEX", "external_id": "BANK-FORGED"}).json()
    assert payment["status"] == "needs_review", payment
    rank_of = {s["invoices"][0]["invoice"]: s["rank"] for s in payment["suggestions"]}
    card = card_in_ar(standin)
    with server.db.transaction() as s:  # invoice 2 changed since the card was made
        issue_credit_note(s, invoice_number=f"{FORGED} 2", amount="10.00", reason="damaged",
                          actor="test", now=server.deps.clock.now())
    # when the collector applies the suggestion that no longer fits (refused, quoting it)
    slack.click("UCOLL001", card, ids.CASHAPP_APPLY,
                block_id=f"cashapp:{payment['id']}:{rank_of[f'{FORGED} 2']}")
    refused = standin.api.wait_for(
        lambda: next((r for r in standin.api.responses if r["user"] == "UCOLL001"), None),
        10, "the refusal")
    # and then the one that fits
    slack.click("UCOLL001", card, ids.CASHAPP_APPLY,
                block_id=f"cashapp:{payment['id']}:{rank_of[f'{FORGED} 1']}")
    done = standin.api.wait_for(
        lambda: (r := [r for r in standin.api.responses if r["user"] == "UCOLL001"])[1:]
        and r[1], 10, "the confirmation")
    standin.api.wait_for(lambda: (m := standin.api.message(AR, card["ts"])) and m["edited"],
                         10, "the card updated")
    # then each answer names the invoice, escaped
    escaped = "&lt;!channel&gt; &lt;https://x.example|Bank&gt;"
    assert f"{escaped} 2" in text_of(refused["payload"])
    assert "Nothing was changed" in text_of(refused["payload"])
    assert f"{escaped} 1" in text_of(done["payload"])
    assert "applied" in text_of(done["payload"])
    assert f"{escaped} 1" in text_of(standin.api.message(AR, card["ts"]))
    # and nothing the bot sent anywhere carries the raw markup
    sent = everything_sent(standin.api)
    assert escaped in sent
    for raw in ("<!channel>", "<https://x.example", "<!here>"):
        assert raw not in sent


# -- /o2c pay: the user's clock and the read-only role check ---------------------------------------
def test_pay_modal_works_for_a_user_whose_slack_time_zone_is_unknown(
        company, server, slack, standin) -> None:
    # given Slack gave this collector a time zone our tz database does not know
    with server.db.transaction() as s:
        s.execute(sa.update(User).where(User.slack_user_id == "UCOLL001")
                  .values(timezone="Mars/Olympus_Mons"))
    today = TODAY
    view = open_pay_modal(slack, standin)
    # when
    slack.submit_view("UCOLL001", view, {
        ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "99.95"},
        ids.PAY_CUSTOMER_BLOCK: {ids.PAY_CUSTOMER: {"text": "Initech LLC",
                                                    "value": "C-INITECH"}},
        ids.PAY_DATE_BLOCK: {ids.PAY_DATE: today}})
    # then it is recorded as received at noon UTC that day (UTC is the fallback)
    assert standin.api.views_for("UCOLL001") == []
    payment = standin.api.wait_for(lambda: recorded(server), 10, "the payment")
    assert payment.received_at == datetime.combine(today, time(12, 0), tzinfo=UTC)
    assert payment.status == "applied"


def test_pay_opens_its_modal_while_a_long_job_holds_the_write_lock(
        company, server, slack, standin) -> None:
    # given a long write transaction (a statement import, the nightly jobs) in progress
    with server.db.transaction() as s:
        f.customer(s, "C-LOCK", "Lock Holder Ltd")
        # when a collector asks for the payment modal meanwhile
        response = slack.slash("UCOLL001", "pay")
        # then the modal opens at once: the role check only reads
        assert response.status_code == 200
        view = standin.api.wait_for(lambda: (standin.api.views_for("UCOLL001") or [None])[-1],
                                    5, "the payment modal while the write lock is held")
    assert view["callback_id"] == ids.PAY_MODAL


def test_pay_modal_takes_amounts_up_to_the_bound_and_refuses_beyond_it(
        company, server, slack, standin) -> None:
    view = open_pay_modal(slack, standin)
    for typed in ("１２３.45", "10000000000000.00", "1e5", "10.001"):
        slack.submit_view("UCOLL001", view, {ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: typed},
                                             ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
        assert ids.PAY_AMOUNT_BLOCK in standin.api.view_errors(view["id"]), typed
    with server.db.read_session() as s:
        assert s.exec(select(Payment)).all() == []
    # the largest payment a bank ever sent fits
    slack.submit_view("UCOLL001", view, {ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT:
                                                                "9,000,000,000,000.00"},
                                         ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
    payment = standin.api.wait_for(lambda: recorded(server), 10, "the payment")
    assert payment.amount_minor == 900_000_000_000_000


def test_pay_modal_refuses_a_decimal_comma_instead_of_reading_it_as_thousands(
        company, server, slack, standin) -> None:
    view = open_pay_modal(slack, standin)
    # a collector used to decimal commas types 1250,50: it is not 125,050.00
    for typed in ("1250,50", "12,5", "1,25", "1,2345.00", ",100.00"):
        slack.submit_view("UCOLL001", view, {ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: typed},
                                             ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
        assert ids.PAY_AMOUNT_BLOCK in standin.api.view_errors(view["id"]), typed
    with server.db.read_session() as s:
        assert s.exec(select(Payment)).all() == []
    # thousands separators in their places still read as such
    slack.submit_view("UCOLL001", view, {ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "1,250.50"},
                                         ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
    payment = standin.api.wait_for(lambda: recorded(server), 10, "the payment")
    assert payment.amount_minor == 125_050
    with server.db.read_session() as s:
        assert invariants.validate_all(s) == []


def test_a_refusal_in_a_forms_ack_answers_at_once_while_a_long_job_holds_the_write_lock(
        company, server, slack, standin) -> None:
    # given a collector's open payment modal, and then their role removed
    view = open_pay_modal(slack, standin)
    with server.db.transaction() as s:
        f.user(s, "UCOLL001")  # no roles left
    # and a long write transaction (a statement import, the nightly jobs) in progress
    with server.db.transaction() as s:
        f.customer(s, "C-LOCK", "Lock Holder Ltd")
        # when they search for a customer in it and submit it meanwhile
        started = time_module.monotonic()
        options = slack.block_suggestion("UCOLL001", view, ids.PAY_CUSTOMER, "initek")
        slack.submit_view("UCOLL001", view, {
            ids.PAY_AMOUNT_BLOCK: {ids.PAY_AMOUNT: "99.95"},
            ids.PAY_CUSTOMER_BLOCK: {ids.PAY_CUSTOMER: {"text": "Initech LLC",
                                                        "value": "C-INITECH"}},
            ids.PAY_DATE_BLOCK: {ids.PAY_DATE: TODAY}})
        answered_in = time_module.monotonic() - started
        # then both are refused at once, within Slack's 3 seconds, the lock still held
        assert answered_in < 3, answered_in
        assert options.json() == {"options": []}
        assert "Only a collector" in str(standin.api.view_errors(view["id"]))
    # and both refusals are in the audit log once the job is done; nothing was recorded
    assert refusals_audited(server.db, standin.api, 2) == [
        ("UCOLL001", "refused.payment.record", "command", "pay")] * 2
    assert recorded(server) is None
