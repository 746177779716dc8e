"""`GET /reports/aging?as_of=`, `/reports/kpis?as_of=` and `/customers/{id}?as_of=` for a past
day use that day's AR by economic date — the day the money moved, whenever it was posted — and
`known_at=` asks, explicitly, what the books said at a recording time."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from tests.support import factories as f
from workflows.cash_application import correct_application, record_payment
from workflows.inputs import PaymentIn


def test_reports_as_of_a_past_day(server, api) -> None:
    # given: 1000.00 issued 03-01 (due 03-31), paid 04-20 (recorded today); 400.00 issued
    # 04-10 (due 05-10)
    paid_on = datetime(2026, 4, 20, 10, tzinfo=UTC)
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000501", total="1000.00", issued=date(2026, 3, 1),
                  due=date(2026, 3, 31))
        f.invoice(s, "INV-2026-000502", total="400.00", issued=date(2026, 4, 10),
                  due=date(2026, 5, 10))
        record_payment(s, PaymentIn(amount="1000.00", currency="USD", received_at=paid_on),
                       actor="test", apply_to=["INV-2026-000501"])
    # when
    aging = api.get("/reports/aging?as_of=2026-04-15").json()
    csv = api.get("/reports/aging?as_of=2026-04-15&format=csv").text
    kpis = api.get("/reports/kpis?as_of=2026-04-15").json()
    after = api.get("/reports/kpis?as_of=2026-04-30").json()
    # then: on 04-15 the first invoice was 15 days late and open, the second not yet due
    usd = aging["currencies"]["USD"]
    assert usd["buckets"] == {"current": "400.00", "1-30": "1000.00", "31-60": "0.00",
                              "61-90": "0.00", "90+": "0.00"}
    assert usd["invoices"]["1-30"] == 1 and usd["overdue"] == "1000.00"
    assert csv.splitlines()[1] == "USD,400.00,1000.00,0.00,0.00,0.00,1400.00,0.00,2026-04-15,"
    # AR 1400 of 1400 sales in the window: DSO 90 days, best possible 400/1400 x 90
    assert (kpis["ar"], kpis["dso"], kpis["best_possible_dso"]) == ("1400.00", "90.00",
                                                                     "25.71")
    # on 04-30 the first one is paid: AR 400
    assert (after["ar"], after["dso"]) == ("400.00", "25.71")


BOOK = [("INV-2026-000001", "2026-03-16", "2026-04-15", "2000.00"),
        ("INV-2026-000002", "2026-04-10", "2026-05-10", "4000.00"),
        ("INV-2026-000003", "2026-05-12", "2026-06-11", "6000.00"),
        ("INV-2026-000004", "2026-06-05", "2026-07-05", "5000.00"),
        ("INV-2026-000005", "2026-06-20", "2026-07-20", "4000.00")]


def test_the_controllers_book_as_of_30_june(server, api) -> None:
    """Issue 21's book (worked by hand in tests/workflows/test_kpis_worked_example.py): five
    invoices March-June pushed by the ERP, two paid in full on 1 May and 15 June by payments
    posted through the API afterwards."""
    # given
    assert api.post("/customers", json={
        "external_id": "C-GLOBEX", "name": "Globex Corporation", "currency": "USD",
        "credit_limit": "50000.00", "payment_terms": "NET30",
        "credit_reviewed": True}).status_code == 201
    for number, issued, due, total in BOOK:
        assert api.post("/invoices", json={
            "number": number, "customer": "C-GLOBEX", "currency": "USD",
            "issue_date": issued, "due_date": due, "total": total}).status_code == 201
    time.sleep(0.01)
    before_payments = server.deps.clock.now()
    time.sleep(0.01)
    answers = [api.post("/payments", json={
        "amount": amount, "currency": "USD", "received_at": received, "reference": number,
        "external_id": f"bank-{number}"}).json()
        for number, amount, received in (("INV-2026-000003", "6000.00", "2026-06-15T11:00:00Z"),
                                         ("INV-2026-000001", "2000.00",
                                          "2026-05-01T14:00:00+02:00"))]
    # when
    kpis = api.get("/reports/kpis", params={"as_of": "2026-06-30"}).json()
    then = api.get("/reports/kpis", params={"as_of": "2026-06-30",
                                            "known_at": before_payments.isoformat()}).json()
    aging = api.get("/reports/aging", params={"as_of": "2026-06-30"}).json()
    customer = api.get("/customers/C-GLOBEX", params={"as_of": "2026-06-30"}).json()
    # then: each payment is dated by its value date, and applied in full
    assert [(a["status"], a["value_date"], a["allocations"][0]["effective_date"])
            for a in answers] == [("applied", "2026-06-15", "2026-06-15"),
                                  ("applied", "2026-05-01", "2026-05-01")]
    # and the KPIs of 30 June count them on those days
    assert (kpis["dso"], kpis["best_possible_dso"], kpis["average_days_delinquent"],
            kpis["cei_pct"], kpis["count_back_dso"]) == ("61.58", "42.63", "18.95", "66.67",
                                                         "50.67")
    assert aging["currencies"]["USD"]["buckets"] == {
        "current": "9000.00", "1-30": "0.00", "31-60": "4000.00", "61-90": "0.00",
        "90+": "0.00"}
    assert customer["balances"]["open"] == "13000.00"
    assert customer["balances"]["oldest_days_past_due"] == 51
    # and what the books said before the payments were posted is there when asked for
    assert (then["dso"], then["best_possible_dso"], then["average_days_delinquent"],
            then["cei_pct"], then["count_back_dso"]) == ("99.47", "42.63", "56.84", "0.00",
                                                         "122.00")
    assert then["known_at"] == before_payments.isoformat()


@pytest.mark.parametrize("known_at", ["yesterday", "2026-07-01T09:00:00", "2026-13-01"])
def test_a_bad_known_at_is_a_422_naming_it(server, api, known_at: str) -> None:
    # when
    answer = api.get("/reports/aging", params={"as_of": "2026-06-30", "known_at": known_at})
    # then
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["known_at"]


def test_known_at_as_a_date_is_the_end_of_that_day(server, api) -> None:
    # given: an invoice recorded now, issued ten days ago
    today = server.deps.clock.business_today()
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000601", total="100.00", issued=today - timedelta(days=10),
                  due=today + timedelta(days=20))
    # when: as known at the end of today, and at the end of a day before it was recorded
    known = api.get("/reports/aging", params={"as_of": today.isoformat(),
                                              "known_at": today.isoformat()}).json()
    unknown = api.get("/reports/aging", params={
        "as_of": today.isoformat(), "known_at": (today - timedelta(days=1)).isoformat()}).json()
    # then
    assert known["currencies"]["USD"]["total"] == "100.00"
    assert known["known_at"].startswith(f"{today.isoformat()}T23:59:59.999999")
    assert unknown["currencies"] == {}


def _books_asked(api, as_of: str, known_at: str | None) -> dict:
    """The aging, the customer's balances and the KPIs of `as_of`, as known at `known_at`."""
    params = {"as_of": as_of, **({"known_at": known_at} if known_at else {})}
    return {"aging": api.get("/reports/aging", params=params).json(),
            "customer": api.get("/customers/C-GLOBEX", params=params).json()["balances"],
            "kpis": api.get("/reports/kpis", params=params).json()}


