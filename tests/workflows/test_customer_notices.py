"""The customer in the loop (issue 19), workflow level: order, backorder, shipment and delivery
notices (to the notice contact, once, in the order's history, informational ones skipped for a
customer who wants essential notices only); carrier events on shipments (delivery with proof,
an exception alerting the rep, delivered is final); goods recognised at delivery under the
customer's terms; the backorder choice through the customer's link, once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from blocks.lookup import order_card
from bot.customer_links import CustomerLinks, LinkSigner
from bot.mailer import render_email
from models import (
    AuditEvent,
    Customer,
    CustomerLink,
    OrderStatus,
    OutboxMessage,
    OutboxStatus,
    Shipment,
)
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import (
    customer_links,
    customer_notices,
    invariants,
    outbox,
    queries,
    revenue,
    shipping,
)
from workflows import shipment_tracking as tracking
from workflows.errors import PermissionDenied, ValidationFailed
from workflows.inputs import CustomerIn, ShipmentEventIn, ShipmentLineIn
from workflows.orders import order_lines

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SHIPPED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
SECRET = "s" * 40


def company(session: Session, *, on_hand: int = 10, **customer: object) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCOLL01", "collector")
    f.customer(session, sales_rep="USALES01")
    if customer:
        from workflows import masterdata

        masterdata.upsert_customer(session, CustomerIn(
            external_id="C-GLOBEX", name="Globex Corporation", currency="USD",
            credit_limit="50000.00", payment_terms="NET30", **customer), actor="test")
    f.product(session, "WID-1", price="100.00", on_hand=on_hand)


def emails(session: Session) -> list[OutboxMessage]:
    return [m for m in session.exec(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.transport == "email" and m.payload["template"].startswith("notice_")]


def ship(session: Session, number: str, qty: int | None = None, *, carrier: str = "UPS",
         tracking_number: str = "1Z999AA1") -> Shipment:
    return shipping.ship_order(session, order_number=number, carrier=carrier,
                               tracking_number=tracking_number, shipped_at=SHIPPED_AT,
                               lines=[ShipmentLineIn(sku="WID-1", quantity=qty)] if qty else None,
                               actor="api", now=NOW)


def event(session: Session, shipment: Shipment, kind: str, *, at: datetime | None = None,
          **extra: object):
    return tracking.record_event(session, shipment_id=shipment.id, data=ShipmentEventIn(
        kind=kind, occurred_at=at or NOW + timedelta(days=1), **extra), actor="api", now=NOW)


def render(message: OutboxMessage, links: CustomerLinks | None = None) -> tuple[str, str]:
    return render_email(message.payload["template"], message.payload["context"],
                        from_email="billing@example.com", customer_links=links)


# -- notices -------------------------------------------------------------------------------------

def test_an_approved_order_is_confirmed_to_the_notice_contact_once(session) -> None:
    # given a customer whose order notices go to purchasing, not to accounts payable
    company(session, notice_email="purchasing@globex.example")
    # when an order is approved
    order = f.order(session, lines=[("WID-1", 2)])
    # then one confirmation went to purchasing, listing the order
    [confirmation] = emails(session)
    assert confirmation.payload["to"] == "purchasing@globex.example"
    assert confirmation.dedupe_key == f"customer-notice:order_confirmation:{order.id}"
    subject, body = render(confirmation)
    assert subject == f"Order {order.number} confirmed"
    assert "2 x WID-1" in body and "USD 200.00" in body
    # and asking again queues nothing more
    customer_notices.order_confirmed(session, order=order, lines=[], short=[], now=NOW)
    assert len(emails(session)) == 1
    assert invariants.validate_all(session) == []


def test_a_backorder_notice_carries_signed_choice_links_that_expire(session) -> None:
    # given a customer and too little stock
    company(session, on_hand=6)
    # when an order of 10 is approved
    order = f.order(session, lines=[("WID-1", 10)])
    # then the customer gets a confirmation and a backorder notice with three signed links
    assert order.status == OrderStatus.BACKORDERED
    confirmation, notice = emails(session)
    assert notice.payload["template"] == "notice_backorder_notice"
    link = session.get(CustomerLink, notice.payload["context"]["link_id"])
    assert (link.scope, link.order_id, link.expires_at) == ("backorder", order.id,
                                                             NOW + timedelta(days=14))
    links = CustomerLinks(public_url="https://o2c.example.com", signer=LinkSigner([SECRET]))
    subject, body = render(notice, links)
    assert "backorder" in subject
    assert "WID-1: 4 of 10 not in stock yet (6 ready to ship)" in body
    token = links.signer.token("backorder", link.id)
    for choice in ("ship_now", "wait", "cancel_short"):
        assert f"https://o2c.example.com/c/backorder/{token}/{choice}" in body
    assert "04 Dec 2026" in body  # until when the links work
    # and without link secrets the notice asks for a reply instead
    assert "reply to this e-mail" in render(notice)[1]


def test_shipment_and_delivery_notices_carry_the_carriers_tracking_link(session) -> None:
    # given an approved order
    company(session)
    order = f.order(session, lines=[("WID-1", 2)])
    # when it ships with UPS and is delivered, signed for
    shipment = ship(session, order.number)
    event(session, shipment, "delivered", pod_signed_by="J. Doe")
    # then the customer got a shipment notice and a delivery confirmation, with UPS's link
    _, shipped, delivered = emails(session)
    subject, body = render(shipped)
    assert subject == f"Order {order.number} has shipped (UPS 1Z999AA1)"
    assert "https://www.ups.com/track?tracknum=1Z999AA1" in body
    subject, body = render(delivered)
    assert subject == f"Order {order.number} delivered"
    assert "signed for by J. Doe" in body and "21 Nov 2026" in body


def test_tracking_url_templates_are_configurable_per_carrier_and_quote_the_number() -> None:
    # given a template for a regional carrier
    links = CustomerLinks(public_url=None, signer=None, tracking={
        "acme": "https://track.acme.example/?n={tracking}"})
    # then its links are built from it, the number quoted; an unknown carrier has none
    assert links.tracking_url("ACME ", "A 1/2") == "https://track.acme.example/?n=A%201%2F2"
    assert links.tracking_url("UPS", "1Z1") == "https://www.ups.com/track?tracknum=1Z1"
    assert links.tracking_url("Pigeon post", "1") is None


def test_a_customer_wanting_essential_notices_only_gets_no_shipment_notices(session) -> None:
    # given a customer who asked for essential notices only
    company(session, notices="essential")
    order = f.order(session, lines=[("WID-1", 2)])
    # when the order ships and is delivered
    shipment = ship(session, order.number)
    event(session, shipment, "delivered")
    # then only the confirmation went, and the order's history says what was skipped
    assert [m.payload["template"] for m in emails(session)] == ["notice_order_confirmation"]
    assert [(n["kind"], n["sent"]) for n in customer_notices.history(session, order.id)] == [
        ("order_confirmation", True), ("shipment_notice", False), ("delivery_notice", False)]


def test_the_order_card_shows_what_the_customer_was_told(session) -> None:
    # given a shipped order of a customer without any e-mail address for notices
    company(session, billing_email=None)
    order = f.order(session, lines=[("WID-1", 2)])
    ship(session, order.number)
    # when the rep looks it up
    view = queries.order_view(session, order.number)
    text = str(order_card(view))
    # then the card lists each notice and why it was not sent
    assert "Customer notices" in text
    assert "order confirmation: not sent (no e-mail address for order notices)" in text
    assert "UPS `1Z999AA1` · shipped" in text
    assert emails(session) == []


# -- carrier events ------------------------------------------------------------------------------

def test_a_delivery_exception_alerts_the_rep_and_delivered_is_final(session) -> None:
    # given a shipped order
    company(session)
    order = f.order(session, lines=[("WID-1", 2)])
    shipment = ship(session, order.number)
    # when the carrier reports it in transit, then an exception
    event(session, shipment, "in_transit", location="Memphis, TN")
    event(session, shipment, "exception", note="address not found <!channel>")
    # then the rep is alerted in Slack, once per event
    [alert] = [m for m in session.exec(select(OutboxMessage))
               if m.dedupe_key and m.dedupe_key.startswith("shipment-exception:")]
    assert alert.payload["channel"] == "USALES01"
    assert "address not found" in alert.payload["context"]["text"]
    assert shipment.status == "exception"
    # when it is delivered with proof, then a late "in transit" is recorded but moves nothing
    event(session, shipment, "delivered", pod_signed_by="J. Doe",
          pod_document_url="https://carrier.example/pod/1.pdf")
    event(session, shipment, "in_transit", at=NOW + timedelta(days=2))
    assert (shipment.status, shipment.delivered_at, shipment.pod_signed_by) == (
        "delivered", NOW + timedelta(days=1), "J. Doe")
    assert len(tracking.events_of(session, [shipment.id])) == 4
    history = session.exec(select(AuditEvent).where(
        AuditEvent.action == "order.shipment_event").order_by(AuditEvent.id)).all()
    assert [e.to_state for e in history] == ["in_transit", "exception", "delivered",
                                             "delivered"]


def test_proof_of_delivery_goes_with_delivered_only_and_not_before_shipping(session) -> None:
    company(session)
    order = f.order(session, lines=[("WID-1", 2)])
    shipment = ship(session, order.number)
    with pytest.raises(ValidationFailed) as refused:
        event(session, shipment, "in_transit", pod_signed_by="J. Doe")
    assert refused.value.errors[0].field == "pod_signed_by"
    with pytest.raises(ValidationFailed) as refused:
        event(session, shipment, "delivered", at=SHIPPED_AT - timedelta(hours=1))
    assert refused.value.errors[0].field == "occurred_at"


def test_goods_are_recognised_at_delivery_when_the_customers_terms_say_so(session) -> None:
    # given a customer whose terms recognise goods at delivery, and one shipment in transit
    company(session, goods_recognized_at="delivery")
    order = f.order(session, lines=[("WID-1", 2)])
    shipment = ship(session, order.number)
    assert shipment.recognize_at_delivery

    def recognised(day: date) -> int:
        return sum(fig.recognized for _, fig in revenue.line_positions(session, day).values())

    # then nothing is recognised at shipment; all of it on the day of delivery
    assert recognised(date(2026, 11, 30)) == 0
    event(session, shipment, "delivered", at=datetime(2026, 12, 2, 9, tzinfo=UTC))
    assert recognised(date(2026, 12, 1)) == 0
    assert recognised(date(2026, 12, 2)) == 20000
    assert invariants.validate_all(session) == []


# -- the customer's backorder choice -------------------------------------------------------------

def backordered(session: Session) -> tuple:
    company(session, on_hand=6)
    order = f.order(session, lines=[("WID-1", 10)])
    link = customer_links.backorder_link(session, order=order, now=NOW)
    return order, link


def test_the_customers_choice_is_recorded_once_and_told_to_rep_and_billing(session) -> None:
    # given a backordered order and its link
    order, link = backordered(session)
    # when the customer chooses to cancel the short quantity, then clicks "wait" too
    assert customer_links.choose_backorder(session, link_id=link.id, choice="cancel_short",
                                           now=NOW) == "ok"
    assert customer_links.choose_backorder(session, link_id=link.id, choice="wait",
                                           now=NOW) == "used"
    # then the short 4 are cancelled once, the order goes back to approved
    assert order.status == OrderStatus.APPROVED
    assert queries.order_view(session, order.number).customer_choice == "cancel_short"
    slack = [m.payload for m in session.exec(select(OutboxMessage).order_by(OutboxMessage.id))
             if m.transport == "slack"]
    billing = [p for p in slack if p.get("channel") == "ar" and p["context"].get("choice")]
    assert [p["context"]["by"] for p in billing] == ["customer"]
    rep = [p for p in slack if p.get("channel") == "USALES01" and "customer chose" in
           " ".join(p["context"].get("reasons") or [])]
    assert len(rep) == 1
    assert invariants.validate_all(session) == []


def test_an_expired_or_revoked_link_changes_nothing(session) -> None:
    order, link = backordered(session)
    later = link.expires_at + timedelta(seconds=1)
    assert customer_links.choose_backorder(session, link_id=link.id, choice="wait",
                                           now=later) == "expired"
    assert customer_links.check(session, 999, scope="backorder", now=NOW).status == "unknown"
    assert customer_links.check(session, link.id, scope="portal", now=NOW).status == "unknown"
    customer = session.get(__import__("models").Customer, order.customer_id)
    with pytest.raises(PermissionDenied):
        customer_links.revoke(session, customer=customer, actor="USALES01", now=NOW)
    assert customer_links.revoke(session, customer=customer, actor="UCOLL01", now=NOW) == 1
    assert customer_links.choose_backorder(session, link_id=link.id, choice="wait",
                                           now=NOW) == "revoked"
    assert order.status == OrderStatus.BACKORDERED


def test_the_rep_can_still_override_the_customers_choice_with_a_reason(session) -> None:
    # given the customer chose to wait
    from workflows import fulfilment

    order, link = backordered(session)
    customer_links.choose_backorder(session, link_id=link.id, choice="wait", now=NOW)
    # when the rep chooses otherwise without a reason (the DM's buttons), it is refused
    with pytest.raises(ValidationFailed) as refused:
        fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                               reason="short of stock", now=NOW)
    assert "/o2c backorder" in refused.value.errors[0].detail
    assert order.status == OrderStatus.BACKORDERED
    # when they override with a reason
    done = fulfilment.override(session, order=order, choice="cancel", actor="USALES01",
                               reason="customer called: cancel after all", now=NOW)
    # then the short quantity is cancelled, and the override is in the order's history
    # next to the customer's choice, with the reason
    assert done == "cancelled 4 × WID-1" and order.status == OrderStatus.APPROVED
    [override] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "order.backorder_override")).all()
    assert (override.actor, override.reason, override.data["customer_choice"]) == (
        "USALES01", "customer called: cancel after all", "wait")
    # and someone else's rep may not override at all
    f.user(session, "USALES02", "sales")
    other, other_link = backordered_again(session)
    customer_links.choose_backorder(session, link_id=other_link.id, choice="wait", now=NOW)
    with pytest.raises(PermissionDenied):
        fulfilment.override(session, order=other, choice="ship", actor="USALES02",
                            reason="mine now", now=NOW)


@pytest.mark.parametrize("rep", ["wait", "cancel_line"])
def test_once_the_rep_decided_the_customers_link_changes_nothing(session, rep) -> None:
    # given the rep decided the backorder in Slack: wait, or cancel the missing 4
    from workflows import fulfilment

    order, link = backordered(session)
    if rep == "wait":
        fulfilment.wait_for_stock(session, order=order, actor="USALES01", now=NOW)
    else:
        fulfilment.cancel_line(session, order=order, line_no=1, actor="USALES01",
                               reason="customer phoned", now=NOW)
    status, cancelled = order.status, [li.qty_cancelled for li in order_lines(session,
                                                                               order.id)]
    outbox_rows = len(session.exec(select(OutboxMessage)).all())
    # when the customer then follows their link and asks for something else
    later = NOW + timedelta(hours=1)
    result = customer_links.choose_backorder(session, link_id=link.id, choice="ship_now",
                                             now=later)
    # then it was already decided (and the link says what), and nothing changed
    assert result == "decided"
    assert customer_links.check(session, link.id, scope="backorder", now=later).status \
        == "decided"
    said = {"wait": "your sales contact decided to wait and ship everything together",
            "cancel_line": "your sales contact decided to cancel the missing quantities"}[rep]
    assert customer_links.decision_text(session, link) == said
    session.refresh(link)
    assert (link.used_at, link.choice) == (None, None)
    assert (order.status, [li.qty_cancelled for li in order_lines(session, order.id)]) == (
        status, cancelled)
    assert len(session.exec(select(OutboxMessage)).all()) == outbox_rows  # nobody told again
    assert queries.order_view(session, order.number).customer_choice is None
    # and the attempt is audited as refused
    [refused] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "refused.order.customer_choice")).all()
    assert (refused.actor, refused.reason, refused.data["choice"]) == (
        f"link:{link.id}", f"already decided: {said}", "ship_now")
    assert session.exec(select(AuditEvent).where(
        AuditEvent.action == "order.customer_choice")).all() == []
    assert invariants.validate_all(session) == []


def test_a_second_customer_choice_is_audited_as_refused(session) -> None:
    order, link = backordered(session)
    customer_links.choose_backorder(session, link_id=link.id, choice="cancel_short", now=NOW)
    assert customer_links.choose_backorder(session, link_id=link.id, choice="ship_now",
                                           now=NOW) == "used"
    [refused] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "refused.order.customer_choice")).all()
    assert refused.reason == "already decided: you chose to cancel the missing quantities"


# -- a revoked page link is never e-mailed -----------------------------------------------------

def test_the_links_e_mails_say_until_when_they_work_by_the_books_day(session) -> None:
    from workflows import policy

    # given books in Los Angeles, and too little stock
    company(session, on_hand=6)
    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")
    evening = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 19:00 on 19 Nov there
    # when an order is backordered and the customer's page is sent, that evening there
    f.order(session, lines=[("WID-1", 10)], now=evening)
    link, _ = customer_links.send_portal_link(session, customer=session.exec(
        select(Customer)).one(), actor="UCOLL01", now=evening)
    links = CustomerLinks(public_url="https://o2c.example.com", signer=LinkSigner([SECRET]))
    notice = next(m for m in emails(session)
                  if m.payload["template"] == "notice_backorder_notice")
    page = next(m for m in emails(session) if m.payload["template"] == "notice_page_link")
    # then the choice links work until 3 Dec (14 days: 19:00 there, 03:00 UTC on 4 Dec) and
    # the page until 19 Dec (30 days), the days in the books' zone, not UTC's
    assert "each link works once, until 03 Dec 2026" in render(notice, links)[1]
    assert "works until 19 Dec 2026" in render(page, links)[1]
    assert link.expires_at == evening + timedelta(days=30)


def test_shipment_and_delivery_e_mails_give_the_books_day_not_utc_s(session) -> None:
    from workflows import policy

    # given books in Los Angeles and an approved order
    company(session)
    policy.set_value(session, key="business_timezone", value="America/Los_Angeles",
                     actor="test")
    order = f.order(session, lines=[("WID-1", 2)])
    # when it leaves at 23:30 there on 19 Nov (07:30 UTC on the 20th) and is delivered at
    # 23:30 there on 20 Nov (07:30 UTC on the 21st)
    shipment = shipping.ship_order(session, order_number=order.number, carrier="UPS",
                                   tracking_number="1Z999AA1",
                                   shipped_at=datetime(2026, 11, 20, 7, 30, tzinfo=UTC),
                                   actor="api", now=NOW)
    event(session, shipment, "delivered", at=datetime(2026, 11, 21, 7, 30, tzinfo=UTC))
    # then the e-mails say the days there (before: 20 and 21 Nov, UTC's)
    _, shipped, delivered = emails(session)
    assert "left our warehouse on 19 Nov 2026" in render(shipped)[1]
    assert "delivered on 20 Nov 2026" in render(delivered)[1]
    assert shipped.payload["context"]["shipped_at"] == "2026-11-19T23:30:00-08:00"


def test_revoking_withdraws_the_page_link_emails_not_sent_yet(session) -> None:
    # given two page links e-mailed to the customer: one went out, one is still queued
    company(session)
    customer = session.exec(select(Customer)).one()
    sent_link, _ = customer_links.send_portal_link(session, customer=customer,
                                                   actor="UCOLL01", now=NOW)
    [sent] = page_link_emails(session)
    sent.status, sent.sent_at = OutboxStatus.SENT, NOW
    session.add(sent)
    queued_link, _ = customer_links.send_portal_link(session, customer=customer,
                                                     actor="UCOLL01", now=NOW)
    queued = page_link_emails(session)[1]
    # when the collector revokes the customer's links
    assert customer_links.revoke(session, customer=customer, actor="UCOLL01", now=NOW) == 2
    # then the queued e-mail is withdrawn, with its reason, and audited; the sent one stays
    session.refresh(queued)
    session.refresh(sent)
    assert (queued.status, queued.last_error) == (
        OutboxStatus.WITHDRAWN, "withdrawn: its link was revoked before it was sent")
    assert sent.status == OutboxStatus.SENT
    [audited] = session.exec(select(AuditEvent).where(
        AuditEvent.action == "customer.link_email_withdrawn")).all()
    assert (audited.entity_id, audited.actor, audited.data["link_id"]) == (
        str(queued.id), "UCOLL01", queued_link.id)
    # (nothing is left for the worker to send)
    assert queued.id not in [m.id for m in outbox.queued(session)]


def page_link_emails(session: Session) -> list[OutboxMessage]:
    return [m for m in session.exec(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.transport == "email" and m.payload["template"] == "notice_page_link"]


def backordered_again(session: Session) -> tuple:
    from workflows import masterdata
    from workflows.inputs import ProductIn

    masterdata.upsert_product(session, ProductIn(sku="WID-1", name="Widget WID-1",
                                                 unit_price="100.00", currency="USD",
                                                 on_hand=6), actor="test")
    order = f.order(session, lines=[("WID-1", 10)])
    return order, customer_links.backorder_link(session, order=order, now=NOW)


def test_link_tokens_are_scoped_and_verify_with_every_rotated_secret() -> None:
    old, new = LinkSigner(["o" * 40]), LinkSigner(["n" * 40, "o" * 40])
    token = old.token("portal", 7)
    assert new.verify("portal", token) == 7  # signed before the rotation, still good
    assert new.verify("backorder", token) is None  # another scope
    assert new.verify("portal", token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert new.verify("portal", "8" + token[1:]) is None
    assert LinkSigner(["n" * 40]).verify("portal", token) is None  # the old secret dropped
    assert "o" * 40 not in repr(new)
