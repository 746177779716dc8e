"""Helpers for the browser-sandbox tests: settings, a handle on a running sandbox server, and
test-only bot listeners and a job (fixtures in tests/sandbox_web/conftest.py).

Why test-only listeners: the sandbox is generic (it renders whatever the bot sends and sends
whatever a Slack client would), so its modal, select-options, click and chat.update paths are
proven with a small form and button registered on the running Bolt app -- independent of which
features are merged. They are reached, like everything else, through signed requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
from sqlmodel import select

from blocks.text import esc
from models import Customer, Order, OutboxMessage
from sandbox.workspace import Workspace
from tests.conftest import RunningServer, test_settings
from tests.support.demo_seed import ADMIN, COLLECTOR
from workflows import outbox

CHANNELS = {"approvals": "C0APPROVAL", "alerts": "C0ALERTS01", "ar": "C0AR000001"}
FORM_CALLBACK = "sandbox_test_form"
TEST_BUTTON = "sandbox_test_button"
PING_JOB = "sandbox-ping"
LINK_SECRET = "sandbox-link-secret-" + "0123456789abcdef0123456789"


def sandbox_settings(database_url: str, port: int, **overrides: object):
    values = dict(o2c_sandbox=True, o2c_approvals_channel=CHANNELS["approvals"],
                  o2c_alerts_channel=CHANNELS["alerts"], o2c_ar_channel=CHANNELS["ar"],
                  o2c_admins=[ADMIN],
                  # as `o2c demo` does: the stand-in payment page signs its webhook with it
                  stripe_webhook_secret="whsec_sandbox_" + "test0123456789",
                  # as `o2c demo` does: the customer's signed links (issue 19)
                  o2c_link_secrets=LINK_SECRET)
    values.update(overrides)
    return test_settings(database_url, f"http://127.0.0.1:{port}/sandbox/slack/api/", **values)


@dataclass
class Sandbox:
    server: RunningServer
    page_api: httpx.Client

    @property
    def ws(self) -> Workspace:
        return self.server.app.state.sandbox

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/sandbox"

    def state(self) -> dict:
        response = self.page_api.get("state", params={"wait": 0})
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, path: str, **body: object) -> httpx.Response:
        return self.page_api.post(path, json=body)

    def wait_for(self, predicate, description: str, timeout: float = 10.0):
        return self.ws.api.wait_for(predicate, timeout, description)

    def wait_until_quiet(self, timeout: float = 20.0) -> None:
        """Until the outbox has delivered every queued Slack notification (the seed's cards and
        DMs arrive in the background after start)."""
        def quiet() -> bool:
            with self.server.db.read_session() as s:
                return s.exec(select(OutboxMessage.id).where(
                    OutboxMessage.transport == "slack",
                    OutboxMessage.status.in_(("pending", "sending")))).first() is None
        self.wait_for(quiet, "the outbox to deliver everything queued", timeout)

    def an_order_of(self, rep: str) -> str:
        with self.server.db.read_session() as s:
            number = s.exec(select(Order.number).where(Order.sales_rep_id == rep)
                            .order_by(Order.id)).first()
            return number or s.exec(select(Order.number).order_by(Order.id)).first()


# -- test-only bot listeners (registered by the `test_listeners` fixture) -----------------

def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def _option(value: str, text: str) -> dict:
    return {"text": _plain(text), "value": value}


TEST_FORM = {
    "type": "modal", "callback_id": FORM_CALLBACK, "title": _plain("Test order"),
    "submit": _plain("Save"), "close": _plain("Cancel"),
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Every input kind* the bot uses"}},
        {"type": "input", "block_id": "customer", "label": _plain("Customer"),
         "element": {"type": "external_select", "action_id": "pick", "min_query_length": 2,
                     "placeholder": _plain("Search customers")}},
        {"type": "input", "block_id": "product", "label": _plain("Product"),
         "element": {"type": "static_select", "action_id": "pick",
                     "options": [_option("WID-1", "Widget"), _option("GAD-2", "Gadget")]}},
        {"type": "input", "block_id": "qty", "label": _plain("Quantity"),
         "element": {"type": "number_input", "action_id": "n", "is_decimal_allowed": False}},
        {"type": "input", "block_id": "ship", "label": _plain("Ship on"),
         "element": {"type": "datepicker", "action_id": "d"}},
        {"type": "input", "block_id": "note", "label": _plain("Note"), "optional": True,
         "element": {"type": "plain_text_input", "action_id": "t", "multiline": True}},
    ],
}


def open_form(call) -> None:
    call.client.views_open(trigger_id=call.trigger_id, view=TEST_FORM)


def customer_options(ack, payload, context) -> None:
    typed = (payload.get("value") or "").lower()
    with context["deps"].db.read_session() as s:
        names = s.exec(select(Customer.external_id, Customer.name).order_by(Customer.name)).all()
    ack(options=[_option(ext, name) for ext, name in names if typed in name.lower()][:20])


def submit_form(ack, body, view, client) -> None:
    values = view["state"]["values"]
    qty = int(values["qty"]["n"]["value"] or 0)
    if qty <= 0:
        ack(response_action="errors", errors={"qty": "Quantity must be more than 0"})
        return
    ack()
    picked = values["customer"]["pick"]["selected_option"]
    summary = {"customer": picked["value"], "product":
               values["product"]["pick"]["selected_option"]["value"], "qty": qty,
               "ship": values["ship"]["d"]["selected_date"],
               "note": values["note"]["t"]["value"]}
    client.chat_postMessage(channel=body["user"]["id"],
                            text="Saved " + esc(json.dumps(summary, sort_keys=True)))


def clicked(ack, body, client) -> None:
    ack()
    message = body["message"]
    client.chat_update(channel=body["channel"]["id"], ts=message["ts"],
                       text=f"Done by <@{body['user']['id']}>",
                       blocks=[{"type": "section", "text": {
                           "type": "mrkdwn", "text": f":white_check_mark: *Done* by "
                                                     f"<@{body['user']['id']}>"}}])


def button_message(text: str) -> list[dict]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": "test-actions", "elements": [
                {"type": "button", "action_id": TEST_BUTTON, "text": _plain("Do it"),
                 "value": "42", "style": "primary"}]}]


def post_as_bot(sandbox: Sandbox, channel: str, text: str, blocks: list | None = None) -> dict:
    """A message the bot posts (through the sandbox's Web API, with the bot's token)."""
    client = sandbox.server.deps.client
    return client.chat_postMessage(channel=channel, text=text, blocks=blocks).data


# -- a test-only scheduled job ---------------------------------------------------------------

def ping(deps, as_of) -> dict:
    with deps.db.transaction() as s:
        outbox.post_to_user(s, user_id=COLLECTOR, template="text",
                            context={"text": f"Good morning! Overdue accounts as of "
                                             f"{as_of.isoformat()}"})
    return {"collectors": 1, "as_of": as_of}
