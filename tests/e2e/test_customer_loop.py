"""The customer in the loop (issue 19) through the real server: the backorder e-mail's signed
links (confirm page, choice recorded once, second click / forwarded e-mail / tampered /
expired links get clear pages and change nothing, rep and billing told in Slack), carrier
events through `POST /shipments/{id}/events` (Idempotency-Key, an exception alerting the rep),
the customer's page sent and revoked from Slack (escaped, strict CSP, every access logged,
invoice and statement PDFs, a question opening a dispute), and statements from Slack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from sqlmodel import select

from blocks.text import esc
from bot.customer_links import LinkSigner
from bot.db import Database
from bot.mailer import SmtpMailer
from models import AuditEvent, Customer, CustomerLink, Dispute, Order, OutboxMessage, ShipmentEvent
from sandbox.driver import FORM
from tests.conftest import test_settings
from tests.support import factories as f
from tests.support.slack import ephemeral_texts, prepared_click, text_of
from tests.support.timetravel import frozen_at

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
frozen_time = frozen_at(NOW, tick=True)
SECRET = "k" * 48
WAIT = 10.0
NAME = "Globex <script>alert(1)</script> & Co"


@pytest.fixture
def server_settings(database_url, standin):
    return test_settings(database_url, standin.api_url, o2c_link_secrets=SECRET,
                         o2c_public_url="https://o2c.example.com")


@pytest.fixture
def shop(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", NAME, sales_rep="USALES01", collector="UCOLL001")
        f.product(s, "WID-1", price="100.00", on_hand=6)
    return server


@pytest.fixture
def web(server):
    with httpx.Client(base_url=server.base_url, timeout=15) as client:
        yield client


def outbox_emails(server, template: str) -> list[OutboxMessage]:
    with server.db.read_session() as s:
        return [m for m in s.exec(select(OutboxMessage).order_by(OutboxMessage.id))
                if m.transport == "email" and m.payload["template"] == template]


def audited(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def short_order(server) -> tuple[str, int]:
    with server.db.transaction() as s:
        order = f.order(s, lines=[("WID-1", 10)], now=NOW)
        number = order.number
    server.deps.notify_outbox()
    [notice] = outbox_emails(server, "notice_backorder_notice")
    return number, notice.payload["context"]["link_id"]


def choice_path(link_id: int, choice: str, secret: str = SECRET) -> str:
    return f"/c/backorder/{LinkSigner([secret]).token('backorder', link_id)}/{choice}"


def strict(page: httpx.Response) -> None:
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


# -- the backorder choice -------------------------------------------------------------------------

def test_the_customer_chooses_once_through_the_backorder_email(shop, web, standin,
                                                                slack) -> None:
    # given a backordered order and the three links of its e-mail
    number, link_id = short_order(shop)
    path = choice_path(link_id, "ship_now")
    # when the customer opens "ship now": a confirmation page, nothing recorded yet
    page = web.get(path)
    assert page.status_code == 200 and "Confirm: Ship what is available now" in page.text
    strict(page)
    assert audited(shop, "order.customer_choice") == []
    # (the rep's DM with its buttons, as the rep's client shows it before any choice)
    sandbox = standin.api
    short = f"Order {number} is short of stock"
    before = sandbox.wait_for(lambda: next((m for m in sandbox.dm_messages("USALES01")
                                            if m["text"] == short), None), WAIT, "backorder DM")
    stale_wait = prepared_click(slack, "USALES01", before, "backorder_wait")
    # when they confirm
    done = web.post(path)
    # then the choice is recorded, and the rep and billing are told in Slack
    assert done.status_code == 200 and f"ship what is available now for order {number}" \
        in done.text
    [choice] = audited(shop, "order.customer_choice")
    assert choice.data["choice"] == "ship_now"
    sandbox.wait_for(lambda: any("customer chose to ship what is available now" in text_of(m)
                                 for m in sandbox.dm_messages("USALES01")), WAIT, "rep DM")
    sandbox.wait_for(lambda: any("the customer" in text_of(m) and "ship partial" in text_of(m)
                                 for m in sandbox.messages("CAR000001")), WAIT, "billing")
    # when the e-mail's other link is clicked later (a forwarded e-mail), or the same again
    for again in (web.post(choice_path(link_id, "cancel_short")), web.get(path),
                  web.post(path)):
        # then a clear page, and nothing more is recorded
        assert again.status_code == 200
        assert "Your choice is already recorded: ship what is available now" in again.text
    assert len(audited(shop, "order.customer_choice")) == 1
    assert len(audited(shop, "order.backorder_choice")) == 1
    # then the rep's DM shows the customer's choice and how to override it, no buttons
    dm = sandbox.wait_for(lambda: next((m for m in sandbox.dm_messages("USALES01")
                                        if any(h.get("text") == short
                                               for h in m.get("history") or [])), None),
                          WAIT, "the backorder DM, updated")
    now_shown = text_of({"text": dm["text"], "blocks": dm["blocks"]})
    assert "/o2c backorder" in now_shown and "backorder_wait" not in now_shown
    # when the rep clicks "Wait" on the DM as it was (a client that had not refreshed yet):
    # refused, pointing to the override with a reason
    assert slack.send(stale_wait, FORM).status_code == 200
    sandbox.wait_for(lambda: ephemeral_texts(sandbox, "USALES01"), WAIT, "refusal")
    assert "/o2c backorder" in ephemeral_texts(sandbox, "USALES01")[0]
    # when they override with a reason
    slack.slash("USALES01", f"backorder {number} wait customer called: ship it all together")
    sandbox.wait_for(lambda: len(ephemeral_texts(sandbox, "USALES01")) >= 2, WAIT, "answer")
    assert "wait for stock" in ephemeral_texts(sandbox, "USALES01")[1]
    [override] = audited(shop, "order.backorder_override")
    assert (override.reason, override.data["customer_choice"]) == (
        "customer called: ship it all together", "ship_now")


def test_the_choice_page_says_until_when_the_link_works_by_the_books_day(shop, web) -> None:
    from workflows import policy

    # given books in Auckland and a backordered order: its link expires 14 days on, at 12:00
    # UTC on 8 Dec, 01:00 on 9 Dec there
    with shop.db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="Pacific/Auckland", actor="test")
    _, link_id = short_order(shop)
    # when the customer opens a choice, then the page gives the books' day (before: 8 Dec)
    page = web.get(choice_path(link_id, "wait"))
    assert page.status_code == 200 and "This link works once, until 09 Dec 2026." in page.text


def test_tampered_and_expired_choice_links_change_nothing(shop, web) -> None:
    # given a backordered order
    _, link_id = short_order(shop)
    # then a link signed with another secret, another link's id, a made-up choice: not valid
    for path in (choice_path(link_id, "wait", secret="x" * 48),
                 choice_path(link_id, "wait").replace(f"/{link_id}.", f"/{link_id + 1}."),
                 choice_path(link_id, "sell_it_twice")):
        page = web.post(path)
        assert page.status_code == 404 and "This link is not valid" in page.text
    # when the link has expired
    with time_machine.travel(NOW + timedelta(days=15), tick=False):
        page = web.post(choice_path(link_id, "wait"))
    # then it says so, and nothing changed
    assert page.status_code == 410 and "This link has expired" in page.text
    assert audited(shop, "order.customer_choice") == []
    with shop.db.read_session() as s:
        assert s.get(CustomerLink, link_id).used_at is None


# -- carrier events -------------------------------------------------------------------------------

def test_carrier_events_are_recorded_once_and_an_exception_alerts_the_rep(shop, api,
                                                                          standin) -> None:
    # given a shipped order
    with shop.db.transaction() as s:
        f.product(s, "WID-1", price="100.00", on_hand=20)
    number = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                       "currency": "USD", "lines": [
                                           {"sku": "WID-1", "quantity": 2}]}).json()["number"]
    shipped = api.post("/shipments", json={"order": number, "carrier": "UPS",
                                           "tracking_number": "1Z9",
                                           "shipped_at": NOW.isoformat()}).json()
    # when the carrier reports an exception, and the call is retried with its key
    body = {"kind": "exception", "occurred_at": (NOW + timedelta(hours=5)).isoformat(),
            "location": "Memphis", "note": "address not found"}
    key = {"Idempotency-Key": "carrier-1"}
    first = api.post(f"/shipments/{shipped['id']}/events", json=body, headers=key)
    again = api.post(f"/shipments/{shipped['id']}/events", json=body, headers=key)
    # then one event, the shipment in exception, and the rep alerted
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and first.json()["shipment_status"] == "exception"
    with shop.db.read_session() as s:
        assert len(s.exec(select(ShipmentEvent)).all()) == 1
    sandbox = standin.api
    sandbox.wait_for(lambda: any("Delivery exception on order" in text_of(m)
                                 for m in sandbox.dm_messages("USALES01")), WAIT, "alert")
    # when it is delivered with proof
    delivered = api.post(f"/shipments/{shipped['id']}/events", json={
        "kind": "delivered", "occurred_at": (NOW + timedelta(days=1)).isoformat(),
        "pod_signed_by": "J. Doe", "pod_document_url": "https://ups.example/pod/1.pdf"})
    # then the shipment is delivered and the customer's confirmation is queued
    assert delivered.json()["pod_signed_by"] == "J. Doe", delivered.text
    assert len(outbox_emails(shop, "notice_delivery_notice")) == 1
    # and an unknown shipment, or proof of delivery on another event, is refused
    assert api.post("/shipments/999999/events", json=body).status_code == 404
    refused = api.post(f"/shipments/{shipped['id']}/events", json={
        **body, "pod_signed_by": "J. Doe"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == \
        "pod_signed_by"


# -- the customer's page --------------------------------------------------------------------------

def page_link(shop, slack, standin) -> str:
    """The collector sends the customer their page from Slack; the path of the e-mailed link."""
    slack.slash("UCOLL001", "customer-page globex")
    standin.api.wait_for(lambda: ephemeral_texts(standin.api, "UCOLL001"), WAIT, "answer")
    assert "on its way" in ephemeral_texts(standin.api, "UCOLL001")[-1]
    # the notification's plain text names the customer escaped once (Slack decodes it once)
    assert standin.api.ephemerals("UCOLL001")[-1]["text"] == \
        f"A link to their page is on its way to {esc(NAME)}"
    [mail] = outbox_emails(shop, "notice_page_link")
    return f"/c/{LinkSigner([SECRET]).token('portal', mail.payload['context']['link_id'])}"


def test_the_customers_page_shows_their_account_escaped_and_logs_each_access(
        shop, slack, standin, web, api) -> None:
    # given an invoiced shipment and an order still open
    with shop.db.transaction() as s:
        f.product(s, "WID-1", price="100.00", on_hand=20)
    number = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                       "currency": "USD", "lines": [
                                           {"sku": "WID-1", "quantity": 2}]}).json()["number"]
    invoice = api.post("/shipments", json={"order": number, "carrier": "UPS",
                                           "tracking_number": "1Z<b>9",
                                           "shipped_at": NOW.isoformat()}).json()["invoice"]
    open_order = api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                           "currency": "USD", "lines": [
                                               {"sku": "WID-1", "quantity": 1}]}).json()
    path = page_link(shop, slack, standin)
    # when the customer opens it
    page = web.get(path)
    # then their orders, shipments (tracking link) and invoices are there, all escaped
    assert page.status_code == 200, page.text
    strict(page)
    assert open_order["number"] in page.text and invoice in page.text
    assert "https://www.ups.com/track?tracknum=1Z%3Cb%3E9" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "1Z&lt;b&gt;9" in page.text
    # and the invoice and the statement are PDFs
    pdf = web.get(f"{path}/invoices/{invoice}")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:4] == b"%PDF"
    statement = web.get(f"{path}/statement")
    assert statement.content[:4] == b"%PDF" and b"Closing balance" in statement.content
    assert web.get(f"{path}/invoices/INV-OF-SOMEONE-ELSE").status_code == 404
    # and every access is in the audit log
    assert [e.reason for e in audited(shop, "customer.link_access")] == [
        "account page", f"invoice {invoice}", "statement of account",
        "invoice INV-OF-SOMEONE-ELSE"]
    # when they ask a question about the invoice
    asked = web.post(f"{path}/question", data={"invoice": invoice, "reason": "pricing",
                                               "note": "Why 100? <!channel>"})
    # then a dispute is open in Slack, with their words
    assert asked.status_code == 200 and "was sent" in asked.text
    with shop.db.read_session() as s:
        [dispute] = s.exec(select(Dispute)).all()
        assert (dispute.source, dispute.reason) == ("portal", "pricing")
    standin.api.wait_for(lambda: any("Why 100?" in text_of(m)
                                     for m in standin.api.dm_messages("USALES01")),
                         WAIT, "dispute card")


def test_the_statement_pdf_is_read_in_one_snapshot_while_a_payment_is_applied(
        shop, slack, standin, web, monkeypatch) -> None:
    from bot import invoice_pdf
    from workflows import statements
    from workflows.cash_application import record_payment
    from workflows.inputs import PaymentIn

    # given an invoice of 1,000.00 and the customer's page
    with shop.db.transaction() as s:
        f.invoice(s, "INV-S-1", issued=NOW.date() - timedelta(days=10))
    path = page_link(shop, slack, standin)
    # ... and a payment of 400.00 applied to it by another request just after the statement's
    # lines were read, before its aging is (the moment made certain here)
    position, render = statements.aging_by_currency, invoice_pdf.render_statement_pdf
    shown = []

    def paid_meanwhile(*args, **kwargs):
        if not shown:
            with shop.db.transaction() as s:
                record_payment(s, PaymentIn(amount="400.00", currency="USD",
                                            received_at=NOW - timedelta(hours=1)),
                               actor="test", apply_to=["INV-S-1"])
        return position(*args, **kwargs)

    def rendered(found, **kwargs):
        shown.append(found)
        return render(found, **kwargs)

    monkeypatch.setattr(statements, "aging_by_currency", paid_meanwhile)
    monkeypatch.setattr(invoice_pdf, "render_statement_pdf", rendered)
    # when the customer downloads the statement, and again
    assert web.get(f"{path}/statement").status_code == 200
    assert web.get(f"{path}/statement").status_code == 200
    # then each is of one moment: its lines, closing balance, aging and open invoices agree
    # (before the payment, then after it)
    first, second = shown
    assert [sum(st.aging.values()) for st in shown] == [st.closing_minor for st in shown]
    assert (first.closing_minor, second.closing_minor) == (100_000, 60_000)
    assert [i.number for i in first.open_invoices] == ["INV-S-1"]
    assert first.unapplied_minor == second.unapplied_minor == 0


def test_the_collector_is_told_until_when_the_page_link_works_in_their_own_zone(
        shop, slack, standin) -> None:
    from models import User

    # given a collector in Auckland: the link made now (12:00 UTC on 24 Nov) works for 30
    # days, until 12:00 UTC on 24 Dec, 01:00 on 25 Dec there
    with shop.db.transaction() as s:
        s.get(User, "UCOLL001").timezone = "Pacific/Auckland"
    page_link(shop, slack, standin)
    # then Slack tells them 25 Dec (before: the UTC day, 24 Dec)
    assert "valid until 25 Dec 2026" in ephemeral_texts(standin.api, "UCOLL001")[-1]


def test_a_revoked_or_tampered_page_link_shows_nothing(shop, slack, standin, web) -> None:
    # given the customer's link
    path = page_link(shop, slack, standin)
    assert web.get(path).status_code == 200
    # when the collector revokes it from Slack
    slack.slash("UCOLL001", "customer-page revoke globex")
    standin.api.wait_for(lambda: len(ephemeral_texts(standin.api, "UCOLL001")) >= 2, WAIT,
                         "answer")
    assert "1 live link(s)" in ephemeral_texts(standin.api, "UCOLL001")[-1]
    # then the page says so, and a tampered link is not valid
    gone = web.get(path)
    assert gone.status_code == 410 and "This link was withdrawn" in gone.text
    assert NAME not in gone.text and "Globex" not in gone.text
    tampered = web.get(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert tampered.status_code == 404
    # and a sales rep may neither send nor revoke a page
    slack.slash("USALES01", "customer-page globex")
    standin.api.wait_for(lambda: ephemeral_texts(standin.api, "USALES01"), WAIT, "refusal")
    assert len(outbox_emails(shop, "notice_page_link")) == 1


def test_a_statement_is_emailed_on_request_from_slack(shop, slack, standin) -> None:
    # given an open invoice
    with shop.db.transaction() as s:
        f.invoice(s, "ERP-1", total="250.00", issued=NOW.date() - timedelta(days=40),
                  due=NOW.date() - timedelta(days=10))
    # when the collector asks for the statement of the month
    slack.slash("UCOLL001", "statement globex 2026-10")
    standin.api.wait_for(lambda: ephemeral_texts(standin.api, "UCOLL001"), WAIT, "answer")
    assert standin.api.ephemerals("UCOLL001")[-1]["text"] == \
        f"The statement of account of {esc(NAME)} is on its way"
    # then it is e-mailed to the billing contact with its PDF
    [mail] = outbox_emails(shop, "statement")
    assert mail.payload["to"] == "ap@globex.example"
    assert mail.payload["context"]["statement"] == {"customer": "C-GLOBEX",
                                                    "start": "2026-10-01",
                                                    "end": "2026-10-31"}
    mailer = SmtpMailer("smtp://localhost:1", "billing@example.com",
                        session_factory=shop.db.read_session)
    message = mailer.compose({**mail.payload, "outbox_id": mail.id})
    [attachment] = list(message.iter_attachments())
    data = attachment.get_payload(decode=True)
    assert b"Opening balance" in data and b"USD 250.00" in data
    assert "Closing balance: USD 250.00" in message.get_body().get_content()


def test_a_statement_of_a_month_out_of_range_answers_the_usage_and_sends_nothing(
        shop, slack, standin) -> None:
    # when the collector names a month that is no month of the books' years
    for n, month in enumerate(("0000-05", "9999-12", "2026-13"), start=1):
        slack.slash("UCOLL001", f"statement globex {month}")
        standin.api.wait_for(lambda n=n: len(ephemeral_texts(standin.api, "UCOLL001")) >= n,
                             WAIT, "answer")
        # then they are shown how to ask, and nothing is e-mailed
        assert "Usage: `/o2c statement" in ephemeral_texts(standin.api, "UCOLL001")[-1], month
    assert outbox_emails(shop, "statement") == []


def test_hostile_page_paths_and_forms_are_answered_not_crashed(shop, slack, standin,
                                                              web) -> None:
    # given the customer's live page
    path = page_link(shop, slack, standin)
    # when links with digits of another script (isdigit() takes "²", int() does not) or a
    # NUL (a database error on PostgreSQL) come in, signed or not
    answers = [web.get("/c/%C2%B2.abc"), web.get("/c/%C2%B2.abc/statement"),
               web.get("/c/backorder/%C2%B2.abc/wait"), web.get(f"{path}/invoices/A%00B"),
               web.post(f"{path}/question", content="invoice=A%00B&reason=other&note=hi",
                        headers={"content-type": FORM})]
    # then each is a page saying no, nothing is opened
    assert [a.status_code for a in answers] == [404, 404, 404, 404, 422]
    assert "We have no such invoice for you." in answers[-1].text
    with shop.db.read_session() as s:
        assert s.exec(select(Dispute)).all() == []


# -- the audit of the customer's links (defects found and fixed) ------------------------------

def direct_page_link(server) -> str:
    """The customer's page link, made as `/o2c customer-page` makes it (without Slack)."""
    from workflows import customer_links

    with server.db.transaction() as s:
        customer = s.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
        link = customer_links.portal_link(s, customer=customer, actor="UCOLL001", now=NOW)
        link_id = link.id
    return f"/c/{LinkSigner([SECRET]).token('portal', link_id)}"


