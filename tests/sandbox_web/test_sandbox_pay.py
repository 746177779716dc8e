"""The sandbox's "Pay now": from the AR channel's copy of a queued invoice e-mail, through the
bot's pay page and the sandbox's stand-in for Stripe's payment page, to a Stripe-signed
webhook that pays the invoice; the collector sees the payment arrive in Slack."""

from __future__ import annotations

import httpx
from sqlmodel import select

from bot.demo import demo_settings
from models import Customer, Invoice, Payment, ProviderEvent
from tests.support.sandbox_web import CHANNELS
from workflows import outbox


def test_pay_now_in_the_sandbox_pays_the_invoice_through_a_signed_webhook(sandbox) -> None:  # noqa: ANN001
    db = sandbox.server.db
    # given an open invoice of the demo company whose invoice e-mail is queued (no SMTP)
    with db.transaction() as s:
        invoice = s.exec(select(Invoice).where(Invoice.balance_minor > 0)
                         .order_by(Invoice.id)).first()
        customer = s.get(Customer, invoice.customer_id)
        number, collector = invoice.number, customer.collector_id
        outbox.send_email(s, to=customer.billing_email or "ap@example.com", template="invoice",
                          context={"invoice_number": number},
                          dedupe_key=f"sandbox-pay-test:{number}")
    sandbox.server.deps.notify_outbox()
    # when the AR channel shows the e-mail's copy with its Pay now button
    copy = sandbox.wait_for(lambda: [m for m in sandbox.ws.api.messages(CHANNELS["ar"])
                                     if "queued" in m["text"] and number in m["text"]
                                     and "Pay now" in str(m["blocks"])], "the e-mail's copy")
    [url] = [e["url"] for b in copy[-1]["blocks"] if b["type"] == "actions"
             for e in b["elements"] if e.get("url")]
    token = url.rsplit("/", 1)[1]
    # and the customer opens it and pays on the sandbox's payment page
    with httpx.Client(base_url=sandbox.server.base_url, timeout=30) as browser:
        page = browser.get(url)
        assert page.status_code == 200 and number in page.text
        redirect = browser.post(url)
        assert redirect.status_code == 303
        assert redirect.headers["location"] == f"/sandbox/checkout/{token}"
        assert browser.get(redirect.headers["location"]).status_code == 200
        info = browser.get(f"/sandbox/api/checkout/{token}").json()
        assert info["invoice"] == number and info["paid"] is False
        paid = browser.post(f"/sandbox/api/checkout/{token}/pay", json={})
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "processed"
        assert browser.get(paid.json()["done_url"]).status_code == 200
        # then a second payment is refused, and the page says it is paid
        assert browser.post(f"/sandbox/api/checkout/{token}/pay", json={}).status_code == 409
        assert "is paid" in browser.get(url).text
    with db.read_session() as s:
        assert s.exec(select(Invoice).where(Invoice.number == number)).one().balance_minor == 0
        payment = s.exec(select(Payment).where(Payment.source == "stripe")).one()
        assert payment.external_id.startswith("stripe:pi_sandbox_")
        assert s.exec(select(ProviderEvent)).one().status == "processed"
    # and the collector sees the payment arrive in Slack
    sandbox.wait_for(lambda: [m for m in sandbox.ws.api.dm_messages(collector)
                              if "through Stripe" in m["text"]], "the collector's DM")
    sandbox.wait_for(lambda: [m for m in sandbox.ws.api.messages(CHANNELS["ar"])
                              if "through Stripe" in m["text"]], "the AR post")


def test_the_demo_has_a_webhook_secret_and_no_provider_keys(tmp_path) -> None:  # noqa: ANN001
    settings = demo_settings(3999, f"sqlite:///{tmp_path / 'demo.db'}")
    assert (settings.secret("stripe_webhook_secret") or "").startswith("whsec_")
    assert settings.stripe_api_key is None and not settings.stripe_enabled
    assert settings.hubspot_access_token is None
