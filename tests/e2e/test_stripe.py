"""Stripe through the real server: "Pay now" in the invoice e-mail and on the invoice card, the
link's page and its Checkout Session (Stripe's API mocked at the HTTP layer with `responses`:
the `stripe` library sends with `requests`), the signed webhook, fees, a session replaced when
the balance changes, refusals, and nothing at all without the keys."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest
import responses
import time_machine
from sqlmodel import select

from models import (
    Invoice,
    OutboxMessage,
    Payment,
    PaymentFee,
    PaymentLink,
    ProviderEvent,
    WriteOff,
)
from sandbox.driver import SlackDriver
from tests.conftest import API_TOKEN, SIGNING_SECRET, free_port, start_server, test_settings
from tests.support import factories as f
from tests.support import stripe_payloads as sp
from tests.support.processes import ServeProcess, o2c_env
from tests.support.slack import ask, text_of

# the pages and webhooks are asked with a generous timeout: three CI lanes share two CPUs, and a
# server thread of this process once took over httpx's default 5 s to answer a page
web = httpx.Client(timeout=30)
PAY_SECRETS = ["the-pay-link-secret-of-the-stripe-tests-0123456789"]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/pay/[A-Za-z0-9_-]+)")


@pytest.fixture
def stripe_server(database_url, standin, smtp) -> Iterator:
    port = free_port()
    settings = test_settings(database_url, standin.api_url, smtp_url=smtp.url,
                             stripe_api_key=sp.API_KEY, stripe_webhook_secret=sp.WEBHOOK_SECRET,
                             o2c_public_url=f"http://127.0.0.1:{port}",
                             o2c_pay_link_secrets=",".join(PAY_SECRETS))
    running = start_server(settings, port=port)
    running.worker.poll_interval = 0.05
    running.app.state.runtime.integrations.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


@pytest.fixture
def stripe_api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def company(db) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, collector="UCOLL001", sales_rep="USALES01")
        f.product(s, price="100.00")


def invoiced(base_url: str) -> str:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    order = web.post(f"{base_url}/api/v1/orders", headers=auth, json={
        "customer": "C-GLOBEX", "sales_rep": "USALES01", "currency": "USD",
        "lines": [{"sku": "WID-1", "quantity": 2}]}, timeout=30)
    assert order.status_code == 201, order.text
    shipped = web.post(f"{base_url}/api/v1/shipments", headers=auth, json={
        "order": order.json()["number"], "carrier": "UPS", "tracking_number": "1Z",
        "shipped_at": "2026-03-02T09:00:00Z"}, timeout=30)
    assert shipped.status_code == 201, shipped.text
    return shipped.json()["invoice"]


def wait(predicate, timeout: float = 15.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def invoice_mail(smtp):
    """The invoice e-mail, whichever of the order's e-mails (confirmation, shipment notice:
    issue 19) arrive before or after it."""
    return wait(lambda: next((m for m in smtp.received() if "Invoice" in m["Subject"]), None),
                20, "the invoice e-mail")


def post_event(base_url: str, payload: dict, **sign) -> httpx.Response:
    body, headers = sp.signed(payload, **sign)
    return web.post(f"{base_url}/webhooks/stripe", content=body, headers=headers, timeout=30)


def session_answer(session_id: str, url: str, amount: int, number: str) -> dict:
    return sp.checkout_session(invoice=number, amount=amount, session_id=session_id,
                               status="open", payment_status="unpaid", url=url)


def test_pay_now_from_the_invoice_email_to_the_payment_in_slack(
        stripe_server, stripe_api, standin, smtp) -> None:
    base = stripe_server.base_url
    company(stripe_server.db)
    # given an invoice e-mailed to the customer
    number = invoiced(base)
    # (the order confirmation and shipment notice come too: issue 19)
    mail = invoice_mail(smtp)
    body = mail.get_body(preferencelist=("plain",)).get_content()
    link = LINK.search(body).group(1)
    assert f"Pay now by card: {link}" in body
    # and the invoice card in Slack carries the same link
    card = standin.api.wait_for(lambda: [m for m in standin.api.dm_messages("USALES01")
                                         if "shipped" in m["text"]], 15, "invoice card")[0]
    assert link in text_of(card)
    # and so does `/o2c invoice`, for the rep to pass on
    rep = SlackDriver(f"{base}/slack/events", SIGNING_SECRET, api=standin.api)
    looked_up = ask(rep, standin.api, "USALES01", f"invoice {number}")
    assert [e["url"] for b in looked_up["blocks"] if b["type"] == "actions"
            for e in b["elements"] if e.get("url")] == [link]
    # when the customer opens it: a page with the balance
    page = web.get(link)
    assert page.status_code == 200 and "USD 200.00" in page.text and number in page.text
    # and clicks Pay: a Checkout Session for the balance, then Stripe's page
    created = stripe_api.post(f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_1", "https://checkout.stripe.com/c/pay/cs_test_1", 20_000, number))
    answer = web.post(link)
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://checkout.stripe.com/c/pay/cs_test_1"
    sent = parse_qs(created.calls[0].request.body)
    token = link.rsplit("/", 1)[1]
    assert sent["mode"] == ["payment"] and sent["metadata[o2c_invoice]"] == [number]
    assert sent["line_items[0][price_data][unit_amount]"] == ["20000"]
    assert sent["line_items[0][price_data][currency]"] == ["usd"]
    assert sent["payment_intent_data[metadata][o2c_invoice]"] == [number]
    assert created.calls[0].request.headers["Authorization"] == f"Bearer {sp.API_KEY}"
    # and Stripe, which keeps and shows what it is sent, is never given the link's token: the
    # metadata names the link by its id, the key is built from the token's hash, and its
    # return pages carry none (Stripe's "back" finds the link by this browser's cookie)
    request = created.calls[0].request
    assert token not in request.url and token not in request.body
    assert not [h for h in request.headers.values() if token in h]
    with stripe_server.db.read_session() as s:
        row = s.exec(select(PaymentLink)).one()
    assert sent["metadata[o2c_link_id]"] == [str(row.id)]
    assert request.headers["Idempotency-Key"] == f"o2c-pay-{row.token_hash}-1"
    assert (sent["success_url"], sent["cancel_url"]) == ([f"{base}/pay/done"],
                                                         [f"{base}/pay/back"])
    assert answer.cookies.get("o2c_pay") == token
    with httpx.Client(timeout=30, cookies={"o2c_pay": token}) as browser:
        assert browser.get(f"{base}/pay/back").headers["location"] == f"/pay/{token}"
    assert "open the" in httpx.get(f"{base}/pay/back", timeout=30).text
    assert "Thank you" in web.get(f"{base}/pay/done").text
    # a second click with the same balance reuses the open session
    stripe_api.get(f"{sp.API}/v1/checkout/sessions/cs_test_1", json=session_answer(
        "cs_test_1", "https://checkout.stripe.com/c/pay/cs_test_1", 20_000, number))
    again = web.post(link)
    assert again.headers["location"] == "https://checkout.stripe.com/c/pay/cs_test_1"
    assert created.call_count == 1
    # when Stripe reports the payment (and its fee can be looked up)
    txn = sp.balance_transaction(amount=20_000, fee=610)
    charge = sp.charge(payment_intent="pi_1", amount=20_000, balance_transaction=txn)
    stripe_api.get(re.compile(rf"{sp.API}/v1/payment_intents/pi_1\b.*"), json=sp.payment_intent(
        invoice=number, amount=20_000, pi_id="pi_1", charge=charge))
    completed = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=number, amount=20_000, payment_intent="pi_1", session_id="cs_test_1"))
    assert post_event(base, completed).json() == {"received": True, "status": "processed"}
    # then the invoice is paid, the collector and AR see it in Slack, the fee is a fee
    with stripe_server.db.read_session() as s:
        paid = s.exec(select(Invoice).where(Invoice.number == number)).one()
        assert paid.balance_minor == 0
    arrived = standin.api.wait_for(lambda: [m for m in standin.api.messages("CAR000001")
                                            if "through Stripe" in m["text"]], 15, "AR post")
    assert "USD 200.00" in arrived[0]["text"]
    standin.api.wait_for(lambda: [m for m in standin.api.dm_messages("UCOLL001")
                                  if "through Stripe" in m["text"]], 15, "collector DM")

    def fee():
        with stripe_server.db.read_session() as s:
            return s.exec(select(PaymentFee)).first()
    recorded = wait(fee, what="the fee")
    assert (recorded.amount_minor, recorded.net_minor, recorded.external_id) == (
        610, 19_390, txn["id"])
    # and the link now says there is nothing to pay; a re-delivery changes nothing
    assert "is paid" in web.get(link).text
    assert post_event(base, completed).json()["status"] == "duplicate"
    with stripe_server.db.read_session() as s:
        assert len(s.exec(select(Payment)).all()) == 1


def test_a_balance_change_replaces_the_session(stripe_server, stripe_api) -> None:
    base = stripe_server.base_url
    company(stripe_server.db)
    number = invoiced(base)
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        invoice = s.exec(select(Invoice).where(Invoice.number == number)).one()
        token = payment_links.token_for(s, invoice, PAY_SECRETS)
    first = stripe_api.post(f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_A", "https://checkout.stripe.com/c/pay/cs_test_A", 20_000, number))
    assert web.post(f"{base}/pay/{token}").status_code == 303
    # when 50.00 arrives by bank transfer
    expired = stripe_api.post(f"{sp.API}/v1/checkout/sessions/cs_test_A/expire",
                              json={"id": "cs_test_A", "object": "checkout.session",
                                    "status": "expired"})
    paid = web.post(f"{base}/api/v1/payments", headers={
        "Authorization": f"Bearer {API_TOKEN}"}, json={
        "amount": "50.00", "currency": "USD", "received_at": "2026-03-03T10:00:00Z",
        "reference": number, "customer": "C-GLOBEX"}, timeout=30)
    assert paid.status_code == 201, paid.text
    stripe_server.deps.notify_outbox()
    # then the open session is expired at Stripe, and the next click pays the new balance
    wait(lambda: expired.call_count == 1, what="the session's expiry")
    stripe_api.replace(responses.POST, f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_B", "https://checkout.stripe.com/c/pay/cs_test_B", 15_000, number))
    answer = web.post(f"{base}/pay/{token}")
    assert answer.headers["location"] == "https://checkout.stripe.com/c/pay/cs_test_B"
    creates = [c.request for c in stripe_api.calls
               if c.request.method == "POST" and c.request.url.endswith("/v1/checkout/sessions")]
    assert first.call_count == 1 and len(creates) == 2
    second = parse_qs(creates[-1].body)
    assert second["line_items[0][price_data][unit_amount]"] == ["15000"]
    with stripe_server.db.read_session() as s:
        link = s.exec(select(PaymentLink)).one()
        assert (link.generation, link.session_id, link.amount_minor) == (2, "cs_test_B", 15_000)
    assert creates[-1].headers["Idempotency-Key"] == f"o2c-pay-{link.token_hash}-2"


def test_a_pay_link_with_a_nul_is_no_link(stripe_server) -> None:
    # (PostgreSQL refuses a NUL in text: the lookup was a 500, to anyone, without a login)
    base = stripe_server.base_url
    answers = [web.get(f"{base}/pay/abc%00def"), web.post(f"{base}/pay/abc%00def")]
    assert [a.status_code for a in answers] == [404, 404]


def test_while_the_database_is_down_the_pay_page_answers_a_503_page(stripe_server) -> None:
    from bot.db import Database

    # given a Pay now link
    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        f.customer(s)
        token = payment_links.token_for(s, f.invoice(s, "INV-2026-000001", total="200.00"),
                                        PAY_SECRETS)
    # when the database is unreachable (restarting) while the customer follows it
    working = stripe_server.deps.db
    stripe_server.deps.db = Database("sqlite:////nonexistent-o2c-dir/o2c.db" if working.is_sqlite
                                     else "postgresql://o2c@127.0.0.1:9/o2c")
    try:
        answers = [web.get(f"{base}/pay/{token}"), web.post(f"{base}/pay/{token}")]
    finally:
        stripe_server.deps.db.dispose()
        stripe_server.deps.db = working
    # then each is a page saying to come back (not the API's JSON problem), kept private
    for page in answers:
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"].isdigit()
        assert page.headers["cache-control"] == "no-store"
        assert "temporarily unavailable" in page.text and "Nothing was changed" in page.text


def test_a_balance_no_card_can_pay_gets_a_clear_page_not_try_again(
        stripe_server, stripe_api) -> None:
    # given an invoice whose balance Stripe refuses (its minimum), and one in KWD no card can
    # pay (three-decimal amounts go to Stripe only with a last digit of 0)
    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        f.customer(s)
        f.customer(s, "C-KUWAIT", "Kuwait Trading", currency="KWD", credit_limit="50000")
        small = f.invoice(s, "INV-2026-000001", total="0.30")
        kwd = f.invoice(s, "INV-2026-000002", "C-KUWAIT", total="12.345", currency="KWD")
        small_token = payment_links.token_for(s, small, PAY_SECRETS)
        kwd_token = payment_links.token_for(s, kwd, PAY_SECRETS)
    created = stripe_api.post(f"{sp.API}/v1/checkout/sessions", status=400, json={"error": {
        "type": "invalid_request_error", "code": "amount_too_small",
        "param": "line_items[0][price_data][unit_amount]",
        "message": "The Checkout Session's total amount due must add up to at least $0.50 usd"}})
    # when the customer clicks Pay
    answer = web.post(f"{base}/pay/{small_token}")
    # then they are told it cannot be paid by card (not "try again in a few minutes")
    assert answer.status_code == 422 and created.call_count == 1
    assert "USD 0.30 is below the smallest amount a card payment can be" in answer.text
    assert "bank transfer" in answer.text and "try again" not in answer.text
    # and the KWD balance says so on its page, with no Pay button, and its Pay asks nothing
    page = web.get(f"{base}/pay/{kwd_token}")
    assert page.status_code == 422 and "<form" not in page.text
    assert "KWD 12.345 cannot be paid by card" in page.text
    refused = web.post(f"{base}/pay/{kwd_token}")
    assert refused.status_code == 422 and "bank transfer" in refused.text
    assert created.call_count == 1


@pytest.mark.parametrize("refusal", [
    (500, {"type": "api_error", "message": "An unknown error occurred"}),
    # the key used before with other parameters (the customer's e-mail address changed since
    # the click whose session was made but not stored): refused for 24 hours
    (400, {"type": "idempotency_error", "message": "Keys for idempotent requests can only be "
           "used with the same parameters they were first used with."})])
def test_a_stripe_server_error_is_not_replayed_to_the_next_click(
        stripe_server, stripe_api, refusal) -> None:
    # Stripe saves a 500 under its idempotency key and answers it again to every request with
    # that key for 24 hours: retrying the same generation kept the link broken for a day
    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        f.customer(s)
        invoice = f.invoice(s, "INV-2026-000001", total="200.00")
        token = payment_links.token_for(s, invoice, PAY_SECRETS)
    failed = stripe_api.post(f"{sp.API}/v1/checkout/sessions", status=refusal[0],
                             json={"error": refusal[1]})
    # when the first click meets Stripe's refusal
    answer = web.post(f"{base}/pay/{token}")
    assert answer.status_code == 502 and "try again" in answer.text
    # then the next click asks Stripe under a new key (the failed one's session, if any, was
    # never handed to anyone: it has no URL anyone knows), and opens the checkout
    stripe_api.replace(responses.POST, f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_2", "https://checkout.stripe.com/c/pay/cs_test_2", 20_000, invoice.number))
    again = web.post(f"{base}/pay/{token}")
    assert again.headers["location"] == "https://checkout.stripe.com/c/pay/cs_test_2"
    keys = [c.request.headers["Idempotency-Key"] for c in stripe_api.calls
            if c.request.url.endswith("/v1/checkout/sessions")]
    with stripe_server.db.read_session() as s:
        link = s.exec(select(PaymentLink)).one()
    assert keys == [f"o2c-pay-{link.token_hash}-1", f"o2c-pay-{link.token_hash}-2"]
    assert failed.call_count == 1
    assert (link.generation, link.session_id, link.amount_minor) == (2, "cs_test_2", 20_000)


def test_the_pay_page_leaves_out_what_is_in_question(stripe_server, stripe_api) -> None:
    # given USD 1,000.00 open with 300.00 in question, and another invoice wholly in question
    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        f.customer(s)
        part = f.invoice(s, "INV-2026-000001", total="1000.00")
        whole = f.invoice(s, "INV-2026-000002", total="500.00")
        f.dispute(s, part.number, amount="300.00")
        f.dispute(s, whole.number)
        part_token = payment_links.token_for(s, part, PAY_SECRETS)
        whole_token = payment_links.token_for(s, whole, PAY_SECRETS)
    created = stripe_api.post(f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_1", "https://checkout.stripe.com/c/pay/cs_test_1", 70_000, part.number))
    # then the page asks for 700.00 and says why, and Pay opens a checkout for 700.00
    page = web.get(f"{base}/pay/{part_token}")
    assert "Pay USD 700.00 now" in page.text and "USD 300.00 (left out" in page.text
    assert "USD 1,000.00" not in page.text
    assert web.post(f"{base}/pay/{part_token}").status_code == 303
    sent = parse_qs(created.calls[0].request.body)
    assert sent["line_items[0][price_data][unit_amount]"] == ["70000"]
    # and the invoice wholly in question has nothing to pay through its link
    for answer in (web.get(f"{base}/pay/{whole_token}"),
                   web.post(f"{base}/pay/{whole_token}")):
        assert answer.status_code == 200 and "is in question" in answer.text
        assert "<form" not in answer.text
    assert created.call_count == 1


def test_the_pay_page_gives_the_early_payment_discount_of_the_terms(
        stripe_server, stripe_api) -> None:
    # given USD 1,000.00 on 2/10 NET30 issued three days ago: paid now, it is 980.00
    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        from workflows import payment_links

        f.customer(s)
        issued = stripe_server.deps.clock.now().date() - timedelta(days=3)
        invoice = f.invoice(s, "INV-2026-000001", total="1000.00", issued=issued,
                            due=issued + timedelta(days=30), terms="2/10 NET30")
        token = payment_links.token_for(s, invoice, PAY_SECRETS)
    created = stripe_api.post(f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_1", "https://checkout.stripe.com/c/pay/cs_test_1", 98_000, invoice.number))
    # then the page asks for 980.00 and names the discount, and Pay asks Stripe for 980.00
    page = web.get(f"{base}/pay/{token}")
    assert "Pay USD 980.00 now" in page.text and "USD 20.00 (2/10 NET30" in page.text
    assert web.post(f"{base}/pay/{token}").status_code == 303
    sent = parse_qs(created.calls[0].request.body)
    assert sent["line_items[0][price_data][unit_amount]"] == ["98000"]
    # when Stripe reports the 980.00 paid: the invoice is paid, the 20.00 the discount
    completed = sp.event("checkout.session.completed", sp.checkout_session(
        invoice=invoice.number, amount=98_000, payment_intent="pi_1", session_id="cs_test_1"))
    assert post_event(base, completed).json() == {"received": True, "status": "processed"}
    with stripe_server.db.read_session() as s:
        assert s.exec(select(Invoice)).one().balance_minor == 0
        [write_off] = s.exec(select(WriteOff)).all()
        assert (write_off.amount_minor, write_off.reason) == (2_000, "early_payment_discount")
    assert "is paid" in web.get(f"{base}/pay/{token}").text


def test_the_pay_page_offers_the_discount_until_the_end_of_the_books_day(
        stripe_server, stripe_api) -> None:
    # given books in Los Angeles and USD 1,000.00 on 2/10 NET30 issued 1 Nov: "Pay USD 980.00
    # by 11 Nov"
    from workflows import payment_links, policy

    base = stripe_server.base_url
    with stripe_server.db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="America/Los_Angeles", actor="test")
        f.customer(s)
        invoice = f.invoice(s, "INV-2026-000001", total="1000.00", issued=date(2026, 11, 1),
                            due=date(2026, 12, 1), terms="2/10 NET30")
        token = payment_links.token_for(s, invoice, PAY_SECRETS)
    created = stripe_api.post(f"{sp.API}/v1/checkout/sessions", json=session_answer(
        "cs_test_day", "https://checkout.stripe.com/c/pay/cs_test_day", 98_000, invoice.number))
    # when the customer opens the page and pays on 11 Nov at 17:00 there (12 Nov in UTC)
    with time_machine.travel(datetime(2026, 11, 12, 1, 0, tzinfo=UTC), tick=False):
        page = web.get(f"{base}/pay/{token}")
        assert web.post(f"{base}/pay/{token}").status_code == 303
    # then the page offers the discount and Stripe is asked for 980.00
    assert "Pay USD 980.00 now" in page.text and "USD 20.00 (2/10 NET30" in page.text
    assert parse_qs(created.calls[0].request.body)[
        "line_items[0][price_data][unit_amount]"] == ["98000"]
    # and the same page on 12 Nov 08:00 in Tokyo's books (11 Nov in UTC) asks for 1,000.00
    with stripe_server.db.transaction() as s:
        policy.set_value(s, key="business_timezone", value="Asia/Tokyo", actor="test")
    with time_machine.travel(datetime(2026, 11, 11, 23, 0, tzinfo=UTC), tick=False):
        page = web.get(f"{base}/pay/{token}")
    assert "Pay USD 1,000.00 now" in page.text and "Early-payment discount" not in page.text


def test_bad_signatures_and_stale_events_store_nothing(stripe_server) -> None:
    base = stripe_server.base_url
    event = sp.event("payment_intent.succeeded", sp.payment_intent(invoice="INV-1",
                                                                   amount=100))
    body, headers = sp.signed(event)
    good = headers["Stripe-Signature"]
    off = good[:-1] + ("1" if good[-1] == "0" else "0")  # one digit off, never the same
    cases = [
        {**headers, "Stripe-Signature": off},
        {**headers, "Stripe-Signature": sp.signed(event, secret="whsec_other")[1][
            "Stripe-Signature"]},
        {"Content-Type": "application/json"},
        sp.signed(event, timestamp=sp.now_ts() - 301)[1],
    ]
    for case in cases:
        answer = web.post(f"{base}/webhooks/stripe", content=body, headers=case)
        assert answer.status_code == 400, answer.text
    garbage = web.post(f"{base}/webhooks/stripe", content=b"\xff\xfe",
                         headers={"Stripe-Signature": "t=1,v1=00"})
    assert garbage.status_code == 400
    unknown = post_event(base, sp.event("customer.created", {"id": "cus_1"}))
    assert unknown.json() == {"received": True, "status": "ignored"}
    with stripe_server.db.read_session() as s:
        assert [e.type for e in s.exec(select(ProviderEvent))] == ["customer.created"]
    # a signed event with ids longer than the columns hold: kept as failed, once, never a 500
    # that Stripe retries (PostgreSQL refused the row)
    overlong = sp.event("charge.refunded", sp.charge(payment_intent="pi_" + "x" * 300,
                                                     amount=100, charge_id="ch_" + "y" * 300),
                        event_id="evt_" + "z" * 300)
    for status in ("failed", "duplicate"):
        answer = post_event(base, overlong)
        assert answer.json() == {"received": True, "status": status}, answer.text
    with stripe_server.db.read_session() as s:
        assert [e.status for e in s.exec(select(ProviderEvent).where(
            ProviderEvent.type == "charge.refunded"))] == ["failed"]


def test_without_the_keys_nothing_changes(server, smtp, database_url, standin) -> None:
    # given the usual server (no Stripe settings) with SMTP
    server.stop()
    running = start_server(test_settings(database_url, standin.api_url, smtp_url=smtp.url))
    try:
        company(running.db)
        invoiced(running.base_url)
        mail = invoice_mail(smtp)
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "Pay now" not in body and "/pay/" not in body
        assert web.get(f"{running.base_url}/pay/whatever").status_code == 404
        assert web.post(f"{running.base_url}/webhooks/stripe", content=b"{}").status_code \
            == 404
        with running.db.read_session() as s:
            assert s.exec(select(PaymentLink)).all() == []
            assert not [m for m in s.exec(select(OutboxMessage))
                        if m.transport not in ("slack", "email")]
    finally:
        running.stop()
        running.db.dispose()


def test_two_server_processes_record_a_payment_once(database_url, standin, tmp_path) -> None:
    from bot.db import Database

    db = Database(database_url)
    with db.transaction() as s:
        f.customer(s)
        number = f.invoice(s, "INV-STRIPE-1", total="300.00").number
    env = o2c_env(database_url, standin.api_url, STRIPE_WEBHOOK_SECRET=sp.WEBHOOK_SECRET)
    servers = [ServeProcess(env, tmp_path / f"s{i}.log") for i in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:  # side by side: a start is mostly imports
            list(pool.map(ServeProcess.start, servers))  # raises if one does not come up
        session_event = sp.event("checkout.session.completed", sp.checkout_session(
            invoice=number, amount=30_000, payment_intent="pi_TWO"))
        intent_event = sp.event("payment_intent.succeeded", sp.payment_intent(
            invoice=number, amount=30_000, pi_id="pi_TWO"))
        answers: list[int] = []

        def deliver(server: ServeProcess, event: dict) -> None:
            for _ in range(3):
                answers.append(post_event(server.base_url, event).status_code)

        threads = [threading.Thread(target=deliver, args=(server, event))
                   for server in servers for event in (session_event, intent_event)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for server in servers:
            server.stop()
    assert answers == [200] * 12
    with db.read_session() as s:
        [payment] = s.exec(select(Payment)).all()
        assert payment.amount_minor == 30_000 and payment.status == "applied"
        assert s.exec(select(Invoice)).one().balance_minor == 0
        assert len(s.exec(select(ProviderEvent)).all()) == 2
    for i in range(2):
        log = (tmp_path / f"s{i}.log").read_text()
        assert "Traceback" not in log, log
    db.dispose()


def test_the_database_keeps_only_a_hash_of_the_link_and_old_links_still_open(
        stripe_server, smtp) -> None:
    import hashlib


    base = stripe_server.base_url
    company(stripe_server.db)
    # given an invoice e-mailed with its Pay now link, and one whose link was made before
    # tokens were hashed (migration 0030 hashed its random token in place)
    number = invoiced(base)
    link = LINK.search(invoice_mail(smtp).get_body(preferencelist=("plain",)).get_content()
                       ).group(1)
    token = link.rsplit("/", 1)[1]
    old_token = "pre-0030-random-token_AbCdEfGhIjKl"
    with stripe_server.db.transaction() as s:
        old = f.invoice(s, "INV-OLD-1", total="80.00", currency="USD")
        s.add(PaymentLink(invoice_id=old.id,
                          token_hash=hashlib.sha256(old_token.encode()).hexdigest()))
    # then no row holds the token, only its hash
    with stripe_server.db.read_session() as s:
        rows = [r.model_dump() for r in s.exec(select(PaymentLink)).all()]
    assert not any(token in str(value) for row in rows for value in row.values())
    assert hashlib.sha256(token.encode()).hexdigest() in [r["token_hash"] for r in rows]
    # and the link opens its invoice's page; an unknown token does not
    page = web.get(link)
    assert page.status_code == 200 and number in page.text and "200.00" in page.text
    assert web.get(f"{base}/pay/{token[:-1]}x").status_code == 404
    # and the link from before the upgrade still opens its page
    old_page = web.get(f"{base}/pay/{old_token}")
    assert old_page.status_code == 200 and "INV-OLD-1" in old_page.text
    # and every time a link is shown again it is the same URL (the invoice card)
    assert stripe_server.deps.pay_url(number) == link
    assert stripe_server.deps.pay_url(number) == link
    # the old invoice's link, shown again, gets a derived token: the same URL from then on,
    # and the URL already e-mailed keeps working
    shown = stripe_server.deps.pay_url("INV-OLD-1")
    assert shown == stripe_server.deps.pay_url("INV-OLD-1") != f"{base}/pay/{old_token}"
    assert "INV-OLD-1" in web.get(shown).text and "INV-OLD-1" in web.get(
        f"{base}/pay/{old_token}").text
    with stripe_server.db.read_session() as s:
        row = s.exec(select(PaymentLink).where(PaymentLink.invoice_id == old.id)).one()
        assert row.legacy_token_hash == hashlib.sha256(old_token.encode()).hexdigest()
        assert old_token not in str(row.model_dump())
