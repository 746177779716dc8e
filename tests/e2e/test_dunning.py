"""Dunning end to end against a real local SMTP server and the Slack stand-in.

Acceptance 2: dunning run twice on the same day, and again after a restart (a new server on
the same database), sends each (invoice, level) once — the customer's notices of the run in
one statement-style e-mail (issue 18). Also: without SMTP_URL the e-mails stay
queued and are visible in Slack (AR channel, `/o2c admin outbox`)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import select

from bot.jobs import run_job
from models import Customer, DunningNotice, OutboxMessage
from sandbox.driver import SlackDriver
from tests.conftest import ADMIN, SIGNING_SECRET, start_server
from tests.conftest import test_settings as make_settings
from tests.support import factories as f
from tests.support.processes import o2c_env, o2c_run
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
# time flows in these tests (the outbox retries), from noon UTC on TODAY
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)


def _seed(db) -> None:
    today = TODAY
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-A", "Acme Anvils", collector="UCOLL001", sales_rep="USALES01",
                   billing_email="ap@acme.example")
        for days in (-3, 1, 7, 14, 30):  # exactly on each level
            f.invoice(s, f"INV-{days:+d}", "C-A", total="100.00",
                      due=today - timedelta(days=days))
        f.invoice(s, "INV-DISPUTED", "C-A", due=today - timedelta(days=7))
        f.dispute(s, "INV-DISPUTED")  # the whole balance


def _server(database_url, standin, **extra):
    running = start_server(make_settings(database_url, standin.api_url, **extra))
    running.worker.poll_interval = 0.05
    return running


def _settle(running, standin) -> None:
    """Wait until the outbox has nothing left to deliver."""
    def idle() -> bool:
        with running.db.read_session() as s:
            return not s.exec(select(OutboxMessage).where(
                OutboxMessage.status.in_(["pending", "sending"]),
                OutboxMessage.transport.in_(["slack", "email"]))).all()
    standin.api.wait_for(idle, 20, "the outbox to drain")


def test_dunning_twice_and_after_restart_sends_each_level_once(database_url, standin,
                                                                smtp) -> None:
    # given
    first = _server(database_url, standin, smtp_url=smtp.url)
    _seed(first.db)
    try:
        # when dunning runs twice on the same day
        summaries = [run_job("dunning", first.deps, TODAY) for _ in range(2)]
        _settle(first, standin)
    finally:
        first.stop()
        first.db.dispose()
    # then
    assert summaries[0]["notices"] == {"-3": 1, "1": 1, "7": 1, "14": 1, "30": 1}
    assert summaries[1]["notices"] == {} and summaries[0]["credit_holds"] == 1
    [mail] = smtp.wait_for(1)
    assert mail["Subject"].startswith("FINAL NOTICE: 4 invoices seriously overdue")
    body = mail.get_body(("plain",)).get_content()
    for number in ("INV--3", "INV-+1", "INV-+7", "INV-+30"):  # +14 e-mails nobody
        assert number in body
    assert "INV-+14" not in body and "INV-DISPUTED" not in body

    # when the server restarts (a new app on the same database) and dunning runs again,
    # in the server and from the command line
    second = _server(database_url, standin, smtp_url=smtp.url)
    try:
        again = run_job("dunning", second.deps, TODAY)
        cli = o2c_run(o2c_env(database_url, standin.api_url, SMTP_URL=smtp.url),
                      "run", "dunning", "--as-of", TODAY.isoformat())
        next_day = run_job("dunning", second.deps, TODAY + timedelta(days=1))
        _settle(second, standin)
        # then nothing more is sent
        assert again["notices"] == {} and next_day["notices"] == {}
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["notices"] == {}
        assert len(smtp.received()) == 1
        with second.db.read_session() as s:
            levels = sorted(s.exec(select(DunningNotice.level)
                                   .where(DunningNotice.skipped.is_(False))).all())
            assert levels == [-3, 1, 7, 14, 30]  # the levels passed over: recorded, skipped
            assert s.exec(select(Customer)).one().credit_hold is True
    finally:
        second.stop()
        second.db.dispose()

    # the Slack side: the rep and the collector each got one message for the run (none for
    # the later runs), naming the overdue notice (+1), the escalation (+14) and the final
    # notice (+30) with its credit hold (the rep also owns the dispute on INV-DISPUTED: its
    # card is not dunning)
    for user in ("USALES01", "UCOLL001"):
        dms = [m for m in standin.api.dm_messages(user) if not m["text"].startswith("Dispute #")]
        assert len(dms) == 1, dms
        assert dms[0]["text"].startswith(f"Dunning {TODAY:%d %b %Y}: 3 overdue invoices")
        body = text_of(dms[0])
        assert "Now overdue" in body and "Escalation" in body and "credit hold" in body
        for number in ("INV-+1", "INV-+14", "INV-+30"):
            assert number in body
        assert "INV-+7" not in body and "INV--3" not in body  # the customer's e-mails only
    # and the AR channel got one summary post for the run, naming the credit hold
    assert sum("credit hold" in text_of(m) for m in standin.api.messages("CAR000001")) == 1


def test_without_smtp_emails_stay_queued_and_visible_in_slack(server, standin) -> None:
    # given no SMTP_URL
    _seed(server.db)
    slack = SlackDriver(f"{server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    # when
    run_job("dunning", server.deps, TODAY)
    # then the customer's e-mail (one statement for the run) has a copy in the AR channel
    def copies() -> list[dict]:
        return [m for m in standin.api.messages("CAR000001") if "queued" in m["text"]]

    standin.api.wait_for(lambda: len(copies()) >= 1, 15, "the queued-e-mail copy")
    assert len(copies()) == 1
    assert any("FINAL NOTICE" in text_of(m) and "ap@acme.example" in text_of(m)
               for m in copies())
    with server.db.read_session() as s:
        emails = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).all()
    assert [e.status for e in emails] == ["pending"]
    # and admins see them in /o2c admin outbox; others may not
    listing = text_of(ask(slack, standin.api, ADMIN, "admin outbox"))
    assert "Waiting for delivery" in listing and "dunning_statement" in listing
    refused = text_of(ask(slack, standin.api, "UCOLL001", "admin outbox"))
    assert "Only an admin can do this" in refused
    # run_once again: no second copy
    server.worker.run_once()
    assert len(copies()) == 1


def test_o2c_outbox_lists_waiting_emails_and_retries_failed(database_url, standin) -> None:
    from bot.db import Database

    db = Database(database_url)
    _seed(db)
    with db.transaction() as s:
        from workflows.dunning import run_dunning

        run_dunning(s, TODAY)
        failed = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "slack")).first()
        failed.status, failed.last_error = "failed", "slack error channel_not_found"
        s.add(failed)
    env = o2c_env(database_url, standin.api_url)
    listing = o2c_run(env, "outbox")
    assert listing.returncode == 0, listing.stderr
    assert f"failed #{failed.id}" in listing.stdout and "channel_not_found" in listing.stdout
    assert "waiting" in listing.stdout and "dunning_statement -> ap@acme.example" in listing.stdout
    retried = o2c_run(env, "outbox", "--retry", str(failed.id))
    assert "1 message(s) queued again" in retried.stdout
    with db.read_session() as s:
        assert s.get(OutboxMessage, failed.id).status == "pending"
    db.dispose()
