"""Text helpers for mrkdwn: escaping user-supplied text and staying inside Slack's limits.

Slack's mrkdwn treats `&`, `<` and `>` as control characters: `<!channel>` pings a channel and
`<https://x|Bank>` forges a link. Everything that came from a user, a customer record, an ERP
or a bank statement goes through `esc()` before it is put into mrkdwn.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from models import money

REFUSED = ":no_entry_sign:"  # the one icon of every refusal (a role, a rule, bad input)
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
HEADER_MAX = 150
BUTTON_MAX = 75
MESSAGE_BLOCKS_MAX = 50
VIEW_BLOCKS_MAX = 100


_NOTHING_CHANGED = ("nothing was changed", "nothing changed", "changed nothing",
                    "nothing was applied", "nothing was recorded")


def refusal(why: str, *, what: str | None = None) -> str:
    """The one shape of every refusal the bot tells a person — for lack of a role, by a rule
    (already decided, not enough stock, not in this state) or for bad input:
    `:no_entry_sign: Can't <what>: <Why>. Nothing was changed.` (without "Can't <what>:"
    where the refused action is plain from the message it answers). `why` is mrkdwn, escaped
    by the caller. A failure of ours ("Sorry, something went wrong…") is not a refusal and
    does not look like one (`handlers.common.describe_error`)."""
    why = " ".join(why.split()) or "that is not possible"
    if not what:
        why = why[0].upper() + why[1:]
    if why[-1] not in ".!?":
        why += "."
    if not any(phrase in why.lower() for phrase in _NOTHING_CHANGED):
        why += " Nothing was changed."
    return f"{REFUSED} Can't {what}: {why}" if what else f"{REFUSED} {why}"


def esc(text: object) -> str:
    """Escape user-supplied text for mrkdwn (and plain_text fallbacks)."""
    if text is None:
        return ""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Shorten to `limit` characters with an ellipsis, never cutting an escape in half."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def plain(text: object, limit: int) -> str:
    """For plain_text objects (headers, buttons, titles) and message `text` fallbacks. Slack
    decodes &amp; &lt; &gt; in every text it shows, and reads the fallback `text` as mrkdwn
    (where `<!channel>` pings), so user text is escaped here too."""
    return clip(esc(text), limit)


def fmt_money(minor: int, currency: str) -> str:
    return money.format_money(minor, currency)


def fmt_date(value: date | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%d %b %Y")


def fmt_datetime(value: datetime | str | None, tz: str = "UTC") -> str:
    """A UTC timestamp shown in the reader's Slack time zone."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    try:
        zone = ZoneInfo(tz or "UTC")
    except Exception:
        zone = ZoneInfo("UTC")
    local = value.astimezone(zone)
    return local.strftime("%d %b %Y %H:%M ") + (local.tzname() or "")


def status_label(status: str) -> str:
    return status.replace("_", " ")
