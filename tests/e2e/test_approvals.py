"""Credit and discount approvals decided on Slack cards, through signed requests to the real
server and the Slack stand-in (issue 3, acceptance 1 and 3)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import Approval, AuditEvent, Customer, Order, OutboxMessage
from sandbox.driver import FORM
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, ephemeral_texts, prepared_click, text_of

WAIT = 10.0


@pytest.fixture
def company(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "USALES02", "sales", "credit_approver")  # a rep who also approves credit
        f.user(s, "UCREDIT1", "credit_approver")
        f.user(s, "UDISC001", "discount_approver")
        f.customer(s, "C-NEW", "Newco <!channel>", reviewed=False, credit_limit="5000.00")
        f.customer(s, "C-GLOBEX", "Globex Corporation")
        product = f.product(s, "WID-1", price="100.00")
        product.cost_minor = 6000
        s.add(product)
    return server


def submit(server, customer: str = "C-NEW", *, rep: str = "USALES01",
           qty: int = 2, discount: str | None = None) -> str:
    with server.db.transaction() as s:
        order = f.order(s, customer, rep=rep, lines=[("WID-1", qty)], discount=discount)
    server.deps.notify_outbox()
    return order.number


def card(api, number: str, kind: str = "credit") -> dict:
    """The (first, non-reminder) card of that order and kind in the approvals channel."""
    title = f"{kind.capitalize()} approval — {number}"
    return api.wait_for(lambda: next((m for m in api.messages("CAPPROVAL")
                                      if m["text"].startswith(title)), None),
                        WAIT, f"the {kind} card of {number}")


def approval(server, number: str, kind: str = "credit") -> Approval:
    with server.db.read_session() as s:
        return s.exec(select(Approval).join(Order, Order.id == Approval.order_id)
                      .where(Order.number == number, Approval.kind == kind)).one()


def order_status(server, number: str) -> str:
    with server.db.read_session() as s:
        return s.exec(select(Order.status).where(Order.number == number)).one()


def audit(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def wait_ephemerals(api, user: str, count: int = 1) -> list[str]:
    api.wait_for(lambda: len(api.ephemerals(user)) >= count, WAIT, f"{count} ephemeral(s) "
                 f"for {user}")
    return ephemeral_texts(api, user)


def current(api, message: dict) -> str:
    """What the message shows now (its text and blocks; not its edit history)."""
    now = api.message(message["channel"], message["ts"])
    return text_of({"text": now["text"], "blocks": now["blocks"]})


def updates_of(api, message: dict) -> list:
    return [c for c in api.calls_to("chat.update") if c.params.get("ts") == message["ts"]]


def test_new_customer_card_refusals_then_the_approvers_click_decides(company, slack,
                                                                     standin) -> None:
    api = standin.api
    # given an order of a new customer entered by a rep who also holds credit_approver
    number = submit(company, rep="USALES02")
    # then a card is posted in the approvals channel with everything needed to decide
    posted = card(api, number)
    assert posted["channel"] == "CAPPROVAL"
    shown = text_of(posted)
    for expected in ("Newco &lt;!channel&gt;", "USD 200.00", "<@USALES02>",
                     "Exposure / limit", "USD 5,000.00", "Aging", "Payment history",
                     "new customer: no credit review yet", "approval_approve",
                     "approval_reject"):
        assert expected in shown, expected
    assert "<!channel>" not in shown
    # when a plain sales rep clicks Approve
    slack.click("USALES01", posted, "approval_approve")
    # then they are told why, and nothing changes
    assert "Only a credit approver" in wait_ephemerals(api, "USALES01")[0]
    # when the requester (who holds the role) clicks Approve on their own request
    slack.click("USALES02", posted, "approval_approve")
    assert "segregation of duties" in wait_ephemerals(api, "USALES02")[0]
    # then still nothing changed, and both refusals are audited
    assert approval(company, number).status == "pending"
    assert order_status(company, number) == "pending_approval"
    assert [e.actor for e in audit(company, "refused.approval.decide")] == [
        "USALES01", "USALES02"]
    assert updates_of(api, posted) == []
    # when a credit approver clicks Approve
    slack.click("UCREDIT1", posted, "approval_approve")
    # then the same message is updated in place with the decision, who and when
    [update] = api.wait_for(lambda: updates_of(api, posted) or None, WAIT, "the card update")
    assert update.params["channel"] == "CAPPROVAL"
    now_shown = current(api, posted)
    assert "*Approved* by <@UCREDIT1>" in now_shown and "<!date^" in now_shown
    assert "approval_approve" not in now_shown  # buttons gone
    # and the requester gets a DM, and the order moves on
    dm = api.wait_for(lambda: [m for m in api.dm_messages("USALES02")
                               if "request for" in m["text"]] or None, WAIT, "the DM")
    assert "was approved" in dm[0]["text"]
    assert order_status(company, number) == "approved"
    decided = approval(company, number)
    assert (decided.status, decided.decided_by) == ("approved", "UCREDIT1")
    assert [e.actor for e in audit(company, "approval.approved")] == ["UCREDIT1"]


def test_api_order_is_requested_by_the_api_and_its_sales_rep_may_not_approve(
        company, slack, standin, api) -> None:
    # given an order posted through the REST API for the rep USALES02 (also a credit approver)
    created = api.post("/orders", json={"customer": "C-NEW", "sales_rep": "USALES02",
                                        "currency": "USD",
                                        "lines": [{"sku": "WID-1", "quantity": 1}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert created.json()["status"] == "pending_approval"
    posted = card(standin.api, number)
    assert "REST API for <@USALES02>" in text_of(posted)
    # when the order's sales rep clicks Approve
    slack.click("USALES02", posted, "approval_approve")
    # then segregation of duties refuses it
    assert "your own order" in wait_ephemerals(standin.api, "USALES02")[0]
    assert approval(company, number).status == "pending"
    # when an admin approves, then the rep (not "api") gets the DM
    slack.click(ADMIN, posted, "approval_approve")
    dm = standin.api.wait_for(lambda: [m for m in standin.api.dm_messages("USALES02")
                                       if "request for" in m["text"]] or None, WAIT, "DM")
    assert "approved" in dm[0]["text"]
    assert approval(company, number).requested_by == "api"


def test_five_concurrent_clicks_and_a_replay_give_one_decision(company, slack,
                                                               standin) -> None:
    api = standin.api
    # given a pending card and four people who may decide it (one of them double-clicks)
    with company.db.transaction() as s:
        f.user(s, "UDISC001", "discount_approver", "credit_approver")
        f.user(s, "UCOLL001", "collector", "credit_approver")
    number = submit(company)
    posted = card(api, number)
    clickers = ["UCREDIT1", ADMIN, "UDISC001", "UCOLL001", "UCREDIT1"]
    bodies = [prepared_click(slack, user, posted, "approval_approve") for user in clickers]
    # when the five clicks arrive at the same moment
    start = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(body: str) -> None:
        start.wait()
        statuses.append(slack.send(body, FORM).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert statuses == [200] * 5
    # then one of them decided, and the four others were told who did
    api.wait_for(lambda: len(api.ephemerals()) >= 4, WAIT, "four explanations")
    winner = approval(company, number).decided_by
    assert winner in clickers
    losers = api.ephemerals()
    assert len(losers) == 4
    assert all(f"<@{winner}>" in text_of(e) and "already" in text_of(e) for e in losers)
    # when the first click is replayed (a Slack retry, or an attacker)
    slack.send(bodies[0], FORM, retry_num=1, retry_reason="http_timeout")
    api.wait_for(lambda: len(api.ephemerals()) >= 5, WAIT, "the replay's explanation")
    # then: one decision, one audit entry, one card update, one DM, one order transition
    api.wait_for(lambda: updates_of(api, posted) or None, WAIT, "the card update")
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01") if "request for" in m["text"]]
                 or None, WAIT, "the requester DM")
    assert [e.actor for e in audit(company, "approval.approved")] == [winner]
    assert len(updates_of(api, posted)) == 1
    assert len([m for m in api.dm_messages("USALES01") if "request for" in m["text"]]) == 1
    with company.db.read_session() as s:
        decided_dms = s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "approval_decided")).all()
        transitions = s.exec(select(AuditEvent).where(AuditEvent.action == "order.transition",
                                                      AuditEvent.to_state == "approved")).all()
    assert len(decided_dms) == 1 and len(transitions) == 1
    assert order_status(company, number) == "approved"


def test_rejection_needs_a_reason_records_it_and_cancels_the_other_request(
        company, slack, standin) -> None:
    api = standin.api
    # given an order that needs both a credit and a discount approval
    number = submit(company, discount="25")
    credit_card, discount_card = card(api, number, "credit"), card(api, number, "discount")
    stale_click = prepared_click(slack, "UDISC001", discount_card, "approval_approve")
    # when the credit approver clicks Reject
    slack.click("UCREDIT1", credit_card, "approval_reject")
    modal = api.wait_for(lambda: api.views_for("UCREDIT1") or None, WAIT, "the modal")[0]
    # then submitting without a reason is refused inline and the modal stays open
    slack.submit_view("UCREDIT1", modal, {}, check_required=False)
    assert "reject_reason" in api.view_errors(modal["id"])
    assert api.views_for("UCREDIT1") and approval(company, number).status == "pending"
    # when a reason is given
    slack.submit_view("UCREDIT1", modal, {"reject_reason": {
        "reject_reason_input": "Too risky <!here> for now"}})
    # then the modal closes, the order is rejected (after the ack) and the reason recorded
    # everywhere
    assert api.views_for("UCREDIT1") == []
    rejected = api.wait_for(lambda: (a := approval(company, number)).status != "pending" and a,
                            WAIT, "the decision")
    assert (rejected.status, rejected.decision_note) == ("rejected", "Too risky <!here> for now")
    assert order_status(company, number) == "rejected"
    [event] = audit(company, "approval.rejected")
    assert (event.actor, event.reason) == ("UCREDIT1", "Too risky <!here> for now")
    # and the discount request is cancelled: both cards updated in place
    assert approval(company, number, "discount").status == "cancelled"
    assert [e.to_state for e in audit(company, "approval.cancelled")] == ["cancelled"]
    api.wait_for(lambda: updates_of(api, credit_card) and updates_of(api, discount_card),
                 WAIT, "both card updates")
    credit_now = current(api, credit_card)
    assert "*Rejected* by <@UCREDIT1>" in credit_now
    assert "Too risky &lt;!here&gt; for now" in credit_now and "<!here>" not in credit_now
    assert "*Cancelled*" in current(api, discount_card)
    dm = api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                               if "was rejected" in m["text"]] or None, WAIT, "the DM")
    assert "Too risky &lt;!here&gt; for now" in text_of(dm[0])
    # when the discount approver's click on the old card arrives late (made before the update)
    slack.send(stale_click, FORM)
    # then it is told the request was already cancelled, and nothing changes
    assert "already *cancelled*" in wait_ephemerals(api, "UDISC001")[0]
    assert audit(company, "approval.approved") == []


def test_order_needing_both_waits_for_both_and_approve_with_note(company, slack,
                                                                 standin) -> None:
    api = standin.api
    # given an order needing credit and discount approval
    number = submit(company, discount="20")
    discount_card = card(api, number, "discount")
    # when the discount approver approves with a note
    slack.click("UDISC001", discount_card, "approval_approve_note")
    modal = api.wait_for(lambda: api.views_for("UDISC001") or None, WAIT, "the modal")[0]
    slack.submit_view("UDISC001", modal, {"approve_note": {
        "approve_note_input": "OK for this quarter only"}})
    # then the discount is approved with its note but the order still waits for credit
    api.wait_for(lambda: updates_of(api, discount_card) or None, WAIT, "the card update")
    assert "OK for this quarter only" in current(api, discount_card)
    assert approval(company, number, "discount").decision_note == "OK for this quarter only"
    assert order_status(company, number) == "pending_approval"
    dm = api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                               if "discount request" in m["text"]] or None, WAIT, "the DM")
    assert "Still waiting for: credit approval" in text_of(dm[0])
    # when credit is approved too, then the order is approved
    slack.click("UCREDIT1", card(api, number, "credit"), "approval_approve")
    api.wait_for(lambda: order_status(company, number) == "approved", WAIT, "approval")
    assert [e.actor for e in audit(company, "approval.approved")] == ["UDISC001", "UCREDIT1"]


def test_discount_over_the_maximum_alerts_and_posts_a_discount_card(company, standin
                                                                    ) -> None:
    api = standin.api
    # when a reviewed customer's order has a 25 % line (maximum 15 %)
    number = submit(company, "C-GLOBEX", qty=10, discount="25")
    # then the alerts channel gets who, customer, product, discount and margin impact
    alert = api.wait_for(lambda: api.messages("CALERTS01") or None, WAIT, "the alert")[0]
    shown = text_of(alert)
    for expected in ("<@USALES01>", "Globex Corporation", number, "WID-1", "25%", "max 15%",
                     "USD 250.00",  # revenue given away: 10 x 100.00 x 25 %
                     "margin 40.0% → 20.0%", "USD 400.00 → USD 150.00"):
        assert expected in shown, expected
    # and a discount card waits in the approvals channel (credit is fine: no credit card)
    assert "WID-1: discount 25% exceeds the 15% maximum" in text_of(card(api, number,
                                                                         "discount"))
    assert not [m for m in api.messages("CAPPROVAL") if m["text"].startswith("Credit")]


def test_discount_within_the_maximum_posts_nothing(company, standin) -> None:
    api = standin.api
    # when the discount is exactly the maximum
    number = submit(company, "C-GLOBEX", discount="15")
    # then the order is approved and the rep told, with no alert and no card
    api.wait_for(lambda: [m for m in api.dm_messages("USALES01") if number in m["text"]]
                 or None, WAIT, "the rep's DM")
    assert order_status(company, number) == "approved"
    assert api.messages("CALERTS01") == [] and api.messages("CAPPROVAL") == []


def test_reminders_renudge_once_per_interval_and_never_decided(company, slack,
                                                               standin) -> None:
    from bot.jobs import run_job

    api = standin.api
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # policy: 09:00-17:00 UTC, Mon-Fri
    with company.db.transaction() as s:
        first = f.order(s, "C-NEW", now=monday).number
        second = f.order(s, "C-NEW", now=monday).number
    company.deps.notify_outbox()
    first_card = card(api, first)

    def remind(at: datetime) -> dict:
        return run_job("approval-reminders", company.deps, at)

    # when 3 working hours have passed, then nobody is nudged
    assert remind(monday + timedelta(hours=3))["reminded"] == 0
    # when 5 have passed, then both requests are re-posted once, naming the approvers
    assert remind(monday + timedelta(hours=5))["reminded"] == 2
    reminders = api.wait_for(lambda: [m for m in api.messages("CAPPROVAL")
                                      if m["text"].startswith("Reminder")] or None, WAIT,
                             "reminders")
    api.wait_for(lambda: len([m for m in api.messages("CAPPROVAL")
                              if m["text"].startswith("Reminder")]) == 2, WAIT, "2 reminders")
    shown = text_of(reminders[0])
    assert "Reminder 1" in shown and "<@UCREDIT1>" in shown and "approval_approve" in shown
    # when the job runs again within the interval (and twice at the same moment)
    assert remind(monday + timedelta(hours=5))["reminded"] == 0
    assert remind(monday + timedelta(hours=7, minutes=59))["reminded"] == 0
    # when the first request is decided
    slack.click("UCREDIT1", first_card, "approval_approve")
    api.wait_for(lambda: approval(company, first).status == "approved", WAIT, "decision")
    # then after another interval (Mon 14:00 -> Tue 11:00 = 5 working hours) only the second
    # request is nudged, and the first one's reminder shows the decision instead of buttons
    result = remind(datetime(2026, 3, 3, 11, 0, tzinfo=UTC))
    assert [(r["order"], r["reminder"]) for r in result["reminders"]] == [(second, 2)]
    first_reminder = next(m for m in api.messages("CAPPROVAL")
                          if m["text"].startswith(f"Reminder: Credit approval — {first}"))
    api.wait_for(lambda: updates_of(api, first_reminder) or None, WAIT, "reminder update")
    assert "*Approved* by <@UCREDIT1>" in current(api, first_reminder)
    # and a decided request is never nudged again, however late
    later = remind(datetime(2026, 3, 10, 17, 0, tzinfo=UTC))
    assert [r["order"] for r in later["reminders"]] == [second]
    assert approval(company, first).reminders_sent == 1


def test_credit_hold_buttons_are_role_checked_and_held_customers_need_approval(
        company, slack, standin) -> None:
    api = standin.api
    # a sales rep sees no hold button; a credit approver does
    assert "customer_credit_hold" not in text_of(ask(slack, api, "USALES01", "customer globex"))
    answer = ask(slack, api, "UCREDIT1", "customer globex")
    assert "customer_credit_hold" in text_of(answer)
    [shown] = [e for e in api.ephemerals("UCREDIT1") if "Globex" in text_of(e)]
    # when a sales rep sends a click on that button anyway (a forged or stale payload)
    slack.click("USALES01", shown, "customer_credit_hold")
    # then it is refused, explained and audited; nothing changes
    assert any("Only a credit approver or an admin" in t
               for t in wait_ephemerals(api, "USALES01", 2))
    with company.db.read_session() as s:
        assert s.exec(select(Customer.credit_hold).where(
            Customer.external_id == "C-GLOBEX")).one() is False
    assert [e.actor for e in audit(company, "refused.customer.credit_hold")] == ["USALES01"]
    # when the credit approver clicks it
    slack.click("UCREDIT1", shown, "customer_credit_hold")
    # then the customer is on hold (audited) and the card now offers the release
    api.wait_for(lambda: "customer_credit_release" in text_of(
        [e for e in api.ephemerals("UCREDIT1") if "Globex" in text_of(e)][0]), WAIT,
        "the refreshed card")
    [held] = audit(company, "customer.credit_hold")
    assert (held.actor, held.to_state) == ("UCREDIT1", "hold")
    # and a new order of the held customer needs a credit approval
    number = submit(company, "C-GLOBEX")
    assert order_status(company, number) == "pending_approval"
    assert "customer is on credit hold" in text_of(card(api, number))
    # when the release is clicked, a reason is asked first (issue 13), showing what is overdue
    refreshed = [e for e in api.ephemerals("UCREDIT1") if "Globex" in text_of(e)][0]
    slack.click("UCREDIT1", refreshed, "customer_credit_release")
    modal = api.wait_for(lambda: api.views_for("UCREDIT1") or None, WAIT, "the modal")[-1]
    assert modal["callback_id"] == "customer_credit_release_modal"
    assert "Overdue" in text_of(modal) and audit(company, "customer.credit_release") == []
    # and an empty reason is refused inline, the hold stays
    slack.submit_view("UCREDIT1", modal, {"credit_release_reason": {
        "credit_release_reason_input": "   "}}, check_required=False)
    assert "say why" in api.view_errors(modal["id"])["credit_release_reason"]
    # when a reason is given, the release is audited with it
    slack.submit_view("UCREDIT1", modal, {"credit_release_reason": {
        "credit_release_reason_input": "CFO agreed: paid by wire today"}})
    [released] = api.wait_for(lambda: audit(company, "customer.credit_release"), WAIT,
                              "release")
    assert (released.actor, released.reason) == ("UCREDIT1", "CFO agreed: paid by wire today")
    assert order_status(company, submit(company, "C-GLOBEX")) == "approved"


def test_o2c_approvals_lists_decisions_for_approvers_and_requests_for_reps(
        company, slack, standin) -> None:
    # given one pending credit request of USALES01
    number = submit(company)
    # then the approver sees it to decide, the rep sees it as their request
    for_approver = text_of(ask(slack, standin.api, "UCREDIT1", "approvals"))
    assert "Waiting for you" in for_approver and number in for_approver
    assert "new customer" in for_approver
    for_rep = text_of(ask(slack, standin.api, "USALES01", "approvals"))
    assert "Your requests still waiting" in for_rep and number in for_rep
    assert "Waiting for you" not in for_rep
    # and a discount approver has nothing to decide on a credit request
    assert number not in text_of(ask(slack, standin.api, "UDISC001", "approvals"))


def test_admin_changes_policy_and_others_are_refused(company, slack, standin) -> None:
    # when a rep tries to raise the discount maximum, then it is refused and audited
    refused = text_of(ask(slack, standin.api, "USALES01", "policy set max_discount_pct 30"))
    assert "admin" in refused
    assert [e.actor for e in audit(company, "refused.policy.change")] == ["USALES01"]
    # when an admin sends a bad value, then it is refused with the reason
    assert "number" in text_of(ask(slack, standin.api, ADMIN, "policy set max_discount_pct x"))
    assert "2 decimals" in text_of(ask(slack, standin.api, ADMIN,
                                       "policy set bank_fee_pct 0.125"))
    # when an admin raises it
    changed = text_of(ask(slack, standin.api, ADMIN, "policy set max_discount_pct 30"))
    assert "max_discount_pct" in changed and "30" in changed
    assert [e.to_state for e in audit(company, "policy.changed")] == ["30"]
    # then a 25 % discount no longer needs an approval
    assert order_status(company, submit(company, "C-GLOBEX", discount="25")) == "approved"


def test_policy_values_out_of_any_range_are_refused_with_the_reason(company, slack, standin,
                                                                   caplog) -> None:
    # when an admin types a number past Decimal's precision, or a zone name past a file name
    for text, reason in (("policy set bank_fee_pct 1e999", "bank_fee_pct"),
                         ("policy set max_discount_pct 1e-999", "max_discount_pct"),
                         ("policy set business_timezone " + "Europe/" + "x" * 300,
                          "unknown time zone"),
                         # a day count or offset no date reaches: every credit check (and
                         # so every order) or dunning run would fail from then on
                         ("policy set overdue_hold_days 1000000", "at most 3660"),
                         ("policy set dunning_levels -3,1,7,14,999999999", "at most 3660")):
        answer = text_of(ask(slack, standin.api, ADMIN, text))
        # then it is refused, saying why, like any bad value: no "something went wrong"
        assert ":no_entry_sign:" in answer and reason in answer, text
        assert "went wrong" not in answer
    assert audit(company, "policy.changed") == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= 40] == []


def test_a_rejection_typed_while_someone_else_approved_changes_nothing(
        company, slack, standin) -> None:
    api = standin.api
    # given a credit approver who opened the reject modal
    number = submit(company)
    posted = card(api, number)
    slack.click("UCREDIT1", posted, "approval_reject")
    modal = api.wait_for(lambda: api.views_for("UCREDIT1") or None, WAIT, "the modal")[0]
    # when an admin approves meanwhile, and then the reason is submitted
    slack.click(ADMIN, posted, "approval_approve")
    api.wait_for(lambda: approval(company, number).status == "approved", WAIT, "approval")
    slack.submit_view("UCREDIT1", modal, {"reject_reason": {"reject_reason_input": "No"}})
    # then the modal closes, the approver is told who was first, and nothing changed
    assert api.views_for("UCREDIT1") == []
    told = wait_ephemerals(api, "UCREDIT1")[0]
    assert "already *approved* by <@UADMIN01>" in told
    assert approval(company, number).status == "approved"
    assert audit(company, "approval.rejected") == []
    assert order_status(company, number) == "approved"


@pytest.mark.parametrize("button, modal", [("approval_reject", "approval_reject_modal"),
                                           ("approval_approve_note",
                                            "approval_approve_note_modal")])
def test_reject_and_approve_with_note_open_their_modal_while_a_long_job_holds_the_write_lock(
        company, slack, standin, button, modal) -> None:
    api = standin.api
    # given a card waiting for a credit decision
    posted = card(api, submit(company))
    # and a long write transaction (a statement import, the nightly jobs) in progress
    with company.db.transaction() as s:
        f.customer(s, "C-LOCK", "Lock Holder Ltd")
        # when the credit approver clicks the button meanwhile
        assert slack.click("UCREDIT1", posted, button).status_code == 200
        # then the modal opens at once: the checks before it only read
        view = api.wait_for(lambda: (api.views_for("UCREDIT1") or [None])[-1], 5,
                            "the modal while the write lock is held")
    assert view["callback_id"] == modal
    assert [c.ok for c in api.calls_to("views.open")] == [True]
