"""The SMTP mailer against a real local SMTP server: rendering, headers, failure classes, and
the SMTP password only ever sent over TLS."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.mailer import SmtpMailer, build_mailer, render_email
from bot.outbox import Permanent, Retry
from bot.settings import SettingsError, load_settings
from tests.support import factories as f
from tests.support.smtp import LocalSmtp, self_signed_tls
from workflows import collections

DUNNING = {"kind": "reminder", "level": 1, "customer_id": 1, "customer_name": "Acme <Corp>",
           "days_past_due": 1,
           "invoice": {"number": "INV-2026-000001", "issue_date": "2026-10-23",
                       "due_date": "2026-11-22", "days_past_due": 1, "currency": "USD",
                       "total_minor": 125000, "amount_due_minor": 100000, "total": "1250.00",
                       "amount_due": "USD 1,000.00"}}


def test_without_smtp_url_there_is_no_mailer() -> None:
    assert build_mailer(load_settings(smtp_url=None)) is None


def test_dunning_email_arrives_with_invoice_details_and_stable_message_id(smtp) -> None:
    # given
    mailer = SmtpMailer(smtp.url, "ar@seller.example")
    payload = {"to": "ap@acme.example", "template": "dunning_reminder", "context": DUNNING,
               "attachments": [], "outbox_id": 7, "dedupe_key": "dunning:1:1"}
    # when
    result = mailer(payload)
    # then
    [message] = smtp.wait_for(1)
    assert message["To"] == "ap@acme.example"
    assert "ar@seller.example" in message["From"]
    assert message["Subject"] == "Payment reminder: invoice INV-2026-000001 is overdue"
    body = message.get_content()
    assert "Dear Acme <Corp>," in body
    assert "USD 1,000.00" in body and "USD 1,250.00" in body and "22 Nov 2026" in body
    assert message["Message-ID"] == result["message_id"]
    assert mailer(payload)["message_id"] == result["message_id"]  # same row, same id


@pytest.mark.parametrize("template", ["dunning_friendly", "dunning_reminder", "dunning_firm",
                                      "dunning_final"])
def test_every_dunning_template_renders(template: str) -> None:
    context = dict(DUNNING, days_past_due=-3 if template == "dunning_friendly" else 30)
    subject, body = render_email(template, context, from_email="ar@x.example")
    assert "INV-2026-000001" in subject and "USD 1,000.00" in body


def test_a_subject_is_one_line_whatever_its_values_hold() -> None:
    # a carrier stored with a line break (or CR LF Bcc: ...) made the Subject header refused,
    # and the customer's notice failed for good
    context = {"order_number": "SO-1", "carrier": "UPS\r\nBcc: all@x.example",
               "tracking_number": "1Z\n9", "customer": "Globex", "shipped_at": "2026-11-20",
               "lines": [], "tracking_url": None}
    subject, _ = render_email("notice_shipment_notice", context, from_email="ar@x.example")
    assert subject == "Order SO-1 has shipped (UPS Bcc: all@x.example 1Z 9)"
    mailer = SmtpMailer("smtp://localhost:1", "ar@x.example")
    message = mailer.compose({"template": "notice_shipment_notice", "context": context,
                              "to": "ap@globex.example"})
    assert message["Subject"] == subject and message["Bcc"] is None


def test_a_blank_line_in_a_value_neither_cuts_the_subject_nor_adds_a_header() -> None:
    # a carrier with an empty line in it ended the Subject at the blank line: the rest of
    # the subject became the body's first line ("Bcc: all@x.example 1Z)")
    import email
    from email import policy

    context = {"order_number": "SO-1", "carrier": "Müller\n\nBcc: all@x.example",
               "tracking_number": "1Z", "customer": "Globex", "shipped_at": "2026-11-20",
               "lines": [], "tracking_url": None}
    subject, body = render_email("notice_shipment_notice", context, from_email="ar@x.example")
    assert subject == "Order SO-1 has shipped (Müller Bcc: all@x.example 1Z)"
    assert body.startswith("Dear Globex,\n")
    # and on the wire: one Subject, RFC 2047-encoded, no Bcc, the body intact
    mailer = SmtpMailer("smtp://localhost:1", "ar@x.example")
    wire = mailer.compose({"template": "notice_shipment_notice", "context": context,
                           "to": "ap@globex.example"}).as_bytes(policy=policy.SMTP)
    head = wire.partition(b"\r\n\r\n")[0]
    assert b"Subject: Order SO-1 has shipped =?utf-8?" in head and b"\nBcc" not in head
    parsed = email.message_from_bytes(wire, policy=policy.default)
    assert parsed["Subject"] == subject and parsed["Bcc"] is None
    assert parsed.get_content().startswith("Dear Globex,")


def test_a_customer_name_with_a_line_break_or_accents_stays_in_the_body() -> None:
    # the dunning e-mails greet the customer by name: CR LF in it stays text in the body,
    # and the headers are the four we set
    from email import policy

    context = dict(DUNNING, customer_name="Müller GmbH\r\nBcc: x@evil.example")
    mailer = SmtpMailer("smtp://localhost:1", "ar@seller.example")
    message = mailer.compose({"template": "dunning_reminder", "context": context,
                              "to": "ap@acme.example"})
    assert message["Bcc"] is None
    assert sorted(message.keys()) == ["Content-Transfer-Encoding", "Content-Type", "Date",
                                      "From", "MIME-Version", "Message-ID", "Subject", "To"]
    assert "Dear Müller GmbH\nBcc: x@evil.example," in message.get_content()
    assert message.as_bytes(policy=policy.SMTP).isascii()


def test_temporary_refusal_is_retried_and_permanent_refusal_fails(smtp) -> None:
    mailer = SmtpMailer(smtp.url, "ar@seller.example")
    smtp.refuse["busy@acme.example"] = "451 4.3.0 try again later"
    smtp.refuse["gone@acme.example"] = "550 5.1.1 no such user"
    base = {"template": "dunning_reminder", "context": DUNNING, "outbox_id": 1}
    with pytest.raises(Retry):
        mailer({**base, "to": "busy@acme.example"})
    with pytest.raises(Permanent):
        mailer({**base, "to": "gone@acme.example"})
    assert smtp.received() == []


def test_unreachable_server_is_retried() -> None:
    from tests.support.smtp import _free_port

    mailer = SmtpMailer(f"smtp://127.0.0.1:{_free_port()}", "ar@seller.example", timeout=2)
    with pytest.raises(Retry):
        mailer({"to": "ap@acme.example", "template": "dunning_reminder", "context": DUNNING,
                "outbox_id": 1})


def test_invoice_email_lists_the_invoice_from_the_database(db, smtp) -> None:
    # given an ERP invoice
    with db.transaction() as s:
        f.customer(s, "C-A", "Acme")
        f.invoice(s, "INV-E-1", "C-A", total="321.00", due=date(2026, 12, 1))
    mailer = build_mailer(load_settings(smtp_url=smtp.url, database_url=db.url,
                                        o2c_from_email="billing@seller.example"), db)
    # when
    mailer({"to": "ap@globex.example", "template": "invoice",
            "context": {"invoice_number": "INV-E-1"}, "outbox_id": 3,
            "dedupe_key": "invoice-email:INV-E-1",
            "attachments": [{"kind": "invoice_pdf", "number": "INV-E-1"}]})
    # then
    [message] = smtp.wait_for(1)
    assert message["Subject"].startswith("Invoice INV-E-1 from seller.example")
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "Due date:       01 Dec 2026" in body and "Total:     USD 321.00" in body
    assert "Bill to:        1 Main St, Springfield" in body and "(PDF attached)" in body
    [pdf] = list(message.iter_attachments())
    assert pdf.get_filename() == "INV-E-1.pdf" and pdf.get_content_type() == "application/pdf"
    data = pdf.get_content()
    assert data.startswith(b"%PDF") and b"Invoice INV-E-1" in data and b"USD 321.00" in data


def test_credit_note_email_carries_its_pdf(db, smtp) -> None:
    # given a credit note on an invoice paid but for 100.00: 100.00 off the invoice, 50.00
    # customer credit
    from workflows import approvals, credit_notes
    from workflows.cash_application import PaymentIn, record_payment

    now = datetime(2026, 11, 20, 10, tzinfo=UTC)
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-A", "Acme")
        f.invoice(s, "INV-E-2", "C-A", total="321.00", due=date(2026, 12, 1),
                  issued=date(2026, 11, 1))
        record_payment(s, PaymentIn(amount="221.00", currency="USD", received_at=now,
                                    reference="INV-E-2"), actor="test", apply_to=["INV-E-2"])
        request, _ = credit_notes.request_credit_note(s, credit_notes.CreditNoteIn(
            invoice="INV-E-2", reason="damaged <b>", amount="150.00"), actor="UCOLL001",
            now=now)
        approvals.decide(session=s, approval_id=request.approval_id, user_id="UCREDIT1",
                         approve=True, now=now)
    mailer = build_mailer(load_settings(smtp_url=smtp.url, database_url=db.url,
                                        o2c_from_email="billing@seller.example"), db)
    # when
    mailer({"to": "ap@acme.example", "template": "credit_note",
            "context": {"credit_note_number": "CN-2026-000001"}, "outbox_id": 4,
            "dedupe_key": "credit-note-email:CN-2026-000001",
            "attachments": [{"kind": "credit_note_pdf", "number": "CN-2026-000001"}]})
    # then
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Credit note CN-2026-000001: USD 150.00 on invoice INV-E-2"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "For invoice:    INV-E-2" in body and "Reason:         damaged <b>" in body
    assert "Taken off the invoice: USD 100.00" in body
    assert "Credit on your account: USD 50.00" in body and "(PDF attached)" in body
    [pdf] = list(message.iter_attachments())
    assert pdf.get_filename() == "CN-2026-000001.pdf"
    data = pdf.get_content()
    assert data.startswith(b"%PDF") and b"Credit note CN-2026-000001" in data
    assert b"USD 150.00" in data and b"USD 50.00" in data


def test_reminder_statement_renders(session) -> None:
    f.user(session, "UCOLL001", "collector")
    customer = f.customer(session, "C-A", "Acme")
    f.invoice(session, "INV-1", "C-A", total="10.00", due=date(2026, 11, 1))
    message = collections.send_reminder(session, customer_id=customer.id, actor="UCOLL001",
                                        as_of=date(2026, 11, 23),
                                        now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    subject, body = render_email("collections_reminder", message.payload["context"],
                                 from_email="ar@x.example")
    assert subject == "Statement of overdue invoices: USD 10.00 due"
    assert "INV-1" in body and "22 days late" in body


# -- the SMTP password never travels in clear text -------------------------------------------

EMAIL = {"to": "ap@acme.example", "template": "dunning_reminder", "context": DUNNING,
         "outbox_id": 1}
CREDENTIALS = ("ar-bot", "s3cret p@ss")


@pytest.fixture
def tls(tmp_path):
    return self_signed_tls(tmp_path)


def _running(server: LocalSmtp):
    server.start()
    return server


def test_password_is_not_sent_when_starttls_is_not_offered() -> None:
    # given: a server (or a man in the middle) that offers AUTH but no STARTTLS
    server = _running(LocalSmtp(credentials=CREDENTIALS))
    try:
        mailer = SmtpMailer(server.url, "ar@seller.example")
        # when / then: refused for good, with a clear reason, and no login was attempted
        with pytest.raises(Permanent, match="does not offer STARTTLS"):
            mailer(EMAIL)
        assert server.logins == [] and server.received() == []
    finally:
        server.stop()


def test_insecure_opt_out_logs_in_without_tls_for_a_local_test_server() -> None:
    server = _running(LocalSmtp(credentials=CREDENTIALS))
    try:
        mailer = build_mailer(load_settings(smtp_url=f"{server.url}?insecure=true"))
        mailer(EMAIL)
        [message] = server.wait_for(1)
        assert message["To"] == "ap@acme.example"
        assert server.logins == [(*CREDENTIALS, False)]
    finally:
        server.stop()


def test_starttls_is_used_before_the_password_is_sent(tls) -> None:
    server_context, client_context = tls
    server = _running(LocalSmtp(credentials=CREDENTIALS, starttls=server_context))
    try:
        SmtpMailer(server.url, "ar@seller.example", ssl_context=client_context)(EMAIL)
        assert len(server.wait_for(1)) == 1
        assert server.logins == [(*CREDENTIALS, True)]
    finally:
        server.stop()


def test_untrusted_certificate_is_refused_before_login(tls) -> None:
    # given: STARTTLS with a certificate the system does not trust
    server_context, _ = tls
    server = _running(LocalSmtp(credentials=CREDENTIALS, starttls=server_context))
    try:
        with pytest.raises(Permanent, match="not trusted"):
            SmtpMailer(server.url, "ar@seller.example", timeout=5)(EMAIL)
        assert server.logins == [] and server.received() == []
    finally:
        server.stop()


def test_smtps_uses_tls_from_the_start(tls) -> None:
    server_context, client_context = tls
    server = _running(LocalSmtp(credentials=CREDENTIALS, implicit_tls=server_context))
    try:
        assert server.url.startswith("smtps://")
        SmtpMailer(server.url, "ar@seller.example", ssl_context=client_context)(EMAIL)
        assert len(server.wait_for(1)) == 1
        assert server.logins == [(*CREDENTIALS, True)]
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["smtp://h:25?insecure=maybe", "smtp://h:25?starttls=no"])
def test_smtp_url_options_are_checked(url: str) -> None:
    with pytest.raises(SettingsError, match="SMTP_URL"):
        load_settings(smtp_url=url)


@pytest.mark.parametrize("to", ["ap@acme.example, ceo@rival.example",
                                "ap@acme.example\r\nBcc: ceo@rival.example",
                                "Acme AP <ap@acme.example>", "not an address", ""])
def test_a_recipient_that_is_not_one_valid_address_fails_for_good_and_sends_nothing(
        smtp, to: str) -> None:
    # given a queued e-mail whose address was stored before addresses were checked
    mailer = SmtpMailer(smtp.url, "ar@seller.example")
    payload = {"to": to, "template": "dunning_reminder", "context": DUNNING, "outbox_id": 3}
    # when / then: a permanent failure naming the address (kept as failed, told to AR)
    with pytest.raises(Permanent, match="recipient"):
        mailer(payload)
    assert smtp.received() == []


def test_the_message_id_is_stable_per_row_and_never_shared_with_another_databases_row() -> None:
    # given: the same dedupe key (and outbox id) queued in two databases, e.g. a trial and the
    # production database after it, both numbering from INV-2026-000001 (mail clients such as
    # Gmail drop a message whose Message-ID they have seen: the second e-mail would vanish)
    mailer = SmtpMailer("smtp://localhost:1", "ar@seller.example")
    base = {"to": "ap@acme.example", "template": "dunning_reminder", "context": DUNNING,
            "outbox_id": 1, "dedupe_key": "invoice-email:INV-2026-000001"}
    trial = {**base, "queued_at": "2026-03-02T09:00:00.123456+00:00"}
    production = {**base, "queued_at": "2026-06-01T10:30:00.654321+00:00"}
    # then: each row's id is its own, and the same on every attempt of the row
    assert mailer.compose(trial)["Message-ID"] != mailer.compose(production)["Message-ID"]
    assert mailer.compose(trial)["Message-ID"] == mailer.compose(dict(trial))["Message-ID"]


def test_the_worker_gives_the_mailer_the_rows_queue_time(db, database_url) -> None:
    from bot.outbox import OutboxWorker
    from models import OutboxMessage
    from tests.conftest import test_settings
    from workflows import outbox

    # given: a queued e-mail and a mailer that records what it is given
    with db.transaction() as s:
        queued = outbox.send_email(s, to="ap@acme.example", template="dunning_reminder",
                                   context=DUNNING)
        row_id = queued.id
    seen: list[dict] = []
    worker = OutboxWorker(db, None, test_settings(database_url, "http://127.0.0.1:9/api/"),
                          mailer=lambda payload: seen.append(payload) or {"ok": True})
    # when
    worker.drain()
    # then
    with db.read_session() as s:
        created = s.get(OutboxMessage, row_id).created_at
    assert [(p["outbox_id"], p["queued_at"]) for p in seen] == [(row_id, created.isoformat())]


@pytest.mark.parametrize(("terms", "shown"), [
    ("2/10 NET30", "Pay USD 980.00 by 11 Nov 2026 (2 % early-payment discount of USD 20.00), "
                   "else USD 1,000.00 by 01 Dec 2026"),
    ("NET30", None)])
def test_invoice_email_and_pdf_state_the_early_payment_discount_and_its_last_day(
        db, smtp, terms, shown) -> None:
    # given an invoice of 1,000.00 issued on 1 Nov 2026, on 2/10 NET30 terms (or NET30)
    with db.transaction() as s:
        f.customer(s, "C-A", "Acme")
        f.invoice(s, "INV-E-3", "C-A", total="1000.00", due=date(2026, 12, 1),
                  issued=date(2026, 11, 1), terms=terms)
    mailer = build_mailer(load_settings(smtp_url=smtp.url, database_url=db.url,
                                        o2c_from_email="billing@seller.example"), db)
    # when it is e-mailed with its PDF
    mailer({"to": "ap@acme.example", "template": "invoice",
            "context": {"invoice_number": "INV-E-3"}, "outbox_id": 5,
            "dedupe_key": "invoice-email:INV-E-3",
            "attachments": [{"kind": "invoice_pdf", "number": "INV-E-3"}]})
    # then both say what to pay by the 10th day after issue, and the full total by the due
    # date (the amount cash application takes as settling it: 980.00 within the window)
    [message] = smtp.wait_for(1)
    body = message.get_body(preferencelist=("plain",)).get_content()
    data = list(message.iter_attachments())[0].get_content()
    data = data.replace(b"\\(", b"(").replace(b"\\)", b")")  # PDF string escapes
    assert f"Payment terms:  {terms}" in body
    if shown is None:
        assert "early-payment" not in body and b"early-payment" not in data
    else:
        assert shown in body and shown.encode() in data
        assert body.count("early-payment") == 1


def test_the_early_payment_offer_is_the_one_cash_application_takes(db) -> None:
    # given a 2/10 NET30 invoice of 1,000.00 issued on 1 Nov 2026
    from workflows.matching import discount_of, early_payment_offer

    with db.transaction() as s:
        f.customer(s, "C-A", "Acme")
        invoice = f.invoice(s, "INV-E-4", "C-A", total="1000.00", due=date(2026, 12, 1),
                            issued=date(2026, 11, 1), terms="2/10 NET30")
        # then the offer is 20.00 until 11 Nov, and matching takes exactly that then, not after
        assert early_payment_offer(invoice)[:2] == (2000, date(2026, 11, 11))
        assert discount_of(invoice, date(2026, 11, 11)) == 2000
        assert discount_of(invoice, date(2026, 11, 12)) == 0
        # and once anything is paid, no offer is stated (none would be taken)
        invoice.balance_minor -= 100
        assert early_payment_offer(invoice) is None


def test_the_date_header_is_the_apps_clocks_moment() -> None:
    # the sandbox's Time travel moves the app's clock: an e-mail sent "on 1 March" says so in
    # its Date header, as the dunning and invoice dates inside it do (not the computer's date)
    from email.utils import parsedate_to_datetime

    from bot.clock import Clock

    clock = Clock()
    clock.travel_to(datetime(2027, 3, 1, 9, 30, tzinfo=UTC))
    mailer = SmtpMailer("smtp://localhost:1", "ar@seller.example", clock=clock)
    message = mailer.compose({"template": "dunning_reminder", "context": DUNNING,
                              "to": "ap@globex.example"})
    sent = parsedate_to_datetime(message["Date"])
    assert sent.tzinfo is not None
    assert abs(sent - datetime(2027, 3, 1, 9, 30, tzinfo=UTC)).total_seconds() < 60
