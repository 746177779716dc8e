"""`o2c demo --oauth`: the sandbox installs the app through the OAuth flow (Bolt's
/slack/install, the sandbox's "Allow" page, /slack/oauth_redirect), then an order number
typed in a channel answers itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from models import Order, slack_bots
from tests.conftest import free_port, start_server
from tests.support.demo_seed import SALES
from tests.support.sandbox_web import CHANNELS, Sandbox, sandbox_settings
from tests.support.slack import text_of


@pytest.fixture
def oauth_sandbox(demo_database_url: str) -> Iterator[Sandbox]:
    port = free_port()
    settings = sandbox_settings(demo_database_url, port, slack_bot_token=None,
                                slack_client_id="demo.123", slack_client_secret="demo-secret")
    running = start_server(settings, port=port)
    running.worker.poll_interval = 0.05
    client = httpx.Client(base_url=f"{running.base_url}/sandbox/api/", timeout=30)
    try:
        yield Sandbox(running, client)
    finally:
        client.close()
        running.stop()
        running.db.dispose()


def test_the_sandbox_installs_itself_and_an_order_number_answers(oauth_sandbox) -> None:
    sandbox = oauth_sandbox
    base = sandbox.server.base_url
    with httpx.Client(base_url=base, timeout=30) as browser:
        # when: "Add to Slack", the sandbox's Allow page, back to the redirect URL
        page = browser.get("/slack/install")
        allow = re.search(r'href="([^"]+/sandbox/oauth/authorize[^"]+)"', page.text).group(1)
        name, _, value = page.headers["set-cookie"].split(";")[0].partition("=")
        browser.cookies.set(name, value)  # Secure: a browser on localhost sends it back
        back = browser.get(allow.replace("&amp;", "&"))
        assert back.status_code == 302
        done = browser.get(back.headers["location"])
    # then: installed, with a token the sandbox issued
    assert done.status_code == 200, done.text
    with sandbox.server.db.engine.connect() as conn:
        [bot] = conn.execute(select(slack_bots)).mappings().all()
    assert sandbox.ws.api.token_valid(bot["bot_token"])
    # when: a sales rep types an order number in a channel
    with sandbox.server.db.read_session() as s:
        number = s.exec(select(Order.number).order_by(Order.id)).first()
    response = sandbox.act("message", user=SALES, channel=CHANNELS["ar"],
                           text=f"any news on {number}?")
    assert response.status_code == 200, response.text
    # then: the card answers, to her, in the message's thread
    card = sandbox.ws.api.wait_for(  # behind the demo's own notifications queued before
        lambda: [e for e in sandbox.ws.api.ephemerals(SALES) if number in text_of(e)] or None,
        timeout=30)
    assert card[0]["thread_ts"]


def test_o2c_demo_oauth_has_client_credentials_and_no_bot_token() -> None:
    from bot.demo import demo_settings

    settings = demo_settings(3999, "sqlite:///demo.db", oauth=True)
    assert settings.oauth_enabled and settings.slack_bot_token is None
    assert settings.require_for_serve() is settings
    assert demo_settings(3999, "sqlite:///demo.db").slack_bot_token is not None
