"""Disputes: opened for a balance or an amount, held out of dunning, priority and overdue,
resolved once (accept -> a credit-note request; reject needs a reason and resumes dunning),
reassigned, reminded and escalated (issue 14, point 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, CreditNoteRequest, Dispute, OutboxMessage
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import approvals, collections, disputes, dunning, invariants, policy
from workflows.cash_application import PaymentIn, record_payment
from workflows.errors import AlreadyDecided, Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import DisputeOpenIn
from workflows.invoicing import get_invoice
from workflows.receivables import aging_by_currency, customer_position

NOW = datetime(2026, 6, 16, 10, 0, tzinfo=UTC)  # a Tuesday
TODAY = NOW.date()
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "USALES01", "sales")
    f.user(session, "USALES02", "sales")
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UCREDIT1", "credit_approver")
    f.user(session, "UNOBODY1")
    f.customer(session, collector="UCOLL001", sales_rep="USALES01")
    f.invoice(session, "INV-2026-000001", total="1000.00", due=TODAY - timedelta(days=10),
              issued=TODAY - timedelta(days=40))
    session.commit()
    return session


def open_one(session, amount: str | None = None, by: str = "UCOLL001", **kw) -> Dispute:
    return disputes.open_dispute(session, "INV-2026-000001", DisputeOpenIn(
        reason="damaged", amount=amount, note="<!here> 3 broken", **kw), actor=by, now=NOW)


def test_an_amount_in_dispute_leaves_dunning_priority_and_overdue(books) -> None:
    # when 400.00 of the 1000.00 is disputed
    dispute = open_one(books, "400.00")
    books.commit()
    invoice = get_invoice(books, "INV-2026-000001")
    # then it is held, and shows as in dispute, not overdue
    assert (invoice.disputed_minor, invoice.disputed) == (40_000, True)
    aging = aging_by_currency(books, TODAY)["USD"]
    assert aging.total == 100_000 and aging.in_dispute["1-30"] == 40_000
    assert aging.overdue == 60_000
    position = customer_position(books, f.customer(books), TODAY)
    assert position.aging.overdue == 60_000
    account = collections.account(books, invoice.customer_id, TODAY)
    assert account.overdue_minor == 60_000 and account.disputes == 1
    # and dunning asks for the rest only
    dunning.run_dunning(books, TODAY)
    mail = books.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).one()
    assert mail.payload["context"]["invoice"]["amount_due_minor"] == 60_000
    assert mail.payload["context"]["invoice"]["in_dispute_minor"] == 40_000
    # and the owner (the customer's sales rep) got the card
    card = books.get(OutboxMessage, dispute.card_outbox_id)
    assert card.payload["channel"] == "USALES01" and card.payload["template"] == "dispute_card"
    assert invariants.validate_all(books) == []


def test_a_wholly_disputed_invoice_gets_no_dunning_until_the_dispute_is_rejected(books) -> None:
    dispute = open_one(books)  # the whole balance
    assert dispute.amount_minor == 100_000
    assert dunning.run_dunning(books, TODAY).sent == {}
    # when the owner rejects it without a reason, then with one
    with pytest.raises(ValidationFailed):
        disputes.resolve(books, dispute_id=dispute.id, outcome="rejected", by="USALES01",
                         now=NOW)
    disputes.resolve(books, dispute_id=dispute.id, outcome="rejected", by="USALES01",
                     now=NOW, note="delivery note signed without remarks")
    books.commit()
    # then dunning resumes
    assert get_invoice(books, "INV-2026-000001").disputed_minor == 0
    assert dunning.run_dunning(books, TODAY).sent == {7: 1}
    assert invariants.validate_all(books) == []


def test_accepting_asks_for_a_credit_note_held_until_it_is_issued(books) -> None:
    # given a credit approver opened the dispute
    dispute = open_one(books, "400.00", by="UCREDIT1")
    # when the owner accepts it for 300.00 of the 400.00
    disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                     now=NOW, credit_amount="300.00", note="3 units")
    request = books.exec(select(CreditNoteRequest)).one()
    # then a credit-note request of 300.00 waits for a credit approver; 300.00 stays held
    assert (request.amount_minor, request.source, request.dispute_id, request.status) == (
        30_000, "dispute", dispute.id, "pending_approval")
    assert get_invoice(books, "INV-2026-000001").disputed_minor == 30_000
    # and whoever opened the dispute cannot approve the credit note that settles it
    with pytest.raises(PermissionDenied, match="You opened dispute"):
        approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=True, now=NOW)
    # so it is not in their queue to decide (App Home), though it is in another approver's
    f.user(books, "UCREDIT2", "credit_approver")
    queue = approvals.pending_overview(books, "UCREDIT1", now=NOW)
    assert (queue.to_decide, queue.to_decide_total, queue.requested) == ([], 0, [])
    other = approvals.pending_overview(books, "UCREDIT2", now=NOW)
    assert [i.approval.id for i in other.to_decide] == [request.approval_id]
    assert invariants.validate_all(books) == []


def test_accepted_and_credited_releases_the_hold(books) -> None:
    dispute = open_one(books, "400.00")
    disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                     now=NOW)
    request = books.exec(select(CreditNoteRequest)).one()
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=True, now=NOW + timedelta(hours=1))
    books.commit()
    invoice = get_invoice(books, "INV-2026-000001")
    books.refresh(dispute)
    assert (invoice.balance_minor, invoice.disputed_minor) == (60_000, 0)
    assert dispute.held_minor == 0 and dispute.released_at is not None
    assert invariants.validate_all(books) == []


def test_a_rejected_credit_note_resumes_dunning(books) -> None:
    dispute = open_one(books)
    disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                     now=NOW)
    request = books.exec(select(CreditNoteRequest)).one()
    approvals.decide(session=books, approval_id=request.approval_id, user_id="UCREDIT1",
                     approve=False, note="not our fault", now=NOW)
    assert get_invoice(books, "INV-2026-000001").disputed_minor == 0
    assert invariants.validate_all(books) == []


def test_resolved_once_and_only_by_owner_collector_or_credit_approver(books) -> None:
    dispute = open_one(books)
    with pytest.raises(PermissionDenied) as refused:
        disputes.resolve(books, dispute_id=dispute.id, outcome="withdrawn", by="USALES02",
                         now=NOW)
    assert refused.value.action == "dispute.withdrawn"
    with pytest.raises(ValidationFailed) as too_much:  # more credit than was disputed
        disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                         now=NOW, credit_amount="1000.01")
    assert too_much.value.errors[0].field == "credit_amount"
    disputes.resolve(books, dispute_id=dispute.id, outcome="withdrawn", by="UCOLL001",
                     now=NOW)
    with pytest.raises(AlreadyDecided) as late:
        disputes.resolve(books, dispute_id=dispute.id, outcome="accepted", by="USALES01",
                         now=NOW)
    assert late.value.decided_by == "UCOLL001"
    assert books.exec(select(CreditNoteRequest)).all() == []


def test_one_open_dispute_per_invoice_and_never_more_than_is_open(books) -> None:
    with pytest.raises(ValidationFailed) as too_much:
        open_one(books, "1000.01")
    assert too_much.value.errors[0].field == "amount"
    open_one(books, "100.00")
    with pytest.raises(Conflict):
        open_one(books, "100.00")
    with pytest.raises(PermissionDenied):
        open_one(books, "1.00", by="UNOBODY1")
    with pytest.raises(ValidationFailed):
        disputes.open_dispute(books, "INV-2026-000001", DisputeOpenIn(reason="weather"),
                              actor="api", now=NOW)


def test_payments_lower_what_is_held_with_the_balance(books) -> None:
    open_one(books, "800.00")
    record_payment(books, PaymentIn(amount="500.00", currency="USD", received_at=NOW,
                                    reference="INV-2026-000001"), actor="test")
    invoice = get_invoice(books, "INV-2026-000001")
    assert (invoice.balance_minor, invoice.disputed_minor) == (50_000, 50_000)
    assert invariants.validate_disputes(books) == []


def test_reassign_gives_a_new_card_and_says_so_on_the_old(books) -> None:
    dispute = open_one(books)
    first = dispute.card_outbox_id
    disputes.reassign(books, dispute_id=dispute.id, to_user="USALES02", by="USALES01", now=NOW)
    assert dispute.owner_id == "USALES02" and dispute.card_outbox_id != first
    update = books.exec(select(OutboxMessage).where(
        OutboxMessage.target_outbox_id == first)).one()
    assert update.payload["context"]["reassigned_to"] == "USALES02"
    with pytest.raises(ValidationFailed):
        disputes.reassign(books, dispute_id=dispute.id, to_user="UNOBODY1", by="USALES02",
                          now=NOW)


def test_the_disputes_channel_owns_them_when_set(books) -> None:
    policy.set_value(books, key="disputes_channel", value="CDISPUTES", actor="test")
    dispute = open_one(books)
    card = books.get(OutboxMessage, dispute.card_outbox_id)
    assert (dispute.owner_id, card.payload["channel"]) == (None, "CDISPUTES")


def test_reminder_after_two_working_days_escalation_after_five_each_once(books) -> None:
    dispute = open_one(books)  # Tuesday
    books.commit()
    thursday, next_tuesday = NOW + timedelta(days=2), NOW + timedelta(days=7)
    assert disputes.send_reminders(books, now=NOW + timedelta(days=1))["reminded"] == []
    assert disputes.send_reminders(books, now=thursday)["reminded"] == [dispute.id]
    assert disputes.send_reminders(books, now=thursday)["reminded"] == []
    later = disputes.send_reminders(books, now=next_tuesday)
    assert later == {"as_of": next_tuesday.date().isoformat(), "reminded": [dispute.id],
                     "escalated": [dispute.id]}
    assert disputes.send_reminders(books, now=next_tuesday)["escalated"] == []
    alert = books.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "dispute_escalated")).one()
    assert alert.payload["channel"] == "alerts"
    assert [e.action for e in books.exec(select(AuditEvent).where(
        AuditEvent.action == "dispute.escalated"))] == ["dispute.escalated"]


def reminders_to(session, dispute: Dispute) -> list[dict]:
    return [m.payload["context"] for m in session.exec(select(OutboxMessage).where(
        OutboxMessage.payload["template"].as_string() == "dispute_card")
        .order_by(OutboxMessage.id)) if m.payload["context"]["dispute_id"] == dispute.id
        and m.payload["context"]["reminder"]]


def test_a_job_that_did_not_run_for_days_sends_one_reminder_not_one_an_hour(books) -> None:
    dispute = open_one(books)  # Tuesday
    books.commit()
    # when the hourly job first runs 6 working days later (the server was down), then again
    # an hour, two hours and a day later
    wednesday = NOW + timedelta(days=8)
    for hours in (0, 1, 2):
        disputes.send_reminders(books, now=wednesday + timedelta(hours=hours))
    assert [r["reminder"] for r in reminders_to(books, dispute)] == [1]
    disputes.send_reminders(books, now=wednesday + timedelta(days=1))
    assert [r["reminder"] for r in reminders_to(books, dispute)] == [1]
    # then the next one comes 2 working days after the last (Friday)
    assert disputes.send_reminders(books, now=wednesday + timedelta(days=2))["reminded"] == [
        dispute.id]
    assert [r["reminder"] for r in reminders_to(books, dispute)] == [1, 2]


def test_a_reassigned_dispute_reminds_its_new_owner_after_the_working_days_not_at_once(
        books) -> None:
    dispute = open_one(books)  # Tuesday, to USALES01
    books.commit()
    thursday = NOW + timedelta(days=2)
    assert disputes.send_reminders(books, now=thursday)["reminded"] == [dispute.id]
    # when it is reassigned the next Wednesday (6 working days after it was opened)
    wednesday = NOW + timedelta(days=8)
    disputes.reassign(books, dispute_id=dispute.id, to_user="USALES02", by="USALES01",
                      now=wednesday)
    # then the new owner, who was just given the card, is not reminded in the hours after
    for hours in (1, 2, 3):
        assert disputes.send_reminders(
            books, now=wednesday + timedelta(hours=hours))["reminded"] == []
    # but 2 working days after they were given it (Friday), once
    assert disputes.send_reminders(books, now=wednesday + timedelta(days=2))["reminded"] == [
        dispute.id]
    assert disputes.send_reminders(books, now=wednesday + timedelta(days=2, hours=1)
                                   )["reminded"] == []
    assert [(r["owner_id"], r["reminder"]) for r in reminders_to(books, dispute)] == [
        ("USALES01", 1), ("USALES02", 1)]