def test_the_customers_page_gives_a_shipment_the_books_day(shop, web) -> None:
    from workflows import policy, shipping

    # given books in Los Angeles and an order shipped at 23:30 there on 22 Nov (07:30 UTC
    # on the 23rd)
    with shop.db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="America/Los_Angeles", actor="test")
        order = f.order(s, lines=[("WID-1", 2)], now=NOW - timedelta(days=3))
        shipping.ship_order(s, order_number=order.number, carrier="UPS",
                            tracking_number="1Z1", actor="api", now=NOW,
                            shipped_at=datetime(2026, 11, 23, 7, 30, tzinfo=UTC))
        number = order.number
    # when the customer opens their page, then the shipment left on 22 Nov (before: 23 Nov)
    page = web.get(direct_page_link(shop))
    assert page.status_code == 200, page.text
    assert f"<tr><td>{number}</td><td>22 Nov 2026</td><td>UPS</td>" in page.text


def test_while_the_database_is_down_the_customers_pages_answer_a_503_page(shop, web) -> None:
    # given the customer's page link and a backorder choice link
    path = direct_page_link(shop)
    _, link_id = short_order(shop)
    choice = choice_path(link_id, "wait")
    # when the database is unreachable (restarting) while the customer follows them
    working = shop.deps.db
    shop.deps.db = Database("sqlite:////nonexistent-o2c-dir/o2c.db" if working.is_sqlite
                            else "postgresql://o2c@127.0.0.1:9/o2c")
    try:
        answers = [web.get(path), web.get(f"{path}/statement"), web.get(choice),
                   web.post(choice)]
    finally:
        shop.deps.db.dispose()
        shop.deps.db = working
    # then each is a page (not a JSON problem, not a 500) saying to come back, kept private
    for page in answers:
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"].isdigit()
        assert "temporarily unavailable" in page.text and "Nothing was changed" in page.text
        strict(page)
    # and once it is back, the choice is still open
    with shop.db.read_session() as s:
        assert s.get(CustomerLink, link_id).used_at is None


