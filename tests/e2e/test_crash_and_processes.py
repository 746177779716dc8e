"""Real `o2c serve` subprocesses.

Acceptance 4: a server killed (SIGKILL) between commit and delivery loses nothing; the next
server delivers the message once.
Acceptance 5: two server processes on one database (PostgreSQL under O2C_TEST_DB=postgresql)
with the scheduler on: the digest and each dunning message go out once."""

from __future__ import annotations

import datetime as dt
import json
import time
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlmodel import select

from bot.db import Database
from models import DigestRun, DunningNotice, JobRun, OutboxMessage
from sandbox.driver import SlackDriver
from tests.conftest import API_TOKEN, SIGNING_SECRET
from tests.support import factories as f
from tests.support.processes import ServeProcess, o2c_env
from tests.support.slack import text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
# time flows in these tests (the outbox retries), from noon UTC on TODAY
frozen_time = frozen_at(datetime.combine(TODAY, dt.time(12), UTC), tick=True)


def test_sigkill_between_commit_and_delivery_loses_nothing(database_url, standin, smtp,
                                                           tmp_path) -> None:
    db = Database(database_url)
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-A", "Acme Anvils", collector="UCOLL001", sales_rep="USALES01",
                   billing_email="ap@acme.example")
        # the order's customer has no e-mail address: its order confirmation is not sent
        f.customer(s, "C-B", "Bolt Buyers", sales_rep="USALES01", billing_email=None)
        f.product(s, "WID-1", price="10.00")
        f.invoice(s, "INV-LATE", "C-A", total="500.00", due=TODAY - timedelta(days=9))
    # given a server whose outbox worker is off (so nothing is delivered after the commit)
    env = o2c_env(database_url, standin.api_url, O2C_OUTBOX_WORKER="false")
    first = ServeProcess(env, tmp_path / "first.log").start()
    try:
        slack = SlackDriver(f"{first.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
        # when state changes that notify: an order (DM to the rep) and a reminder e-mail
        created = httpx.post(f"{first.base_url}/api/v1/orders", headers={
            "Authorization": f"Bearer {API_TOKEN}"}, json={
            "customer": "C-B", "sales_rep": "USALES01", "currency": "USD",
            "lines": [{"sku": "WID-1", "quantity": 2}]}, timeout=30)
        assert created.status_code == 201, created.text
        assert slack.slash("UCOLL001", "worklist").status_code == 200
        worklist = standin.api.wait_for(lambda: standin.api.ephemerals("UCOLL001"), 15)[0]
        slack.click("UCOLL001", worklist, "collections_reminder")
        standin.api.wait_for(lambda: any("Reminder queued" in text_of(r["payload"])
                                         for r in standin.api.responses), 15, "reminder")
    finally:
        first.kill()  # SIGKILL: no shutdown, no flush, nothing delivered
    with db.read_session() as s:
        waiting = s.exec(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
    assert sorted(r.transport for r in waiting) == ["email", "slack"]
    assert standin.api.dm_messages("USALES01") == [] and smtp.received() == []

    # then a new server (worker on, SMTP configured) delivers each message once
    second = ServeProcess({**env, "O2C_OUTBOX_WORKER": "true", "SMTP_URL": smtp.url},
                          tmp_path / "second.log").start()
    try:
        [mail] = smtp.wait_for(1, timeout=20)
        standin.api.wait_for(lambda: standin.api.dm_messages("USALES01"), 20, "order DM")
        time.sleep(1.5)  # a second worker pass would show up as a duplicate
        assert mail["To"] == "ap@acme.example" and "INV-LATE" in mail.get_content()
        assert len(smtp.received()) == 1
        assert len(standin.api.dm_messages("USALES01")) == 1
        posts = [c for c in standin.api.calls_to("chat.postMessage")
                 if c.ok and c.params.get("channel") == "USALES01"]
        assert len(posts) == 1
    finally:
        second.stop()
    with db.read_session() as s:
        statuses = sorted(r.status for r in s.exec(select(OutboxMessage)).all())
    assert statuses == ["sent", "sent"]
    db.dispose()


def _dunning_dms(standin, user: str) -> list[dict]:
    """The person's dunning messages (one per run)."""
    return [m for m in standin.api.dm_messages(user) if m["text"].startswith("Dunning ")]


def test_two_server_processes_send_the_digest_and_each_dunning_message_once(
        database_url, standin, smtp, tmp_path) -> None:
    today = TODAY
    db = Database(database_url)
    standin.api.add_user("UCOLL002", "cora.collector", tz="UTC")
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCOLL002", "collector")
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-A", "Acme", collector="UCOLL001", sales_rep="USALES01",
                   billing_email="ap@acme.example")
        f.customer(s, "C-B", "Beta", collector="UCOLL002", sales_rep="USALES01",
                   billing_email="ap@beta.example")
        for ext in ("C-A", "C-B"):
            for days in (-3, 1, 7, 14, 30):
                f.invoice(s, f"{ext}-{days:+d}", ext, total="100.00",
                          due=today - timedelta(days=days))
    # given two servers sharing the database, each with the scheduler firing every second
    schedules = json.dumps({"digest": {"second": "*"}, "dunning": {"second": "*"},
                            "digest-schedule": {"hour": "0", "minute": "0",
                                                "day_of_week": "sun", "month": "1",
                                                "day": "1"}})
    env = o2c_env(database_url, standin.api_url, O2C_SCHEDULER="true", SMTP_URL=smtp.url,
                  O2C_JOB_SCHEDULES=schedules)
    servers = [ServeProcess(env, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        # when both fire the jobs for a while
        expected_mails = 2  # one statement per customer (friendly, reminder, firm, final)
        smtp.wait_for(expected_mails, timeout=60)
        standin.api.wait_for(lambda: standin.api.dm_messages("UCOLL001")
                             and standin.api.dm_messages("UCOLL002"), 60, "digests")
        standin.api.wait_for(lambda: _dunning_dms(standin, "USALES01"), 60,
                             "the rep's dunning message")
        time.sleep(4)  # several more firings in both processes
    finally:
        for server in servers:
            server.stop()
    # then
    mails = smtp.received()
    assert len(mails) == expected_mails
    keys = sorted((m["To"], m["Subject"].split(":")[0]) for m in mails)
    assert len(set(keys)) == expected_mails
    digests = {u: [m for m in standin.api.dm_messages(u) if "digest" in m["text"].lower()]
               for u in ("UCOLL001", "UCOLL002")}
    assert {u: len(v) for u, v in digests.items()} == {"UCOLL001": 1, "UCOLL002": 1}
    # the rep heard of both customers' escalations (and the rest) in one message for the run
    [told] = _dunning_dms(standin, "USALES01")
    assert all(name in text_of(told) for name in ("Escalation", "Acme", "Beta", "C-A-+14",
                                                   "C-B-+14"))
    assert {u: len(_dunning_dms(standin, u)) for u in ("UCOLL001", "UCOLL002")} == {
        "UCOLL001": 1, "UCOLL002": 1}
    with db.read_session() as s:
        assert len(s.exec(select(DigestRun)).all()) == 2
        assert len(s.exec(select(DunningNotice)
                          .where(DunningNotice.skipped.is_(False))).all()) == 10
        runs = s.exec(select(JobRun)).all()
        assert len({(r.job, r.run_key) for r in runs}) == len(runs)
    logs = [(tmp_path / f"server{i}.log").read_text() for i in range(2)]
    assert all("Traceback" not in log for log in logs), logs
    # both processes fired the jobs; the losers skipped (lock held, or the firing already ran)
    skipped = "another process is running it", "already run"
    assert sum(log.count(text) for log in logs for text in skipped) >= 2
    db.dispose()
