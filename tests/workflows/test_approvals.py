"""Approval decisions, reminders, credit hold and the card's snapshot, on the workflows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import Approval, AuditEvent, Customer, OrderStatus, OutboxMessage
from tests.support import factories as f
from tests.support.meanwhile import at_once
from tests.support.timetravel import frozen_at
from workflows import approvals, cash_application
from workflows.credit_hold import set_credit_hold
from workflows.errors import (
    AlreadyDecided,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.inputs import OrderIn, OrderLineIn, PaymentIn
from workflows.orders import transition
from workflows.receivables import credit_exposure

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(MONDAY)  # every test here happens on Monday 2 March 2026, 09:00 UTC


def setup_company(session) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UDISC001", "discount_approver")
    f.user(session, "UADMIN01", "admin")
    f.customer(session, "C-NEW", "Newco", reviewed=False)
    f.customer(session)
    f.product(session, "WID-1", price="100.00")


def pending(session, order, kind: str = "credit") -> Approval:
    return session.exec(select(Approval).where(Approval.order_id == order.id,
                                               Approval.kind == kind)).one()


def actions(session, action: str) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_decision_is_taken_once_and_the_loser_learns_who(session) -> None:
    # given
    setup_company(session)
    order = f.order(session, "C-NEW")
    approval = pending(session, order)
    # when two approvers decide one after the other
    approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id="UCREDIT1",
                     approve=True)
    with pytest.raises(AlreadyDecided) as late:
        approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id="UADMIN01",
                         approve=False, note="no")
    # then the second changed nothing and was told who decided
    assert (late.value.decided_by, late.value.decision) == ("UCREDIT1", "approved")
    assert len(actions(session, "approval.approved")) == 1
    assert actions(session, "approval.rejected") == []
    assert order.status == OrderStatus.APPROVED


def test_rejecting_needs_a_reason(session) -> None:
    setup_company(session)
    approval = pending(session, f.order(session, "C-NEW"))
    with pytest.raises(ValidationFailed) as caught:
        approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id="UCREDIT1",
                         approve=False, note="   ")
    assert caught.value.errors[0].field == "reason"
    assert approval.status == "pending"


def test_roles_and_segregation_of_duties(session) -> None:
    # given an order entered by a rep who also approves credit, and an API order of USALES01
    setup_company(session)
    f.user(session, "USALES02", "sales", "credit_approver")
    own = pending(session, f.order(session, "C-NEW", rep="USALES02"))
    from workflows.orders import create_order

    via_api = create_order(session, OrderIn(customer="C-NEW", sales_rep="USALES01",
                                            currency="USD",
                                            lines=[OrderLineIn(sku="WID-1", quantity=1)]),
                           actor="api", now=MONDAY)
    api_approval = pending(session, via_api)
    f.user(session, "USALES01", "sales", "credit_approver")
    # then: the wrong role, the requester, and the order's rep are all refused
    cases = [("UDISC001", own, "Only a credit approver"),
             ("USALES02", own, "You asked for this approval"),
             ("USALES01", api_approval, "your own order")]
    for user, approval, message in cases:
        with pytest.raises(PermissionDenied) as refused:
            approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id=user,
                             approve=True)
        assert message in refused.value.detail
        assert (refused.value.actor, refused.value.entity_type, refused.value.entity_id) == (
            user, "approval", approval.id)
    assert api_approval.requested_by == "api"
    # and an admin who asked for nothing may decide
    approvals.decide(session=session, now=MONDAY, approval_id=api_approval.id, user_id="UADMIN01",
                     approve=True)
    assert via_api.status == OrderStatus.APPROVED


def test_unknown_approval_and_an_order_that_moved_on(session) -> None:
    setup_company(session)
    with pytest.raises(NotFound):
        approvals.decide(session=session, now=MONDAY, approval_id=999, user_id="UCREDIT1",
                         approve=True)
    order = f.order(session, "C-NEW")
    transition(session, order, OrderStatus.CANCELLED, actor="USALES01", reason="changed mind")
    with pytest.raises(InvalidTransition):
        approvals.decide(session=session, now=MONDAY, approval_id=pending(session, order).id,
                         user_id="UCREDIT1", approve=True)


def test_discount_snapshot_has_the_margin_impact(session) -> None:
    # given a product costing 60.00 sold at 100.00
    setup_company(session)
    product = f.product(session, "WID-2", price="100.00")
    product.cost_minor = 6000
    session.add(product)
    # when 3 are ordered at 30 % off (maximum 15 %)
    order = f.order(session, lines=[("WID-2", 3)], discount="30")
    # then the discount request and the alert carry revenue and margin before/after
    snapshot = pending(session, order, "discount").snapshot
    [line] = snapshot["lines"]
    assert (line["gross_minor"], line["net_minor"], line["lost_minor"]) == (30000, 21000, 9000)
    assert (line["margin_before_pct"], line["margin_after_pct"]) == ("40.0", "14.3")
    assert line["max_bp"] == 1500 and snapshot["lost_minor"] == 9000
    templates = [m.payload["template"] for m in session.exec(select(OutboxMessage))]
    assert templates.count("discount_alert") == 1
    assert "exposure_minor" in snapshot and "history" in snapshot


def test_credit_snapshot_shows_aging_and_payment_history(session) -> None:
    # given one invoice paid 20 days late, one on time, and one open 40 days past due
    setup_company(session)
    today = MONDAY.date()
    f.invoice(session, "INV-LATE", total="100.00", due=today - timedelta(days=20))
    f.invoice(session, "INV-ONTIME", total="50.00", due=today + timedelta(days=5))
    f.invoice(session, "INV-OPEN", total="300.00", due=today - timedelta(days=40))
    for number, amount in (("INV-LATE", "100.00"), ("INV-ONTIME", "50.00")):
        cash_application.record_payment(session, PaymentIn(
            amount=amount, currency="USD", received_at=MONDAY, reference=number,
            customer="C-GLOBEX"), actor="test")
    # when an order is submitted
    order = f.order(session)
    # then it needs credit approval (past due) and the card knows the history
    snapshot = pending(session, order).snapshot
    assert snapshot["history"] == {"paid": 2, "paid_late": 1, "avg_days_late": "20.0",
                                   "days": 365}
    assert snapshot["aging"]["31-60"] == 30000
    assert snapshot["oldest_days_past_due"] == 40
    assert snapshot["exposure_minor"] == 30000 + order.total_minor


def test_reminders_count_working_hours_only(session) -> None:
    # given a request made on Friday at 15:00 (working hours 09:00-17:00 UTC)
    setup_company(session)
    friday = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
    order = f.order(session, "C-NEW", now=friday)
    # then by Monday 10:00 it has waited 3 working hours: no reminder
    assert approvals.send_reminders(session, now=datetime(2026, 3, 9, 10, 0, tzinfo=UTC)) == []
    # and at Monday 11:00 it has waited 4: one reminder, to the credit approvers
    [sent] = approvals.send_reminders(session, now=datetime(2026, 3, 9, 11, 0, tzinfo=UTC))
    assert (sent["order"], sent["reminder"], sent["working_hours"]) == (order.number, 1, "4.0")
    reminder = session.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("approval-reminder:%"))).one()
    assert reminder.payload["context"]["reminder"]["approvers"] == ["UCREDIT1"]
    assert pending(session, order).reminders_sent == 1


def test_reminders_skip_the_businesss_holidays(session) -> None:
    # given a request made on Friday 6 March 2026 at 15:00, and Monday 9 March a company
    # closure
    from workflows import policy

    setup_company(session)
    policy.set_value(session, key="holidays", value="2026-03-09", actor="UADMIN01")
    order = f.order(session, "C-NEW", now=datetime(2026, 3, 6, 15, 0, tzinfo=UTC))
    # then the Monday does not count: no reminder on Monday at 11:00, one on Tuesday at 11:00
    assert approvals.send_reminders(session, now=datetime(2026, 3, 9, 11, 0, tzinfo=UTC)) == []
    [sent] = approvals.send_reminders(session, now=datetime(2026, 3, 10, 11, 0, tzinfo=UTC))
    assert (sent["order"], sent["working_hours"]) == (order.number, "4.0")


def test_reminder_interval_follows_the_policy(session) -> None:
    from workflows import policy

    setup_company(session)
    policy.set_value(session, key="approval_reminder_hours", value="1", actor="UADMIN01")
    policy.set_value(session, key="business_timezone", value="America/New_York",
                     actor="UADMIN01")
    order = f.order(session, "C-NEW", now=datetime(2026, 3, 2, 14, 0, tzinfo=UTC))  # 09:00 NY
    assert approvals.send_reminders(session, now=datetime(2026, 3, 2, 14, 59, tzinfo=UTC)) == []
    assert len(approvals.send_reminders(session, now=datetime(2026, 3, 2, 15, 0,
                                                              tzinfo=UTC))) == 1
    assert pending(session, order).reminders_sent == 1


def test_concurrent_reminder_runs_nudge_once(db) -> None:
    # given three requests waiting since Monday morning
    with db.transaction() as s:
        setup_company(s)
        for _ in range(3):
            f.order(s, "C-NEW", now=MONDAY)
    # when four processes run the job at the same moment
    def run() -> list[dict]:
        with db.transaction() as s:
            return approvals.send_reminders(s, now=MONDAY + timedelta(hours=6))

    results = [r for sent in at_once(run, 4) for r in sent]
    # then each request was reminded exactly once
    assert sorted(r["approval_id"] for r in results) == [1, 2, 3]
    with db.read_session() as s:
        keys = s.exec(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key.like("approval-reminder:%"))).all()
        assert len(keys) == 3
        assert [a.reminders_sent for a in s.exec(select(Approval))] == [1, 1, 1]


def test_credit_hold_is_role_checked_and_changes_once(session) -> None:
    setup_company(session)
    customer = session.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
    with pytest.raises(PermissionDenied) as refused:
        set_credit_hold(session, customer_id=customer.id, actor="USALES01", on_hold=True)
    assert refused.value.action == "customer.credit_hold"
    assert set_credit_hold(session, customer_id=customer.id, actor="UCREDIT1", on_hold=True)
    assert not set_credit_hold(session, customer_id=customer.id, actor="UADMIN01", on_hold=True)
    assert [e.actor for e in actions(session, "customer.credit_hold")] == ["UCREDIT1"]
    order = f.order(session)
    assert order.status == OrderStatus.PENDING_APPROVAL
    assert pending(session, order).reasons[0]["code"] == "credit_hold"


def test_pending_overview_splits_decisions_and_own_requests(session) -> None:
    setup_company(session)
    credit = f.order(session, "C-NEW")
    discount = f.order(session, lines=[("WID-1", 1)], discount="20")
    approver = approvals.pending_overview(session, now=MONDAY, user_id="UCREDIT1")
    assert [i.order.number for i in approver.to_decide] == [credit.number]
    rep = approvals.pending_overview(session, now=MONDAY, user_id="USALES01")
    assert rep.to_decide == [] and rep.can_decide_kinds == []
    assert {i.order.number for i in rep.requested} == {credit.number, discount.number}
    admin = approvals.pending_overview(session, now=MONDAY, user_id="UADMIN01")
    assert admin.to_decide_total == 2 and admin.can_decide_kinds == [
        "credit", "discount", "credit_note", "write_off", "fee_waiver", "credit_request"]


def test_an_outsider_is_refused_before_their_input_is_looked_at(session) -> None:
    setup_company(session)
    approval = pending(session, f.order(session, "C-NEW"))
    with pytest.raises(PermissionDenied):
        approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id="USALES01",
                         approve=False, note="")


def test_approving_a_new_customer_is_its_credit_review(session) -> None:
    # given a first order of a customer nobody has reviewed
    setup_company(session)
    first = f.order(session, "C-NEW")
    # when the credit approver approves it
    approvals.decide(session=session, now=MONDAY, approval_id=pending(session, first).id,
                     user_id="UCREDIT1", approve=True)
    # then the customer counts as reviewed (audited), and the next order within the limit
    # needs no approval
    newco = session.exec(select(Customer).where(Customer.external_id == "C-NEW")).one()
    assert newco.credit_reviewed is True
    [review] = actions(session, "customer.credit_reviewed")
    assert review.actor == "UCREDIT1" and review.entity_id == str(newco.id)
    assert f.order(session, "C-NEW").status == OrderStatus.APPROVED


def test_a_rejection_does_not_review_the_customer(session) -> None:
    setup_company(session)
    first = f.order(session, "C-NEW")
    approvals.decide(session=session, now=MONDAY, approval_id=pending(session, first).id,
                     user_id="UCREDIT1", approve=False, note="unknown company")
    newco = session.exec(select(Customer).where(Customer.external_id == "C-NEW")).one()
    assert newco.credit_reviewed is False


def test_a_credit_approval_above_its_tier_needs_the_second_decision(session) -> None:
    # given credit approvals above 150.00 need an admin after the first approval
    from workflows import policy

    setup_company(session)
    policy.set_value(session, key="approval_tiers", value="credit:150:admin", actor="test")
    order = f.order(session, "C-NEW")  # 200.00
    approval = pending(session, order)
    assert (approval.second_role, approval.amount_minor) == ("admin", 20_000)
    # when the credit approver approves
    first = approvals.decide(session=session, now=MONDAY, approval_id=approval.id,
                             user_id="UCREDIT1", approve=True)
    # then the order still waits; the first approval is on the card and audited
    assert first.outcome == approvals.FIRST_APPROVED
    assert order.status == OrderStatus.PENDING_APPROVAL
    assert approval.status == "pending" and approval.first_decided_by == "UCREDIT1"
    card = session.exec(select(OutboxMessage).where(OutboxMessage.method == "chat.update")
                        .order_by(OutboxMessage.id.desc())).first()
    assert card.payload["context"]["first_decided_by"] == "UCREDIT1"
    # and the same approver cannot take the second decision, nor a second credit approver
    with pytest.raises(PermissionDenied, match="approval tier"):
        approvals.decide(session=session, now=MONDAY, approval_id=approval.id,
                         user_id="UCREDIT1", approve=True)
    # when an admin approves, the order is approved
    approvals.decide(session=session, now=MONDAY, approval_id=approval.id, user_id="UADMIN01",
                     approve=True)
    assert order.status == OrderStatus.APPROVED
    assert [e.actor for e in actions(session, "approval.first_approved")] == ["UCREDIT1"]
    assert [e.actor for e in actions(session, "approval.approved")] == ["UADMIN01"]
    # and an order under the tier is decided once as before
    small = f.order(session, "C-NEW", lines=[("WID-1", 1)])
    assert small.status == OrderStatus.APPROVED  # reviewed by the first approval


def test_credit_split_into_orders_under_the_tier_still_needs_the_second_decision(
        session) -> None:
    # given credit approvals above 150.00 need an admin, and a customer with a 50.00 limit
    from workflows import policy

    setup_company(session)
    policy.set_value(session, key="approval_tiers", value="credit:150:admin", actor="test")
    f.customer(session, "C-TIGHT", "Tight Ltd", credit_limit="50.00")
    # when 300.00 of credit is asked for as three orders of 100.00, each under the tier
    first = pending(session, f.order(session, "C-TIGHT", lines=[("WID-1", 1)]))
    second = pending(session, f.order(session, "C-TIGHT", lines=[("WID-1", 1)]))
    # then the first alone is under it; the second, with the first waiting, is above it
    assert (first.second_role, first.amount_minor) == (None, 10_000)
    assert (second.second_role, second.amount_minor) == ("admin", 10_000)
    [_, asked] = actions(session, "approval.requested")
    assert asked.data["tier_amount_minor"] == 20_000
    # and once the first is approved (approved, not invoiced: exposure), the third is too
    approvals.decide(session=session, now=MONDAY, approval_id=first.id, user_id="UCREDIT1",
                     approve=True)
    third = pending(session, f.order(session, "C-TIGHT", lines=[("WID-1", 1)]))
    assert third.second_role == "admin"
    assert actions(session, "approval.requested")[-1].data["tier_amount_minor"] == 30_000


def test_an_order_waiting_for_a_discount_decision_is_credit_checked_again_before_approval(
        session) -> None:
    # given a customer with a 1,000.00 limit, an order of 640.00 waiting for a discount
    # approval (20 % off; within the limit when submitted, and counted in nobody's exposure
    # while it waits), then an order of 800.00 approved at once into the same room
    setup_company(session)
    f.customer(session, "C-TIGHT", "Tight Ltd", credit_limit="1000.00")
    waiting = f.order(session, "C-TIGHT", lines=[("WID-1", 8)], discount="20")
    assert [a.kind for a in session.exec(select(Approval).where(
        Approval.order_id == waiting.id))] == ["discount"]
    assert f.order(session, "C-TIGHT", lines=[("WID-1", 8)]).status == OrderStatus.APPROVED
    # when the discount is approved
    approvals.decide(session=session, now=MONDAY, approval_id=pending(session, waiting,
                     "discount").id, user_id="UDISC001", approve=True)
    # then the order would take the exposure to 1,440.00: it is not approved on the discount
    # alone but waits for a credit approval, asked for by whoever asked for the discount
    assert waiting.status == OrderStatus.PENDING_APPROVAL
    credit = pending(session, waiting, "credit")
    assert (credit.status, credit.requested_by) == ("pending", "USALES01")
    assert [r["code"] for r in credit.reasons] == ["over_limit"]
    assert (credit.snapshot["exposure_minor"], credit.snapshot["credit_limit_minor"]) == (
        144000, 100000)
    [recheck] = actions(session, "order.credit_recheck")
    assert (recheck.actor, recheck.entity_id, recheck.data["approval_id"]) == (
        "system", str(waiting.id), credit.id)
    assert credit_exposure(session, waiting.customer_id) == 80000
    # and a credit approver's decision approves it
    approvals.decide(session=session, now=MONDAY, approval_id=credit.id, user_id="UCREDIT1",
                     approve=True)
    assert waiting.status == OrderStatus.APPROVED
    assert credit_exposure(session, waiting.customer_id) == 144000


@pytest.mark.parametrize("first", ["discount approved", "order entered"])
def test_a_discount_approval_and_a_new_order_at_once_never_both_use_the_same_room(
        db, first) -> None:
    from sqlmodel import Session

    from models import Order
    from tests.support.meanwhile import second_writer

    # given a 1,000.00 limit and an order of 640.00 waiting for its discount approval
    with db.transaction() as s:
        setup_company(s)
        f.customer(s, "C-TIGHT", "Tight Ltd", credit_limit="1000.00")
        waiting = f.order(s, "C-TIGHT", lines=[("WID-1", 8)], discount="20", now=MONDAY)
        number, approval_id = waiting.number, pending(s, waiting, "discount").id

    def approve_discount(s: Session) -> None:
        approvals.decide(session=s, now=MONDAY, approval_id=approval_id, user_id="UDISC001",
                         approve=True)

    def enter_order(s: Session) -> None:
        f.order(s, "C-TIGHT", lines=[("WID-1", 8)], now=MONDAY)  # 800.00

    # when one transaction does the one while another does the other at the same moment
    held_work, other = ((approve_discount, enter_order) if first == "discount approved"
                        else (enter_order, approve_discount))
    with db.session() as held:
        held_work(held)
        _, waited = second_writer(db, held, other)
    # then the second waited for the first and saw it: only one of the two orders takes the
    # room, the other waits for a credit approval (640.00 + 800.00 > 1,000.00)
    assert waited == db.is_postgres
    with db.session() as s:
        statuses = {o.number == number: o.status for o in s.exec(select(Order))}
        customer = s.exec(select(Customer).where(Customer.external_id == "C-TIGHT")).one()
        assert sorted(statuses.values()) == [OrderStatus.APPROVED, OrderStatus.PENDING_APPROVAL]
        assert statuses[first == "discount approved"] == OrderStatus.APPROVED
        assert credit_exposure(s, customer.id) <= 100000
        credit = s.exec(select(Approval).where(Approval.kind == "credit")).one()
        assert [r["code"] for r in credit.reasons] == ["over_limit"]
        assert credit.snapshot["exposure_minor"] == 144000


def test_a_credit_request_card_shows_what_is_overdue_on_the_business_day(session) -> None:
    # given a business in Los Angeles and a 500.00 invoice due on Monday 2 March
    from datetime import date

    from workflows import policy
    from workflows.workflow_steps import REQUEST_CREDIT, StepRun, run_step

    setup_company(session)
    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")
    f.invoice(session, "INV-LA-1", total="500.00", due=date(2026, 3, 2))
    # when a rep asks for more credit on Monday at 22:00 there (Tuesday 06:00 UTC)
    monday_night = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    run_step(session, StepRun("Fx-LA-1", REQUEST_CREDIT, {
        "requested_by": {"id": "USALES01"}, "customer": "Globex", "amount": "20000",
        "reason": "bigger orders"}), now=monday_night)
    # then the card says nothing is overdue: on the business day the invoice is due today
    card = session.exec(select(OutboxMessage).where(OutboxMessage.method == "chat.postMessage")
                        .order_by(OutboxMessage.id.desc())).first()
    facts = dict(card.payload["context"]["subject"]["facts"])
    assert facts["Overdue"] == "USD 0.00"
    assert facts["Exposure"] == "USD 500.00"


def test_a_customers_sales_rep_never_approves_more_credit_for_that_customer(session) -> None:
    # given Initech, whose sales rep USALES02 also approves credit (two roles)
    from models import CreditRequest
    from workflows.workflow_steps import REQUEST_CREDIT, StepRun, run_step

    setup_company(session)
    f.user(session, "USALES02", "sales", "credit_approver")
    f.customer(session, "C-INI", "Initech", credit_limit="1000.00", sales_rep="USALES02")
    # when a colleague's workflow asks to raise Initech's credit to 90,000.00
    run_step(session, StepRun("Fx-INI-1", REQUEST_CREDIT, {
        "requested_by": {"id": "USALES01"}, "customer": "Initech", "amount": "90000",
        "reason": "big deal"}), now=MONDAY)
    approval = session.exec(select(Approval).where(Approval.kind == "credit_request")).one()
    # then the customer's own rep may not approve it, on the card or from a modal
    for check in (lambda: approvals.ensure_decidable(session, approval_id=approval.id,
                                                     user_id="USALES02"),
                  lambda: approvals.decide(session=session, now=MONDAY, user_id="USALES02",
                                           approval_id=approval.id, approve=True)):
        with pytest.raises(PermissionDenied, match="Initech's sales rep"):
            check()
    assert session.exec(select(Customer).where(Customer.external_id == "C-INI")
                        ).one().credit_limit_minor == 100_000
    # and is not pinged for it, nor offered it in /o2c approvals
    assert "USALES02" not in approvals.approver_ids(
        session, approval, None, row=session.get(CreditRequest, approval.subject_id),
        subject=approvals.subject_for(approval.kind))
    assert approvals.pending_overview(session, "USALES02", now=MONDAY).to_decide == []
    # and another credit approver may
    approvals.decide(session=session, now=MONDAY, user_id="UCREDIT1", approval_id=approval.id,
                     approve=True)
    assert session.exec(select(Customer).where(Customer.external_id == "C-INI")
                        ).one().credit_limit_minor == 9_000_000


def test_an_approver_whose_role_was_removed_after_the_card_was_posted_is_refused(
        session) -> None:
    from workflows.users import change_role

    # given a card posted while UCREDIT1 approved credit
    setup_company(session)
    approval = pending(session, f.order(session, "C-NEW"))
    # when an admin removes the role, and UCREDIT1 then clicks Approve on the old card
    assert change_role(session, actor="UADMIN01", user_id="UCREDIT1", role="credit_approver",
                       add=False)
    with pytest.raises(PermissionDenied, match="Only a credit approver"):
        approvals.decide(session=session, now=MONDAY, approval_id=approval.id,
                         user_id="UCREDIT1", approve=True)
    # then nothing was decided, and the removal is in the audit log: who, whom, from what
    assert approval.status == "pending"
    [removed] = actions(session, "role.revoked")
    assert (removed.actor, removed.entity_id, removed.from_state, removed.to_state) == (
        "UADMIN01", "UCREDIT1", "credit_approver", None)
    assert removed.at is not None


@pytest.mark.parametrize("first", ["approved", "cancelled"])
def test_an_approval_and_the_order_cancelled_at_the_same_moment_end_consistent(
        db, first) -> None:
    from sqlmodel import Session

    from models import Order, Product
    from tests.support.meanwhile import second_writer
    from workflows.orders import cancel_order

    # given a new customer's order of 200.00 waiting for its credit approval
    with db.transaction() as s:
        setup_company(s)
        order = f.order(s, "C-NEW", now=MONDAY)
        number, approval_id = order.number, pending(s, order).id

    def approve(s: Session) -> object:
        try:
            return approvals.decide(session=s, now=MONDAY, approval_id=approval_id,
                                    user_id="UCREDIT1", approve=True).outcome
        except (AlreadyDecided, InvalidTransition) as late:
            return late

    def cancel(s: Session) -> str:
        cancel_order(s, s.exec(select(Order).where(Order.number == number)).one(),
                     actor="USALES01", reason="customer changed their mind", now=MONDAY)
        return "cancelled"

    # when the approver clicks while the rep cancels, in either order
    held_work, other = (approve, cancel) if first == "approved" else (cancel, approve)
    with db.session() as held:
        held_work(held)
        late, waited = second_writer(db, held, other)
    assert waited == db.is_postgres
    # then the order is cancelled, nothing stays reserved, and one decision was recorded
    with db.session() as s:
        assert s.exec(select(Order.status).where(Order.number == number)).one() == "cancelled"
        assert s.exec(select(Product.reserved)).all() == [0]
        approval = s.get(Approval, approval_id)
        decisions = [e.action for e in s.exec(select(AuditEvent).where(
            AuditEvent.entity_type == "approval", AuditEvent.entity_id == str(approval_id),
            AuditEvent.action != "approval.requested"))]
        if first == "approved":
            assert (approval.status, decisions) == ("approved", ["approval.approved"])
        else:  # the approver is told the request was cancelled, and by whom
            assert isinstance(late, AlreadyDecided) and "USALES01" in late.detail
            assert (approval.status, decisions) == ("cancelled", ["approval.cancelled"])


def test_a_waiting_order_is_worth_its_value_at_the_new_tax_rate(session) -> None:
    # given credit approvals above 1,150.00 need an admin, and a customer at 10 % tax with a
    # 50.00 limit whose order of 10 x 100.00 (1,100.00) waits for a credit decision
    from workflows import policy

    setup_company(session)
    policy.set_value(session, key="approval_tiers", value="credit:1150:admin", actor="test")
    f.customer(session, "C-TIGHT", "Tight Ltd", credit_limit="50.00", tax_rate="10")
    order = f.order(session, "C-TIGHT", lines=[("WID-1", 10)])
    approval = pending(session, order)
    assert (order.total_minor, approval.amount_minor, approval.second_role) == (
        110_000, 110_000, None)
    # when the ERP moves the customer to 20 % while the order waits
    f.customer(session, "C-TIGHT", "Tight Ltd", credit_limit="50.00", tax_rate="20")
    session.commit()
    # then the order is worth what it will be invoiced at: 1,000.00 + 200.00 tax, on the
    # order, its approval and the exposure its card shows — and, above the tier now, the
    # approval needs the admin's second decision
    assert (order.tax_minor, order.total_minor) == (20_000, 120_000)
    assert (approval.amount_minor, approval.second_role) == (120_000, "admin")
    assert approval.snapshot["now"]["exposure_minor"] == 120_000
    [repriced] = actions(session, "order.repriced")
    assert (repriced.data["total_minor"], repriced.data["tax_rate_bp"]) == (
        [110_000, 120_000], [1000, 2000])
    [raised] = actions(session, "approval.tier_raised")
    assert (raised.data["tier_amount_minor"], raised.data["second_role"]) == (120_000, "admin")
    # and a second order of 1 x 100.00 (120.00) measures the first at 1,200.00 too
    second = pending(session, f.order(session, "C-TIGHT", lines=[("WID-1", 1)]))
    assert second.second_role == "admin"
    assert actions(session, "approval.requested")[-1].data["tier_amount_minor"] == 132_000
