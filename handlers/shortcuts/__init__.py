"""Shortcuts, all registered here: the message shortcut "Open dispute / ask finance about
this" (on a message that mentions an invoice) and the global shortcut "New order". Each acks
at once and opens its modal right after the ack (a trigger lives 3 seconds); the role is
checked on the server first, and the modal's submission goes through the existing listeners
(`handlers.views`), which check it again."""

from __future__ import annotations

from slack_bolt import App

from blocks import ids
from handlers.common import acknowledge, after_ack
from handlers.shortcuts import dispute, new_order


def register(app: App) -> None:
    app.shortcut(ids.SHORTCUT_DISPUTE)(ack=acknowledge, lazy=[after_ack(dispute.on_message)])
    app.shortcut(ids.SHORTCUT_NEW_ORDER)(ack=acknowledge,
                                         lazy=[after_ack(new_order.on_shortcut)])
