"""The back office end to end (issue 14): signed Slack requests to the real server, the Slack
stand-in, the REST API and `o2c run`. One test per numbered point of the issue:

1. disputes (invoice card, worklist row, owner's card: reject, accept, reassign; reminders)
2. deductions (a short payment's card: open dispute, write off, bill back)
3. credit notes (requested on the invoice card, approved by someone else, issued and e-mailed)
4. write-offs (bad debt on an approval card, rejected with a reason)
5. late fees (charged by the dunning job, waived by a collector)
6. approval tiers (a second decision by the tier's role)
7. reports (`/o2c kpi`, `/o2c ar`, `/o2c disputes`)
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from bot.jobs import run_job
from models import (
    AuditEvent,
    CreditNote,
    Deduction,
    Dispute,
    Invoice,
    OutboxMessage,
    WriteOff,
    WriteOffRequest,
)
from tests.support import factories as f
from tests.support.processes import o2c_env, o2c_run
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at
from workflows import policy

TODAY = date(2026, 6, 16)  # a Tuesday
frozen_time = frozen_at(datetime.combine(TODAY, time(10), UTC), tick=True)
WAIT = 10.0
EVIL = "<!channel> <https://x.example|Bank>"


@pytest.fixture
def books(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "USALES02", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-GLOBEX", "Globex <!here>", collector="UCOLL001",
                   sales_rep="USALES01")
        f.invoice(s, "INV-2026-000101", total="1000.00", due=TODAY - timedelta(days=10),
                  issued=TODAY - timedelta(days=40))
        f.invoice(s, "INV-2026-000102", total="500.00", due=TODAY - timedelta(days=3),
                  issued=TODAY - timedelta(days=33))
    return server


def answer_for(api, user: str, needle: str) -> dict:
    """The latest ephemeral answer `user` sees that mentions `needle`."""
    return api.wait_for(lambda: next((e for e in reversed(api.ephemerals(user))
                                      if needle in text_of(e)), None), WAIT, needle)


def modal(api, user: str) -> dict:
    return api.wait_for(lambda: (api.views_for(user) or [None])[-1], WAIT, f"{user}'s modal")


def message(api, where: str, prefix: str, *, dm: bool = False) -> dict:
    source = api.dm_messages if dm else api.messages
    return api.wait_for(lambda: next((m for m in source(where)
                                      if m["text"].startswith(prefix)), None), WAIT, prefix)


def current(api, posted: dict) -> str:
    now = api.message(posted["channel"], posted["ts"])
    return text_of({"text": now["text"], "blocks": now["blocks"]})


def audited(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def invoice(server, number: str) -> Invoice:
    with server.db.read_session() as s:
        return s.exec(select(Invoice).where(Invoice.number == number)).one()


def open_dispute_from_invoice_card(slack, api, user: str, number: str, *,
                                   amount: str | None, reason: str = "damaged") -> None:
    ask(slack, api, user, f"invoice {number}")
    card = answer_for(api, user, f"Invoice {number}")
    slack.click(user, card, "backoffice_dispute_open")
    view = modal(api, user)
    values = {"dispute_reason": {"dispute_reason_select": reason},
              "dispute_note": {"dispute_note_input": f"3 broken {EVIL}"}}
    if amount is not None:
        values["dispute_amount"] = {"dispute_amount_input": amount}
    slack.submit_view(user, view, values)


def test_1_disputes_in_slack(books, slack, standin, database_url) -> None:
    api = standin.api
    # when the collector opens a dispute for 400.00 from the invoice card
    open_dispute_from_invoice_card(slack, api, "UCOLL001", "INV-2026-000101", amount="400.00")
    # then the owner (the customer's rep) gets the card, the note escaped
    card = message(api, "USALES01", "Dispute #1", dm=True)
    shown = text_of(card)
    assert "3 broken &lt;!channel&gt;" in shown and "<!channel>" not in shown
    assert "USD 400.00" in shown and "backoffice_dispute_accept" in shown
    assert invoice(books, "INV-2026-000101").disputed_minor == 40_000
    assert "Dispute #1 opened" in text_of(answer_for(api, "UCOLL001", "Dispute #1 opened"))
    # and `/o2c disputes` lists it
    assert "INV-2026-000101" in text_of(ask(slack, api, "USALES02", "disputes"))
    # when another rep tries to reject it: refused, explained, audited
    slack.click("USALES02", card, "backoffice_dispute_reject")
    assert "owner" in text_of(answer_for(api, "USALES02", "Nothing was changed"))
    assert [e.actor for e in audited(books, "refused.dispute.rejected")] == ["USALES02"]
    # when the owner rejects it without a reason, then with one
    slack.click("USALES01", card, "backoffice_dispute_reject")
    view = modal(api, "USALES01")
    slack.submit_view("USALES01", view, {"resolve_note": {"resolve_note_input": " "}},
                      check_required=False)
    assert "resolve_note" in api.view_errors(view["id"])
    slack.submit_view("USALES01", view, {"resolve_note": {"resolve_note_input":
                                                          "signed delivery note"}})
    # then the card shows it, dunning resumes, the opener is told
    api.wait_for(lambda: "Rejected" in current(api, card), WAIT, "the card update")
    assert invoice(books, "INV-2026-000101").disputed_minor == 0
    message(api, "UCOLL001", "Dispute #1 on INV-2026-000101 was rejected", dm=True)

    # when a dispute is opened from a worklist row and reassigned, then accepted
    ask(slack, api, "UCOLL001", "worklist")
    row = answer_for(api, "UCOLL001", "backoffice_dispute_account")
    slack.click("UCOLL001", row, "backoffice_dispute_account")
    view = modal(api, "UCOLL001")
    slack.submit_view("UCOLL001", view, {
        "dispute_invoice": {"dispute_invoice_select": "INV-2026-000102"},
        "dispute_reason": {"dispute_reason_select": "pricing"}})
    card = message(api, "USALES01", "Dispute #2", dm=True)
    slack.click("USALES01", card, "backoffice_dispute_reassign")
    slack.submit_view("USALES01", modal(api, "USALES01"),
                      {"reassign_user": {"reassign_user_select": "USALES02"}})
    theirs = message(api, "USALES02", "Dispute #2", dm=True)
    api.wait_for(lambda: "Reassigned to" in current(api, card), WAIT, "the old card")
    slack.click("USALES02", theirs, "backoffice_dispute_accept")
    slack.submit_view("USALES02", modal(api, "USALES02"),
                      {"resolve_credit": {"resolve_credit_input": "100.00"}})
    # then a credit note waits for a credit approver; 100.00 stays held meanwhile
    approval = message(api, "CAPPROVAL", "Credit note approval — Credit note for INV-2026-000102")
    assert "dispute #2" in text_of(approval).lower()
    assert invoice(books, "INV-2026-000102").disputed_minor == 10_000

    # and reminders / escalation run once each from the command line
    with books.db.transaction() as s:
        f.invoice(s, "INV-2026-000103", total="50.00", issued=TODAY - timedelta(days=5))
        f.dispute(s, "INV-2026-000103", now=datetime.combine(TODAY - timedelta(days=8),
                                                             time(9), UTC))
    first = o2c_run(o2c_env(database_url, standin.api_url), "run", "dispute-reminders")
    again = run_job("dispute-reminders", books.deps, None)  # the scheduler's way
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["escalated"] == [3]
    assert again["escalated"] == []
    books.deps.notify_outbox()
    message(api, "CALERTS01", "Dispute #3 on INV-2026-000103 has been open")


def short_payment(api, amount: str = "950.00", ref: str = "INV-2026-000101") -> dict:
    answer = api.post("/payments", json={"amount": amount, "currency": "USD",
                                         "received_at": f"{TODAY}T09:00:00Z",
                                         "payer_name": "GLOBEX CORP",
                                         "reference": f"{ref} less {EVIL}"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_2_deductions_in_slack(books, slack, standin, api) -> None:
    sa = standin.api
    # when a short payment arrives through the API
    assert short_payment(api)["deduction"] == "50.00"
    # then its card is in the AR channel, the remittance text escaped
    card = message(sa, "CAR000001", "Deduction — INV-2026-000101")
    shown = text_of(card)
    assert "USD 50.00" in shown and "less &lt;!channel&gt;" in shown
    assert "<!channel>" not in shown
    # when the collector bills it back, twice
    slack.click("UCOLL001", card, "backoffice_deduction_bill_back")
    answer_for(sa, "UCOLL001", "still due; the deduction stays open")
    slack.click("UCOLL001", card, "backoffice_deduction_bill_back")
    answer_for(sa, "UCOLL001", "already billed back")
    with books.db.read_session() as s:
        mails = s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "deduction_bill_back")).all()
    assert len(mails) == 1
    # when they open a dispute from it
    slack.click("UCOLL001", card, "backoffice_deduction_dispute")
    view = modal(sa, "UCOLL001")
    assert view["blocks"][1]["element"]["action_id"] == "dispute_reason_select"
    slack.submit_view("UCOLL001", view, {"dispute_reason": {"dispute_reason_select": "damaged"}})
    # then the dispute holds the 50.00, and the card says so
    sa.wait_for(lambda: "Dispute #1 opened for it" in current(sa, card), WAIT, "card update")
    with books.db.read_session() as s:
        dispute = s.exec(select(Dispute)).one()
        deduction = s.exec(select(Deduction)).one()
    assert (dispute.amount_minor, dispute.deduction_id, deduction.status) == (
        5_000, deduction.id, "disputed")
    # when a second short payment's deduction is written off (approval)
    short_payment(api, "490.00", "INV-2026-000102")
    second = message(sa, "CAR000001", "Deduction — INV-2026-000102")
    slack.click("UCOLL001", second, "backoffice_deduction_write_off")
    slack.submit_view("UCOLL001", modal(sa, "UCOLL001"),
                      {"backoffice_reason": {"backoffice_reason_input": "not worth chasing"}})
    approval = message(sa, "CAPPROVAL", "Write-off approval — Deduction write-off")
    slack.click("UCOLL001", approval, "approval_approve")  # the requester, no approver: refused
    answer_for(sa, "UCOLL001", "Only a credit approver")
    slack.click("UCREDIT1", approval, "approval_approve")
    sa.wait_for(lambda: "written off" in current(sa, approval), WAIT, "the decided card")
    assert invoice(books, "INV-2026-000102").balance_minor == 0
    with books.db.read_session() as s:
        assert s.exec(select(WriteOff.reason, WriteOff.amount_minor).where(
            WriteOff.reason == "deduction")).one() == ("deduction", 1_000)


def test_2b_a_deduction_paid_since_is_resolved_on_the_next_click(books, slack, standin,
                                                                   api) -> None:
    sa = standin.api
    short_payment(api)  # 50.00 short
    card = message(sa, "CAR000001", "Deduction — INV-2026-000101")
    # when the customer pays the 50.00 after all
    answer = api.post("/payments", json={"amount": "50.00", "currency": "USD",
                                         "received_at": f"{TODAY}T11:00:00Z",
                                         "reference": "INV-2026-000101"})
    assert answer.status_code == 201, answer.text
    # then Write off resolves the deduction instead of opening a modal that can only refuse
    slack.click("UCOLL001", card, "backoffice_deduction_write_off")
    answer_for(sa, "UCOLL001", "the deduction is resolved (settled)")
    sa.wait_for(lambda: "resolved (settled)" in current(sa, card), WAIT, "card update")
    assert sa.views_for("UCOLL001") == []
    # and its buttons are gone (no Bill back: nothing is e-mailed)
    assert "Bill back" not in json.dumps(sa.message(card["channel"], card["ts"])["blocks"])
    with books.db.read_session() as s:
        deduction = s.exec(select(Deduction)).one()
        assert s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "deduction_bill_back")).all() == []
    assert (deduction.status, deduction.resolution, deduction.resolved_by) == (
        "resolved", "settled", "UCOLL001")
    assert [e.actor for e in audited(books, "deduction.resolved")] == ["UCOLL001"]


def test_2c_bill_back_is_once_a_business_day_whatever_the_clicker_s_time_zone(
        books, slack, standin, api) -> None:
    sa = standin.api
    with books.db.transaction() as s:  # 10:00 UTC is already tomorrow on Kiritimati (UTC+14)
        f.user(s, "UCOLL009", "collector", timezone="Pacific/Kiritimati")
    short_payment(api)
    card = message(sa, "CAR000001", "Deduction — INV-2026-000101")
    slack.click("UCOLL001", card, "backoffice_deduction_bill_back")
    answer_for(sa, "UCOLL001", "still due; the deduction stays open")
    # when a collector whose own date is already tomorrow clicks it too
    slack.click("UCOLL009", card, "backoffice_deduction_bill_back")
    # then the customer is not e-mailed twice on one business day
    answer_for(sa, "UCOLL009", "already billed back")
    with books.db.read_session() as s:
        assert len(s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "deduction_bill_back")).all()) == 1


def test_3_credit_notes_in_slack(books, slack, standin, api) -> None:
    sa = standin.api
    # when a rep asks for a credit note on the invoice card
    ask(slack, sa, "USALES01", "invoice INV-2026-000101")
    card = answer_for(sa, "USALES01", "Invoice INV-2026-000101")
    slack.click("USALES01", card, "backoffice_credit_note_request")
    view = modal(sa, "USALES01")
    slack.submit_view("USALES01", view, {"backoffice_amount": {"backoffice_amount_input":
                                                               "1000.01"},
                                         "backoffice_reason": {"backoffice_reason_input": "x"}})
    assert "at most" in sa.view_errors(view["id"])["backoffice_amount"]
    slack.submit_view("USALES01", view, {"backoffice_amount": {"backoffice_amount_input":
                                                               "$1,000"},
                                         "backoffice_reason": {"backoffice_reason_input": "x"}})
    assert "like 1250.00" in sa.view_errors(view["id"])["backoffice_amount"]
    slack.submit_view("USALES01", view, {
        "backoffice_amount": {"backoffice_amount_input": "120.00"},
        "backoffice_reason": {"backoffice_reason_input": f"2 units damaged {EVIL}"}})
    # then an approval card waits in the approvals channel
    approval = message(sa, "CAPPROVAL", "Credit note approval — Credit note for INV-2026-000101")
    assert "2 units damaged &lt;!channel&gt;" in text_of(approval)
    # when the credit approver rejects through the modal... no: approves with a note
    slack.click("UCREDIT1", approval, "approval_approve_note")
    slack.submit_view("UCREDIT1", modal(sa, "UCREDIT1"),
                      {"approve_note": {"approve_note_input": "ok"}})
    # then CN-2026-000001 is issued, the card and the requester say so, the e-mail is queued
    sa.wait_for(lambda: "CN-2026-000001" in current(sa, approval), WAIT, "the card update")
    message(sa, "USALES01", "Your credit note request", dm=True)
    assert invoice(books, "INV-2026-000101").balance_minor == 88_000
    with books.db.read_session() as s:
        note = s.exec(select(CreditNote)).one()
        mail = s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "credit_note")).one()
    assert note.amount_minor == 12_000 and mail.payload["to"] == "ap@globex.example"
    assert api.get("/credit-notes/CN-2026-000001").json()["status"] == "issued"


def test_4_write_offs_in_slack(books, slack, standin) -> None:
    sa = standin.api
    ask(slack, sa, "UCOLL001", "invoice INV-2026-000101")
    card = answer_for(sa, "UCOLL001", "Invoice INV-2026-000101")
    # a sales rep's click is refused (and audited)
    slack.click("USALES01", card, "backoffice_write_off_request")
    answer_for(sa, "USALES01", "can do this")
    slack.click("UCOLL001", card, "backoffice_write_off_request")
    slack.submit_view("UCOLL001", modal(sa, "UCOLL001"), {
        "backoffice_reason": {"backoffice_reason_input": "customer insolvent"}})
    approval = message(sa, "CAPPROVAL", "Write-off approval — Bad-debt write-off")
    # when the credit approver rejects it with a reason
    slack.click("UCREDIT1", approval, "approval_reject")
    slack.submit_view("UCREDIT1", modal(sa, "UCREDIT1"),
                      {"reject_reason": {"reject_reason_input": "they will pay in July"}})
    # then nothing is written off, the requester is told why
    sa.wait_for(lambda: "Rejected" in current(sa, approval), WAIT, "the card update")
    dm = message(sa, "UCOLL001", "Your write-off request", dm=True)
    assert "they will pay in July" in text_of(dm)
    assert invoice(books, "INV-2026-000101").balance_minor == 100_000
    with books.db.read_session() as s:
        assert s.exec(select(WriteOffRequest.status)).one() == "rejected"
    assert [e.actor for e in audited(books, "refused.write_off.request")] == ["USALES01"]


def test_5_late_fees_charged_and_waived(books, slack, standin) -> None:
    sa = standin.api
    with books.db.transaction() as s:
        policy.set_value(s, key="late_fees", value="7:fee=25.00", actor="test")
    # the dunning job, as the scheduler runs it (`o2c run dunning`: tests/e2e/test_dunning.py)
    assert run_job("dunning", books.deps, TODAY)["late_fees"] == 1
    with books.db.read_session() as s:
        fee = s.exec(select(Invoice).where(Invoice.source == "fee")).one()
        # the customer's two notices of the run (+7 with the fee, +1) make one statement
        mail = s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "dunning_statement")).one()
    [charged] = [i for i in mail.payload["context"]["invoices"] if i.get("late_fee")]
    assert charged["level"] == 7 and charged["late_fee"]["number"] == fee.number
    # when the collector waives it from the fee's card
    ask(slack, sa, "UCOLL001", f"invoice {fee.number}")
    card = answer_for(sa, "UCOLL001", f"Invoice {fee.number}")
    assert "Late fee for INV-2026-000101" in text_of(card)
    slack.click("UCOLL001", card, "backoffice_fee_waive")
    slack.submit_view("UCOLL001", modal(sa, "UCOLL001"), {
        "backoffice_reason": {"backoffice_reason_input": "first time late"}})
    answer_for(sa, "UCOLL001", "waived")
    assert invoice(books, fee.number).balance_minor == 0
    [waived] = audited(books, "late_fee.waived")
    assert (waived.actor, waived.reason) == ("UCOLL001", "first time late")


def test_6_a_tier_needs_a_second_decision(books, slack, standin, api) -> None:
    sa = standin.api
    with books.db.transaction() as s:
        f.user(s, "UCREDIT2", "credit_approver")
        policy.set_value(s, key="approval_tiers", value="credit_note:300:admin", actor="test")
    asked = api.post("/credit-notes", json={"invoice": "INV-2026-000101", "reason": "goodwill",
                                            "amount": "400.00", "requested_by": "USALES01"})
    assert asked.status_code == 201
    card = message(sa, "CAPPROVAL", "Credit note approval")
    assert "Above the approval tier" in text_of(card)
    slack.click("UCREDIT1", card, "approval_approve")
    sa.wait_for(lambda: "First approval by" in current(sa, card), WAIT, "the first step")
    assert "approval_approve" in current(sa, card)  # still to decide
    slack.click("UCREDIT2", card, "approval_approve")  # not the tier's role
    answer_for(sa, "UCREDIT2", "approval tier")
    slack.click("UADMIN01", card, "approval_approve")
    sa.wait_for(lambda: "CN-2026-000001" in current(sa, card), WAIT, "the second step")
    assert api.get(f"/credit-notes/{asked.json()['id']}").json()["status"] == "issued"
    assert [e.actor for e in audited(books, "approval.first_approved")] == ["UCREDIT1"]
    assert [e.actor for e in audited(books, "approval.approved")] == ["UADMIN01"]


def test_7_reports_in_slack(books, slack, standin, api) -> None:
    sa = standin.api
    api.post("/invoices/INV-2026-000101/disputes", json={"reason": "pricing",
                                                         "amount": "300.00"})
    short_payment(api, "490.00", "INV-2026-000102")
    kpi = text_of(ask(slack, sa, "UADMIN01", "kpi"))
    for expected in ("Dispute rate", "50.00 %", "Deductions outstanding", "Bad-debt ratio",
                     "of which in dispute USD 300.00"):
        assert expected in kpi, expected
    ar = text_of(ask(slack, sa, "UCOLL001", "ar"))
    assert "in dispute USD 300.00" in ar
    customer = text_of(ask(slack, sa, "UCOLL001", "customer globex"))
    assert "USD 300.00 in dispute" in customer


def test_2d_a_deduction_credited_in_part_is_open_on_its_card_for_the_rest(books, slack,
                                                                           standin, api) -> None:
    from workflows import approvals, deductions, disputes

    sa = standin.api
    short_payment(api)  # 50.00 short
    card = message(sa, "CAR000001", "Deduction — INV-2026-000101")
    # given: a dispute from its card, accepted for 20.00, whose credit note is issued
    now = datetime.combine(TODAY, time(11), UTC)
    with books.db.transaction() as s:
        deduction = s.exec(select(Deduction)).one()
        dispute = deductions.open_dispute(s, deduction_id=deduction.id, reason="damaged",
                                          note=None, actor="UCOLL001", now=now)
        disputes.resolve(s, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                         now=now, credit_amount="20.00")
    with books.db.transaction() as s:
        request = disputes.credit_request_of(s, dispute.id)
        approvals.decide(session=s, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=True, now=now)
    # then the card, updated in place, says what is left and has its buttons back
    sa.wait_for(lambda: "USD 30.00 left" in current(sa, card), WAIT, "card update")
    assert "Write off" in json.dumps(sa.message(card["channel"], card["ts"])["blocks"])
    # and Bill back asks for the 30.00, Open dispute offers it, Write off asks for it
    slack.click("UCOLL001", card, "backoffice_deduction_bill_back")
    answer_for(sa, "UCOLL001", "USD 30.00 of INV-2026-000101 is still due")
    slack.click("UCOLL001", card, "backoffice_deduction_dispute")
    assert '"initial_value": "30.00"' in json.dumps(modal(sa, "UCOLL001"))
    slack.click("UCOLL001", card, "backoffice_deduction_write_off")
    view = sa.wait_for(lambda: next((v for v in sa.views_for("UCOLL001")
                                     if v["callback_id"] == "backoffice_write_off_modal"),
                                    None), WAIT, "the write-off modal")
    assert "Write off the deduction of *USD 30.00*" in json.dumps(view)
