"""Revenue through the REST API (issue 15): products with an SSP, order lines with service
periods and billing (422 naming the field when missing or wrong), `GET /reports/revenue` in
JSON and CSV worked by hand, subscription cancellation and renewal."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import select

from bot.jobs import run_job
from models import AuditEvent, Order
from tests.support import factories as f

TODAY = datetime(2026, 7, 15, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def mid_july():
    with time_machine.travel(TODAY, tick=True):
        yield


def stock(server, api) -> None:
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, credit_limit="1000000.00")
    products = [api.post("/products", json=body) for body in (
        {"sku": "HW-1", "name": "Hardware", "unit_price": "450.00", "currency": "USD",
         "on_hand": 100, "ssp": "500.00"},
        {"sku": "INST", "name": "Installation", "unit_price": "300.00", "currency": "USD",
         "on_hand": 100, "revenue_type": "service"},
        {"sku": "CLOUD", "name": "Cloud", "unit_price": "1200.00", "currency": "USD",
         "on_hand": 100, "revenue_type": "subscription"})]
    assert [p.status_code for p in products] == [201, 201, 201]
    assert products[0].json()["ssp"] == "500.00" and products[1].json()["ssp"] is None


@pytest.fixture
def catalogue(server, api):
    stock(server, api)
    return api


@pytest.fixture(scope="module")
def shared_catalogue(shared_server, shared_api) -> None:
    """`catalogue` on the module's shared server, stocked on the tests' day too."""
    with time_machine.travel(TODAY, tick=True):
        stock(shared_server, shared_api)


@pytest.fixture
def reading_catalogue(shared_catalogue, reading_server, reading_api):
    """(server, api): the shared `catalogue`, for a test that must leave it as it was."""
    return reading_server, reading_api


def order(api, *lines: dict):
    return api.post("/orders", json={"customer": "C-GLOBEX", "sales_rep": "USALES01",
                                     "currency": "USD", "lines": list(lines)})


@pytest.mark.parametrize(("line", "field"), [
    ({"sku": "INST", "quantity": 1}, "lines[1].service_start"),
    ({"sku": "INST", "quantity": 1, "service_start": "2026-06-01"}, "lines[1].service_end"),
    ({"sku": "CLOUD", "quantity": 1, "service_start": "2026-06-01",
      "service_end": "2026-08-31", "billing": "weekly"}, "lines[1].billing"),
    ({"sku": "HW-1", "quantity": 1, "service_start": "2026-06-01",
      "service_end": "2026-08-31"}, "lines[1].service_start"),
    ({"sku": "INST", "quantity": 1, "service_start": "2026-06-31",
      "service_end": "2026-08-31"}, "lines[1].service_start"),
])
def test_service_periods_are_required_and_checked(reading_catalogue, line, field) -> None:
    server, api = reading_catalogue
    # when
    answer = order(api, {"sku": "HW-1", "quantity": 1}, line)
    # then: a 422 naming the field, and nothing stored
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]
    with server.db.read_session() as s:
        assert s.exec(select(Order)).all() == []


def test_the_revenue_report_worked_by_hand_in_json_and_csv(server, catalogue) -> None:
    """Hardware: 2 x 450.00 less 10 % = 810.00, shipped 10 June: June recognises 810.00.
    Installation 300.00 from 1 June to 31 August (92 days), delivered and invoiced 1 June:
    June 300.00 x 30/92 = 97.83, July x 31/92 = 101.09, August the rest 101.08; deferred
    202.17 at the end of June, 101.08 at the end of July, nothing after August. Today
    (15 July) 202.17 is deferred: 101.09 for July, 101.08 for August. June is closed."""
    # given
    api = catalogue
    goods = order(api, {"sku": "HW-1", "quantity": 2, "discount_pct": "10"}).json()
    service = order(api, {"sku": "INST", "quantity": 1, "service_start": "2026-06-01",
                          "service_end": "2026-08-31"}).json()
    assert service["lines"][0]["service_end"] == "2026-08-31"
    for number, day in ((goods["number"], "2026-06-10"), (service["number"], "2026-06-01")):
        shipped = api.post("/shipments", json={"order": number, "carrier": "UPS",
                                               "tracking_number": "1Z",
                                               "shipped_at": f"{day}T09:00:00Z"})
        assert shipped.status_code == 201, shipped.text
    assert api.post("/periods/2026-06/close").status_code == 201
    # when
    data = api.get("/reports/revenue", params={"from": "2026-05", "to": "2026-09"}).json()
    text = api.get("/reports/revenue", params={"from": "2026-05", "to": "2026-09",
                                               "format": "csv"}).text
    # then
    usd = data["currencies"]["USD"]
    months = {m["month"]: m for m in usd["months"]}
    assert (data["from"], data["to"], data["as_of"], data["closed_through"]) == (
        "2026-05", "2026-09", "2026-07-15", "2026-06")
    assert months["2026-05"]["recognized"]["total"] == "0.00"
    assert months["2026-06"]["closed"] is True and months["2026-07"]["closed"] is False
    assert months["2026-06"]["recognized"] == {"total": "907.83", "by_type": {
        "goods": "810.00", "service": "97.83", "subscription": "0.00"}}
    assert [months[m]["recognized"]["total"] for m in ("2026-07", "2026-08", "2026-09")] == [
        "101.09", "101.08", "0.00"]
    assert [months[m]["deferred"] for m in ("2026-06", "2026-07", "2026-08")] == [
        "202.17", "101.08", "0.00"]
    assert {m["unbilled"] for m in usd["months"]} == {"0.00"}
    assert (usd["deferred"], usd["unbilled"]) == ("202.17", "0.00")
    assert usd["waterfall"] == [{"month": "2026-07", "amount": "101.09"},
                                {"month": "2026-08", "amount": "101.08"}]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["currency", "month", "row", "closed", "recognized", "recognized_goods",
                       "recognized_service", "recognized_subscription", "deferred", "unbilled",
                       "waterfall"]
    assert rows[2] == ["USD", "2026-06", "month", "true", "907.83", "810.00", "97.83", "0.00",
                       "202.17", "0.00", ""]
    assert rows[-2:] == [["USD", "2026-07", "waterfall", "", "", "", "", "", "", "", "101.09"],
                         ["USD", "2026-08", "waterfall", "", "", "", "", "", "", "", "101.08"]]


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-09", "to": "2026-05"}, "from"), ({"to": "2026-13"}, "to"),
    ({"from": "2010-01", "to": "2026-05"}, "from"),
    # no month of the books' years (year 0, 1 and 9999 were a 500), nor other digits
    ({"from": "0000-01", "to": "0000-12"}, "to"), ({"to": "0001-01"}, "to"),
    ({"to": "9999-12"}, "to"), ({"from": "0000-01", "to": "2026-05"}, "from"),
    ({"to": "\u0662\u0660\u0662\u0666-01"}, "to")])
def test_report_months_are_checked(reading_api, params, field) -> None:
    api = reading_api
    answer = api.get("/reports/revenue", params=params)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_the_report_defaults_to_the_twelve_months_to_this_one(reading_api) -> None:
    api = reading_api
    data = api.get("/reports/revenue").json()
    assert (data["from"], data["to"], data["currencies"]) == ("2025-08", "2026-07", {})


def test_cancel_and_renew_a_subscription(server, catalogue) -> None:
    """2 x CLOUD for a year from 1 June, billed monthly (200.00 a month): June and July are
    invoiced; cancelled from 1 September (the next unbilled period is August, so August is
    still billed); renewed once as a new order from 1 June 2027."""
    # given
    api = catalogue
    placed = order(api, {"sku": "CLOUD", "quantity": 2, "service_start": "2026-06-01",
                         "service_end": "2027-05-31", "billing": "monthly"}).json()
    number = placed["number"]
    assert placed["lines"][0]["billing"] == "monthly"
    billed = [run_job("subscription-billing", server.deps, day)
              for day in (date(2026, 6, 1), date(2026, 7, 1))]
    assert [b["invoiced"] for b in billed] == [1, 1]
    # when
    refused = api.post(f"/orders/{number}/lines/1/cancellation",
                       json={"reason": "budget", "effective": "2026-07-01"})
    cancelled = api.post(f"/orders/{number}/lines/1/cancellation",
                         json={"reason": "budget", "effective": "2026-09-01"},
                         headers={"Idempotency-Key": "cancel-1"})
    replay = api.post(f"/orders/{number}/lines/1/cancellation",
                      json={"reason": "budget", "effective": "2026-09-01"},
                      headers={"Idempotency-Key": "cancel-1"})
    renewed = api.post(f"/orders/{number}/lines/1/renewal", json={})
    again = api.post(f"/orders/{number}/lines/1/renewal", json={})
    # then
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["effective"]
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["lines"][0]["cancelled_from"] == "2026-09-01"
    assert cancelled.json()["cancelled"] == "1800.00"  # 9 of the 12 months
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert renewed.status_code == 409  # a cancelled line is not renewed
    assert again.status_code == 409
    # and a running one is, once
    other = order(api, {"sku": "CLOUD", "quantity": 1, "service_start": "2026-07-01",
                        "service_end": "2026-09-30", "billing": "quarterly"}).json()
    first = api.post(f"/orders/{other['number']}/lines/1/renewal", json={"by": "USALES01"})
    second = api.post(f"/orders/{other['number']}/lines/1/renewal", json={})
    assert first.status_code == 201, first.text
    line = first.json()["lines"][0]
    assert (line["service_start"], line["service_end"], line["billing"]) == (
        "2026-10-01", "2026-12-31", "quarterly")
    assert second.status_code == 409 and first.json()["number"] in second.json()["detail"]


def test_a_cancellation_from_a_month_under_way_names_its_finance_decider(server,
                                                                         catalogue) -> None:
    """2 x CLOUD from 1 June, billed monthly; only June is invoiced (the job has not billed
    July). On 15 July, a cancellation from 1 July forgoes July (400.00), under way: the
    API must name who decides it (`by`), and that is a credit approver, not the rep."""
    # given
    api = catalogue
    with server.db.transaction() as s:
        f.user(s, "UCREDIT1", "credit_approver")
    number = order(api, {"sku": "CLOUD", "quantity": 2, "service_start": "2026-06-01",
                         "service_end": "2027-05-31", "billing": "monthly"}).json()["number"]
    assert run_job("subscription-billing", server.deps, date(2026, 6, 1))["invoiced"] == 1
    body = {"reason": "never used July", "effective": "2026-07-01"}
    # when
    unnamed = api.post(f"/orders/{number}/lines/1/cancellation", json=body)
    by_rep = api.post(f"/orders/{number}/lines/1/cancellation",
                      json={**body, "by": "USALES01"})
    decided = api.post(f"/orders/{number}/lines/1/cancellation",
                       json={**body, "by": "UCREDIT1"})
    # then
    assert unnamed.status_code == 422
    [error] = unnamed.json()["errors"]
    assert error["field"] == "by" and "200.00" in error["detail"]
    assert by_rep.status_code == 403 and "200.00" in by_rep.json()["detail"]
    assert decided.status_code == 200, decided.text
    assert decided.json()["lines"][0]["cancelled_from"] == "2026-07-01"
    assert decided.json()["cancelled"] == "2200.00"  # all 12 months but June
    with server.db.read_session() as s:
        trail = s.exec(select(AuditEvent).where(AuditEvent.action.in_(
            ["refused.subscription.cancel_served", "subscription.cancelled"]))
            .order_by(AuditEvent.id)).all()
        assert [(e.actor, e.action) for e in trail] == [
            ("USALES01", "refused.subscription.cancel_served"),
            ("UCREDIT1", "subscription.cancelled")]
        assert (trail[1].data["forgone_minor"], trail[1].data["forgone_periods"]) == (
            20000, ["2026-07-01"])


def test_a_back_dated_cancellation_reconciles_the_report_to_the_cent(server, catalogue) -> None:
    """2 x CLOUD for a year from 1 April, billed monthly (200.00); April is invoiced, the job
    does not run again (May and June served, unbilled), April to June are closed. On
    15 July a credit approver cancels from 1 May. Before: 197.26 + 203.84 + 197.26 = 598.36
    recognised against 200.00 invoiced, 398.36 unbilled at 30 June and today. After: April
    to June as closed, July (the first open month) -398.36, nothing deferred or unbilled;
    recognised in all 200.00 = invoiced. JSON and CSV say the same."""
    # given
    api = catalogue
    with server.db.transaction() as s:
        f.user(s, "UCREDIT1", "credit_approver")
    number = order(api, {"sku": "CLOUD", "quantity": 2, "service_start": "2026-04-01",
                         "service_end": "2027-03-31", "billing": "monthly"}).json()["number"]
    assert run_job("subscription-billing", server.deps, date(2026, 4, 1))["invoiced"] == 1
    assert api.post("/periods/2026-06/close").status_code == 201
    window = {"from": "2026-04", "to": "2026-08"}

    def report() -> tuple[dict, list[list[str]]]:
        data = api.get("/reports/revenue", params=window).json()["currencies"]["USD"]
        text = api.get("/reports/revenue", params={**window, "format": "csv"}).text
        return data, [row for row in csv.reader(io.StringIO(text)) if row[0] == "USD"]

    closed = [["USD", "2026-04", "month", "true", "197.26", "0.00", "0.00", "197.26", "2.74",
               "0.00", ""],
              ["USD", "2026-05", "month", "true", "203.84", "0.00", "0.00", "203.84", "0.00",
               "201.10", ""],
              ["USD", "2026-06", "month", "true", "197.26", "0.00", "0.00", "197.26", "0.00",
               "398.36", ""]]
    before, before_rows = report()
    assert before_rows[:3] == closed
    assert before_rows[3] == ["USD", "2026-07", "month", "false", "203.84", "0.00", "0.00",
                              "203.84", "0.00", "602.20", ""]
    assert (before["deferred"], before["unbilled"]) == ("0.00", "398.36")
    # when
    cancelled = api.post(f"/orders/{number}/lines/1/cancellation",
                         json={"reason": "never used it", "effective": "2026-05-01",
                               "by": "UCREDIT1"})
    # then
    assert cancelled.status_code == 200, cancelled.text
    after, after_rows = report()
    assert after_rows[:3] == closed
    assert after_rows[3:] == [
        ["USD", "2026-07", "month", "false", "-398.36", "0.00", "0.00", "-398.36", "0.00",
         "0.00", ""],
        ["USD", "2026-08", "month", "false", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00",
         ""]]
    assert [m["recognized"]["total"] for m in after["months"]] == [
        "197.26", "203.84", "197.26", "-398.36", "0.00"]
    assert (after["deferred"], after["unbilled"], after["waterfall"]) == ("0.00", "0.00", [])
    with server.db.read_session() as s:
        [event] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "subscription.cancelled")).all()
        assert (event.data["forgone_minor"], event.data["forgone_periods"]) == (
            60000, ["2026-05-01", "2026-06-01", "2026-07-01"])
