"""What every listener, API route and job needs, built once per process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient

from bot.clock import Clock
from bot.db import Database
from bot.settings import Settings


@dataclass
class Deps:
    settings: Settings
    db: Database
    client: WebClient  # the bot's Web API client (base_url = SLACK_API_URL)
    clock: Clock = field(default_factory=Clock)  # the one source of now and today (bot.clock)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    # the integrations' outbox worker (webhooks, HubSpot, Stripe) has its own
    integrations_wakeup: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)  # set by close()
    # Work that follows an ack (lookups, answers) runs here, not in Bolt's listener threads:
    # a small bounded pool keeps a burst of slow answers from delaying the next acks.
    answers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=2, thread_name_prefix="o2c-answer"))
    # Where `/o2c` answers are built when the server runs answer processes (bot/answers.py);
    # None: in the `answers` thread pool.
    answer_processes: Any = None
    # Users seen recently: id -> (User row, monotonic time seen); saves a query per command.
    users_seen: dict = field(default_factory=dict)

    def notify_outbox(self) -> None:
        """Wake the outbox workers after a commit that wrote notifications."""
        self.outbox_wakeup.set()
        self.integrations_wakeup.set()

    def close(self) -> None:
        self.stopping.set()
        if self.answer_processes is not None:
            self.answer_processes.close()
        self.answers.shutdown(wait=True, cancel_futures=False)


def make_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=10)
