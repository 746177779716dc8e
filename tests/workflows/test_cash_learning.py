"""Cash application learns from people (issue 20): every way a person teaches it (applying a
suggestion, naming the customer of a payment, correcting an application), the rule used next
time and shown, removed by an admin, refused to others, and never beating an exact invoice
reference."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from models import (
    AuditEvent,
    CashRule,
    Deduction,
    Invoice,
    OutboxMessage,
    Payment,
    WebhookEvent,
    WriteOff,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import invariants, queries, webhooks
from workflows.cash_application import (
    PaymentIn,
    apply_suggestion,
    assign_customer,
    correct_application,
    matched_because,
    payment_allocations,
    record_payment,
    suggestions_of,
)
from workflows.cash_rules import list_rules, remove
from workflows.errors import PermissionDenied

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)
ISSUED = date(2026, 11, 1)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.user(session, "UCOLL001", "collector")
    f.user(session, "UADMIN01", "admin")
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.customer(session, "C-INITECH", "Initech LLC")
    f.customer(session, "C-ACME", "Acme Industries Inc")
    for number, customer, total in [
            ("INV-2026-000101", "C-GLOBEX", "1234.56"), ("INV-2026-000102", "C-GLOBEX", "777.00"),
            ("INV-2026-000103", "C-GLOBEX", "98.10"), ("INV-2026-000104", "C-GLOBEX", "2500.00"),
            ("INV-2026-000201", "C-INITECH", "4321.09"), ("INV-2026-000202", "C-INITECH", "777.00"),
            ("INV-2026-000203", "C-INITECH", "310.25"), ("INV-2026-000204", "C-INITECH", "55.50"),
            ("INV-2026-000301", "C-ACME", "600.00"), ("INV-2026-000302", "C-ACME", "399.99"),
            ("INV-2026-000303", "C-ACME", "123.45")]:
        f.invoice(session, number, customer, total=total, issued=ISSUED,
                  due=ISSUED + timedelta(days=30))
    session.commit()
    return session


def pay(session, amount: str, *, payer: str | None = None, reference: str | None = None,
        received: datetime = RECEIVED) -> Payment:
    payment, _ = record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=received, payer_name=payer,
        reference=reference), actor="test")
    session.commit()
    return payment


def applied_to(session, payment: Payment) -> dict[str, int]:
    return {inv.number: a.amount_minor for a, inv in payment_allocations(session, payment.id)}


def rank_of(session, payment: Payment, number: str) -> int:
    return next(s["rank"] for s in suggestions_of(session, payment)
                if [i["invoice"] for i in s["invoices"]] == [number])


def rules(session) -> list[tuple[str, str, str, bool]]:
    return [(r.kind, r.value, r.source, r.active) for r in session.exec(
        select(CashRule).order_by(CashRule.id)).all()]


def audited(session, action: str) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def healthy(session) -> None:
    assert invariants.validate_all(session) == []


# -- taught by applying a suggestion ---------------------------------------------------------------
def test_applying_a_suggestion_teaches_the_payer_alias_used_and_shown_next_time(books) -> None:
    # given a payer line that looks like nobody: only suggested
    first = pay(books, "1234.56", payer="GLBX HOLDINGS")
    assert first.status == "needs_review"
    # when the collector applies Globex's invoice
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    # then the engine remembers who "GLBX HOLDINGS" is, in the same transaction, audited
    assert rules(books) == [("payer_alias", "glbx holdings", "suggestion", True)]
    learned = audited(books, "cash_rule.learned")
    assert [(e.actor, e.data["kind"], e.data["customer"]) for e in learned] == [
        ("UCOLL001", "payer_alias", "C-GLOBEX")]
    assert first.match_details["decision"]["learned"] == [
        "Globex Corporation paid from 'GLBX HOLDINGS' on 20 Nov 2026"]
    # and the next payment from that line is applied, saying why
    second = pay(books, "777.00", payer="GLBX HOLDINGS", received=RECEIVED + timedelta(days=3))
    assert second.status == "applied"
    assert applied_to(books, second) == {"INV-2026-000102": 77_700}
    assert matched_because(books, second) == [
        "Globex Corporation paid from 'GLBX HOLDINGS' on 20 Nov 2026"]
    assert queries.payment_view(books, second)["matched_because"] == matched_because(
        books, second)
    assert second.match_details["learned"] == [books.exec(select(CashRule.id)).one()]
    healthy(books)


def test_a_payer_name_that_already_fits_teaches_nothing(books) -> None:
    # given two Globex invoices of the same amount: suggested even with Globex's own name
    f.invoice(books, "INV-2026-000105", "C-GLOBEX", total="777.00", issued=ISSUED,
              due=ISSUED + timedelta(days=30))
    books.commit()
    payment = pay(books, "777.00", payer="GLOBEX CORPORATION")
    # when
    apply_suggestion(books, payment_id=payment.id, rank=1, actor="UCOLL001", now=NOW)
    books.commit()
    # then
    assert rules(books) == []


def test_what_was_learned_names_the_day_the_payment_counts_on(books) -> None:
    # given a payer line that looks like nobody, received at 17:30 in Los Angeles on 20 Nov
    # (21 Nov in UTC), said so in that offset
    first = pay(books, "1234.56", payer="GLBX HOLDINGS",
                received=datetime.fromisoformat("2026-11-20T17:30:00-08:00"))
    assert first.value_date == date(2026, 11, 20)
    # when the collector applies Globex's invoice
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    # then what was learned names the payment's day, 20 Nov, not the UTC date
    assert first.match_details["decision"]["learned"] == [
        "Globex Corporation paid from 'GLBX HOLDINGS' on 20 Nov 2026"]


# -- taught by naming the customer of an unidentified payment ------------------------------------
def test_naming_the_customer_applies_the_payment_and_teaches_the_alias(books) -> None:
    # given a payment nobody recognises (600.00 + 399.99 of Acme's, unnamed)
    payment = pay(books, "999.99", payer="ACME TREASURY SVC")
    assert payment.status == "unapplied" and suggestions_of(books, payment) == []
    # when the collector says it is Acme's
    assign_customer(books, payment_id=payment.id, customer="C-ACME", actor="UCOLL001", now=NOW)
    books.commit()
    # then it is matched again knowing the customer, and applied
    assert payment.status == "applied"
    assert applied_to(books, payment) == {"INV-2026-000301": 60_000,
                                          "INV-2026-000302": 39_999}
    assert rules(books) == [("payer_alias", "acme treasury svc", "customer", True)]
    assert [e.actor for e in audited(books, "payment.identified")] == ["UCOLL001"]
    update = books.exec(select(OutboxMessage).where(
        OutboxMessage.method == "chat.update")).one()  # the card shows what happened
    assert update.payload["context"]["payment"]["customer_name"] == "Acme Industries Inc"
    # and the next payment from that line is Acme's
    again = pay(books, "123.45", payer="ACME TREASURY SVC", received=RECEIVED + timedelta(1))
    assert applied_to(books, again) == {"INV-2026-000303": 12_345}
    assert matched_because(books, again) == [
        "Acme Industries Inc paid from 'ACME TREASURY SVC' on 20 Nov 2026"]
    healthy(books)


def test_naming_the_customer_without_an_invoice_that_fits_suggests_their_oldest(books) -> None:
    # given a payment nobody recognises, and no combination of Acme's invoices makes it
    payment = pay(books, "10.01", payer="ACME TREASURY SVC")
    # when the collector says it is Acme's
    assign_customer(books, payment_id=payment.id, customer="C-ACME", actor="UCOLL001", now=NOW)
    books.commit()
    # then it is Acme's, nothing is applied, and the card offers Acme's oldest invoice
    acme = books.exec(select(Invoice.customer_id).where(
        Invoice.number == "INV-2026-000301")).one()
    assert (payment.status, payment.customer_id) == ("needs_review", acme)
    assert applied_to(books, payment) == {}
    assert [s["customer"] for s in suggestions_of(books, payment)] == ["C-ACME"]


# -- taught by a correction ------------------------------------------------------------------------
def taught_initech(books) -> Payment:
    """A collector applied a "NORTHSTAR FINANCE" payment to Initech (teaching that payer line
    as Initech's); the next payment from it, 55.50, the engine applied to Initech's
    INV-2026-000204 because of that rule. Returns that payment."""
    first = pay(books, "4321.09", payer="NORTHSTAR FINANCE")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000201"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    later = pay(books, "55.50", payer="NORTHSTAR FINANCE", received=RECEIVED + timedelta(1))
    assert applied_to(books, later) == {"INV-2026-000204": 5_550}
    assert later.match_details.get("learned")
    return later


def test_a_correction_moves_the_money_retires_the_rule_that_misled_and_learns_the_right_one(
        books) -> None:
    # given a collector who once applied a "NORTHSTAR FINANCE" payment to Initech by mistake,
    # so that the next one went to Initech by itself
    wrong = taught_initech(books)
    # when the collector corrects it: it paid Globex's 98.10 (a fee of 42.60 short? no:
    # they name the invoice and the payment goes there, the rest stays as credit)
    correct_application(books, payment_id=wrong.id, invoices=["INV-2026-000103"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then Initech's invoice is open again, the money is on Globex's invoice
    assert applied_to(books, wrong) == {"INV-2026-000103": 5_550}
    initech = books.exec(select(Invoice).where(Invoice.number == "INV-2026-000204")).one()
    assert (initech.balance_minor, initech.paid_at) == (5_550, None)
    assert wrong.customer_id == books.exec(select(Invoice.customer_id).where(
        Invoice.number == "INV-2026-000103")).one()
    # and the rule that misled is retired, the right one learned, all audited
    assert rules(books) == [("payer_alias", "northstar finance", "suggestion", False),
                            ("payer_alias", "northstar finance", "correction", True)]
    assert [e.action for e in audited(books, "cash_rule.retired")] == ["cash_rule.retired"]
    corrected = audited(books, "payment.corrected")[0]
    assert corrected.data["before"] == [["INV-2026-000204", 5_550]]
    assert corrected.data["after"] == [["INV-2026-000103", 5_550]]
    assert audited(books, "payment.allocation_reversed")[0].data["invoice"] == \
        "INV-2026-000204"
    # and next time the money goes to Globex
    later = pay(books, "2500.00", payer="NORTHSTAR FINANCE", received=RECEIVED + timedelta(2))
    assert applied_to(books, later) == {"INV-2026-000104": 250_000}
    healthy(books)


def test_a_correction_of_a_bank_fee_write_off_restores_the_invoice(books) -> None:
    # given a payment applied by reference with a bank fee written off
    payment = pay(books, "776.00", reference="INV-2026-000102")
    assert payment.match_details["write_off_minor"] == 100
    # when it is moved to Initech's invoice of the same amount
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000202"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then Globex's invoice is open in full again, without the write-off
    globex = books.exec(select(Invoice).where(Invoice.number == "INV-2026-000102")).one()
    assert globex.balance_minor == 77_700
    assert applied_to(books, payment) == {"INV-2026-000202": 77_600}
    # and Initech's is settled: the 1.00 short is a bank fee there too, written off as the
    # engine would (not left open to be dunned)
    initech = books.exec(select(Invoice).where(Invoice.number == "INV-2026-000202")).one()
    assert initech.balance_minor == 0
    assert [(w.invoice_id, w.amount_minor, w.reason) for w in books.exec(select(WriteOff).where(
        WriteOff.payment_id == payment.id))] == [(initech.id, 100, "bank_fee")]
    assert payment.match_details["write_off_minor"] == 100
    healthy(books)


# -- removed by an admin, refused to others --------------------------------------------------------
def test_an_admin_removes_a_rule_and_it_stops_counting(books) -> None:
    # given a learned alias
    first = pay(books, "1234.56", payer="GLBX HOLDINGS")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    (rule, customer), = list_rules(books, actor="UADMIN01")[0]
    assert customer.external_id == "C-GLOBEX"
    # when an admin removes it
    remove(books, actor="UADMIN01", rule_id=rule.id, now=NOW)
    books.commit()
    # then it is inactive (kept, audited) and the next payment waits for a person
    assert rules(books) == [("payer_alias", "glbx holdings", "suggestion", False)]
    assert [(e.actor, e.entity_id) for e in audited(books, "cash_rule.removed")] == [
        ("UADMIN01", str(rule.id))]
    assert list_rules(books, actor="UADMIN01") == ([], 0)
    assert list_rules(books, actor="UADMIN01", include_removed=True)[1] == 1
    later = pay(books, "777.00", payer="GLBX HOLDINGS", received=RECEIVED + timedelta(1))
    assert later.status == "needs_review" and applied_to(books, later) == {}


def test_only_admins_list_or_remove_rules(books) -> None:
    first = pay(books, "1234.56", payer="GLBX HOLDINGS")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    rule_id = books.exec(select(CashRule.id)).one()
    with pytest.raises(PermissionDenied):
        list_rules(books, actor="UCOLL001")
    with pytest.raises(PermissionDenied) as refused:
        remove(books, actor="UCOLL001", rule_id=rule_id, now=NOW)
    books.rollback()
    assert (refused.value.actor, refused.value.action) == ("UCOLL001", "cash_rules.remove")
    assert rules(books) == [("payer_alias", "glbx holdings", "suggestion", True)]


# -- never beating an exact invoice reference ------------------------------------------------------
@pytest.fixture
def taught(books):
    """"GLBX HOLDINGS" is Globex's, as a collector once said."""
    first = pay(books, "1234.56", payer="GLBX HOLDINGS")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    return books


def test_an_exact_reference_wins_over_a_learned_alias(taught) -> None:
    # when "GLBX HOLDINGS" pays Initech's invoice by its number and amount
    payment = pay(taught, "310.25", payer="GLBX HOLDINGS", reference="INV-2026-000203")
    # then it goes to Initech's invoice (the reference decides)
    assert applied_to(taught, payment) == {"INV-2026-000203": 31_025}
    assert matched_because(taught, payment) == []


def test_a_learned_alias_never_takes_money_from_the_invoice_a_remittance_names(taught) -> None:
    # when "GLBX HOLDINGS" pays 777.00 naming Initech's 4,321.09 invoice (a short payment):
    # Globex has an invoice of exactly 777.00 and the alias says Globex
    payment = pay(taught, "777.00", payer="GLBX HOLDINGS", reference="INV-2026-000201")
    # then Globex's invoice is not touched: the alias cannot outweigh the reference
    assert "INV-2026-000102" not in applied_to(taught, payment)
    healthy(taught)


# -- remittance patterns ---------------------------------------------------------------------------
def test_a_customer_that_pays_with_its_po_number_is_recognised_by_it(books) -> None:
    # given a payment with only a PO number, applied by a collector to Initech's invoice
    first = pay(books, "310.25", reference="PO 4500012345")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000203"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    assert rules(books) == [("remittance_pattern", "PO:45:10", "suggestion", True)]
    # when Initech pays again with another PO number
    again = pay(books, "55.50", reference="PO 4500099999", received=RECEIVED + timedelta(1))
    # then the pattern says who paid
    assert applied_to(books, again) == {"INV-2026-000204": 5_550}
    assert matched_because(books, again) == [
        "Initech LLC paid with a reference like 'PO 4500012345' on 20 Nov 2026"]


# -- corrections and the back office ------------------------------------------------------------
def test_a_correction_of_a_short_payment_resolves_its_deduction_as_reversed(books) -> None:
    # given a short payment of Globex's 2500.00, flagged as a deduction with its card
    payment = pay(books, "2400.00", reference="INV-2026-000104")
    deduction = books.exec(select(Deduction)).one()
    assert (deduction.amount_minor, deduction.status) == (10_000, "open")
    assert deduction.card_outbox_id is not None
    # when the collector says it paid Initech's 4321.09 instead
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000201"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then the deduction is resolved as reversed, its card says so, and the books add up
    books.refresh(deduction)
    assert (deduction.status, deduction.resolution, deduction.resolved_by) == (
        "resolved", "reversed", "UCOLL001")
    card = books.exec(select(OutboxMessage).where(
        OutboxMessage.target_outbox_id == deduction.card_outbox_id)).one()
    assert card.payload["context"]["status"] == "resolved"
    assert [e.data["deduction_id"] for e in audited(books, "payment.deduction_reversed")] == [
        deduction.id]
    healthy(books)


def test_a_correction_gives_back_what_a_dispute_held(books) -> None:
    # given 300.00 of Globex's 2500.00 in dispute, and a payment of 2400.00 applied to it
    f.dispute(books, "INV-2026-000104", amount="300.00", now=NOW)
    books.commit()
    payment = pay(books, "2400.00", reference="INV-2026-000104")
    disputed = books.exec(select(Invoice).where(Invoice.number == "INV-2026-000104")).one()
    assert (disputed.balance_minor, disputed.disputed_minor) == (10_000, 10_000)
    # when the payment is moved to another invoice
    correct_application(books, payment_id=payment.id, invoices=["INV-2026-000201"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then the invoice is open in full again, with its 300.00 in dispute
    books.refresh(disputed)
    assert (disputed.balance_minor, disputed.disputed_minor, disputed.disputed) == (
        250_000, 30_000, True)
    healthy(books)


def test_what_people_decide_is_announced_as_payment_applied(books) -> None:
    # given a subscriber to payment.applied, and three payments waiting for a person
    webhooks.subscribe(books, url="https://dw.example/in", events=["payment.applied"],
                       actor="api")
    books.commit()
    suggested = pay(books, "1234.56", payer="GLBX HOLDINGS")
    unknown = pay(books, "999.99", payer="ACME TREASURY SVC", received=RECEIVED + timedelta(1))
    moved = pay(books, "777.00", reference="INV-2026-000102", received=RECEIVED + timedelta(2))
    assert [e.data["payment"]["id"] for e in events(books)] == [moved.id]
    # when a collector applies a suggestion, names a customer and corrects an application
    apply_suggestion(books, payment_id=suggested.id,
                     rank=rank_of(books, suggested, "INV-2026-000101"), actor="UCOLL001",
                     now=NOW)
    assign_customer(books, payment_id=unknown.id, customer="C-ACME", actor="UCOLL001", now=NOW)
    correct_application(books, payment_id=moved.id, invoices=["INV-2026-000202"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then each is announced with where the money went
    assert [(e.data["payment"]["id"], [a["invoice"] for a in e.data["payment"]["allocations"]])
            for e in events(books)] == [
        (moved.id, ["INV-2026-000102"]), (suggested.id, ["INV-2026-000101"]),
        (unknown.id, ["INV-2026-000301", "INV-2026-000302"]), (moved.id, ["INV-2026-000202"])]


def events(session) -> list[WebhookEvent]:
    return list(session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all())


# -- naming the customer is done once ------------------------------------------------------------
def test_naming_the_same_customer_twice_matches_and_teaches_once(books) -> None:
    from blocks.cashapp import already_applied_answer
    from workflows.errors import AlreadyDecided

    # given a payment nobody recognises, named Acme's: their oldest invoice is suggested
    payment = pay(books, "10.01", payer="ACME TREASURY SVC")
    assign_customer(books, payment_id=payment.id, customer="C-ACME", actor="UCOLL001", now=NOW)
    books.commit()
    offered = suggestions_of(books, payment)
    # when the same choice arrives again (a second collector, a replay)
    f.user(books, "UCOLL002", "collector")
    books.commit()
    with pytest.raises(AlreadyDecided) as second:
        assign_customer(books, payment_id=payment.id, customer="C-ACME", actor="UCOLL002",
                        now=NOW)
    books.rollback()
    # then the second is told who named it; the card's offer still stands, audited once
    assert second.value.decided_by == "UCOLL001"
    assert "Acme Industries Inc" in str(second.value)
    assert already_applied_answer(second.value.decided_by, second.value.decision) == (
        ":no_entry_sign: This payment was already identified by <@UCOLL001>; nothing changed.")
    assert suggestions_of(books, payment) == offered
    assert [e.actor for e in audited(books, "payment.identified")] == ["UCOLL001"]
    assert len(books.exec(select(OutboxMessage).where(
        OutboxMessage.method == "chat.update")).all()) == 1


def test_two_collectors_naming_two_customers_at_once_leave_it_the_first_ones(
        db, books) -> None:
    from tests.support.meanwhile import second_writer
    from workflows.errors import Conflict

    f.user(books, "UCOLL002", "collector")
    books.commit()
    payment = pay(books, "10.01", payer="ACME TREASURY SVC")
    # when one collector says it is Acme's while another, at the same moment, says Initech's
    assign_customer(books, payment_id=payment.id, customer="C-ACME", actor="UCOLL001", now=NOW)

    def other(s) -> None:
        assign_customer(s, payment_id=payment.id, customer="C-INITECH", actor="UCOLL002",
                        now=NOW)

    with pytest.raises(Conflict):
        second_writer(db, books, other)
    # then it stays Acme's, with Acme's suggestions, named once
    books.expire_all()
    acme = books.exec(select(Invoice.customer_id).where(
        Invoice.number == "INV-2026-000301")).one()
    assert books.get(Payment, payment.id).customer_id == acme
    assert [s["customer"] for s in suggestions_of(books, books.get(Payment, payment.id))] == [
        "C-ACME"]
    assert [e.actor for e in audited(books, "payment.identified")] == ["UCOLL001"]
    assert [r[0] for r in rules(books) if r[3]] == ["payer_alias"]
    healthy(books)


def test_a_correction_to_another_invoice_of_the_same_customer_keeps_the_rule_that_named_it(
        books) -> None:
    # given "NORTHSTAR FINANCE" taught as Initech's payer line, and a payment from it the
    # engine applied to Initech's 55.50 because of that rule
    later = taught_initech(books)
    # when a collector moves it to another of Initech's invoices (the customer was right)
    correct_application(books, payment_id=later.id, invoices=["INV-2026-000203"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    # then the rule, right about who paid, stays as it was: neither retired nor taught again
    assert applied_to(books, later) == {"INV-2026-000203": 5_550}
    assert rules(books) == [("payer_alias", "northstar finance", "suggestion", True)]
    assert audited(books, "cash_rule.retired") == []
    assert len(audited(books, "cash_rule.learned")) == 1
    healthy(books)


def test_two_collectors_teaching_the_same_alias_at_once_both_apply_and_it_is_learned_once(
        db, books) -> None:
    from tests.support.meanwhile import second_writer

    # given two payments from a payer line nobody knows yet, each waiting for a person
    f.user(books, "UCOLL002", "collector")
    books.commit()
    first = pay(books, "4321.09", payer="NORTHSTAR FINANCE")
    second = pay(books, "777.00", payer="NORTHSTAR FINANCE")
    assert (first.status, second.status) == ("needs_review", "needs_review")
    first_rank = rank_of(books, first, "INV-2026-000201")
    second_rank = rank_of(books, second, "INV-2026-000202")
    # when two collectors apply them to Initech's invoices at the same moment
    apply_suggestion(books, payment_id=first.id, rank=first_rank, actor="UCOLL001", now=NOW)

    def other(s) -> None:
        apply_suggestion(s, payment_id=second.id, rank=second_rank, actor="UCOLL002", now=NOW)

    second_writer(db, books, other)
    # then both payments are applied, and the payer line is learned once, audited once
    books.expire_all()
    assert applied_to(books, books.get(Payment, first.id)) == {"INV-2026-000201": 432_109}
    assert applied_to(books, books.get(Payment, second.id)) == {"INV-2026-000202": 77_700}
    assert rules(books) == [("payer_alias", "northstar finance", "suggestion", True)]
    assert len(audited(books, "cash_rule.learned")) == 1
    healthy(books)


def test_two_admins_removing_a_rule_at_once_remove_it_once(db, books) -> None:
    from tests.support.meanwhile import second_writer
    from workflows.errors import ValidationFailed

    # given a learned alias and two admins
    f.user(books, "UADMIN02", "admin")
    first = pay(books, "1234.56", payer="GLBX HOLDINGS")
    apply_suggestion(books, payment_id=first.id, rank=rank_of(books, first, "INV-2026-000101"),
                     actor="UCOLL001", now=NOW)
    books.commit()
    rule_id = books.exec(select(CashRule.id)).one()
    # when both remove it at the same moment
    remove(books, actor="UADMIN01", rule_id=rule_id, now=NOW)

    def other(s) -> None:
        remove(s, actor="UADMIN02", rule_id=rule_id, now=NOW)

    with pytest.raises(ValidationFailed) as second:
        second_writer(db, books, other)
    # then it is removed once, by the first; the second is told who did
    assert "UADMIN01" in second.value.errors[0].detail
    books.expire_all()
    assert books.get(CashRule, rule_id).removed_by == "UADMIN01"
    assert [e.actor for e in audited(books, "cash_rule.removed")] == ["UADMIN01"]
