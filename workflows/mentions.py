"""Record numbers that answer themselves: `SO-…`, `INV-…` and `CN-…` mentioned in a channel the
bot is in get a compact card, and links to the app's own record URLs get a preview.

Who sees what: the poster must hold a role (any role: the same as `/o2c order` and `/o2c
invoice`), else nothing is answered. The channel's setting (`/o2c channel answers …`, table
`channel_settings`) says how: `ephemeral` (the default: only the poster sees the card) or
`thread` (a reply in the message's thread, which everyone in the channel sees — an admin's
choice for that channel), or `off`. A number that names no record is never answered.

At most once per number per thread: the card is an outbox row whose `dedupe_key` (unique in
the database) names the channel, the thread and the number — whoever posted it and however
the channel answers — so a second mention in the same thread (by anyone), a Slack retry of the
event, or two server processes answering at once post it once. It is written in the event's
own transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    ChannelSetting,
    CreditNote,
    Customer,
    Invoice,
    NumberAnswers,
    Order,
    OutboxMessage,
    Role,
    invoice_status,
)
from workflows import audit, outbox
from workflows.errors import ValidationFailed
from workflows.users import has_role, require_role

# A record number as people type it: the prefix, digits, maybe more dash-separated digits
# (INV-2026-000123, CN-2026-000004, SO-1042), not inside a longer word.
NUMBER = re.compile(r"(?<![\w-])((?:SO|INV|CN)-\d{1,12}(?:-\d{1,12}){0,2})(?![\w-])")
MAX_PER_MESSAGE = 3  # a pasted list of numbers gets the first three cards, not thirty
# The app's own record URLs: the REST API's record paths, on the domains Slack sends us
# link_shared for (the manifest's unfurl_domains).
RECORD_PATH = re.compile(r"/api/v1/(orders|invoices|credit-notes)/([A-Za-z0-9-]{1,64})/?$")
MAX_UNFURLS = 5
TEMPLATE = "record_card"
VIEWING_ROLES = tuple(Role)  # the roles of `/o2c order` and `/o2c invoice`


@dataclass(frozen=True)
class Mention:
    channel: str
    ts: str  # the message
    thread_ts: str | None  # its thread, when it is a reply
    user_id: str  # who posted it
    text: str
    locale: str | None = None  # the poster's Slack locale: their ephemeral card's format


def numbers_in(text: str) -> list[str]:
    """The distinct record numbers in a message, first ones first, at most MAX_PER_MESSAGE."""
    found: list[str] = []
    for number in NUMBER.findall(text or ""):
        if number not in found:
            found.append(number)
    return found[:MAX_PER_MESSAGE]


def record_summary(session: Session, number: str) -> dict | None:
    """What a compact card shows of the record with this number (JSON, for the outbox); None
    when there is no such record."""
    if number.startswith("SO-"):
        order = session.exec(select(Order).where(Order.number == number)).first()
        if order is None:
            return None
        invoices = list(session.exec(select(Invoice).where(Invoice.order_id == order.id)))
        return {"kind": "order", "number": order.number, "status": order.status,
                "customer": _customer_name(session, order.customer_id),
                "currency": order.currency, "total_minor": order.total_minor,
                "balance_minor": sum(i.balance_minor for i in invoices),
                "date": order.order_date.isoformat()}
    if number.startswith("INV-"):
        invoice = session.exec(select(Invoice).where(Invoice.number == number)).first()
        if invoice is None:
            return None
        return {"kind": "invoice", "number": invoice.number,
                "status": str(invoice_status(invoice)),
                "customer": _customer_name(session, invoice.customer_id),
                "currency": invoice.currency, "total_minor": invoice.total_minor,
                "balance_minor": invoice.balance_minor,
                "date": invoice.due_date.isoformat()}
    if number.startswith("CN-"):
        note = session.exec(select(CreditNote).where(CreditNote.number == number)).first()
        if note is None:
            return None
        invoice = session.get(Invoice, note.invoice_id)
        return {"kind": "credit_note", "number": note.number, "status": "issued",
                "customer": _customer_name(session, invoice.customer_id) if invoice else "",
                "invoice": invoice.number if invoice else None, "currency": note.currency,
                "total_minor": note.total_minor, "balance_minor": None,
                "date": note.value_date.isoformat()}
    return None


def _customer_name(session: Session, customer_id: int) -> str:
    customer = session.get(Customer, customer_id)
    return customer.name if customer is not None else ""


def answers_in(session: Session, channel: str) -> NumberAnswers:
    setting = session.get(ChannelSetting, channel)
    return NumberAnswers(setting.number_answers) if setting else NumberAnswers.EPHEMERAL


def answered_privately(session: Session, *, channel: str, user_id: str) -> bool:
    """Whether this poster would get ephemeral cards here (then in their own locale)."""
    return (answers_in(session, channel) == NumberAnswers.EPHEMERAL
            and has_role(session, user_id, *VIEWING_ROLES))


def answer_mention(session: Session, mention: Mention) -> list[str]:
    """Queue a card for each record number in the message that the poster may see and that
    was not answered in this thread before; returns the numbers answered now."""
    mode = answers_in(session, mention.channel)
    numbers = numbers_in(mention.text)
    if mode == NumberAnswers.OFF or not numbers:
        return []
    if not has_role(session, mention.user_id, *VIEWING_ROLES):
        return []  # not someone the bot shows records to: say nothing
    thread = mention.thread_ts or mention.ts
    answered = []
    for number in numbers:
        summary = record_summary(session, number)
        if summary is None:
            continue
        key = f"number:{mention.channel}:{thread}:{number}"
        payload = {"channel": mention.channel, "thread_ts": thread, "template": TEMPLATE,
                   "context": summary}
        method = "chat.postMessage"
        if mode == NumberAnswers.EPHEMERAL:  # one reader: in their language and format
            if mention.locale:
                summary["locale"] = mention.locale
            payload["user"] = mention.user_id
            method = "chat.postEphemeral"
        if _queue_once(session, key, method, payload):
            answered.append(number)
    return answered


def _queue_once(session: Session, key: str, method: str, payload: dict) -> bool:
    """Insert the outbox row unless its key exists (the unique index decides a race)."""
    if outbox.has_message(session, key):
        return False
    try:
        with session.begin_nested():
            session.add(OutboxMessage(transport="slack", method=method, dedupe_key=key,
                                      payload=payload))
            session.flush()
    except IntegrityError:
        return False  # another process answered it a moment ago
    return True


def unfurls(session: Session, *, user_id: str, channel: str,
            urls: list[str]) -> dict[str, dict]:
    """`link_shared`: the preview (a summary, as `record_summary`) of each of the app's record
    URLs that exists, when the sharer may see records and the channel shows record cards to
    everyone in it (`/o2c channel answers thread`); {} otherwise. A preview is seen by all
    the channel's members (guests and Slack Connect organisations included), so where an
    admin did not choose that (the default: cards only the poster sees), and in the message
    composer (`COMPOSER`: the channel is not known yet), there is none."""
    if answers_in(session, channel) != NumberAnswers.THREAD:
        return {}
    if not has_role(session, user_id, *VIEWING_ROLES):
        return {}
    found: dict[str, dict] = {}
    for url in urls[:MAX_UNFURLS]:
        match = RECORD_PATH.search(urlsplit(url).path)
        if match is None:
            continue
        number = unquote(match.group(2))
        kind = {"orders": "SO-", "invoices": "INV-", "credit-notes": "CN-"}[match.group(1)]
        if not number.startswith(kind):
            continue
        summary = record_summary(session, number)
        if summary is not None:
            found[url] = summary
    return found


def set_number_answers(session: Session, *, channel: str, mode: str, actor: str) -> None:
    """`/o2c channel answers <ephemeral|thread|off>`: admins only; audited."""
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="channel.settings",
                 entity_type="channel", entity_id=channel)
    try:
        chosen = NumberAnswers(mode)
    except ValueError:
        raise ValidationFailed.of(
            "answers", "must be one of " + ", ".join(m.value for m in NumberAnswers)) from None
    setting = session.get(ChannelSetting, channel)
    before = setting.number_answers if setting else NumberAnswers.EPHEMERAL.value
    if setting is None:
        session.add(ChannelSetting(channel_id=channel, number_answers=chosen.value,
                                   updated_by=actor))
    else:
        setting.number_answers = chosen.value
        setting.updated_by = actor
        session.add(setting)
    audit.record(session, actor=actor, action="channel.number_answers", entity_type="channel",
                 entity_id=channel, from_state=before, to_state=chosen.value)
