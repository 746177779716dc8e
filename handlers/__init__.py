"""Slack listeners: parse the request, ack fast, run a workflow after the ack, render with
`blocks`. Every listener is registered in its kind's `register(app)`, called from here."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, events, shortcuts, views


def register_listeners(app: App) -> None:
    commands.register(app)
    actions.register(app)
    views.register(app)
    events.register(app)
    shortcuts.register(app)
