"""URL buttons ("Pay now"): the browser opens the link; Slack still sends the click, which
only needs its ack (without one Slack shows the user an error)."""

from __future__ import annotations

from slack_bolt import Ack, App

from blocks import ids


def opened(ack: Ack) -> None:
    ack()


def register(app: App) -> None:
    app.action(ids.OPEN_LINK)(opened)