def test_known_at_before_a_correction_sees_what_it_reversed(server, api) -> None:
    # given: A 1000.00 (due 10-31) and B 1000.00 (due 11-19); on 5 Nov a payment of 996.00
    # quoting A is auto-applied to A with a bank fee of 4.00 written off
    with time_machine.travel(datetime(2026, 11, 5, 10, tzinfo=UTC), tick=False), \
            server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.customer(s)
        f.invoice(s, "INV-2026-000701", total="1000.00", issued=date(2026, 10, 1),
                  due=date(2026, 10, 31))
        f.invoice(s, "INV-2026-000702", total="1000.00", issued=date(2026, 10, 20),
                  due=date(2026, 11, 19))
        payment, _ = record_payment(s, PaymentIn(
            amount="996.00", currency="USD", reference="INV-2026-000701",
            received_at=datetime(2026, 11, 5, 9, tzinfo=UTC)), actor="test")
        assert (payment.status, payment.match_details["write_off_minor"]) == ("applied", 400)
        payment_id = payment.id
    # and what the books said of 10 Nov, asked on 10 Nov: A paid, B open and not yet due
    asked_then = _books_asked(api, "2026-11-10", "2026-11-10")
    # (and of a day whose KPI window starts after the payment: AR the day before it, for CEI)
    later_then = api.get("/reports/kpis", params={"as_of": "2027-02-20",
                                                  "known_at": "2026-11-10"}).json()
    assert (later_then["ar"], later_then["cei_pct"]) == ("1000.00", "0.00")
    usd = asked_then["aging"]["currencies"]["USD"]
    assert (usd["total"], usd["buckets"]["current"], usd["invoices"]["current"],
            usd["invoices"]["1-30"]) == ("1000.00", "1000.00", 1, 0)
    assert (asked_then["customer"]["open"], asked_then["customer"]["oldest_days_past_due"]) \
        == ("1000.00", 0)
    assert (asked_then["kpis"]["ar"], asked_then["kpis"]["cash_application"]["payments"],
            asked_then["kpis"]["cash_application"]["auto_match_rate_pct"]) == (
                "1000.00", 1, "100.00")
    # when: on 12 Nov a collector moves the payment to B
    with time_machine.travel(datetime(2026, 11, 12, 10, tzinfo=UTC), tick=False), \
            server.db.transaction() as s:
        correct_application(s, payment_id=payment_id, invoices=["INV-2026-000702"],
                            actor="UCOLL001", now=datetime(2026, 11, 12, 10, tzinfo=UTC))
    # then: asked now, the books as known on 10 Nov are what they were on 10 Nov
    assert _books_asked(api, "2026-11-10", "2026-11-10") == asked_then
    assert api.get("/reports/kpis", params={"as_of": "2027-02-20",
                                            "known_at": "2026-11-10"}).json() == later_then
    # and as known after the correction (or by economic date) A is open, 10 days late, and B
    # is settled: the 4.00 the payment did not cover is a bank fee within tolerance on B,
    # written off as the engine would have
    for known_at in ("2026-11-12", None):
        corrected = _books_asked(api, "2026-11-10", known_at)
        usd = corrected["aging"]["currencies"]["USD"]
        assert (usd["total"], usd["buckets"]["1-30"],
                usd["invoices"]["current"], usd["invoices"]["1-30"]) == (
                    "1000.00", "1000.00", 0, 1), known_at
        assert (corrected["customer"]["open"],
                corrected["customer"]["oldest_days_past_due"]) == ("1000.00", 10)
        assert (corrected["kpis"]["ar"],
                corrected["kpis"]["cash_application"]["auto_match_rate_pct"]) == (
                    "1000.00", "0.00")
    # and a day before the payment, as known on 10 Nov: both open, as ever
    before = _books_asked(api, "2026-11-04", "2026-11-10")["aging"]["currencies"]["USD"]
    assert (before["total"], before["invoices"]["1-30"], before["invoices"]["current"]) == (
        "2000.00", 1, 1)
