"""The CLI as an operator runs it: `o2c migrate && o2c serve` in real processes, settings
errors that name the variable, `o2c run` with an unknown job, `o2c outbox`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from bot.cli import main
from sandbox.driver import SlackDriver
from tests.conftest import API_TOKEN, BOT_TOKEN, SIGNING_SECRET, free_port
from tests.support.slack import ask, text_of
from tests.support.timetravel import child_env

ROOT = Path(__file__).resolve().parent.parent


def env_for(database_url: str, api_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "O2C_"))}
    env.update(DATABASE_URL=database_url, SLACK_BOT_TOKEN=BOT_TOKEN,
               SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=api_url,
               O2C_API_TOKEN=API_TOKEN, PORT=str(port), O2C_ADMINS="UADMIN01",
               O2C_APPROVALS_CHANNEL="CAPPROVAL", O2C_SCHEDULER="false")
    return child_env(env)


def test_migrate_then_serve_answers_lookups(tmp_path, standin) -> None:
    # given: a brand-new database file, migrated by the CLI
    port = free_port()
    env = env_for(f"sqlite:///{tmp_path / 'o2c.db'}", standin.api_url, port)
    migrated = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        api = httpx.Client(base_url=f"{base}/api/v1",
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
        # when: an ERP pushes master data and an order
        assert api.put("/users/USALES01", json={"name": "Sam", "roles": ["sales"]}
                       ).status_code == 201
        for body in ({"external_id": "C-1", "name": "Globex", "currency": "USD",
                      "credit_limit": "10000.00", "payment_terms": "NET30",
                      "credit_reviewed": True},
                     {"external_id": "C-2", "name": "Initech", "currency": "USD",
                      "credit_limit": "10000.00", "payment_terms": "NET30"}):
            assert api.post("/customers", json=body).status_code == 201
        assert api.post("/products", json={"sku": "W", "name": "Widget", "unit_price": "5.00",
                                           "currency": "USD", "on_hand": 10}).status_code == 201
        order = api.post("/orders", json={"customer": "C-1", "sales_rep": "USALES01",
                                          "currency": "USD",
                                          "lines": [{"sku": "W", "quantity": 2}]}).json()
        # then: signed slash commands see it
        slack = SlackDriver(f"{base}/slack/events", SIGNING_SECRET, api=standin.api)
        shown = text_of(ask(slack, standin.api, "USALES01", f"order {order['number']}"))
        assert order["number"] in shown and "USD 10.00" in shown
        found = text_of(ask(slack, standin.api, "USALES01", "customer glbex"))
        assert "Globex" in found and "Credit limit" in found
        # and the rep's DM went out through the outbox worker of that process
        standin.api.wait_for(lambda: standin.api.dm_messages("USALES01") or None, timeout=10)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)
    assert API_TOKEN not in output and SIGNING_SECRET not in output and BOT_TOKEN not in output


def test_serve_names_missing_settings(monkeypatch, capsys) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "O2C_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in err and "SLACK_SIGNING_SECRET" in err and "O2C_API_TOKEN" in err


@pytest.mark.parametrize("name, value", [("PORT", "eighty"), ("SLACK_API_URL", "ftp://x"),
                                         ("O2C_ADMINS", "bob"), ("DATABASE_URL", "mysql://x"),
                                         ("SMTP_URL", "http://mail")])
def test_invalid_settings_are_named(monkeypatch, capsys, name, value) -> None:
    monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 2
    assert name in capsys.readouterr().err


def test_run_unknown_job_lists_known_ones(monkeypatch, capsys, database_url) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["run", "nope"]) == 2
    assert "kpi-report" in capsys.readouterr().err


def test_run_help_names_every_job(monkeypatch, capsys) -> None:
    from bot.jobs import JOBS

    monkeypatch.setenv("COLUMNS", "1000")  # (argparse would wrap a name at its hyphens)
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    named = {name for name in text.replace(",", " ").split() if name in JOBS}
    assert named == set(JOBS)


def test_the_readme_names_every_job() -> None:
    import re

    from bot.jobs import JOBS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `o2c run <job>"))
    assert set(re.findall(r"`([a-z-]+)[` ]", row)) >= set(JOBS)


def test_outbox_command_lists_and_requeues_failed(monkeypatch, capsys, db, database_url) -> None:
    from models import OutboxMessage

    with db.transaction() as s:
        s.add(OutboxMessage(transport="slack", method="chat.postMessage", status="failed",
                            payload={"channel": "C1", "template": "text",
                                     "context": {"text": "hi"}},
                            last_error="slack error channel_not_found"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["outbox"]) == 0
    assert "channel_not_found" in capsys.readouterr().out
    for which in ("x", "\u00b2", "99999999999"):  # no row id: told so, nothing re-queued
        assert main(["outbox", "--retry", which]) == 2
        assert "--retry takes a message id or 'all'" in capsys.readouterr().err
    assert main(["outbox", "--retry", "all"]) == 0
    assert "1 message(s) queued again" in capsys.readouterr().out


def test_serve_uses_socket_mode_when_an_app_token_is_set(monkeypatch, database_url) -> None:
    # given: stand-ins for Slack's WebSocket client and for uvicorn
    started: dict[str, object] = {}

    class FakeHandler:
        def __init__(self, app, app_token: str) -> None:
            started["app"], started["token"] = app, app_token

        def start(self) -> None:
            started["connected"] = True

    import slack_bolt.adapter.socket_mode as socket_mode
    import uvicorn

    monkeypatch.setattr(socket_mode, "SocketModeHandler", FakeHandler)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(http=kw["port"]))
    for name, value in {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                        "O2C_API_TOKEN": API_TOKEN, "SLACK_APP_TOKEN": "xapp-1-test",
                        "DATABASE_URL": database_url, "PORT": "3999"}.items():
        monkeypatch.setenv(name, value)
    # when
    assert main(["serve"]) == 0
    time.sleep(0.2)
    # then: Slack traffic goes over the socket, and HTTP still serves the REST API
    assert started["token"] == "xapp-1-test" and started["connected"] is True
    assert started["http"] == 3999
    from slack_bolt import App

    assert isinstance(started["app"], App)


@pytest.mark.parametrize("command", [["migrate"], ["outbox"], ["run", "digest"],
                                     ["import", "payments", "payments.csv"]])
def test_a_database_that_is_down_is_one_clear_line_and_exit_3(tmp_path, command) -> None:
    # given a PostgreSQL address where nothing listens
    (tmp_path / "payments.csv").write_text("amount,currency,received_at\n5.00,USD,2026-11-20\n")
    env = env_for(f"postgresql://o2c:secret@127.0.0.1:{free_port()}/o2c",
                  "http://127.0.0.1:9/api/", free_port())
    # when
    done = subprocess.run([sys.executable, "-m", "bot.cli", *command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    # then
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("o2c:")]
    assert len(ours) == 1 and "cannot reach the database" in ours[0]


def test_a_command_that_lost_a_race_says_nothing_was_kept_and_to_run_it_again(
        monkeypatch, capsys) -> None:
    # given an import that PostgreSQL rolled back as a deadlock with another writer
    import sqlalchemy as sa

    import bot.cli as cli

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    def import_rolled_back(args) -> int:
        raise sa.exc.OperationalError("UPDATE products SET on_hand=%(on_hand)s", {},
                                      DeadlockDetected("deadlock detected\nDETAIL: Process 1"))

    monkeypatch.setattr(cli, "cmd_import", import_rolled_back)
    # when
    code = main(["import", "products", "products.csv"])
    # then one line says what happened: not "cannot reach the database"
    assert code == 3
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("o2c:")]
    assert ours == ["o2c: another writer changed the same rows at the same moment (deadlock "
                    "detected): everything this command did was rolled back; run it again"]


def _lost_a_race(times: int, real):
    """`real`, after raising PostgreSQL's "deadlock detected" `times` times."""
    import sqlalchemy as sa

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    calls = []

    def run(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise sa.exc.OperationalError("UPDATE products", {},
                                          DeadlockDetected("deadlock detected"))
        return real(*args, **kwargs)

    return run, calls


@pytest.mark.parametrize(("losses", "code"), [(1, 0), (3, 3)])
def test_an_import_that_lost_a_race_is_run_again_whole(monkeypatch, capsys, tmp_path, db,
                                                        database_url, losses, code) -> None:
    # given a products file, and an import PostgreSQL rolls back as a deadlock `losses` times
    import bot.imports as imports
    from models import Product

    path = tmp_path / "products.csv"
    path.write_text("sku,name,unit_price,currency,on_hand\nWID-9,Widget,10.00,USD,5\n")
    run, calls = _lost_a_race(losses, imports.import_csv)
    monkeypatch.setattr(imports, "import_csv", run)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when
    done = main(["import", "products", str(path)])
    # then it is run again, whole, up to three times in all; once through, imported once
    err = capsys.readouterr().err
    assert (done, len(calls)) == (code, min(losses + 1, 3))
    assert "importing again (attempt 2 of 3)" in err
    with db.read_session() as s:
        assert [p.sku for p in s.exec(select(Product))] == (["WID-9"] if code == 0 else [])
    if code:
        assert "run it again" in err.splitlines()[-1]


def test_serve_starts_while_the_database_is_down_and_is_ready_once_it_answers(tmp_path,
                                                                              standin) -> None:
    # given a database file in a folder that does not exist yet (it cannot be opened)
    folder = tmp_path / "not-yet"
    port = free_port()
    env = env_for(f"sqlite:///{folder / 'o2c.db'}", standin.api_url, port)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host",
                                   "127.0.0.1"], env=env, cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        # when it starts: alive, not ready, the API a 503, and one line in the log
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz").status_code == 503
        api = httpx.Client(base_url=f"{base}/api/v1",
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert api.get("/reports/aging").status_code == 503
        # then the database appears (created and migrated): ready, and the admin is set up
        folder.mkdir()
        migrated = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env=env,
                                  cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert migrated.returncode == 0, migrated.stderr
        assert httpx.get(f"{base}/readyz").status_code == 200
        deadline = time.monotonic() + 20
        while api.get("/reports/aging").status_code != 200 or "UADMIN01" not in str(
                _admins(folder / "o2c.db")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(10)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("database unreachable at start-up") == 1


def _admins(path: Path) -> list:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT user_id FROM user_roles WHERE role = 'admin'").fetchall()
