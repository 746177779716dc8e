"""`o2c run approval-reminders --as-of DATE` in its own process (issue 3, acceptance 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from models import Approval, OutboxMessage
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support import factories as f
from tests.support.timetravel import child_env

ROOT = Path(__file__).resolve().parents[2]


def run_reminders(database_url: str, as_of: str) -> dict:
    # `o2c run` builds the whole runtime, which wants the Slack settings production has
    env = {**os.environ, "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN,
           "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "run", "approval-reminders",
                           "--as-of", as_of], cwd=ROOT, env=child_env(env), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_reminds_once_per_interval_as_of_close_of_business(database_url, db) -> None:
    # given a request made on Monday 2 March 2026 at 09:00 (working hours 09:00-17:00 UTC)
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-NEW", "Newco", reviewed=False)
        f.product(s, "WID-1")
        number = f.order(s, "C-NEW", now=datetime(2026, 3, 2, 9, 0, tzinfo=UTC)).number
    # when run as of that Monday (evaluated at 17:00: 8 working hours)
    first = run_reminders(database_url, "2026-03-02")
    # then one reminder; running again for the same day adds nothing
    assert first["evaluated_at"] == "2026-03-02T17:00:00+00:00"
    assert [(r["order"], r["reminder"]) for r in first["reminders"]] == [(number, 1)]
    assert run_reminders(database_url, "2026-03-02")["reminded"] == 0
    # when run as of Tuesday (another 8 working hours), then the second reminder
    assert [r["reminder"] for r in run_reminders(database_url, "2026-03-03")["reminders"]] == [2]
    with db.read_session() as s:
        assert s.exec(select(Approval.reminders_sent)).one() == 2
        posted = s.exec(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("approval-reminder:%"))).all()
        assert [m.payload["channel"] for m in posted] == ["approvals", "approvals"]
