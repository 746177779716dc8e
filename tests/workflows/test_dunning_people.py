"""Dunning tells each sales rep and collector once per run (issue 18): one `dunning_people`
DM per person, counted from the run's notices in the transaction that writes the AR channel's
summary — whatever the run's write transactions, and across a killed run taken over."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from blocks.templates import render as render_template
from models import CollectionActivity, Customer, DunningRunRecord, Invoice, OutboxMessage
from sandbox.blockkit import validate_message
from tests.support import factories as f
from tests.workflows.test_dunning_catchup import (
    NOW,
    TODAY,
    _outbox,
    frozen_time,  # noqa: F401 - the module's tests happen at NOW
)
from workflows import dunning

LATER = NOW + timedelta(hours=1)  # the next hourly run
HOSTILE = "Acme <!channel> & Sons"


def _told(db) -> dict[str, list[OutboxMessage]]:
    """The people's dunning DMs, by person."""
    with db.read_session() as s:
        out: dict[str, list[OutboxMessage]] = {}
        for row in _outbox(s, "dunning_people"):
            out.setdefault(row.payload["channel"], []).append(row)
        return out


def _listed(row: OutboxMessage) -> dict[str, list[tuple[str, str, int]]]:
    """kind -> (customer, first invoice, invoices) of one DM's context."""
    return {k["kind"]: sorted((c["name"], c["first"]["number"], c["invoices"])
                              for c in k["top"]) for k in row.payload["context"]["kinds"]}


def given_a_reps_customers(db) -> None:
    """Three customers of the rep USALES01 and the collector UCOLL001: two invoices now
    overdue (+1 reminder), two at the +14 escalation; a fourth customer whose rep is also
    its collector (UBOTH001); an order of C-3's sold by USALES02, whose invoice is theirs."""
    with db.transaction() as s:
        for user, role in (("UCOLL001", "collector"), ("USALES01", "sales"),
                           ("USALES02", "sales"), ("UBOTH001", "collector")):
            f.user(s, user, role)
        f.customer(s, "C-1", HOSTILE, collector="UCOLL001", sales_rep="USALES01")
        f.customer(s, "C-2", "Globex", collector="UCOLL001", sales_rep="USALES01")
        f.customer(s, "C-3", "Initech", collector="UCOLL001", sales_rep="USALES01")
        f.customer(s, "C-4", "Umbrella", collector="UBOTH001", sales_rep="UBOTH001")
        f.invoice(s, "INV-1A", "C-1", total="100.00", due=TODAY - timedelta(days=2))
        f.invoice(s, "INV-1B", "C-1", total="50.00", due=TODAY - timedelta(days=3))
        f.invoice(s, "INV-2", "C-2", total="300.00", due=TODAY - timedelta(days=15))
        f.invoice(s, "INV-3", "C-3", total="200.00", due=TODAY - timedelta(days=16))
        f.invoice(s, "INV-4", "C-4", total="10.00", due=TODAY - timedelta(days=2))
        f.product(s)
        order = f.order(s, "C-3", rep="USALES02", now=NOW)
        f.invoice(s, "INV-3S", "C-3", total="70.00", due=TODAY - timedelta(days=2))
        s.exec(select(Invoice).where(Invoice.number == "INV-3S")).one().order_id = order.id


def assert_each_told_once(told: dict) -> None:
    """`given_a_reps_customers`' four people told once each; the collector's message lists
    all three of their customers by kind, each with its first invoice and how many."""
    assert sorted((user, len(rows)) for user, rows in told.items()) == [
        ("UBOTH001", 1), ("UCOLL001", 1), ("USALES01", 1), ("USALES02", 1)]
    assert _listed(told["UCOLL001"][0]) == {
        "reminder": [(HOSTILE, "INV-1A", 2), ("Initech", "INV-3S", 1)],
        "escalation": [("Globex", "INV-2", 1), ("Initech", "INV-3", 1)]}


def test_a_run_tells_each_person_once_listing_all_their_customers(db) -> None:
    # given three customers of one rep and collector at two levels (and others)
    given_a_reps_customers(db)
    # when the run writes them in one transaction per invoice
    run = dunning.run_all(db, TODAY, batch=1)
    assert sum(run.sent.values()) == 6
    # then each person gets exactly one message for the run, the collector's listing all
    # three customers, by kind, each with its first invoice and how many
    told = _told(db)
    assert_each_told_once(told)
    # the order's sales rep, not the customer's, hears of the order's invoice
    assert _listed(told["USALES01"][0]) == {
        "reminder": [(HOSTILE, "INV-1A", 2)],
        "escalation": [("Globex", "INV-2", 1), ("Initech", "INV-3", 1)]}
    assert _listed(told["USALES02"][0]) == {"reminder": [("Initech", "INV-3S", 1)]}
    # a person who is both rep and collector hears once
    assert _listed(told["UBOTH001"][0]) == {"reminder": [("Umbrella", "INV-4", 1)]}
    context = told["UCOLL001"][0].payload["context"]
    assert (context["customers"], context["notices"]) == (3, 5)
    escalation = context["kinds"][1]
    assert escalation["totals"] == [{"currency": "USD", "amount_minor": 50_000}]
    assert [c["name"] for c in escalation["top"]] == ["Globex", "Initech"]  # by amount
    # rendered valid, every customer name escaped
    message = render_template("dunning_people", context)
    assert validate_message(message) == (None, [])
    text = json.dumps(message)
    assert "Acme &lt;!channel&gt; &amp; Sons" in text and "<!channel>" not in text
    assert "+1 more" in text and "USD 500.00" in text
    # the escalations are still recorded per invoice, at once
    with db.read_session() as s:
        escalated = s.exec(select(CollectionActivity).where(
            CollectionActivity.kind == "escalation")).all()
        assert len(escalated) == 2
    # and a second run that day tells nobody again
    assert dunning.run_all(db, TODAY, batch=1).sent == {}
    assert sum(len(rows) for rows in _told(db).values()) == 4


