"""A plain message to the bot in its DM (the Messages tab): the bot does not chat, so it
answers with a short pointer to `/o2c help` instead of silence (and instead of Bolt's
"Unhandled request" warning in the log). Only people's own new messages in the bot's DM
get it: the bot's own posts, edits, deletions and channel messages are left alone."""

from __future__ import annotations

from slack_sdk import WebClient

POINTER = ("I don't read messages here. Type `/o2c help` to see what you can do, or open my "
           "*Home* tab for your work of the day.")


def in_dm(event: dict) -> bool:
    """A Bolt matcher: any message event in a DM with the bot (the bot's own posts and edits
    included, so that none of them is logged as an unhandled request)."""
    return event.get("channel_type") == "im"


def from_a_person(event: dict) -> bool:
    """A new message a person typed (not the bot's own post, an edit or a deletion)."""
    return not event.get("subtype") and not event.get("bot_id") and bool(event.get("user"))


def on_direct_message(event: dict, client: WebClient) -> None:
    if from_a_person(event):
        client.chat_postMessage(channel=event["channel"], text=POINTER)
