"""The HubSpot connector through the real server: a closed-won deal (webhook, signature v3)
becomes an order with its line items, credit- and discount-checked as any other, once; the
deal follows the order (number, approval, invoice, payment), a rejected credit approval shows
on it; refusals are visible; the mapping is configuration."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from models import (
    Approval,
    CrmDeal,
    Order,
    OrderLine,
    OutboxMessage,
    ProviderEvent,
    ProviderEventStatus,
)
from tests.conftest import API_TOKEN, start_server, test_settings
from tests.support import factories as f
from tests.support import hubspot_payloads as hp
from tests.support.hubspot_standin import HubSpotStandIn
from workflows import approvals

MAPPING = {"default_sales_rep": "USALES01", "sales_rep_by_owner": {"910": "USALES02"},
           "pipelines": ["default", "enterprise"]}


@pytest.fixture
def crm() -> Iterator[HubSpotStandIn]:
    with HubSpotStandIn() as standin:
        yield standin


@pytest.fixture
def hub_server(database_url, standin, crm) -> Iterator:
    settings = test_settings(database_url, standin.api_url,
                             hubspot_access_token=hp.ACCESS_TOKEN,
                             hubspot_client_secret=hp.CLIENT_SECRET,
                             hubspot_api_url=crm.url, o2c_hubspot_mapping=MAPPING)
    running = start_server(settings)
    running.worker.poll_interval = 0.05
    running.app.state.runtime.integrations.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


def company(db, *, reviewed: bool = True) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "USALES02", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, reviewed=reviewed)
        f.product(s, "WID-1", price="100.00", max_discount="15")
        f.product(s, "GAD-2", price="50.00", max_discount="15")


def send(server, events: list[dict], **sign) -> httpx.Response:
    url = f"{server.base_url}/webhooks/hubspot"
    body, headers = hp.signed(url, events, **sign)
    return httpx.post(url, content=body, headers=headers, timeout=30)


def orders(db) -> list[Order]:
    with db.read_session() as s:
        return list(s.exec(select(Order).order_by(Order.id)))


def imported(server, crm, deal_id: str, *, event_id: int) -> Order:
    """A won deal of 1 x WID-1 for Globex, imported: its order."""
    company(server.db)
    crm.add_deal(deal_id, company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    send(server, [hp.stage_changed(deal_id, event_id=event_id)])
    [order] = crm.wait_for(lambda: orders(server.db), what="the order")
    return order


def told_ar_once(server, standin, words: str) -> dict:
    """The AR channel's message saying `words`, once every queued delivery is done."""
    [note] = standin.api.wait_for(lambda: [m for m in standin.api.messages("CAR000001")
                                           if words in m["text"]], 15, "AR")
    server.app.state.runtime.integrations.drain()
    server.worker.drain()
    assert len([m for m in standin.api.messages("CAR000001") if words in m["text"]]) == 1
    return note


def test_a_won_deal_becomes_an_order_and_the_deal_follows_it(hub_server, crm) -> None:
    company(hub_server.db)
    crm.add_deal("5001", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 2, "price": "100.00"},
                        {"sku": "GAD-2", "quantity": 1, "price": "50.00"}])
    # when HubSpot reports the deal moved to closed-won
    answer = send(hub_server, [hp.stage_changed("5001", event_id=1)])
    assert answer.status_code == 200 and answer.json() == {"received": 1, "queued": 1}
    # then an order with its lines exists, for the owner's rep, auto-approved
    [order] = crm.wait_for(lambda: orders(hub_server.db), what="the order")
    assert order.status == "approved" and order.source == "hubspot"
    assert order.sales_rep_id == "USALES02" and order.total_minor == 25_000
    assert order.external_id == "hubspot-deal-5001"
    with hub_server.db.read_session() as s:
        lines = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)
                       .order_by(OrderLine.line_no)).all()
        assert [(li.sku, li.quantity, li.discount_bp) for li in lines] == [
            ("WID-1", 2, 0), ("GAD-2", 1, 0)]
    # and the deal shows the order number and its approval
    first = crm.wait_for(lambda: crm.updates("5001"), what="the deal update")[0]
    assert first["o2c_order_number"] == order.number
    assert first["o2c_approval_status"] == "approved"
    assert first["o2c_payment_status"] == "not invoiced"
    assert crm.calls[-1].headers["authorization"] == f"Bearer {hp.ACCESS_TOKEN}"
    # when it ships (invoiced) and is paid
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    shipped = httpx.post(f"{hub_server.base_url}/api/v1/shipments", headers=auth, json={
        "order": order.number, "carrier": "UPS", "tracking_number": "1Z",
        "shipped_at": "2026-03-02T09:00:00Z"}).json()
    httpx.post(f"{hub_server.base_url}/api/v1/payments", headers=auth, json={
        "amount": "250.00", "currency": "USD", "received_at": "2026-03-03T09:00:00Z",
        "reference": shipped["invoice"], "customer": "C-GLOBEX"})
    # then the deal shows the invoice and that it is paid
    crm.wait_for(lambda: any(u.get("o2c_payment_status") == "paid"
                             for u in crm.updates("5001")), what="paid on the deal")
    last = crm.deals["5001"]["properties"]
    assert last["o2c_invoice_numbers"] == shipped["invoice"]
    assert last["o2c_order_status"] == "paid"


