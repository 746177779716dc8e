"""Collections end to end: signed Slack requests to the real server, the Slack stand-in, a real
local SMTP server, and `o2c run` as a real subprocess.

Acceptance 1: invoices across every bucket -> `o2c run digest` -> one DM per collector with the
right totals and order; the buttons work (promise modal saves, reminder e-mail sent)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, CollectionActivity, PromiseToPay
from sandbox.webapi import Fault
from tests.conftest import start_server
from tests.conftest import test_settings as make_settings
from tests.support import factories as f
from tests.support.processes import o2c_env, o2c_run
from tests.support.slack import ask, text_of
from tests.support.timetravel import frozen_at

TODAY = date(2026, 11, 24)  # a Tuesday
# time flows in these tests (the outbox retries), from noon UTC on TODAY
frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)


@pytest.fixture
def smtp_server(database_url, standin, smtp):
    running = start_server(make_settings(database_url, standin.api_url, smtp_url=smtp.url,
                                         o2c_from_email="ar@seller.example"))
    running.worker.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


@pytest.fixture
def book(smtp_server, standin):
    """Two collectors; invoices in every aging bucket."""
    standin.api.add_user("UCOLL002", "cora.collector", real_name="Cora Collector", tz="UTC")
    today = TODAY
    ids = {}
    with smtp_server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector", timezone="America/Los_Angeles")
        f.user(s, "UCOLL002", "collector")
        f.user(s, "USALES01", "sales")
        ids["A"] = f.customer(s, "C-A", "Acme Anvils", collector="UCOLL001",
                              sales_rep="USALES01", billing_email="ap@acme.example").id
        ids["B"] = f.customer(s, "C-B", "Beta Bolts", collector="UCOLL001",
                              billing_email="ap@beta.example").id
        ids["C"] = f.customer(s, "C-C", "Gamma Gears", collector="UCOLL002").id
        f.invoice(s, "A-CUR", "C-A", total="100.00", due=today + timedelta(days=10))
        f.invoice(s, "A-90", "C-A", total="1000.00", due=today - timedelta(days=120))
        f.invoice(s, "B-30", "C-B", total="2000.00", due=today - timedelta(days=5))
        f.invoice(s, "B-60", "C-B", total="300.00", due=today - timedelta(days=40))
        f.invoice(s, "B-61", "C-B", total="400.00", due=today - timedelta(days=75))
        f.invoice(s, "C-30", "C-C", total="70.00", due=today - timedelta(days=3))
    return ids


def _digest(standin, user_id: str) -> dict:
    return standin.api.wait_for(lambda: standin.api.dm_messages(user_id), 15,
                                f"a digest DM to {user_id}")[0]


def test_o2c_run_digest_sends_one_ranked_dm_per_collector(book, smtp_server, standin,
                                                          database_url) -> None:
    # when the job runs twice from the command line
    env = o2c_env(database_url, standin.api_url)
    first = o2c_run(env, "run", "digest", "--as-of", TODAY.isoformat())
    second = o2c_run(env, "run", "digest", "--as-of", TODAY.isoformat())
    # then
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["digests"] == 2
    assert json.loads(second.stdout)["digests"] == 0
    one, two = _digest(standin, "UCOLL001"), _digest(standin, "UCOLL002")
    text = text_of(one)
    assert "current USD 100.00" in text and "1-30 USD 2,000.00" in text
    assert "31-60 USD 300.00" in text and "61-90 USD 400.00" in text
    assert "90+ USD 1,000.00" in text and "overdue *USD 3,700.00*" in text
    # Beta: 2000 x 1.0 + 300 x 1.5 + 400 x 2.0 = 3250.00 ranks above Acme: 1000 x 3.0
    assert text.index("Beta Bolts") < text.index("Acme Anvils")
    assert "priority" not in text and "risk" not in text  # no internals on screen
    assert "Ranked by how much is overdue and for how long" in text
    assert "Gamma Gears" in text_of(two) and "Acme" not in text_of(two)
    standin.api.wait_for(lambda: len(standin.api.calls_to("chat.postMessage")) >= 2, 5)
    posts = [c for c in standin.api.calls_to("chat.postMessage") if c.ok]
    assert sorted(c.params["channel"] for c in posts) == ["UCOLL001", "UCOLL002"]


def test_digest_buttons_promise_reminder_call_snooze(book, smtp_server, standin, smtp) -> None:
    from bot.jobs import run_job
    from sandbox.driver import SlackDriver
    from tests.conftest import SIGNING_SECRET

    slack = SlackDriver(f"{smtp_server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    run_job("digest", smtp_server.deps, TODAY)
    digest = _digest(standin, "UCOLL001")
    beta = f"collections_account:{book['B']}"

    # Promise to pay: the modal opens, refuses a bad amount inline, then saves
    slack.click("UCOLL001", digest, "collections_promise", block_id=beta)
    modal = standin.api.wait_for(lambda: standin.api.views_for("UCOLL001"), 10, "modal")[-1]
    assert modal["callback_id"] == "collections_promise_modal"
    slack.submit_view("UCOLL001", modal, {"promise_amount": {"promise_amount_input": "12.345"},
                                          "promise_date": {"promise_date_input": TODAY}})
    errors = standin.api.view_errors(modal["id"])
    assert "promise_amount" in errors and "at most 2 decimals" in errors["promise_amount"]
    promised = TODAY + timedelta(days=3)
    slack.submit_view("UCOLL001", modal, {"promise_amount": {"promise_amount_input": "1500.00"},
                                          "promise_date": {"promise_date_input": promised},
                                          "promise_note": {"promise_note_input": "<!here> wire"}})
    assert standin.api.views_for("UCOLL001") == []

    def promises() -> list[PromiseToPay]:  # recorded after the ack
        with smtp_server.db.read_session() as s:
            return s.exec(select(PromiseToPay)).all()

    [promise] = standin.api.wait_for(promises, 10, "the promise")
    assert (promise.amount_minor, promise.promised_date, promise.created_by) == (
        150000, promised, "UCOLL001")

    # Send reminder: the e-mail reaches the SMTP server, once even when clicked twice
    slack.click("UCOLL001", digest, "collections_reminder", block_id=beta)
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "ap@beta.example"
    assert "B-30" in mail.get_content() and "USD 2,700.00" in mail.get_content()
    slack.click("UCOLL001", digest, "collections_reminder", block_id=beta)
    standin.api.wait_for(lambda: any("already went" in text_of(r["payload"])
                                     for r in standin.api.responses), 10, "refusal")
    assert len(smtp.received()) == 1

    # Log call and snooze
    slack.click("UCOLL001", digest, "collections_log_call", block_id=beta)
    call_modal = standin.api.wait_for(lambda: standin.api.views_for("UCOLL001"), 10)[-1]
    slack.submit_view("UCOLL001", call_modal, {"call_note": {"call_note_input": "AP on it"}})
    slack.click("UCOLL001", digest, "collections_snooze", block_id=beta)
    standin.api.wait_for(lambda: any("snoozed until" in text_of(r["payload"])
                                     for r in standin.api.responses), 10, "snooze answer")
    def kinds() -> list[str]:
        with smtp_server.db.read_session() as s:
            return sorted(s.exec(select(CollectionActivity.kind).where(
                CollectionActivity.customer_id == book["B"])).all())

    standin.api.wait_for(lambda: len(kinds()) == 4, 10, "the call logged")
    assert kinds() == ["call", "promise", "reminder", "snooze"]

    # and the digest's row of that account was updated in place after each (issue 13)
    def row_now() -> str:
        now = standin.api.message(digest["channel"], digest["ts"])
        block = next(b for b in now["blocks"]
                     if b.get("type") == "section" and "Beta Bolts" in b["text"]["text"])
        return block["text"]["text"]

    done = ("Promise recorded by <@UCOLL001>", "Reminder sent by <@UCOLL001>",
            "Call logged by <@UCOLL001>", "AP on it", "Snoozed by <@UCOLL001>")
    # (the call is logged after its modal's ack: its update may be the last to arrive)
    standin.api.wait_for(lambda: all(d in row_now() for d in done) or None, 10,
                         "the digest row with all four actions")
    row = row_now()
    assert "Last contact: never" not in row and "no promise" not in row
    assert "open: USD 1,500.00 by" in row

    # the worklist now shows the promise and hides the snoozed account
    answer = text_of(ask(slack, standin.api, "UCOLL001", "worklist"))
    assert "Acme Anvils" in answer and "Beta Bolts" not in answer and "1 snoozed" in answer


def test_buttons_refuse_someone_without_the_collector_role(book, smtp_server, standin, smtp
                                                           ) -> None:
    from bot.jobs import run_job
    from sandbox.driver import SlackDriver
    from tests.conftest import SIGNING_SECRET

    slack = SlackDriver(f"{smtp_server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    run_job("digest", smtp_server.deps, TODAY)
    digest = _digest(standin, "UCOLL001")
    beta = f"collections_account:{book['B']}"
    # when someone else clicks the buttons of a forwarded digest
    for action in ("collections_reminder", "collections_promise", "collections_snooze"):
        slack.click("USALES01", digest, action, block_id=beta)
    # then nothing happens, each refusal is audited, and the user is told
    refused_text = ":no_entry_sign: Only a collector or an admin can do this"
    standin.api.wait_for(lambda: sum(refused_text in text_of(r["payload"])
                                     for r in standin.api.responses) >= 3, 10, "refusals")
    assert standin.api.views_for("USALES01") == [] and smtp.received() == []
    with smtp_server.db.read_session() as s:
        refused = s.exec(select(AuditEvent.action).where(AuditEvent.actor == "USALES01")).all()
        assert sorted(refused) == ["refused.collections.promise",
                                   "refused.collections.reminder", "refused.collections.snooze"]
        assert s.exec(select(CollectionActivity)).all() == []
    assert refused_text in text_of(ask(slack, standin.api, "USALES01", "worklist"))


def test_worklist_and_app_home_show_the_ranked_list(book, smtp_server, standin) -> None:
    from sandbox.driver import SlackDriver
    from tests.conftest import SIGNING_SECRET

    slack = SlackDriver(f"{smtp_server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    answer = text_of(ask(slack, standin.api, "UCOLL001", "worklist"))
    assert answer.index("Beta Bolts") < answer.index("Acme Anvils")
    slack.app_home_opened("UCOLL001")
    home = standin.api.wait_for(lambda: standin.api.home_view("UCOLL001"), 10, "home")
    assert "Your collections worklist" in text_of(home) and "Beta Bolts" in text_of(home)


def test_chat_post_message_429_then_503_arrives_exactly_once(book, smtp_server, standin
                                                             ) -> None:
    """Acceptance 3."""
    from bot.jobs import run_job
    from models import OutboxMessage

    # given Slack answers 429 (Retry-After: 1), then 503
    standin.api.inject("chat.postMessage", Fault(status=429, retry_after=1), Fault(status=503))
    # when the digest for one collector is queued
    with smtp_server.db.transaction() as s:
        from workflows.collections import prepare_digests, record_digests

        record_digests(s, TODAY, prepare_digests(s, TODAY, collector_ids=["UCOLL002"]))
    smtp_server.deps.notify_outbox()
    # then it arrives once, after the two failures
    standin.api.wait_for(lambda: [c for c in standin.api.calls_to("chat.postMessage") if c.ok],
                         20, "a successful chat.postMessage")
    run_job("digest", smtp_server.deps, TODAY)  # UCOLL002 already has today's digest
    standin.api.wait_for(lambda: len(standin.api.dm_messages("UCOLL001")) == 1, 10)
    calls = [c for c in standin.api.calls_to("chat.postMessage")
             if c.params.get("channel") == "UCOLL002"]
    assert [c.status for c in calls] == [429, 503, 200]
    assert len(standin.api.dm_messages("UCOLL002")) == 1
    with smtp_server.db.read_session() as s:
        row = s.exec(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("digest:UCOLL002:%"))).one()
    assert row.status == "sent" and row.attempts == 2  # the 429 cost no attempt


def test_account_modals_open_while_a_long_job_holds_the_write_lock(book, smtp_server,
                                                                  standin) -> None:
    from bot.jobs import run_job
    from models import Customer
    from sandbox.driver import SlackDriver
    from tests.conftest import SIGNING_SECRET

    slack = SlackDriver(f"{smtp_server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    run_job("digest", smtp_server.deps, TODAY)
    digest = _digest(standin, "UCOLL001")
    beta = f"collections_account:{book['B']}"
    # given a long write transaction (on SQLite it holds the database's write lock)
    with smtp_server.db.transaction() as busy:
        busy.exec(select(Customer)).first()
        # when the collector clicks "Promise to pay" and "Log call" meanwhile
        slack.click("UCOLL001", digest, "collections_promise", block_id=beta)
        slack.click("UCOLL001", digest, "collections_log_call", block_id=beta)
        # then both modals open at once: the role check only reads (a trigger_id lasts 3 s)
        opened = standin.api.wait_for(
            lambda: [c for c in standin.api.calls_to("views.open") if c.ok][1:] and
            [c for c in standin.api.calls_to("views.open") if c.ok], 3, "two modals")
    assert sorted(c.params["view"]["callback_id"] for c in opened) == [
        "collections_call_modal", "collections_promise_modal"]


def test_admin_outbox_lists_with_a_count_and_audits_retries(server, slack, standin) -> None:
    from models import OutboxMessage
    from tests.conftest import ADMIN

    # given 25 failed messages with long errors
    with server.db.transaction() as s:
        rows = [OutboxMessage(transport="slack", method="chat.postMessage", status="failed",
                              attempts=5, last_error="channel_not_found: " + "x" * 500,
                              payload={"channel": "ar", "template": "text",
                                       "context": {"text": f"note {i}"}})
                for i in range(25)]
        s.add_all(rows)
        s.flush()
        first_id = rows[0].id
    # when an admin lists the outbox
    answer = ask(slack, standin.api, ADMIN, "admin outbox")
    # then the failed section says how many more rows it did not show, within Slack's limits
    failed = answer["blocks"][0]["text"]["text"]
    assert failed.startswith("*Failed*") and len(failed) <= 3000
    shown = failed.count("channel_not_found")
    assert 0 < shown < 20 and f"…and {20 - shown} more" in failed
    # when an admin re-queues one message, then all
    assert "1 message(s) queued again" in text_of(
        ask(slack, standin.api, ADMIN, f"admin outbox retry {first_id}"))
    assert "24 message(s) queued again" in text_of(
        ask(slack, standin.api, ADMIN, "admin outbox retry all"))
    # and an id that is no row id (other digits, past the column's range) is told the usage
    for which in ("²", "99999999999999999999999"):
        assert "Usage: `/o2c admin outbox [retry &lt;id|all&gt;]`" in text_of(
            ask(slack, standin.api, ADMIN, f"admin outbox retry {which}"))
    # and someone else may not
    assert "Only an admin can do this" in text_of(ask(slack, standin.api, "UCOLL001",
                                       "admin outbox retry all"))
    # then each re-queue is audited with the admin as the actor; the refusal too
    with server.db.read_session() as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action.in_(
            ["outbox.requeue", "refused.admin.outbox"])).order_by(AuditEvent.id)).all()
    assert [(e.actor, e.action, e.entity_id, e.data.get("count")) for e in events] == [
        (ADMIN, "outbox.requeue", str(first_id), 1), (ADMIN, "outbox.requeue", "all", 24),
        ("UCOLL001", "refused.admin.outbox", "-", None)]


def test_two_collectors_a_date_line_apart_send_one_reminder_a_day(book, smtp_server, standin,
                                                                  smtp) -> None:
    """"Send reminder" e-mails a customer once a day, whoever clicks: the day is the books'
    (the business time zone), not each clicker's, else a collector in Los Angeles (still the
    24th) and one in London (already the 25th) e-mail the same customer minutes apart."""
    import time_machine

    from bot.jobs import run_job
    from sandbox.driver import SlackDriver
    from tests.conftest import SIGNING_SECRET

    slack = SlackDriver(f"{smtp_server.base_url}/slack/events", SIGNING_SECRET, api=standin.api)
    run_job("digest", smtp_server.deps, TODAY)
    digest = _digest(standin, "UCOLL001")
    beta = f"collections_account:{book['B']}"
    # 04:00 UTC on the 25th: the 24th in Los Angeles (UCOLL001), the 25th in UTC (UCOLL002)
    with time_machine.travel(datetime.combine(TODAY + timedelta(days=1), time(4), UTC),
                             tick=True):
        slack.click("UCOLL001", digest, "collections_reminder", block_id=beta)
        [mail] = smtp.wait_for(1)
        assert mail["To"] == "ap@beta.example"
        slack.click("UCOLL002", digest, "collections_reminder", block_id=beta)
        standin.api.wait_for(lambda: any("already went" in text_of(r["payload"])
                                         for r in standin.api.responses), 10, "refusal")
    assert len(smtp.received()) == 1
    with smtp_server.db.read_session() as s:
        assert s.exec(select(CollectionActivity.kind).where(
            CollectionActivity.customer_id == book["B"])).all() == ["reminder"]
