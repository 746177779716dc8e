"""Closing an AR month through the API and the CLI (issue 21): admins' API token only,
idempotent, audited; a payment dated inside the closed month says where it was booked."""

from __future__ import annotations

import json
from datetime import date, timedelta

from sqlmodel import select

from bot.cli import main
from bot.clock import Clock
from models import AuditEvent
from tests.support import factories as f


def last_month() -> date:
    """The first day of the month before this one (the latest month that can be closed)."""
    return (Clock().business_today().replace(day=1) - timedelta(days=1)).replace(day=1)


def test_close_a_month_then_a_payment_dated_in_it_is_booked_in_the_next(server, api) -> None:
    # given: an invoice issued last month
    month = last_month()
    period = f"{month:%Y-%m}"
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000901", total="250.00", issued=month, due=month
                  + timedelta(days=30))
    # when: the month is closed, twice, then money of its 10th day is posted
    first = api.post(f"/periods/{period}/close", headers={"Idempotency-Key": "close-1"})
    replay = api.post(f"/periods/{period}/close", headers={"Idempotency-Key": "close-1"})
    again = api.post(f"/periods/{period}/close")
    earlier = api.post(f"/periods/{month - timedelta(days=1):%Y-%m}/close")
    paid = api.post("/payments", json={
        "amount": "250.00", "currency": "USD", "reference": "INV-2026-000901",
        "received_at": f"{month + timedelta(days=9)}T10:00:00Z"}).json()
    listed = api.get("/periods").json()
    # then: closed once; later calls say it was already closed
    assert first.status_code == 201 and first.json()["created"] is True
    assert first.json()["closed_through"] == period and first.json()["closed_by"] == "api"
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert again.status_code == 200 and again.json()["created"] is False
    assert earlier.status_code == 200 and earlier.json()["closed_through"] == period
    assert [c["period"] for c in listed["closes"]] == [period]
    assert listed["closed_through"] == period
    # and the payment's allocation keeps its value date, booked on the first open day
    next_month = (month + timedelta(days=31)).replace(day=1)
    [allocation] = paid["allocations"]
    assert allocation["value_date"] == f"{month + timedelta(days=9)}"
    assert allocation["effective_date"] == next_month.isoformat()
    assert allocation["booked_in_open_period"] is True
    assert "closed period" in allocation["note"]
    with server.db.read_session() as s:
        closes = s.exec(select(AuditEvent).where(AuditEvent.action == "period.closed")).all()
    assert [(e.actor, e.entity_id) for e in closes] == [("api", period)]


def test_a_month_not_over_cannot_be_closed(server, api) -> None:
    # when
    this_month = f"{Clock().business_today():%Y-%m}"
    answers = [api.post(f"/periods/{p}/close") for p in (this_month, "2026-6", "someday")]
    # ... nor one of no year of the books, or written in other digits, or with a NUL (on
    # PostgreSQL the key's row was written before the path was looked at: a 500)
    answers += [api.post(f"/periods/{p}/close", headers={"Idempotency-Key": f"k{n}"})
                for n, p in enumerate(("0000-06", "9999-12", "\u0662\u0660\u0662\u0666-01",
                                       "2026-01%00"))]
    # then: 422 naming the period, nothing closed
    assert [a.status_code for a in answers] == [422] * 7
    assert all([e["field"] for e in a.json()["errors"]] == ["period"] for a in answers)
    assert "has not ended yet" in answers[0].json()["detail"]
    assert api.get("/periods").json() == {"closed_through": None, "closes": []}


def test_the_close_period_command(monkeypatch, capsys, db, database_url) -> None:
    # given
    monkeypatch.setenv("DATABASE_URL", database_url)
    period = f"{last_month():%Y-%m}"
    # when
    assert main(["close-period", period, "--by", "UADMIN01"]) == 0
    closed = json.loads(capsys.readouterr().out)
    assert main(["close-period", period]) == 0
    repeated = capsys.readouterr()
    assert main(["close-period", "2026-99"]) == 2
    refused = capsys.readouterr().err
    # then
    assert (closed["closed_through"], closed["closed_by"], closed["created"]) == (
        period, "UADMIN01", True)
    assert json.loads(repeated.out)["created"] is False
    assert "already closed" in repeated.err
    assert "period: must be a month like 2026-06" in refused


def test_an_erp_invoice_dated_in_a_closed_month_is_refused_naming_issue_date(server, api
                                                                              ) -> None:
    # given an invoice of 100.00 issued last month, and the month closed
    month = last_month()
    with server.db.transaction() as s:
        f.customer(s)
        f.invoice(s, "INV-2026-000901", total="100.00", issued=month,
                  due=month + timedelta(days=30))
    assert api.post(f"/periods/{month:%Y-%m}/close").status_code == 201
    month_end = (month + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    before = api.get("/reports/aging", params={"as_of": month_end.isoformat()}).json()
    # when the ERP sends an invoice of 250.00 dated inside that month
    body = {"number": "ERP-77", "customer": "C-GLOBEX", "currency": "USD",
            "issue_date": (month + timedelta(days=19)).isoformat(),
            "due_date": (month + timedelta(days=49)).isoformat(), "total": "250.00"}
    refused = api.post("/invoices", json=body)
    # then it is refused (422) naming issue_date, and nothing is stored
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in refused.json()["errors"]] == ["issue_date"]
    assert "closed period" in refused.json()["detail"]
    assert api.get("/invoices/ERP-77").status_code == 404
    assert api.get("/reports/aging", params={"as_of": month_end.isoformat()}).json() == before
    # and dated on the first open day it is taken
    first_open = month_end + timedelta(days=1)
    taken = api.post("/invoices", json={**body, "issue_date": first_open.isoformat(),
                                        "due_date": (first_open + timedelta(days=30))
                                        .isoformat()})
    assert taken.status_code == 201
