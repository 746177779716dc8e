"""Listeners registered through `GuardedApp`: an error raised after the ack keeps the ack
(Slack sees 200, not "unhandled request") and reaches the user, escaped."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI
from slack_bolt import App
from slack_sdk import WebClient

from bot.server import bolt_endpoint
from handlers.common import GuardedApp
from sandbox.driver import SlackDriver
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, free_port
from workflows.errors import ValidationFailed


def test_error_after_ack_keeps_the_ack_and_tells_the_user(standin) -> None:  # noqa: ANN001
    # given: a listener that acks and then fails at once (the racy case in Bolt)
    client = WebClient(token=BOT_TOKEN, base_url=standin.api_url)
    app = App(client=client, signing_secret=SIGNING_SECRET, token_verification_enabled=False)

    def boom(ack) -> None:  # noqa: ANN001
        ack()
        raise ValidationFailed.of("quantity", "<b>bad</b> & worse")

    GuardedApp(app).action("boom")(boom)
    web = FastAPI()
    web.add_route("/slack/events", bolt_endpoint(app, SIGNING_SECRET), methods=["POST"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    posted = client.chat_postMessage(channel="C0GENERAL", text="x", blocks=[
        {"type": "actions", "elements": [{"type": "button", "action_id": "boom", "value": "1",
                                          "text": {"type": "plain_text", "text": "Go"}}]}])
    message = standin.api.message("C0GENERAL", posted["ts"])
    slack = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET,
                        api=standin.api)
    try:
        # when: clicked many times
        statuses = [slack.click("USALES01", message, "boom").status_code for _ in range(25)]
        # then: every click was acknowledged, and every failure explained, escaped
        assert statuses == [200] * 25
        answers = standin.api.wait_for(
            lambda: standin.api.responses if len(standin.api.responses) == 25 else None)
        assert {a["payload"]["text"] for a in answers} == {
            ":warning: quantity: &lt;b&gt;bad&lt;/b&gt; &amp; worse"}
    finally:
        server.should_exit = True
        thread.join(5)


def test_unknown_listener_arguments_are_refused_at_registration(standin) -> None:  # noqa: ANN001
    import pytest

    app = App(client=WebClient(token=BOT_TOKEN, base_url=standin.api_url),
              signing_secret=SIGNING_SECRET, token_verification_enabled=False)

    def odd(ack, complete) -> None:  # noqa: ANN001
        ack()

    with pytest.raises(TypeError, match="complete"):
        GuardedApp(app).action("odd")(odd)