def test_a_choice_link_of_a_cancelled_order_offers_nothing_to_confirm(shop, web) -> None:
    # given a backordered order, cancelled by staff before the customer followed the link
    from workflows import orders

    number, link_id = short_order(shop)
    with shop.db.transaction() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        orders.cancel_order(s, order, actor="USALES01", reason="customer phoned", now=NOW)
    # when the customer follows the link
    page = web.get(choice_path(link_id, "ship_now"))
    # then a clear page, no Confirm button, and nothing recorded
    assert page.status_code == 200
    assert "Confirm" not in page.text and "Nothing to choose any more" in page.text
    done = web.post(choice_path(link_id, "ship_now"))
    assert "Nothing was changed" in done.text
    assert audited(shop, "order.customer_choice") == []


def test_two_different_choices_at_once_make_one_decision_and_tell_the_other(shop) -> None:
    # given a backordered order whose e-mail was forwarded: two people confirm at once
    import threading

    number, link_id = short_order(shop)
    barrier = threading.Barrier(2)
    pages: dict[str, httpx.Response] = {}

    def confirm(choice: str) -> None:
        with httpx.Client(base_url=shop.base_url, timeout=30) as client:
            barrier.wait()
            pages[choice] = client.post(choice_path(link_id, choice))

    threads = [threading.Thread(target=confirm, args=(c,)) for c in ("wait", "cancel_short")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then one choice is recorded, and the other confirmation names it
    [decision] = audited(shop, "order.customer_choice")
    chosen = decision.data["choice"]
    other = "cancel_short" if chosen == "wait" else "wait"
    label = {"wait": "wait and ship everything together",
             "cancel_short": "cancel the missing quantities"}[chosen]
    assert pages[chosen].status_code == 200 and f"We will {label} for order {number}" \
        in pages[chosen].text
    assert pages[other].status_code == 200
    assert f"Your choice is already recorded: {label}." in pages[other].text
    with shop.db.read_session() as s:
        assert s.get(CustomerLink, link_id).choice == chosen


@pytest.mark.parametrize("resolution", ["restocked", "rep_waited"])
def test_a_choice_after_staff_resolved_the_backorder_changes_nothing(shop, web,
                                                                     resolution) -> None:
    # given a backordered order (6 of 10 reserved) that staff resolved before the customer
    # chose: the stock came in, or the rep decided in Slack to wait for it
    from workflows import fulfilment

    number, link_id = short_order(shop)
    with shop.db.transaction() as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        if resolution == "restocked":
            product = f.product(s, "WID-1", price="100.00", on_hand=10)
            fulfilment.reserve_backorders(s, product.id, "system", now=NOW)
        else:
            fulfilment.wait_for_stock(s, order=order, actor="USALES01", now=NOW)
        before = s.exec(select(AuditEvent).order_by(AuditEvent.id.desc())).first().id
    # when the customer follows a link of the e-mail, and confirms anyway
    shown = web.get(choice_path(link_id, "cancel_short"))
    done = web.post(choice_path(link_id, "cancel_short"))
    # then a clear page each time, and nothing changed
    assert "Confirm" not in shown.text and "Nothing was changed" in done.text
    with shop.db.read_session() as s:
        assert s.get(CustomerLink, link_id).used_at is None
        after = [(e.action, e.reason) for e in s.exec(select(AuditEvent).where(
            AuditEvent.id > before).order_by(AuditEvent.id))]
        status = s.exec(select(Order).where(Order.number == number)).one().status
    if resolution == "rep_waited":  # the rep's decision came first: it stands
        decided = (f"The backorder of order {number} was already decided: your sales "
                   "contact decided to wait and ship everything together.")
        for page in (shown, done):
            assert page.status_code == 200 and decided in page.text
        assert status == "backordered"
        assert after == [
            ("customer.link_access", "backorder choice page (cancel_short)"),
            ("customer.link_access", "backorder choice (cancel_short)"),
            ("refused.order.customer_choice", "already decided: your sales contact decided "
                                              "to wait and ship everything together")]
        return
    assert shown.status_code == 200 and "Nothing to choose any more" in shown.text
    assert done.status_code == 409
    assert "nothing on it is short of stock any more" in done.text
    # (each access is in the log, the refused confirmation too)
    assert after == [
        ("customer.link_access", "backorder choice page (cancel_short)"),
        ("customer.link_access", f"backorder choice (cancel_short): refused: order "
                                 f"{number} is {status} and nothing on it is short of "
                                 "stock any more; there is nothing to choose")]
