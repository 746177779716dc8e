"""The HubSpot connector's outbox transport (`bot.hubspot`): how it reads HubSpot's API errors
(`classify`: a 429 waits what HubSpot's `Retry-After` asks, without counting an attempt, so a
rate-limited deal update is neither hammered nor given up; a 5xx is retried; other refusals
are permanent), and what a late deal update writes."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from hubspot.crm.deals import ApiException
from urllib3 import HTTPHeaderDict

from bot.hubspot import HubSpotTransport, classify
from bot.outbox import Permanent, RateLimited, Retry
from models import Order
from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import crm

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)


class _Answer:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.reason, self.data = status, "Too Many Requests", b"{}"
        self._headers = HTTPHeaderDict(headers)

    def getheaders(self) -> HTTPHeaderDict:
        return self._headers


def test_a_429_waits_what_retry_after_says_without_counting_an_attempt() -> None:
    # given HubSpot answering 429 with Retry-After: 120 (its daily or burst limit)
    problem = classify(ApiException(http_resp=_Answer(429, {"Retry-After": "120"})))
    # then the update waits 120 s, as a rate limit (not an attempt)
    assert isinstance(problem, RateLimited) and problem.delay == 120.0
    assert "429" in problem.reason


def test_a_429_without_a_usable_retry_after_waits_a_default() -> None:
    for headers in ({}, {"Retry-After": "soon"}, {"Retry-After": "-5"}):
        problem = classify(ApiException(http_resp=_Answer(429, headers)))
        assert isinstance(problem, RateLimited) and 1.0 <= problem.delay <= 60.0


def test_a_retry_after_is_capped_at_an_hour() -> None:
    problem = classify(ApiException(http_resp=_Answer(429, {"Retry-After": "86400"})))
    assert isinstance(problem, RateLimited) and problem.delay == 3600.0


def test_server_errors_are_retried_and_refusals_are_permanent() -> None:
    assert type(classify(ApiException(status=503, reason="Unavailable"))) is Retry
    assert isinstance(classify(ApiException(status=400, reason="Bad Request")), Permanent)


class _Deals:
    def __init__(self) -> None:
        self.updates: list[tuple[str, dict]] = []
        self.basic_api = self

    def update(self, deal_id: str, body) -> None:
        self.updates.append((deal_id, body.properties))


def test_a_late_refusal_update_never_overwrites_the_order_the_deal_became(db) -> None:
    # given a deal refused (unknown SKU), then imported once the SKU existed
    deal = crm.DealIn(provider="hubspot", deal_id="5005", name="Globex", customer="C-GLOBEX",
                      sales_rep="USALES01", currency="USD",
                      lines=[crm.DealLine(sku="WID-1", quantity="1", price="100.00")])
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        crm.refuse_deal(s, deal, "lines[0].sku: unknown SKU 'WID-1'")
    with db.transaction() as s:
        f.product(s, "WID-1", price="100.00")
    with db.transaction() as s:
        link, _ = crm.import_deal(s, deal, now=NOW)
        number = s.get(Order, link.order_id).number
    deals = _Deals()
    transport = HubSpotTransport(db, SimpleNamespace(o2c_hubspot_mapping={}),
                                 client=SimpleNamespace(crm=SimpleNamespace(deals=deals)))
    # when the refusal's deal update is delivered only now (retried after a HubSpot outage)
    transport._update({"deal_id": "5005", "order_id": None, "refused": "unknown SKU"})
    # then the deal shows the order, not the refusal
    [(deal_id, properties)] = deals.updates
    assert deal_id == "5005" and properties["o2c_order_status"] != "refused"
    assert properties["o2c_rejection_reason"] == ""
    assert properties["o2c_order_number"] == number


def test_a_retry_after_as_an_http_date_waits_until_then() -> None:
    # given HubSpot answering 429 with Retry-After as an HTTP-date two minutes ahead
    from datetime import timedelta
    from email.utils import format_datetime

    then = format_datetime(NOW + timedelta(seconds=120), usegmt=True)
    problem = classify(ApiException(http_resp=_Answer(429, {"Retry-After": then})), now=NOW)
    # then it waits those two minutes
    assert isinstance(problem, RateLimited) and problem.delay == 120.0
