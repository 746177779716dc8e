"""Statement of account (issue 19): opening balance, the period's invoices, payments, credit
notes and write-offs with a running balance, the closing balance (= what is open on the
customer's invoices at the period's end), aging; e-mailed monthly to customers who want it,
once per month."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session, select

from models import Invoice, OutboxMessage
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import credit_notes, masterdata, statements
from workflows.cash_application import record_payment
from workflows.inputs import CreditNoteIn, CustomerIn, PaymentIn
from workflows.invoicing import issue_credit_note

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
frozen_time = frozen_at(NOW)


def books(session: Session) -> None:
    """Globex: INV-1 (1000.00) in September, paid 400.00 in October; INV-2 (500.00) in
    October, credited 50.00 in November."""
    f.customer(session)
    f.invoice(session, "INV-1", total="1000.00", issued=date(2026, 9, 10),
              due=date(2026, 10, 10))
    f.invoice(session, "INV-2", total="500.00", issued=date(2026, 10, 5),
              due=date(2026, 11, 4))
    record_payment(session, PaymentIn(amount="400.00", currency="USD",
                                      received_at=datetime(2026, 10, 12, 9, tzinfo=UTC),
                                      customer="C-GLOBEX", reference="INV-1"), actor="api")
    issue_credit_note(session, invoice_number="INV-2", amount="50.00", reason="damaged",
                      actor="api", now=datetime(2026, 11, 3, 9, tzinfo=UTC))


def test_the_statement_runs_from_opening_to_closing_balance(session) -> None:
    # given the books above
    books(session)
    customer = f.customer(session)
    # when the October statement is made
    found = statements.statement(session, customer, start=date(2026, 10, 1),
                                 end=date(2026, 10, 31))
    # then it opens with September's invoice, lists October's documents, and closes with
    # what was open at the end of October
    assert found.opening_minor == 100_000
    assert [(line.kind, line.amount_minor, line.balance_minor) for line in found.lines] == [
        ("invoice", 50_000, 150_000), ("payment", -40_000, 110_000)]
    assert found.closing_minor == 110_000
    # and November's closing balance is what the invoices still owe
    november = statements.statement(session, customer, start=date(2026, 11, 1),
                                    end=date(2026, 11, 30))
    assert november.opening_minor == 110_000
    assert [line.kind for line in november.lines] == ["credit_note"]
    open_now = sum(i.balance_minor for i in session.exec(select(Invoice)))
    assert november.closing_minor == open_now == 105_000
    assert sum(november.aging.values()) == 105_000


def test_monthly_statements_go_once_to_customers_who_want_them(session) -> None:
    # given one customer who wants a monthly statement and one who does not
    books(session)
    masterdata.upsert_customer(session, CustomerIn(
        external_id="C-GLOBEX", name="Globex Corporation", currency="USD",
        credit_limit="50000.00", payment_terms="NET30", monthly_statement=True), actor="test")
    f.customer(session, "C-OTHER", "Other Inc")
    # when the job runs twice in December
    first = statements.send_monthly(session, today=date(2026, 12, 1), now=NOW)
    again = statements.send_monthly(session, today=date(2026, 12, 2), now=NOW)
    # then November's statement went once, to Globex's billing contact, with its PDF
    assert (first["period"], first["sent"], again["sent"]) == ("2026-11", 1, 0)
    [mail] = [m for m in session.exec(select(OutboxMessage)) if m.payload.get("template")
              == "statement"]
    assert mail.payload["to"] == "ap@globex.example"
    assert mail.payload["attachments"] == [{"kind": "statement_pdf"}]
    assert mail.payload["context"]["statement"]["start"] == "2026-11-01"


def test_a_past_months_statement_shows_what_was_unapplied_and_open_then(session) -> None:
    # given 300.00 paid on account on 28 October and given back on 5 November
    from workflows import refunds

    books(session)
    customer = f.customer(session)
    payment, _ = record_payment(session, PaymentIn(
        amount="300.00", currency="USD", received_at=datetime(2026, 10, 28, 9, tzinfo=UTC),
        customer="C-GLOBEX", reference="on account"), actor="api")
    assert payment.unapplied_minor == 30_000
    refunds.refund_payment(session, payment=payment, amount_minor=30_000, external_id="R-1",
                           value_date=date(2026, 11, 5), actor="api")
    # when October's statement is made today
    october = statements.statement(session, customer, start=date(2026, 10, 1),
                                   end=date(2026, 10, 31))
    # then it shows the 300.00 held unapplied at the end of October (none is, today), and
    # the invoices open then
    assert october.unapplied_minor == 30_000
    assert [i.number for i in october.open_invoices] == ["INV-1", "INV-2"]
    assert statements.statement(session, customer, start=date(2026, 11, 1),
                                end=date(2026, 11, 30)).unapplied_minor == 0
    # and an invoice not issued yet at the end of September is not open on its statement
    september = statements.statement(session, customer, start=date(2026, 9, 1),
                                     end=date(2026, 9, 30))
    assert [i.number for i in september.open_invoices] == ["INV-1"]


def test_customer_credit_from_a_note_on_a_paid_invoice_is_on_the_statement(session) -> None:
    from bot.invoice_pdf import render_statement_pdf
    from bot.mailer import render_email

    # given INV-9 (1000.00) paid in full in November, then credited 200.00 on 20 November
    # (and a December note, after the period)
    customer = f.customer(session)
    f.invoice(session, "INV-9", total="1000.00", issued=date(2026, 11, 2),
              due=date(2026, 12, 2))
    record_payment(session, PaymentIn(amount="1000.00", currency="USD",
                                      received_at=datetime(2026, 11, 10, 9, tzinfo=UTC),
                                      customer="C-GLOBEX", reference="INV-9"), actor="api")
    for amount, day in (("200.00", date(2026, 11, 20)), ("50.00", date(2026, 12, 1))):
        credit_notes.request_credit_note(session, CreditNoteIn(
            invoice="INV-9", reason="damaged", amount=amount, source="erp",
            issue_date=day), actor="api", now=NOW)
    # when November's statement is made
    found = statements.statement(session, customer, start=date(2026, 11, 1),
                                 end=date(2026, 11, 30))
    # then the note's line took nothing off the paid invoice and says that 200.00 went to the
    # customer's account, which the statement holds apart from the balance (the December
    # note not yet): closing 0.00, credit 200.00, net 200.00 owed to the customer
    note = found.lines[-1]
    assert (note.kind, note.amount_minor, note.credit_minor) == ("credit_note", 0, 20_000)
    assert (found.closing_minor, found.customer_credit_minor, found.net_minor) == (
        0, 20_000, -20_000)
    assert found.closing_minor == sum(i.balance_minor for i in session.exec(select(Invoice)))
    # and the PDF and the e-mail print it
    pdf = render_statement_pdf(found, seller="seller.example", from_email="ar@seller.example")
    assert b"Credit on your account from credit notes" in pdf  # PDF text escapes ( and )
    assert b"balance\\): USD 200.00" in pdf and b"of which USD 200.00 to your account" in pdf
    assert b"Net owed to you on 30 Nov 2026: USD 200.00" in pdf
    _, body = render_email("statement", {"statement": {
        "customer": "C-GLOBEX", "start": "2026-11-01", "end": "2026-11-30"}},
        from_email="ar@seller.example", session=session)
    assert "Credit on your account from credit notes (not in the balance): USD 200.00" in body


def test_a_closed_months_unapplied_cash_does_not_change_after_the_close(session) -> None:
    # given 300.00 paid on account on 20 October, recorded on 2 November; October closed on
    # 3 November
    from tests.support.timetravel import run_at
    from workflows import periods, refunds

    customer = f.customer(session)
    early, _ = run_at(datetime(2026, 11, 2, 9, tzinfo=UTC), record_payment, session, PaymentIn(
        amount="300.00", currency="USD", received_at=datetime(2026, 10, 20, 9, tzinfo=UTC),
        customer="C-GLOBEX", reference="on account"), actor="api")
    run_at(datetime(2026, 11, 3, 9, tzinfo=UTC), periods.close_period, session,
           period="2026-10", actor="test", now=datetime(2026, 11, 3, 9, tzinfo=UTC))

    def october() -> int:
        return statements.statement(session, customer, start=date(2026, 10, 1),
                                    end=date(2026, 10, 31)).unapplied_minor

    assert october() == 30_000
    # when, after the close, 123.45 received on 28 October is recorded on account and the
    # 300.00 is given back with a value date of 30 October
    late, _ = record_payment(session, PaymentIn(
        amount="123.45", currency="USD", received_at=datetime(2026, 10, 28, 9, tzinfo=UTC),
        customer="C-GLOBEX", reference="on account"), actor="api")
    assert late.unapplied_minor == 12_345
    refunds.refund_payment(session, payment=early, amount_minor=30_000, external_id="R-1",
                           value_date=date(2026, 10, 30), actor="api")
    # then the closed October's statement still holds 300.00 unapplied: both count on the
    # first open day, 1 November, whose statement shows what is held then
    assert october() == 30_000
    assert statements.statement(session, customer, start=date(2026, 11, 1),
                                end=date(2026, 11, 30)).unapplied_minor == 12_345


def _aging_total(session: Session, customer, as_of: date) -> int:
    from workflows.receivables import aging_by_currency

    aging = aging_by_currency(session, as_of, customer_id=customer.id).get(customer.currency)
    return aging.total if aging else 0


def test_a_month_with_every_kind_of_movement_reconciles_to_the_cent(session) -> None:
    # given Globex (USD) in a month M = November 2026, with October closed on 3 November:
    from tests.support.timetravel import run_at
    from workflows import periods, refunds
    from workflows.cash_application import write_off

    customer = f.customer(session)
    # INV-1 (1000.00) of September, paid 250.00 in November
    f.invoice(session, "INV-1", total="1000.00", issued=date(2026, 9, 10),
              due=date(2026, 10, 10))
    # INV-2 (600.00) of October, credited 100.00 in November, 33.33 written off in November
    f.invoice(session, "INV-2", total="600.00", issued=date(2026, 10, 5),
              due=date(2026, 11, 4))
    # INV-3 (400.00) of November, paid in full then 150.00 refunded in November
    f.invoice(session, "INV-3", total="400.00", issued=date(2026, 11, 3),
              due=date(2026, 12, 3))
    # INV-4 (80.00) of December: a November payment cannot be applied to it before its date
    f.invoice(session, "INV-4", total="80.00", issued=date(2026, 12, 1),
              due=date(2026, 12, 31))
    run_at(datetime(2026, 11, 3, 9, tzinfo=UTC), periods.close_period, session,
           period="2026-10", actor="test", now=datetime(2026, 11, 3, 9, tzinfo=UTC))

    def pay(amount: str, day: date, reference: str):
        payment, _ = record_payment(session, PaymentIn(
            amount=amount, currency="USD", customer="C-GLOBEX", reference=reference,
            received_at=datetime(day.year, day.month, day.day, 9, tzinfo=UTC)), actor="api")
        return payment

    pay("250.00", date(2026, 11, 12), "INV-1")
    issue_credit_note(session, invoice_number="INV-2", amount="100.00", reason="damaged",
                      actor="api", now=datetime(2026, 11, 14, 9, tzinfo=UTC))
    write_off(session, invoice=session.exec(select(Invoice).where(Invoice.number == "INV-2"))
              .one(), amount_minor=3_333, reason="bad_debt", actor="api",
              now=datetime(2026, 11, 20, 9, tzinfo=UTC))
    paid = pay("400.00", date(2026, 11, 5), "INV-3")
    refunds.refund_payment(session, payment=paid, amount_minor=15_000, external_id="R-1",
                           value_date=date(2026, 11, 18), actor="api")
    pay("80.00", date(2026, 11, 28), "INV-4")  # applied, but only from 1 December on
    pay("55.55", date(2026, 11, 29), "on account")  # left unapplied
    pay("70.00", date(2026, 10, 30), "INV-2")  # October is closed: booked on 1 November
    # when November's statement is made
    found = statements.statement(session, customer, start=date(2026, 11, 1),
                                 end=date(2026, 11, 30))
    # then it opens at October's AR, lists every movement of November, and closes at
    # November's AR, to the cent
    assert found.opening_minor == _aging_total(session, customer, date(2026, 10, 31)) == 160_000
    assert [(line.day, line.kind, line.amount_minor) for line in found.lines] == [
        (date(2026, 11, 1), "payment", -7_000),
        (date(2026, 11, 3), "invoice", 40_000),
        (date(2026, 11, 5), "payment", -40_000),
        (date(2026, 11, 12), "payment", -25_000),
        (date(2026, 11, 14), "credit_note", -10_000),
        (date(2026, 11, 18), "payment", 15_000),
        (date(2026, 11, 20), "write_off", -3_333)]
    assert found.closing_minor == found.opening_minor + sum(
        line.amount_minor for line in found.lines) == 129_667
    assert found.closing_minor == _aging_total(session, customer, date(2026, 11, 30))
    assert found.lines[-1].balance_minor == found.closing_minor
    # and the cash held apart at the end of November: the 55.55 on account and the 80.00
    # for December's invoice
    assert found.unapplied_minor == 13_555
    assert [i.number for i in found.open_invoices] == ["INV-1", "INV-2", "INV-3"]


def test_a_statement_is_in_one_currency_whatever_else_the_customer_has(session) -> None:
    # given Globex (USD) with INV-1 (1000.00 USD) paid 400.00 and 300.00 on account, and
    # rows in EUR the workflows would refuse but older data may hold: INV-E (700.00 EUR)
    # and a payment of 500.00 EUR on account
    import sqlalchemy as sa

    from models import Payment

    customer = f.customer(session)
    f.invoice(session, "INV-1", total="1000.00", issued=date(2026, 11, 2),
              due=date(2026, 12, 2))
    f.invoice(session, "INV-E", total="700.00", issued=date(2026, 11, 3),
              due=date(2026, 12, 3))
    for amount, reference in (("400.00", "INV-1"), ("300.00", "on account"),
                              ("500.00", "on account")):
        record_payment(session, PaymentIn(amount=amount, currency="USD", customer="C-GLOBEX",
                                          reference=reference,
                                          received_at=datetime(2026, 11, 10, 9, tzinfo=UTC)),
                       actor="api")
    session.execute(sa.update(Invoice).where(Invoice.number == "INV-E").values(currency="EUR"))
    session.execute(sa.update(Payment).where(Payment.amount_minor == 50_000)
                    .values(currency="EUR"))
    session.flush()
    # when November's statement is made
    found = statements.statement(session, customer, start=date(2026, 11, 1),
                                 end=date(2026, 11, 30))
    # then it is in USD only: INV-1 and its payment, 300.00 USD unapplied, closing at the
    # USD aging; nothing of the EUR rows is added to USD amounts
    assert found.currency == "USD"
    assert [(line.reference, line.amount_minor) for line in found.lines] == [
        ("INV-1", 100_000), ("INV-1 on INV-1", -40_000)]
    assert found.closing_minor == _aging_total(session, customer, date(2026, 11, 30)) == 60_000
    assert found.unapplied_minor == 30_000
    assert [i.number for i in found.open_invoices] == ["INV-1"]
    # and the EUR statement, asked for, holds the EUR rows
    euro = statements.statement(session, customer, start=date(2026, 11, 1),
                                end=date(2026, 11, 30), currency="EUR")
    assert (euro.currency, euro.closing_minor, euro.unapplied_minor) == ("EUR", 70_000, 50_000)
    assert [i.number for i in euro.open_invoices] == ["INV-E"]
