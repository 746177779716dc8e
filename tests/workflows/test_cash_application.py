"""Cash application through the workflow and the database: every outcome of SPEC §3."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlmodel import select

from models import (
    Allocation,
    AuditEvent,
    Deduction,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentSuggestion,
    WriteOff,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import invariants, kpis, policy
from workflows.cash_application import (
    apply_suggestion,
    correct_application,
    open_invoice_choices,
    record_from_slack,
    record_payment,
    suggestions_of,
    usual_currency,
)
from workflows.cash_runs import card_of
from workflows.errors import AlreadyDecided, Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import PaymentIn
from workflows.invoicing import issue_credit_note

RECEIVED = datetime(2026, 11, 20, 10, tzinfo=UTC)
ISSUED = date(2026, 11, 1)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


@pytest.fixture
def books(session):
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.customer(session, "C-INITECH", "Initech LLC")
    f.customer(session, "C-ACME", "Acme Industries Inc", terms="2/10 NET30")
    for number, customer, total in [
            ("INV-2026-000123", "C-GLOBEX", "1000.00"), ("INV-2026-000124", "C-GLOBEX", "250.00"),
            ("INV-2026-000125", "C-GLOBEX", "10000.00"),
            ("INV-2026-000200", "C-INITECH", "777.77"), ("INV-2026-000201", "C-INITECH", "120.50"),
            ("INV-2026-000202", "C-INITECH", "310.25"), ("INV-2026-000203", "C-INITECH", "999.00")]:
        f.invoice(session, number, customer, total=total, issued=ISSUED,
                  due=ISSUED + timedelta(days=30))
    f.invoice(session, "INV-2026-000300", "C-ACME", total="5000.00", issued=date(2026, 11, 15),
              due=date(2026, 12, 15), terms="2/10 NET30")
    session.commit()
    return session


def pay(session, amount: str, *, reference: str | None = None, payer: str | None = None,
        customer: str | None = None, external_id: str | None = None,
        received: datetime = RECEIVED) -> Payment:
    payment, _ = record_payment(session, PaymentIn(
        amount=amount, currency="USD", received_at=received, payer_name=payer,
        reference=reference, customer=customer, external_id=external_id), actor="test")
    session.commit()
    return payment


def invoice(session, number: str) -> Invoice:
    return session.exec(select(Invoice).where(Invoice.number == number)).one()


def allocations(session, payment: Payment) -> dict[str, tuple[int, str]]:
    rows = session.exec(select(Allocation, Invoice).join(Invoice).where(
        Allocation.payment_id == payment.id)).all()
    return {inv.number: (a.amount_minor, a.method) for a, inv in rows}


def write_offs(session, payment: Payment) -> dict[str, tuple[int, str]]:
    rows = session.exec(select(WriteOff, Invoice).join(Invoice).where(
        WriteOff.payment_id == payment.id)).all()
    return {inv.number: (w.amount_minor, w.reason) for w, inv in rows}


def healthy(session) -> None:
    assert invariants.validate_all(session) == []


# -- automatic outcomes ----------------------------------------------------------------------------
def test_reference_in_another_format_applies_in_full(books) -> None:
    # when
    payment = pay(books, "1000.00", reference="inv 2026/123 thank you", payer="GLOBEX CORP")
    # then
    assert payment.status == "applied" and payment.unapplied_minor == 0
    assert allocations(books, payment) == {"INV-2026-000123": (100_000, "reference")}
    assert invoice(books, "INV-2026-000123").balance_minor == 0
    assert payment.confidence_bp >= 9900
    assert payment.customer_id == invoice(books, "INV-2026-000123").customer_id
    assert {s["signal"] for s in payment.match_details["signals"]} >= {"reference", "amount"}
    healthy(books)


def test_bank_fee_within_tolerance_is_written_off_and_closes_the_invoice(books) -> None:
    # given INV-2026-000124 of 250.00: tolerance min(0.5 % = 1.25, 5.00) = 1.25
    # when
    payment = pay(books, "248.75", reference="INV2026000124")
    # then
    assert payment.status == "applied"
    assert allocations(books, payment) == {"INV-2026-000124": (24_875, "reference")}
    assert write_offs(books, payment) == {"INV-2026-000124": (125, "bank_fee")}
    assert invoice(books, "INV-2026-000124").balance_minor == 0
    assert payment.match_details["write_off_minor"] == 125
    healthy(books)


def test_bank_fee_is_capped_at_five_in_the_invoice_currency(books) -> None:
    # given INV-2026-000125 of 10,000.00: 0.5 % would be 50.00, the cap is 5.00
    # when
    fee = pay(books, "9995.00", reference="INV-2026-000125")
    # then
    assert write_offs(books, fee) == {"INV-2026-000125": (500, "bank_fee")}
    assert books.exec(select(Deduction)).all() == []


def test_short_payment_beyond_tolerance_is_applied_and_flagged_as_a_deduction(books) -> None:
    # when
    payment = pay(books, "9994.99", reference="INV-2026-000125", payer="Globex Corporation")
    # then
    assert payment.status == "applied"
    assert allocations(books, payment) == {"INV-2026-000125": (999_499, "reference")}
    assert write_offs(books, payment) == {}
    deduction = books.exec(select(Deduction)).one()
    assert (deduction.payment_id, deduction.amount_minor, deduction.status) == (
        payment.id, 501, "open")
    assert invoice(books, "INV-2026-000125").balance_minor == 501
    healthy(books)


def test_overpayment_is_applied_and_the_rest_kept_as_credit(books) -> None:
    # when
    payment = pay(books, "1100.00", reference="INV-2026-000123", payer="GLOBEX")
    # then
    assert payment.status == "partially_applied"
    assert payment.unapplied_minor == 10_000
    assert allocations(books, payment) == {"INV-2026-000123": (100_000, "reference")}
    healthy(books)


def test_early_payment_discount_within_the_window_is_written_off(books) -> None:
    # given INV-2026-000300 of 5,000.00 on 2/10 NET30, issued 15 Nov; paid 20 Nov at 98 %
    # when
    payment = pay(books, "4900.00", payer="ACME INDUSTRIES INC")
    # then
    assert payment.status == "applied"
    assert allocations(books, payment) == {"INV-2026-000300": (490_000, "amount")}
    assert write_offs(books, payment) == {"INV-2026-000300": (10_000, "early_payment_discount")}
    assert invoice(books, "INV-2026-000300").balance_minor == 0
    healthy(books)


def test_discount_taken_after_the_window_is_a_deduction(books) -> None:
    # when paid on 30 Nov, 15 days after issue
    payment = pay(books, "4900.00", reference="INV-2026-000300", payer="ACME INDUSTRIES",
                  received=datetime(2026, 11, 30, tzinfo=UTC))
    # then
    assert write_offs(books, payment) == {}
    assert books.exec(select(Deduction.amount_minor)).one() == 10_000


def test_exact_amount_and_payer_name_apply_without_a_reference(books) -> None:
    payment = pay(books, "777.77", payer="INITECH")
    assert allocations(books, payment) == {"INV-2026-000200": (77_777, "amount")}


def test_a_combination_of_invoices_applies(books) -> None:
    # 120.50 + 310.25 = 430.75: not the oldest-first prefix
    payment = pay(books, "430.75", payer="Initech")
    assert allocations(books, payment) == {"INV-2026-000201": (12_050, "subset"),
                                           "INV-2026-000202": (31_025, "subset")}
    assert payment.status == "applied"


def test_one_digit_typo_is_accepted_when_the_amount_confirms_it(books) -> None:
    payment = pay(books, "999.00", reference="INV-2026-000208")
    assert allocations(books, payment) == {"INV-2026-000203": (99_900, "reference")}


def test_customer_given_with_the_payment_is_used(books) -> None:
    payment = pay(books, "250.00", customer="C-GLOBEX")
    assert allocations(books, payment) == {"INV-2026-000124": (25_000, "amount")}


# -- review ----------------------------------------------------------------------------------------
def test_low_confidence_applies_nothing_and_posts_a_suggestion_card(books) -> None:
    # given two open invoices of the same amount for the same customer
    f.invoice(books, "INV-2026-000126", "C-GLOBEX", total="250.00", issued=ISSUED,
              due=ISSUED + timedelta(days=30))
    books.commit()
    # when
    payment = pay(books, "250.00", payer="GLOBEX CORPORATION")
    # then
    assert payment.status == "needs_review"
    assert payment.unapplied_minor == payment.amount_minor
    assert allocations(books, payment) == {}
    suggestions = suggestions_of(books, payment)
    assert [s["invoices"][0]["invoice"] for s in suggestions] == [
        "INV-2026-000124", "INV-2026-000126"]
    assert all(s["confidence"] < "0.90" for s in suggestions)
    rows = books.exec(select(PaymentSuggestion).where(
        PaymentSuggestion.payment_id == payment.id).order_by(PaymentSuggestion.rank)).all()
    assert [(r.round, r.rank, r.lines[0]["number"]) for r in rows] == [
        (1, 1, "INV-2026-000124"), (1, 2, "INV-2026-000126")]
    assert "suggestions" not in payment.match_details  # in their own table, written once
    card = books.get(OutboxMessage, card_of(books, payment.id))
    assert card.payload["channel"] == "ar" and card.payload["template"] == "cashapp_review"
    assert len(card.payload["context"]["suggestions"]) == 2
    healthy(books)


def test_a_payment_nobody_recognises_stays_unapplied_and_ar_is_told(books) -> None:
    payment = pay(books, "12.34", payer="J SMITH", reference="gift")
    assert payment.status == "unapplied" and suggestions_of(books, payment) == []
    assert books.get(OutboxMessage, card_of(books, payment.id)) is not None


def test_resending_the_same_payment_changes_nothing(books) -> None:
    # given
    first = pay(books, "1000.00", reference="INV-2026-000123", external_id="BANK-1")
    counts = [len(books.exec(select(m)).all()) for m in (Payment, Allocation, AuditEvent,
                                                          OutboxMessage)]
    # when
    again, created = record_payment(books, PaymentIn(
        amount="1000.00", currency="USD", received_at=RECEIVED, reference="INV-2026-000123",
        external_id="BANK-1"), actor="test")
    books.commit()
    # then
    assert (again.id, created) == (first.id, False)
    assert [len(books.exec(select(m)).all()) for m in (Payment, Allocation, AuditEvent,
                                                        OutboxMessage)] == counts


def test_resending_with_the_same_instant_in_another_zone_is_the_same_payment(books) -> None:
    # given
    first = pay(books, "1000.00", reference="INV-2026-000123", external_id="BANK-1")
    # when the same payment comes back with its time written in New York time, another
    # payer spelling and a reference (descriptive fields, not what identifies the money)
    again, created = record_payment(books, PaymentIn(
        amount="1000.0", currency="usd",
        received_at=RECEIVED.astimezone(timezone(timedelta(hours=-5))),
        payer_name="GLOBEX", reference="thanks", external_id="BANK-1"), actor="test")
    # then it is the first payment, nothing new
    assert (again.id, created) == (first.id, False)
    assert len(books.exec(select(Payment)).all()) == 1


@pytest.mark.parametrize(("changes", "fields"), [
    ({"amount": "999.00"}, ["amount"]),
    ({"amount": "1000.00", "currency": "EUR"}, ["currency"]),
    ({"amount": "900.00", "currency": "EUR"}, ["amount", "currency"]),
    ({"received_at": RECEIVED + timedelta(days=1)}, ["received_at"]),
])
def test_the_same_external_id_with_other_money_is_a_conflict(books, changes, fields) -> None:
    # given
    first = pay(books, "1000.00", reference="INV-2026-000123", external_id="BANK-1")
    counts = [len(books.exec(select(m)).all()) for m in (Payment, Allocation, AuditEvent,
                                                          OutboxMessage)]
    sent = {"amount": "1000.00", "currency": "USD", "received_at": RECEIVED, **changes}
    # when
    with pytest.raises(Conflict) as clash:
        record_payment(books, PaymentIn(reference="INV-2026-000123", external_id="BANK-1",
                                        **sent), actor="test")
    books.rollback()
    # then the conflict names what differs, and nothing changed
    assert [e.field for e in clash.value.errors] == fields
    assert "BANK-1" in clash.value.detail and all(f in clash.value.detail for f in fields)
    assert [len(books.exec(select(m)).all()) for m in (Payment, Allocation, AuditEvent,
                                                        OutboxMessage)] == counts
    assert books.get(Payment, first.id).amount_minor == 100_000


# -- a person applies a suggestion -----------------------------------------------------------------
@pytest.fixture
def waiting(books):
    f.user(books, "UCOLL001", "collector")
    f.user(books, "USALES01", "sales")
    f.invoice(books, "INV-2026-000126", "C-GLOBEX", total="250.00", issued=ISSUED,
              due=ISSUED + timedelta(days=30))
    books.commit()
    return pay(books, "250.00", payer="GLOBEX CORPORATION")


def test_collector_applies_a_suggestion_once(books, waiting) -> None:
    # when
    apply_suggestion(books, payment_id=waiting.id, rank=2, actor="UCOLL001", now=NOW)
    books.commit()
    # then
    assert waiting.status == "applied"
    assert allocations(books, waiting) == {"INV-2026-000126": (25_000, "manual")}
    decision = waiting.match_details["decision"]
    assert decision["by"] == "UCOLL001" and decision["rank"] == 2
    update = books.exec(select(OutboxMessage).where(
        OutboxMessage.method == "chat.update")).one()
    assert update.target_outbox_id == card_of(books, waiting.id)
    assert suggestions_of(books, waiting) == []  # answered
    assert books.exec(select(AuditEvent).where(AuditEvent.action == "payment.applied")).one()
    # and a second click changes nothing
    with pytest.raises(AlreadyDecided):
        apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UCOLL001", now=NOW)
    books.rollback()
    assert allocations(books, waiting) == {"INV-2026-000126": (25_000, "manual")}
    assert invoice(books, "INV-2026-000124").balance_minor == 25_000
    healthy(books)


def test_someone_without_the_collector_role_cannot_apply(books, waiting) -> None:
    with pytest.raises(PermissionDenied):
        apply_suggestion(books, payment_id=waiting.id, rank=1, actor="USALES01", now=NOW)
    books.rollback()
    assert allocations(books, waiting) == {}
    assert books.get(Payment, waiting.id).status == "needs_review"


def test_admin_may_apply(books, waiting) -> None:
    f.user(books, "UADMIN01", "admin")
    apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UADMIN01", now=NOW)
    books.commit()
    assert allocations(books, waiting) == {"INV-2026-000124": (25_000, "manual")}


# -- the payment modal's manual choice -------------------------------------------------------------
def test_invoices_chosen_by_a_person_are_applied_in_order_as_manual(books) -> None:
    payment, _ = record_payment(books, PaymentIn(
        amount="1100.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", source="slack", apply_to=["INV-2026-000124", "INV-2026-000123"])
    books.commit()
    assert allocations(books, payment) == {"INV-2026-000124": (25_000, "manual"),
                                           "INV-2026-000123": (85_000, "manual")}
    assert payment.status == "applied" and payment.source == "slack"


def test_a_chosen_invoice_of_another_customer_is_refused(books) -> None:
    with pytest.raises(ValidationFailed) as refused:
        record_payment(books, PaymentIn(amount="10.00", currency="USD", received_at=RECEIVED,
                                        customer="C-GLOBEX"),
                       actor="UCOLL001", apply_to=["INV-2026-000200"])
    assert refused.value.errors[0].field == "apply_to"


# -- the match-rate report -------------------------------------------------------------------------
def test_match_rate_counts_what_the_engine_applied_not_what_people_did(books) -> None:
    # given one automatic payment, one overpayment (automatic, credit left), one manual choice
    # and one waiting for review
    pay(books, "1000.00", reference="INV-2026-000123")  # 1,000.00 automatic
    pay(books, "800.00", reference="INV-2026-000200")  # 777.77 automatic + 22.23 credit
    record_payment(books, PaymentIn(amount="250.00", currency="USD", received_at=RECEIVED),
                   actor="UCOLL001", apply_to=["INV-2026-000124"])
    pay(books, "55.55", payer="J SMITH")
    books.commit()
    # when
    report = kpis.compute(books, RECEIVED.date())
    # then
    assert report.payments_received == 4
    assert str(report.auto_match_rate) == "50.00"  # 2 of 4 payments
    # (1,000.00 + 777.77) of 2,105.55 received
    assert str(report.auto_match_amount_rate) == "84.43"


# -- the `/o2c pay` modal's workflows --------------------------------------------------------------
def slack_payment(amount: str = "250.00", **kwargs) -> PaymentIn:
    return PaymentIn(amount=amount, currency="USD", received_at=RECEIVED,
                     method="manual entry", external_id="slack-view:V123", **kwargs)


def test_a_payment_from_slack_is_recorded_with_its_dm_in_one_transaction(books) -> None:
    # given
    f.user(books, "UCOLL001", "collector")
    # when
    payment, created = record_from_slack(books, slack_payment(), user_id="UCOLL001",
                                         apply_to=["INV-2026-000124"])
    again, created_again = record_from_slack(books, slack_payment(), user_id="UCOLL001",
                                             apply_to=["INV-2026-000124"])  # double submit
    books.commit()
    # then one payment, applied as chosen, and one DM about it
    assert (created, created_again, again.id) == (True, False, payment.id)
    assert (payment.source, payment.status) == ("slack", "applied")
    dms = books.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"payment-recorded:{payment.id}")).all()
    assert len(dms) == 1
    assert dms[0].payload["channel"] == "UCOLL001"
    assert dms[0].payload["template"] == "payment_recorded"
    assert dms[0].payload["context"]["allocations"] == [{"invoice": "INV-2026-000124",
                                                         "amount": "250.00"}]


def test_a_payment_from_slack_needs_the_collector_role(books) -> None:
    f.user(books, "USALES01", "sales")
    with pytest.raises(PermissionDenied):
        record_from_slack(books, slack_payment(), user_id="USALES01")
    books.rollback()
    assert books.exec(select(Payment)).all() == []
    assert books.exec(select(OutboxMessage)).all() == []


def test_open_invoice_choices_search_numbers_literally(books) -> None:
    # given one invoice paid, and an ERP number with LIKE wildcards in it
    pay(books, "1000.00", reference="INV-2026-000123")
    f.invoice(books, "ERP_10%", "C-GLOBEX", total="5.00")
    f.invoice(books, "ERPX10Y", "C-GLOBEX", total="5.00")
    # when / then: open ones only, soonest due first, optionally of one customer
    assert [i.number for i in open_invoice_choices(books, "2026-0001")] == [
        "INV-2026-000124", "INV-2026-000125"]
    assert [i.number for i in open_invoice_choices(books, "inv-2026-0002",
                                                   customer="C-INITECH")] == [
        "INV-2026-000200", "INV-2026-000201", "INV-2026-000202", "INV-2026-000203"]
    assert open_invoice_choices(books, "2026-0002", customer="C-GLOBEX") == []
    assert [i.number for i in open_invoice_choices(books, "_10%")] == ["ERP_10%"]


def test_usual_currency_is_the_one_most_customers_are_billed_in(session) -> None:
    assert usual_currency(session) == "USD"  # nobody yet
    f.customer(session, "C-1", "One GmbH", currency="EUR")
    f.customer(session, "C-2", "Two GmbH", currency="EUR")
    f.customer(session, "C-3", "Three Inc", currency="USD")
    assert usual_currency(session) == "EUR"


# -- a person applies a suggestion that went stale -------------------------------------------------
def reviewed(books, amount: str, **kwargs) -> Payment:
    """A payment the engine only suggests (every payment waits for a person)."""
    policy.set_value(books, key="cashapp_confidence", value="1", actor="test")
    f.user(books, "UCOLL001", "collector")
    books.commit()
    payment = pay(books, amount, **kwargs)
    assert payment.status == "needs_review", payment.match_details
    return payment


def test_a_short_payment_suggestion_credited_meanwhile_is_refused_not_flagged_whole(
        books) -> None:
    # given 9,994.99 naming INV-2026-000125 (10,000.00): the card offers 9,994.99 applied and
    # 5.01 flagged as a deduction
    payment = reviewed(books, "9994.99", reference="INV-2026-000125", payer="Globex Corporation")
    offered = suggestions_of(books, payment)[0]
    assert offered["invoices"] == [{"invoice": "INV-2026-000125", "amount": "9994.99"}]
    # and meanwhile the 5.01 is credited: the invoice now has 9,994.99 open
    issue_credit_note(books, invoice_number="INV-2026-000125", amount="5.01", reason="pricing",
                      actor="test", now=NOW)
    books.commit()
    # when the collector clicks Apply on the card made before
    with pytest.raises(Conflict) as refused:
        apply_suggestion(books, payment_id=payment.id, rank=offered["rank"], actor="UCOLL001",
                         now=NOW)
    books.rollback()
    # then nothing is applied nor flagged, and they are told why
    assert "INV-2026-000125" in str(refused.value) and "9,994.99" in str(refused.value)
    assert allocations(books, payment) == {}
    assert books.exec(select(Deduction)).all() == []
    assert invoice(books, "INV-2026-000125").balance_minor == 999_499
    assert books.get(Payment, payment.id).status == "needs_review"
    healthy(books)


def test_a_bank_fee_suggestion_on_an_invoice_reopened_meanwhile_is_refused(books) -> None:
    # given 248.80 for INV-2026-000124 (250.00), part paid 100.00 before: 150.00 open, and a
    # payment of 148.80 whose card offers 148.80 applied and 1.20 written off as a bank fee
    policy.set_value(books, key="cashapp_confidence", value="1", actor="test")
    f.user(books, "UCOLL001", "collector")
    first, _ = record_payment(books, PaymentIn(
        amount="100.00", currency="USD", received_at=RECEIVED, customer="C-GLOBEX"),
        actor="UCOLL001", apply_to=["INV-2026-000124"])
    books.commit()
    payment = pay(books, "149.60", reference="INV-2026-000124", payer="Globex Corporation")
    assert payment.status == "needs_review"
    offered = suggestions_of(books, payment)[0]
    assert (offered["invoices"], offered["write_off"]) == (
        [{"invoice": "INV-2026-000124", "amount": "149.60"}], "0.40")
    # and meanwhile the first payment is moved to another invoice: 250.00 open again
    correct_application(books, payment_id=first.id, invoices=["INV-2026-000123"],
                        actor="UCOLL001", now=NOW)
    books.commit()
    assert invoice(books, "INV-2026-000124").balance_minor == 25_000
    # when the collector applies the card's offer
    with pytest.raises(Conflict):
        apply_suggestion(books, payment_id=payment.id, rank=offered["rank"], actor="UCOLL001",
                         now=NOW)
    books.rollback()
    # then no 0.40 "bank fee" is written off an invoice left 100.40 open
    assert write_offs(books, payment) == {} and allocations(books, payment) == {}
    assert invoice(books, "INV-2026-000124").balance_minor == 25_000
    healthy(books)


def test_a_suggestion_on_an_invoice_gone_since_is_refused(books) -> None:
    from models import PaymentSuggestion

    # given a card offering 250.00 for INV-2026-000124, whose invoice is gone since (the
    # suggestion keeps the id it was worked out on)
    payment = reviewed(books, "250.00", reference="INV-2026-000124", payer="Globex Corporation")
    offered = suggestions_of(books, payment)[0]
    row = books.exec(select(PaymentSuggestion).where(
        PaymentSuggestion.payment_id == payment.id,
        PaymentSuggestion.rank == offered["rank"])).one()
    row.lines = [{**line, "invoice_id": 999_999, "number": "INV-2026-999999"}
                 for line in row.lines]
    books.add(row)
    books.commit()
    # when the collector applies it
    with pytest.raises(Conflict) as refused:
        apply_suggestion(books, payment_id=payment.id, rank=offered["rank"], actor="UCOLL001",
                         now=NOW)
    books.rollback()
    # then they are told, and nothing is applied
    assert str(refused.value) == "Invoice INV-2026-999999 no longer exists."
    assert allocations(books, payment) == {}
    assert books.get(Payment, payment.id).status == "needs_review"
    assert invoice(books, "INV-2026-000124").balance_minor == 25_000
    healthy(books)


def test_two_collectors_applying_two_options_at_once_apply_once_and_the_second_is_told_who(
        db, books, waiting) -> None:
    from tests.support.meanwhile import second_writer

    # given a second collector
    f.user(books, "UCOLL002", "collector")
    books.commit()
    # when one applies suggestion 1 while, at the same moment, the other applies suggestion 2
    apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UCOLL001", now=NOW)

    def other(s) -> None:
        apply_suggestion(s, payment_id=waiting.id, rank=2, actor="UCOLL002", now=NOW)

    with pytest.raises(AlreadyDecided) as second:
        second_writer(db, books, other)
    # then the payment is applied once, as the first chose, and the second is told by whom
    assert second.value.decided_by == "UCOLL001"
    assert "UCOLL001" in str(second.value)
    books.expire_all()
    assert allocations(books, waiting) == {"INV-2026-000124": (25_000, "manual")}
    assert invoice(books, "INV-2026-000126").balance_minor == 25_000
    healthy(books)


def test_apply_after_the_payment_was_refunded_says_who_refunded_it(books, waiting) -> None:
    from blocks.cashapp import already_applied_answer
    from workflows.cash_application import return_payment

    # given the payment was sent back by one collector
    f.user(books, "UCOLL002", "collector")
    return_payment(books, payment_id=waiting.id, actor="UCOLL002", reason="not ours", now=NOW)
    books.commit()
    # when another clicks Apply on the card they still had open
    with pytest.raises(AlreadyDecided) as refused:
        apply_suggestion(books, payment_id=waiting.id, rank=1, actor="UCOLL001", now=NOW)
    books.rollback()
    # then they are told it was refunded, and by whom; nothing is applied
    assert (refused.value.decided_by, refused.value.decision) == ("UCOLL002", "refunded")
    assert already_applied_answer(refused.value.decided_by, refused.value.decision) == (
        ":no_entry_sign: This payment was already refunded by <@UCOLL002>; nothing changed.")
    assert allocations(books, waiting) == {}
    assert invoice(books, "INV-2026-000124").balance_minor == 25_000
    healthy(books)
