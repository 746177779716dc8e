"""`o2c demo` (`make demo`): a fresh demo company, the server, and the local Slack sandbox.

What it does, in order: recreate the SQLite file, migrate, seed the demo company, build
settings for a sandbox-only server (fresh random secrets, never printed — a Stripe webhook
secret among them, for the sandbox's stand-in payment page; the bot's WebClient
pointed at the sandbox's Web API; the approvals/alerts/AR channels pointed at sandbox
channels; no SMTP, so customer e-mails stay queued), register the demo users and channels in
the sandbox, start the server on 127.0.0.1 and print `Open http://localhost:<port>/sandbox`.

It only ever deletes a database file that an earlier `o2c demo` created (marked with
`PRAGMA application_id`), so `--database o2c.db` cannot wipe real data by mistake.
"""

from __future__ import annotations

import logging
import secrets
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

from bot.settings import Settings, load_settings

log = logging.getLogger("o2c.demo")

HOST = "127.0.0.1"
DEMO_ADMIN = "U0ADMIN01"
# Sandbox channel ids for the channels the bot posts to (settings O2C_*_CHANNEL).
DEMO_CHANNELS = {"approvals": "C0APPROVAL", "alerts": "C0ALERTS01", "ar": "C0AR000001"}
DEMO_DB_MARK = 0x02C0DE40  # PRAGMA application_id of databases made by `o2c demo`


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def demo_settings(port: int, database_url: str, *, oauth: bool = False) -> Settings:
    """Settings of a sandbox-only server; the secrets are random per run and never shown.
    With `oauth`, no bot token: the app installs itself in the sandbox through the OAuth
    flow at /slack/install (SLACK_CLIENT_ID/SECRET)."""
    values = load_settings(
        database_url=database_url, port=port, o2c_sandbox=True,
        slack_api_url=f"http://{HOST}:{port}/sandbox/slack/api/",
        slack_bot_token="xoxb-demo-" + secrets.token_urlsafe(24),
        slack_signing_secret=secrets.token_urlsafe(32),
        o2c_api_token=secrets.token_urlsafe(32), slack_app_token=None, smtp_url=None,
        o2c_approvals_channel=DEMO_CHANNELS["approvals"],
        o2c_alerts_channel=DEMO_CHANNELS["alerts"], o2c_ar_channel=DEMO_CHANNELS["ar"],
        o2c_admins=[DEMO_ADMIN], o2c_scheduler=False, o2c_outbox_worker=True,
        # "Pay now" without Stripe: the sandbox's payment page signs its webhook with this
        # (sandbox/checkout.py); the demo never talks to Stripe or HubSpot
        stripe_api_key=None, stripe_webhook_secret="whsec_" + secrets.token_urlsafe(32),
        hubspot_access_token=None, hubspot_client_secret=None, o2c_public_url=None,
        # the customer's signed links (issue 19), served by this server in the demo
        o2c_link_secrets=secrets.token_urlsafe(48),
        # a sandbox on this computer: outbound webhooks may go to a receiver on it too
        o2c_webhooks_allow_private=True,
    )
    if not oauth:
        return values
    return load_settings(**{**values.model_dump(), "slack_bot_token": None,
                            "slack_client_id": "demo." + secrets.token_hex(6),
                            "slack_client_secret": secrets.token_urlsafe(24)})


def fresh_database(path: Path) -> str:
    """Delete an earlier demo database (and its WAL files), migrate a new one; its URL."""
    from bot.migrate import upgrade

    if path.exists():
        if not _is_demo_database(path):
            raise DemoError(f"{path} exists and was not created by `o2c demo`; refusing to "
                            "delete it (pick another --database)")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA application_id = {DEMO_DB_MARK}")
    finally:
        conn.close()
    url = f"sqlite:///{path.resolve()}"
    upgrade(url)
    return url


def _is_demo_database(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("PRAGMA application_id").fetchone()[0] == DEMO_DB_MARK
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def prepare(port: int, database: str, *, oauth: bool = False):
    """Everything before serving: database, seed, settings, app, sandbox directory."""
    from bot.db import Database
    from bot.server import create_app

    url = fresh_database(Path(database))
    from bot.seed import seed_demo

    settings = demo_settings(port, url, oauth=oauth)
    db = Database(url, policy=settings.policy())
    app = create_app(settings, db=db)
    seed_demo(db, today=app.state.deps.clock.business_today())
    app.state.sandbox.sync_directory()  # the seeded users, with their names and time zones
    return app


def run_demo(port: int = 3000, database: str = "o2c-demo.db", *, oauth: bool = False) -> int:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.WARNING)  # quiet: the URL is the last thing printed
    try:
        return _run(port, database, oauth=oauth)
    finally:
        root.setLevel(previous)


def _run(port: int, database: str, *, oauth: bool = False) -> int:
    import uvicorn

    if not _port_free(port):
        print(f"o2c demo: port {port} is in use; try `make demo PORT={port + 1}` (or "
              f"`o2c demo --port {port + 1}`)", file=sys.stderr)
        return 1
    try:
        app = prepare(port, database, oauth=oauth)
    except DemoError as exc:
        print(f"o2c demo: {exc}", file=sys.stderr)
        return 1
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="o2c-demo-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            print("o2c demo: the server did not start (see the log above)", file=sys.stderr)
            return 1
        time.sleep(0.05)
    if oauth:  # install it first, then the sandbox
        print(f"Install: http://localhost:{port}/slack/install", flush=True)
    print(f"Open http://localhost:{port}/sandbox", flush=True)
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        thread.join(10)
    return 0
