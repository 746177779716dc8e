"""Record numbers that answer themselves (`workflows.mentions`): `message` events in channels
the bot is in, and `link_shared` for the app's own record URLs (`chat.unfurl`)."""

from __future__ import annotations

from slack_bolt import BoltContext
from slack_sdk import WebClient

from blocks.reach import unfurl
from handlers.common import locale_of
from handlers.deps import deps_of
from workflows import mentions

# message subtypes that are someone posting (edits, joins, bots and the like are not)
POSTED = (None, "thread_broadcast", "file_share")


def message(event: dict, client: WebClient, context: BoltContext) -> None:
    if event.get("subtype") not in POSTED or event.get("bot_id") or not event.get("user"):
        return
    if not mentions.numbers_in(event.get("text") or ""):
        return  # most messages: no database work at all
    deps = deps_of(context)
    with deps.db.read_session() as session:
        private = mentions.answered_privately(session, channel=event["channel"],
                                              user_id=event["user"])
    mention = mentions.Mention(channel=event["channel"], ts=event["ts"],
                               thread_ts=event.get("thread_ts"), user_id=event["user"],
                               text=event.get("text") or "",
                               locale=locale_of(context, event["user"], client)
                               if private else None)
    with deps.db.transaction() as session:
        answered = mentions.answer_mention(session, mention)
    if answered:
        deps.notify_outbox()


def link_shared(event: dict, client: WebClient, context: BoltContext) -> None:
    urls = [link.get("url", "") for link in event.get("links") or []]
    with deps_of(context).db.read_session() as session:
        found = mentions.unfurls(session, user_id=str(event.get("user") or ""),
                                 channel=str(event.get("channel") or ""), urls=urls)
    if not found:
        return
    previews = {url: unfurl(summary) for url, summary in found.items()}
    if event.get("unfurl_id") and event.get("source"):  # previews while composing
        client.chat_unfurl(unfurl_id=event["unfurl_id"], source=event["source"],
                           unfurls=previews)
    else:
        client.chat_unfurl(channel=event["channel"], ts=event["message_ts"], unfurls=previews)
