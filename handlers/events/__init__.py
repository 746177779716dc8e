"""Events API listeners, one module per feature, all registered here.

Bolt acks an event at once; the listener runs after the ack (`after_ack`). A duplicate
delivery of an event never reaches a listener: one seen before is answered at once
(`bot.slack_app.Dependencies`, a read), and a new one's id is recorded right after the ack,
before the listener runs (`handlers.common.after_ack`; the unique id decides between copies)."""

from __future__ import annotations

from slack_bolt import App

from handlers.common import acknowledge, after_ack
from handlers.events import app_home, installs, mentions, messages, workflow_steps


def register(app: App) -> None:
    app.event("app_home_opened")(ack=acknowledge, lazy=[after_ack(app_home.app_home_opened)])
    # a person's message in the bot's DM: a pointer to `/o2c help` (`message.im` events)
    app.event("message", matchers=[lambda event: messages.in_dm(event)])(
        ack=acknowledge, lazy=[after_ack(messages.on_direct_message)])
    app.event("message")(ack=acknowledge, lazy=[after_ack(mentions.message)])
    app.event("link_shared")(ack=acknowledge, lazy=[after_ack(mentions.link_shared)])
    for callback_id in workflow_steps.CALLBACK_IDS:  # Workflow Builder steps
        app.function(callback_id)(ack=acknowledge,
                                  lazy=[after_ack(workflow_steps.function_executed)])
    if app.installation_store is not None:  # OAuth install mode (bot.slack_oauth)
        app.event("app_uninstalled")(ack=acknowledge,
                                     lazy=[after_ack(installs.app_uninstalled)])
        app.event("tokens_revoked")(ack=acknowledge, lazy=[after_ack(installs.tokens_revoked)])
