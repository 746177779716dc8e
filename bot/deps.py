"""What every listener, API route and job needs, built once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from slack_sdk import WebClient

from bot.db import Database
from bot.settings import Settings


@dataclass
class Deps:
    settings: Settings
    db: Database
    client: WebClient  # the bot's Web API client (base_url = SLACK_API_URL)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)

    def notify_outbox(self) -> None:
        """Wake the outbox worker after a commit that wrote notifications."""
        self.outbox_wakeup.set()


def make_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=10)
