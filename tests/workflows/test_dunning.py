"""Dunning: levels, kinds, exactly once, catching up without a burst, skips, credit hold."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, Customer, DunningNotice, Invoice, OutboxMessage
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import credit_hold, dunning
from workflows.cash_application import record_payment
from workflows.inputs import PaymentIn

TODAY = date(2026, 11, 23)
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC))


def test_plan_gives_each_offset_its_kind() -> None:
    assert [(lv.offset, lv.kind) for lv in dunning.plan([30, -3, 1, 7, 14])] == [
        (-3, "friendly"), (1, "reminder"), (7, "firm"), (14, "escalation"), (30, "final")]
    assert [lv.kind for lv in dunning.plan([-5, 2, 20])] == ["friendly", "reminder", "final"]
    assert dunning.plan([14])[0].kind == "reminder"  # a lone positive level


@pytest.fixture
def ledger(session):
    f.user(session, "UCOLL001", "collector")
    f.user(session, "USALES01", "sales")
    f.customer(session, "C-A", "Acme", collector="UCOLL001", sales_rep="USALES01")
    session.commit()
    return session


def _notices(session, *, skipped: bool = False) -> list[tuple[str, int]]:
    """(invoice, level) of the notices sent (or, with `skipped`, passed over)."""
    return sorted(session.exec(select(Invoice.number, DunningNotice.level)
                               .join(Invoice, Invoice.id == DunningNotice.invoice_id)
                               .where(DunningNotice.skipped.is_(skipped))).all())


def _emails(session) -> list[tuple[str, str]]:
    rows = session.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).all()
    return sorted((r.payload["context"]["invoice"]["number"], r.payload["template"])
                  for r in rows)


def test_each_level_is_sent_on_its_day_and_once(ledger) -> None:
    # given an invoice due today
    f.invoice(ledger, "INV-1", "C-A", total="1000.00", due=TODAY)
    ledger.commit()
    # when dunning runs every day for 40 days, twice a day
    for day in range(-5, 41):
        for _ in range(2):
            dunning.run_dunning(ledger, TODAY + timedelta(days=day))
            ledger.commit()
    # then every level once
    assert _notices(ledger) == [("INV-1", -3), ("INV-1", 1), ("INV-1", 7), ("INV-1", 14),
                                ("INV-1", 30)]
    assert _emails(ledger) == [("INV-1", "dunning_final"), ("INV-1", "dunning_firm"),
                               ("INV-1", "dunning_friendly"), ("INV-1", "dunning_reminder")]
    # and the sales rep and the collector heard of the reminder, the escalation and the final
    # notice, each in that run's one message to them
    slack = ledger.exec(select(OutboxMessage).where(OutboxMessage.transport == "slack")
                        .order_by(OutboxMessage.id)).all()
    told = [(r.payload["channel"], r.payload["context"]["as_of"],
             [(k["kind"], [c["first"]["number"] for c in k["top"]])
              for k in r.payload["context"]["kinds"]])
            for r in slack if r.payload["template"] == "dunning_people"]
    days = {1: "reminder", 14: "escalation", 30: "final"}
    assert sorted(told) == sorted(
        (user, (TODAY + timedelta(days=day)).isoformat(), [(kind, ["INV-1"])])
        for day, kind in days.items() for user in ("UCOLL001", "USALES01"))
    assert sorted(r.payload["template"] for r in slack
                  if r.payload["channel"] == "ar") == ["dunning_summary"] * 5


def test_overdue_notice_goes_out_the_day_after_the_due_date(ledger) -> None:
    f.invoice(ledger, "INV-1", "C-A", due=TODAY - timedelta(days=1))
    ledger.commit()
    run = dunning.run_dunning(ledger, TODAY)
    ledger.commit()
    assert run.sent == {1: 1}
    notices = ledger.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("dunning-people:%"))).all()
    assert sorted(n.payload["channel"] for n in notices) == ["UCOLL001", "USALES01"]
    for notice in notices:
        [reminder] = notice.payload["context"]["kinds"]
        assert (reminder["kind"], reminder["level"]) == ("reminder", 1)
        assert reminder["top"][0]["first"]["days_past_due"] == 1


def test_a_late_first_run_sends_only_the_latest_level(ledger) -> None:
    # given invoices first seen at +20 and +40 days
    f.invoice(ledger, "INV-20", "C-A", due=TODAY - timedelta(days=20))
    f.invoice(ledger, "INV-40", "C-A", due=TODAY - timedelta(days=40))
    ledger.commit()
    # when
    dunning.run_dunning(ledger, TODAY)
    dunning.run_dunning(ledger, TODAY + timedelta(days=1))
    ledger.commit()
    # then no burst of earlier levels: they are recorded as skipped, never sent later
    assert _notices(ledger) == [("INV-20", 14), ("INV-40", 30)]
    assert _notices(ledger, skipped=True) == [
        ("INV-20", -3), ("INV-20", 1), ("INV-20", 7),
        ("INV-40", -3), ("INV-40", 1), ("INV-40", 7), ("INV-40", 14)]
    dunning.run_dunning(ledger, TODAY + timedelta(days=20))  # INV-20 reaches +30 (final)
    ledger.commit()
    assert _notices(ledger) == [("INV-20", 14), ("INV-20", 30), ("INV-40", 30)]


def test_final_notice_puts_the_customer_on_credit_hold_audited(ledger) -> None:
    f.invoice(ledger, "INV-1", "C-A", due=TODAY - timedelta(days=30))
    f.invoice(ledger, "INV-2", "C-A", due=TODAY - timedelta(days=31))
    ledger.commit()
    run = dunning.run_dunning(ledger, TODAY)
    ledger.commit()
    customer = ledger.exec(select(Customer)).one()
    assert customer.credit_hold is True
    assert len(run.holds) == 1
    holds = ledger.exec(select(AuditEvent).where(
        AuditEvent.action == "customer.credit_hold")).all()
    assert len(holds) == 1 and holds[0].actor == "system" and "final notice" in holds[0].reason


def test_paid_and_disputed_invoices_are_skipped(ledger) -> None:
    f.invoice(ledger, "INV-2026-100001", "C-A", total="10.00", due=TODAY - timedelta(days=7))
    f.invoice(ledger, "INV-DISP", "C-A", due=TODAY - timedelta(days=7))
    f.dispute(ledger, "INV-DISP")  # the whole balance
    record_payment(ledger, PaymentIn(amount="10.00", currency="USD",
                                     received_at=datetime.combine(TODAY, time(9), UTC),
                                     reference="INV-2026-100001"),
                   actor="test")
    ledger.commit()
    run = dunning.run_dunning(ledger, TODAY)
    ledger.commit()
    assert run.sent == {} and _notices(ledger) == []


def test_no_billing_email_tells_the_ar_channel(session) -> None:
    f.customer(session, "C-X", "Nomail", billing_email=None)
    f.invoice(session, "INV-1", "C-X", due=TODAY - timedelta(days=7))
    session.commit()
    dunning.run_dunning(session, TODAY)
    session.commit()
    rows = session.exec(select(OutboxMessage)).all()
    assert [(r.transport, r.payload["template"], r.payload["channel"]) for r in rows] == [
        ("slack", "dunning_summary", "ar")]
    assert rows[0].payload["context"]["no_email"] == ["Nomail"]


def test_levels_follow_the_policy(ledger) -> None:
    from workflows import policy

    policy.set_value(ledger, key="dunning_levels", value="5,10", actor="UADMIN01")
    f.invoice(ledger, "INV-1", "C-A", due=TODAY - timedelta(days=5))
    ledger.commit()
    dunning.run_dunning(ledger, TODAY)
    ledger.commit()
    assert _notices(ledger) == [("INV-1", 5)]


def test_run_all_works_in_batches(db) -> None:
    with db.transaction() as s:
        for i in range(7):
            f.customer(s, f"C-{i}", f"Customer {i}")
            f.invoice(s, f"INV-{i}", f"C-{i}", due=TODAY - timedelta(days=8))
    transactions: list[int] = []
    run = dunning.run_all(db, TODAY, batch=3, between=lambda: transactions.append(1))
    assert run.sent == {7: 7} and run.emails == 7 and len(transactions) == 3
    with db.read_session() as s:
        assert len(_notices(s)) == 7 and len(_notices(s, skipped=True)) == 7 * 2


def test_a_runs_activities_are_dated_by_the_clock_it_was_started_with(db) -> None:
    # given the app's clock three hours behind the real one (the sandbox's Time travel, or a
    # job started at 09:00 by its scheduler's clock) and an invoice 8 days overdue
    from models import CollectionActivity

    app_now = datetime.combine(TODAY, time(9), UTC)  # (the real clock: 12:00, frozen_time)
    with db.transaction() as s:
        f.customer(s, "C-1", "Customer 1")
        f.invoice(s, "INV-1", "C-1", due=TODAY - timedelta(days=8))
    # when the job runs dunning with its clock's moment
    run = dunning.run_all(db, TODAY, now=app_now)
    # then the reminder's activity (the worklist's last contact) is dated by that clock
    assert run.sent == {7: 1}
    with db.read_session() as s:
        assert [(a.kind, a.at) for a in s.exec(select(CollectionActivity))] == [
            ("reminder", app_now)]


def test_run_all_finds_in_a_read_and_checks_each_invoice_again_when_writing(db) -> None:
    # given three customers' overdue invoices, found together, written one per transaction
    with db.transaction() as s:
        for i in range(3):
            f.customer(s, f"C-{i}", f"Customer {i}")
            f.invoice(s, f"INV-{i}", f"C-{i}", total="10.00", due=TODAY - timedelta(days=8))
    pauses: list[int] = []

    def between() -> None:  # after each write transaction: another writer gets in
        pauses.append(1)
        if len(pauses) == 1:  # the second invoice is paid meanwhile
            with db.transaction() as s:
                record_payment(s, PaymentIn(amount="10.00", currency="USD",
                                            received_at=datetime.combine(TODAY, time(9), UTC),
                                            reference="INV-1"), actor="test")

    # when
    run = dunning.run_all(db, TODAY, batch=1, between=between)
    # then: the paid one is not dunned, the others once each; a pause after every write
    assert run.sent == {7: 2}
    with db.read_session() as s:
        assert _notices(s) == [("INV-0", 7), ("INV-2", 7)]
    assert len(pauses) >= 3


def test_concurrent_final_notices_of_one_customer_hold_and_audit_once(db) -> None:
    # given one customer with two invoices at the final level
    with db.transaction() as s:
        f.customer(s, "C-A", "Acme")
        f.invoice(s, "INV-1", "C-A", due=TODAY - timedelta(days=30))
        f.invoice(s, "INV-2", "C-A", due=TODAY - timedelta(days=35))
    final = dunning.plan([-3, 1, 7, 14, 30])[-1]
    # PostgreSQL: both processes have read the customer (not on hold) before either writes.
    # SQLite: write transactions queue on the database lock, so the second one starts after
    # the first committed (a barrier there would wait for a lock that is never released).
    both_read = threading.Barrier(2) if db.is_postgres else None
    runs, errors = [], []

    def process(number: str) -> None:
        try:
            with db.transaction() as s:
                invoice = s.exec(select(Invoice).where(Invoice.number == number)).one()
                customer = s.get(Customer, invoice.customer_id)
                if both_read:
                    assert customer.credit_hold is False
                    both_read.wait(10)
                run = dunning.DunningRun(TODAY)
                assert dunning.write(s, [(final, invoice, customer, None)], TODAY, run) == 1
            runs.append(run)
        except Exception as exc:
            errors.append(exc)

    # when two dunning processes send the final notices of different invoices at once
    threads = [threading.Thread(target=process, args=(n,)) for n in ("INV-1", "INV-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # then both notices went out, the customer is on hold, and the hold is audited once
    assert errors == []
    assert sorted(len(r.holds) for r in runs) == [0, 1]
    with db.read_session() as s:
        assert _notices(s) == [("INV-1", 30), ("INV-2", 30)]
        assert s.exec(select(Customer)).one().credit_hold is True
        holds = s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.credit_hold")).all()
        assert [h.actor for h in holds] == ["system"]


def test_a_customer_already_on_hold_is_not_held_again(ledger) -> None:
    # given a customer a credit approver already put on hold
    customer = ledger.exec(select(Customer)).one()
    assert credit_hold.change_hold(ledger, customer_id=customer.id, actor="UCREDIT1",
                                   on_hold=True, reason="manual")
    f.invoice(ledger, "INV-1", "C-A", due=TODAY - timedelta(days=30))
    ledger.commit()
    # when the final notice goes out
    run = dunning.run_dunning(ledger, TODAY)
    ledger.commit()
    # then it is sent, and the hold is neither changed nor audited again
    assert run.sent == {30: 1} and run.holds == []
    holds = ledger.exec(select(AuditEvent).where(
        AuditEvent.action == "customer.credit_hold")).all()
    assert [h.actor for h in holds] == ["UCREDIT1"]
    outbox_final = ledger.exec(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("dunning-people:%:UCOLL001"))).one()
    [final] = outbox_final.payload["context"]["kinds"]
    assert final["kind"] == "final" and final["top"][0]["credit_hold"] is True


def _pay(session, number: str, amount: str) -> None:
    record_payment(session, PaymentIn(amount=amount, currency="USD",
                                      received_at=datetime.combine(TODAY, time(9), UTC),
                                      reference=number), actor="test")


@pytest.mark.postgresql_only  # (a payment on another host while dunning runs: SQLite serialises)
def test_a_payment_committed_while_dunning_runs_without_fees_stops_the_final_notice(db, ledger
                                                                                   ) -> None:
    from tests.support.meanwhile import second_writer

    # given late fees off and the customer's only overdue invoice, at the final level, paid in
    # full by a payment not yet committed (it holds the invoice's row)
    f.invoice(ledger, "INV-1", "C-A", total="500.00", due=TODAY - timedelta(days=30))
    ledger.commit()
    _pay(ledger, "INV-1", "500.00")

    # when dunning's write transaction reaches it on another host meanwhile
    run, waited = second_writer(db, ledger, lambda s: dunning.run_dunning(s, TODAY))
    # then it waited for the payment, saw the invoice paid and sent nothing: no final notice,
    # no e-mail, no credit hold (before: the customer was held for an invoice just paid, and a
    # final notice queued for it)
    assert waited
    assert run.sent == {} and run.holds == []
    with db.read_session() as s:
        assert _notices(s) == [] and _emails(s) == []
        assert s.exec(select(Customer)).one().credit_hold is False
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.credit_hold")).all() == []


def test_the_final_notice_is_decided_on_the_balance_as_it_is_when_written(db) -> None:
    # given the final notice's candidate read (late fees off) before a payment of the invoice
    with db.transaction() as s:
        f.customer(s, "C-A", "Acme")
        f.invoice(s, "INV-1", "C-A", total="500.00", due=TODAY - timedelta(days=30))
    final = dunning.plan([-3, 1, 7, 14, 30])[-1]
    with db.session() as s:
        invoice = s.exec(select(Invoice).where(Invoice.number == "INV-1")).one()
        customer = s.get(Customer, invoice.customer_id)
        s.commit()
        with db.transaction() as other:  # paid in full elsewhere
            _pay(other, "INV-1", "500.00")
        # when the notice is written
        run = dunning.DunningRun(TODAY)
        sent = dunning.write(s, [(final, invoice, customer, None)], TODAY, run)
        s.commit()
    # then nothing: no notice, no e-mail, no credit hold (before: held for a paid invoice)
    assert sent == 0 and run.holds == []
    with db.read_session() as s:
        assert _notices(s) == [] and _emails(s) == []
        assert s.exec(select(Customer)).one().credit_hold is False