def test_a_rejected_credit_approval_shows_on_the_deal(hub_server, crm) -> None:
    # given a customer without a credit review: the order needs a credit approval
    company(hub_server.db, reviewed=False)
    crm.add_deal("5002", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    send(hub_server, [hp.stage_changed("5002", event_id=2)])
    [order] = crm.wait_for(lambda: orders(hub_server.db), what="the order")
    assert order.status == "pending_approval"
    crm.wait_for(lambda: any(u.get("o2c_approval_status") == "pending"
                             for u in crm.updates("5002")), what="pending on the deal")
    # when the credit approver rejects it
    with hub_server.db.transaction() as s:
        approval = s.exec(select(Approval).where(Approval.order_id == order.id)).one()
        approvals.decide(session=s, approval_id=approval.id, user_id="UCREDIT1",
                         approve=False, note="no trade references", now=hub_server.deps.clock.now())
    hub_server.deps.notify_outbox()
    # then the deal says so, and why
    crm.wait_for(lambda: any(u.get("o2c_approval_status") == "rejected"
                             for u in crm.updates("5002")), what="rejected on the deal")
    props = crm.deals["5002"]["properties"]
    assert "no trade references" in props["o2c_rejection_reason"]


def test_a_price_below_list_is_a_discount_and_is_checked(hub_server, crm) -> None:
    company(hub_server.db)
    crm.add_deal("5003", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "70.00"}])
    send(hub_server, [hp.stage_changed("5003", event_id=3)])
    [order] = crm.wait_for(lambda: orders(hub_server.db), what="the order")
    assert order.status == "pending_approval" and order.total_minor == 7_000
    with hub_server.db.read_session() as s:
        kinds = [a.kind for a in s.exec(select(Approval).where(Approval.order_id == order.id))]
        assert kinds == ["discount"]


def test_a_deal_bills_its_own_prices_and_unit_discounts(hub_server, crm) -> None:
    # given a deal selling WID-1 above its 100.00 list price, and GAD-2 (50.00) with
    # HubSpot's unit discount of 2.50 off each unit
    company(hub_server.db)
    crm.add_deal("5009", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "110.00"},
                        {"sku": "GAD-2", "quantity": 4, "price": "50", "unit_discount": "2.5"}])
    # when it is won
    send(hub_server, [hp.stage_changed("5009", event_id=9)])
    # then the order bills what the deal sold: 110.00 + 4 x 47.50
    [order] = crm.wait_for(lambda: orders(hub_server.db), what="the order")
    assert order.total_minor == 30_000 and order.status == "approved"
    with hub_server.db.read_session() as s:
        lines = s.exec(select(OrderLine).where(OrderLine.order_id == order.id)
                       .order_by(OrderLine.line_no)).all()
        assert [(li.unit_price_minor, li.line_total_minor) for li in lines] == [
            (11_000, 11_000), (4_750, 19_000)]


def test_each_deal_becomes_one_order(hub_server, crm) -> None:
    company(hub_server.db)
    crm.add_deal("5004", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    # when the event is re-delivered, and the deal is moved to won a second time
    event = hp.stage_changed("5004", event_id=4)
    assert send(hub_server, [event]).json()["queued"] == 1
    assert send(hub_server, [event]).json()["queued"] == 0
    assert send(hub_server, [hp.stage_changed("5004", event_id=5)]).json()["queued"] == 1
    crm.wait_for(lambda: orders(hub_server.db), what="the order")
    crm.wait_for(lambda: len([c for c in crm.calls if c.method == "GET"
                              and c.path.endswith("/deals/5004")]) >= 1, what="reads")
    hub_server.app.state.runtime.integrations.drain()
    # then one order
    assert len(orders(hub_server.db)) == 1
    with hub_server.db.read_session() as s:
        assert len(s.exec(select(ProviderEvent)).all()) == 2


def test_a_deal_won_again_with_other_lines_is_reported_to_ar_once(
        hub_server, crm, standin) -> None:
    # given a won deal imported as an order of 1 x WID-1
    order = imported(hub_server, crm, "5014", event_id=20)
    # when its line items are edited (5 units) and it is won again, that event twice
    crm.add_deal("5014", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 5, "price": "100.00"}])
    send(hub_server, [hp.stage_changed("5014", event_id=21)])
    send(hub_server, [hp.stage_changed("5014", event_id=22)])
    # then AR is told the deal no longer matches the order, once; still one order
    note = told_ar_once(hub_server, standin, "no longer matches")
    assert order.number in note["text"] and "5 x WID-1 at 100.00" in note["text"]
    [still] = orders(hub_server.db)
    assert (still.id, still.total_minor) == (order.id, 10_000)


