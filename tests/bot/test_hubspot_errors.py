"""How the HubSpot connector reads HubSpot's API errors (`bot.hubspot.classify`): a 429 waits
what HubSpot's `Retry-After` asks, without counting an attempt (so a rate-limited deal update
is neither hammered nor given up); a 5xx is retried; other refusals are permanent."""

from __future__ import annotations

from hubspot.crm.deals import ApiException
from urllib3 import HTTPHeaderDict

from bot.hubspot import classify
from bot.outbox import Permanent, RateLimited, Retry


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
