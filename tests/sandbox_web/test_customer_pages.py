"""Issue 19 in a real browser: the sandbox's copy of a customer e-mail (#ar, while SMTP is not
set) is the mail view, and its link buttons let you act as the customer — choose what happens
to a backorder, open the account page, ask a question about an invoice — and a tampered and an
expired link get their clear pages. Screenshots land in test-artifacts/<run>/sandbox/<test>/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from sqlmodel import select

from bot.clock import Clock
from bot.customer_links import LinkSigner
from models import AuditEvent, CustomerLink, Dispute, Order
from tests.sandbox_web.test_browser import TIMEOUT_MS, Visitor
from tests.sandbox_web.test_browser import visitor as visitor_fixture  # noqa: F401 - fixture
from tests.support import factories as f
from tests.support.demo_seed import COLLECTOR, SALES
from tests.support.sandbox_web import CHANNELS, LINK_SECRET
from workflows import shipping
from workflows.inputs import ShipmentLineIn

NAME = "Portal <b>Test</b> & Co"


@pytest.fixture
def visitor(visitor_fixture: Visitor) -> Visitor:  # noqa: F811 - the imported fixture
    """The browser of tests/sandbox_web/test_browser.py (chromium, screenshots)."""
    return visitor_fixture


def backorder(sandbox, qty: int = 3) -> tuple[str, int]:
    """An order of the test customer short of stock; its number and backorder link id."""
    with sandbox.server.db.transaction() as s:
        order = f.order(s, "C-PORTAL", rep=SALES, lines=[("PORTAL-1", qty)])
        number = order.number
        link = s.exec(select(CustomerLink).where(CustomerLink.order_id == order.id)).one()
        link_id = link.id
    sandbox.server.deps.notify_outbox()
    return number, link_id


def in_ar(sandbox, words: str, button: str) -> None:
    sandbox.wait_for(lambda: [m for m in sandbox.ws.api.messages(CHANNELS["ar"])
                              if words in m["text"] and button in str(m["blocks"])],
                     f"the e-mail copy with {button}")


def open_link(person: Visitor, words: str, button: str):
    """Click a link button on the e-mail's copy in #ar; the tab it opens."""
    person.go("# ar")
    copy = person.messages.locator("article", has_text=words).filter(
        has=person.page.get_by_role("button", name=button)).last
    with person.page.context.expect_page() as opened:
        copy.get_by_role("button", name=button).click()
    tab = opened.value
    tab.set_default_timeout(TIMEOUT_MS)
    return tab


def test_the_customer_acts_through_the_links_of_their_emails(sandbox, visitor) -> None:
    from playwright.sync_api import expect

    db = sandbox.server.db
    # given a new customer, and one unit of a product they order three of
    with db.transaction() as s:
        f.customer(s, "C-PORTAL", NAME, sales_rep=SALES, collector=COLLECTOR,
                   billing_email="ap@portal.example")
        f.product(s, "PORTAL-1", price="40.00", on_hand=1)
    number, _ = backorder(sandbox)
    in_ar(sandbox, "backorder", "Wait for the rest")

    # step: the backorder e-mail's "wait" link opens a confirmation page; confirm records it
    visitor.be(COLLECTOR)
    tab = open_link(visitor, number, "Wait for the rest")
    expect(tab.get_by_role("heading", level=1)).to_have_text(f"Order {number}: your choice")
    choice_url = tab.url
    tab.screenshot(path=str(visitor.shots / "choice-page.png"))
    tab.get_by_role("button", name=re.compile("^Confirm: Wait")).click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(tab.locator(".notice")).to_contain_text(f"for order {number}")
    tab.screenshot(path=str(visitor.shots / "choice-recorded.png"))
    # and the e-mail opened again (or forwarded) says the choice is made, changing nothing
    response = tab.goto(choice_url)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    expect(tab.get_by_role("heading", level=1)).to_have_text("Your choice is already recorded")
    # and the rep hears of it in Slack
    visitor.be(SALES)
    visitor.go("o2c-bot")
    expect(visitor.messages.locator("article", has_text="customer chose to wait").first
           ).to_be_visible()

    # step: a tampered link is not valid; an expired one says so
    head, token, choice = choice_url.rsplit("/", 2)
    tampered = f"{head}/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/{choice}"
    tab.goto(tampered)
    expect(tab.get_by_role("heading", level=1)).to_have_text("This link is not valid")
    tab.screenshot(path=str(visitor.shots / "tampered.png"))
    second, link_id = backorder(sandbox)
    token = LinkSigner([LINK_SECRET]).token("backorder", link_id)
    with time_machine.travel(Clock().now() + timedelta(days=15), tick=False):
        tab.goto(f"{sandbox.server.base_url}/c/backorder/{token}/wait")
        expect(tab.get_by_role("heading", level=1)).to_have_text("This link has expired")
    tab.screenshot(path=str(visitor.shots / "expired.png"))
    with db.read_session() as s:
        assert s.exec(select(Order).where(Order.number == second)).one().status == \
            "backordered"

    # step: what was reserved ships (the invoice is issued); the collector sends the page
    with db.transaction() as s:
        shipping.ship_order(s, order_number=number, carrier="UPS", tracking_number="1Z<i>7",
                            shipped_at=Clock().now(), actor="api", now=Clock().now(),
                            lines=[ShipmentLineIn(sku="PORTAL-1", quantity=1)])
    sandbox.server.deps.notify_outbox()
    visitor.be(COLLECTOR)
    visitor.go("o2c-bot")
    visitor.type("/o2c customer-page Portal")
    expect(visitor.messages.locator("article.ephemeral", has_text="on its way").first
           ).to_be_visible()
    in_ar(sandbox, "Your account page", "Open your account page")
    page = open_link(visitor, "Your account page", "Open your account page")
    # then the page shows the customer's orders, shipment and invoice, everything escaped
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Your account with us — {NAME}")
    expect(page.locator("#orders")).to_contain_text(second)
    expect(page.locator("#shipments")).to_contain_text("1Z<i>7")
    expect(page.locator("#shipments a")).to_have_attribute(
        "href", "https://www.ups.com/track?tracknum=1Z%3Ci%3E7")
    expect(page.locator("#invoices")).to_contain_text("INV-")
    assert page.locator("b, i").count() == 0  # no markup from the data
    page.screenshot(path=str(visitor.shots / "account-page.png"))
    # step: a question about the invoice opens a dispute
    account_url = page.url
    page.locator("#question-reason").select_option("quantity")
    page.locator("#question-note").fill("We got 1 of 3 <script>alert(1)</script>")
    page.locator("#question-send").click()
    expect(page.locator("#flash")).to_contain_text("was sent")
    page.screenshot(path=str(visitor.shots / "question-sent.png"))
    with db.read_session() as s:
        [dispute] = s.exec(select(Dispute).where(Dispute.source == "portal")).all()
        assert dispute.reason == "quantity" and "We got 1 of 3" in dispute.note
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.link_access")).all()
    # and the page link, expired, shows nothing of the account
    with time_machine.travel(Clock().now() + timedelta(days=31), tick=False):
        page.goto(account_url)
        expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired")
    expect(page.locator("body")).not_to_contain_text("Portal")