class Killed(Exception):
    """The process dies after the run's first write transaction committed."""


def _kill() -> None:
    raise Killed


def test_a_killed_run_taken_over_tells_each_person_once_covering_both_parts(db) -> None:
    # given a run killed after its first write transaction (Acme's two invoices)
    given_a_reps_customers(db)
    with pytest.raises(Killed):
        dunning.run_all(db, TODAY, batch=1, between=_kill)
    assert _told(db) == {}  # nobody told yet: the run is not over
    # when the next hourly run takes it over (and another run comes after it)
    with time_machine.travel(LATER, tick=False):
        dunning.run_all(db, TODAY, batch=1)
        assert dunning.run_all(db, TODAY, batch=1).sent == {}
    # then each person got one message, covering the killed run's part and the rest
    told = _told(db)
    assert_each_told_once(told)
    # keyed by the run (its first notice) and the person: a second summary could not repeat it
    with db.read_session() as s:
        summary = _outbox(s, "dunning_summary")[0].dedupe_key
    first = summary.rsplit(":", 1)[1]
    assert told["UCOLL001"][0].dedupe_key == f"dunning-people:{TODAY}:{first}:UCOLL001"


def test_a_person_with_500_customers_gets_one_message_within_block_kit_limits(db) -> None:
    # given a collector with 500 customers, one invoice each now overdue
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
    now = datetime(2026, 11, 23, tzinfo=UTC)
    with db.engine.begin() as conn:
        conn.execute(Customer.__table__.insert(), [
            {"external_id": f"C-{i:03d}", "name": f"<Customer {i:03d}>", "currency": "USD",
             "credit_limit_minor": 0, "payment_terms": "NET30", "collector_id": "UCOLL001",
             "tax_rate_bp": 0, "credit_reviewed": True, "credit_hold": False,
             "billing_email": f"ap{i}@example.com", "created_at": now, "updated_at": now}
            for i in range(500)])
        ids = [r[0] for r in conn.execute(select(Customer.id).order_by(Customer.id))]
        conn.execute(Invoice.__table__.insert(), [
            {"number": f"INV-{n:03d}", "customer_id": cid, "source": "erp",
             "currency": "USD", "issue_date": TODAY - timedelta(days=32),
             "due_date": TODAY - timedelta(days=2), "payment_terms": "NET30",
             "subtotal_minor": 1000 + n, "discount_minor": 0, "fees_minor": 0,
             "tax_minor": 0, "total_minor": 1000 + n, "balance_minor": 1000 + n,
             "created_at": now} for n, cid in enumerate(ids)])
    # when the run goes over them
    run = dunning.run_all(db, TODAY, batch=100)
    assert run.sent == {1: 500}
    # then one message, naming the top customers by amount and "and N more"
    [row] = _told(db)["UCOLL001"]
    [reminder] = row.payload["context"]["kinds"]
    assert (reminder["customers"], reminder["invoices"]) == (500, 500)
    assert [c["first"]["number"] for c in reminder["top"]] == [
        f"INV-{n}" for n in range(499, 489, -1)]
    assert reminder["totals"] == [{"currency": "USD",
                                   "amount_minor": sum(1000 + n for n in range(500))}]
    message = render_template("dunning_people", row.payload["context"])
    assert validate_message(message) == (None, []) and len(message["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"]
               if b["type"] == "section")
    text = json.dumps(message)
    assert "and 490 more customers" in text and "&lt;Customer 499&gt;" in text


def test_a_summary_counted_ahead_is_counted_again_when_the_run_wrote_since(db) -> None:
    # given a run's summary and messages counted ahead after its first write transaction
    given_a_reps_customers(db)
    with pytest.raises(Killed):
        dunning.run_all(db, TODAY, batch=1, between=_kill)
    with db.read_session() as s:
        [record] = s.exec(select(DunningRunRecord)).all()
        counted = dunning.count_ahead(s, record.id)
    assert counted.summary["notices"] == 2 and sorted(counted.people) == ["UCOLL001",
                                                                          "USALES01"]
    # when the run writes the rest before it is summarised
    with db.transaction() as s:
        run = dunning.DunningRun(TODAY, id=record.id)
        found = dunning.due_invoices(s, TODAY, dunning.due_customers(s, TODAY))
        for chunk in dunning._chunks(found, 100):
            dunning._write_chunk(s, chunk, TODAY, run)
        assert run.id == record.id
    with db.transaction() as s:
        assert dunning.summarise(s, record.id, counted=counted) is not None
    # then what was counted ahead is not what is posted: everything the run sent is
    with db.read_session() as s:
        [summary] = _outbox(s, "dunning_summary")
    assert summary.payload["context"]["notices"] == 6
    told = _told(db)
    assert sorted(told) == ["UBOTH001", "UCOLL001", "USALES01", "USALES02"]
    assert _listed(told["UCOLL001"][0])["escalation"] == [("Globex", "INV-2", 1),
                                                          ("Initech", "INV-3", 1)]
