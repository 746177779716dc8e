"""Slack listeners: parse the request, ack fast, call a workflow, render with `blocks`."""

from __future__ import annotations

from slack_bolt import App


def register_listeners(app: App) -> None:
    from handlers import actions, commands, events, views
    from handlers.common import GuardedApp

    app = GuardedApp(app)  # errors after an ack are answered, never lost (handlers.common)
    commands.register(app)
    actions.register(app)
    views.register(app)
    events.register(app)
