"""Events API listeners, one module per feature, all registered here.

Bolt acks an event at once; the listener runs after the ack (`after_ack`). A duplicate
delivery of an event never reaches a listener (`bot.slack_app` records event ids first)."""

from __future__ import annotations

from slack_bolt import App

from handlers.common import acknowledge, after_ack
from handlers.events import app_home, messages


def register(app: App) -> None:
    app.event("app_home_opened")(ack=acknowledge, lazy=[after_ack(app_home.app_home_opened)])
    # a person's message in the bot's DM: a pointer to `/o2c help` (`message.im` events)
    app.event("message", matchers=[lambda event: messages.in_dm(event)])(
        ack=acknowledge, lazy=[after_ack(messages.on_direct_message)])