def test_a_deal_that_cannot_be_an_order_is_refused_visibly_then_retried(
        hub_server, crm, standin) -> None:
    company(hub_server.db)
    crm.add_deal("5005", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "NOPE-9", "quantity": 1, "price": "10.00"}])
    send(hub_server, [hp.stage_changed("5005", event_id=6)])
    crm.wait_for(lambda: any(u.get("o2c_order_status") == "refused"
                             for u in crm.updates("5005")), what="refused on the deal")
    assert "unknown SKU" in crm.deals["5005"]["properties"]["o2c_rejection_reason"]
    standin.api.wait_for(lambda: [m for m in standin.api.messages("CAR000001")
                                  if "could not become an order" in m["text"]], 15, "AR")
    assert orders(hub_server.db) == []
    # when the product exists and the deal is won again, it is imported
    with hub_server.db.transaction() as s:
        f.product(s, "NOPE-9", price="10.00")
    send(hub_server, [hp.stage_changed("5005", event_id=7)])
    [order] = crm.wait_for(lambda: orders(hub_server.db), what="the order")
    with hub_server.db.read_session() as s:
        link = s.exec(select(CrmDeal)).one()
        assert (link.status, link.order_id) == ("imported", order.id)


def test_unmapped_pipelines_and_other_stages_make_no_order(hub_server, crm) -> None:
    company(hub_server.db)
    crm.add_deal("5006", company=("9001", "C-GLOBEX"), pipeline="partners",
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    crm.add_deal("5007", company=("9001", "C-GLOBEX"),
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    assert send(hub_server, [hp.stage_changed("5006", event_id=8),
                             hp.stage_changed("5007", "contractsent", event_id=9)]).json() \
        == {"received": 2, "queued": 1}
    crm.wait_for(lambda: any(c.path.endswith("/deals/5006") for c in crm.calls), what="read")
    hub_server.app.state.runtime.integrations.drain()
    assert orders(hub_server.db) == []


def test_bad_or_stale_signatures_are_refused_and_store_nothing(hub_server) -> None:
    events = [hp.stage_changed("5008", event_id=10)]
    url = f"{hub_server.base_url}/webhooks/hubspot"
    body, headers = hp.signed(url, events)
    good = headers["X-HubSpot-Signature-v3"]
    tampered = ("B" if good[0] == "A" else "A") + good[1:]  # one character off, never the same
    cases = [
        {**headers, "X-HubSpot-Signature-v3": tampered},
        hp.signed(url, events, secret="another-secret")[1],
        hp.signed(url, events, timestamp_ms=int(headers["X-HubSpot-Request-Timestamp"])
                  - 301_000)[1],
        hp.signed(f"{hub_server.base_url}/elsewhere", events)[1],
        {"Content-Type": "application/json"},
    ]
    for case in cases:
        assert httpx.post(url, content=body, headers=case).status_code == 401
    with hub_server.db.read_session() as s:
        assert s.exec(select(ProviderEvent)).all() == []


def test_without_hubspot_settings_the_endpoint_is_off(server) -> None:
    url = f"{server.base_url}/webhooks/hubspot"
    body, headers = hp.signed(url, [hp.stage_changed("1", event_id=1)])
    assert httpx.post(url, content=body, headers=headers).status_code == 404


def test_an_event_id_hubspot_reuses_for_another_deal_still_makes_its_order(
        hub_server, crm) -> None:
    # given: HubSpot documents `eventId` as "not guaranteed to be unique"; a re-delivery
    # repeats the whole notification (same subscription, object, moment)
    company(hub_server.db)
    for deal_id in ("5010", "5011"):
        crm.add_deal(deal_id, company=("9001", "C-GLOBEX"),
                     lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    first = hp.stage_changed("5010", event_id=77)
    second = hp.stage_changed("5011", event_id=77)
    # when both deals are won, each notification carrying event id 77, then both re-delivered
    assert send(hub_server, [first]).json() == {"received": 1, "queued": 1}
    assert send(hub_server, [second]).json() == {"received": 1, "queued": 1}
    assert send(hub_server, [first, second]).json() == {"received": 2, "queued": 0}
    # then each deal is an order, once
    crm.wait_for(lambda: len(orders(hub_server.db)) == 2, what="both orders")
    found = orders(hub_server.db)
    assert sorted(o.external_id for o in found) == ["hubspot-deal-5010", "hubspot-deal-5011"]
    hub_server.app.state.runtime.integrations.drain()
    assert len(orders(hub_server.db)) == 2


def test_a_timestamp_header_of_other_digits_is_refused_not_a_crash(hub_server) -> None:
    # given: a timestamp made of characters Python calls digits but int() refuses ("²",
    # which is what the byte 0xB2 of a header decodes to)
    url = f"{hub_server.base_url}/webhooks/hubspot"
    body, headers = hp.signed(url, [hp.stage_changed("5012", event_id=12)])
    for stamp in (b"\xb2", "\u0661\u0662".encode()):
        # when
        answer = httpx.post(url, content=body,
                            headers={**headers, "X-HubSpot-Request-Timestamp": stamp})
        # then
        assert answer.status_code == 401
    with hub_server.db.read_session() as s:
        assert s.exec(select(ProviderEvent)).all() == []


def test_a_deal_id_of_other_digits_is_ignored_not_queued(hub_server, crm) -> None:
    # given won-deal notifications whose object id is made of characters Python calls digits
    # but HubSpot's ids are not ("²", Arabic-Indic digits), or is far too long
    events = [hp.stage_changed("5013", event_id=13)]
    for n, odd in enumerate(("\u00b2", "\u0661\u0662", "9" * 41), start=14):
        events.append({**hp.stage_changed("5013", event_id=n), "objectId": odd})
    # when they arrive
    answer = send(hub_server, events)
    # then only the real deal is queued; the others are stored as ignored, no import of theirs
    assert answer.json() == {"received": 4, "queued": 1}
    with hub_server.db.read_session() as s:
        stored = {e.object_id: e.status for e in s.exec(select(ProviderEvent))}
        queued = [m.payload["deal_id"] for m in s.exec(select(OutboxMessage))
                  if m.method == "deal.import"]
    assert stored == {"5013": ProviderEventStatus.PROCESSED,
                      "\u00b2": ProviderEventStatus.IGNORED,
                      "\u0661\u0662": ProviderEventStatus.IGNORED,
                      "9" * 41: ProviderEventStatus.IGNORED}
    assert queued == ["5013"]


def test_a_request_of_more_events_than_it_takes_is_refused_whole_not_cut(hub_server) -> None:
    # given a signed request of 1,001 notifications (HubSpot sends at most 100 at once)
    url = f"{hub_server.base_url}/webhooks/hubspot"
    events = [{"eventId": 6000 + n, "subscriptionType": "deal.propertyChange",
               "objectId": 6000 + n} for n in range(1001)]
    body, headers = hp.signed(url, events)
    # when
    answer = httpx.post(url, content=body, headers=headers)
    # then it is refused naming the limit, and none is stored (none silently dropped)
    assert answer.status_code == 400
    assert answer.json() == {"error": "at most 1000 events in one request; none was taken"}
    with hub_server.db.read_session() as s:
        assert s.exec(select(ProviderEvent)).all() == []


def test_a_deal_lost_after_it_became_an_order_is_reported_to_ar_once(
        hub_server, crm, standin) -> None:
    # given a won deal imported as an order, and a deal that was never won
    order = imported(hub_server, crm, "5020", event_id=40)
    # when the sale falls through: the deal is moved to closed-lost (that event twice, and
    # once more with another id), and the other deal is lost too
    crm.add_deal("5020", company=("9001", "C-GLOBEX"), dealstage="closedlost",
                 lines=[{"sku": "WID-1", "quantity": 1, "price": "100.00"}])
    lost = hp.stage_changed("5020", "closedlost", event_id=41)
    answers = [send(hub_server, [lost]), send(hub_server, [lost]),
               send(hub_server, [hp.stage_changed("5020", "closedlost", event_id=42)]),
               send(hub_server, [hp.stage_changed("5099", "closedlost", event_id=43)])]
    # then the order's deal is looked at, the never-won one is not
    assert [a.json()["queued"] for a in answers] == [1, 0, 1, 0]
    # and AR is told once that the order's deal was lost; the order is left for a person
    note = told_ar_once(hub_server, standin, "is no longer won")
    assert order.number in note["text"] and "closedlost" in note["text"]
    [still] = orders(hub_server.db)
    assert (still.id, still.status) == (order.id, "approved")
    with hub_server.db.read_session() as s:
        from models import AuditEvent

        [audited] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "crm.deal_left_won")).all()
        assert audited.data["stage"] == "closedlost" and audited.entity_id == str(order.id)
