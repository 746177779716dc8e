"""Message shortcut "Open dispute / ask finance about this": on a message that mentions one or
more invoices, the back office's dispute modal (`blocks.backoffice.dispute_modal`, submitted
to `handlers.views.backoffice.open_dispute` and `workflows.disputes`) opens for the invoice —
or a choice of the invoices — it mentions that are open to dispute, the message quoted in
the note. The dispute card then goes to its owner (the sales rep, or the disputes channel)."""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import select

from blocks import backoffice as views
from blocks.i18n import Formats
from handlers.common import checking, open_modal_for, tell_user
from models import Customer, Invoice
from workflows import disputes
from workflows.mentions import numbers_in
from workflows.users import require_role

NOTE_MAX = 2000


def on_message(body: dict, respond: Respond, client: WebClient, context: BoltContext) -> None:
    user_id = body["user"]["id"]
    message = body.get("message") or {}
    numbers = [n for n in numbers_in(message.get("text") or "") if n.startswith("INV-")]
    with checking(context) as session:
        require_role(session, user_id=user_id, roles=disputes.OPENER_ROLES,
                     action="dispute.open", entity_type="message",
                     entity_id=message.get("ts", "-"))
        rows = list(session.exec(select(Invoice).where(Invoice.number.in_(numbers)))) \
            if numbers else []
        open_ones = [i for i in rows if disputes.undisputed_open(i) > 0]
        infos = [{"number": i.number, "customer": session.get(Customer, i.customer_id).name,
                  "open_minor": disputes.undisputed_open(i), "currency": i.currency}
                 for i in sorted(open_ones, key=lambda i: numbers.index(i.number))]
    if not infos:
        tell_user(body, respond, client,
                  "This message mentions no invoice that is open to dispute (invoice numbers "
                  "look like INV-2026-000123)." if not rows else
                  "The invoices this message mentions are paid or already in dispute.")
        return
    channel = (body.get("channel") or {}).get("id")
    note = _quote(message)

    def view(fmt: Formats) -> dict:
        shown = [{**i, "open": fmt.money(i["open_minor"], i["currency"])} for i in infos]
        if len(shown) == 1:
            return views.dispute_modal(meta={"invoice": shown[0]["number"],
                                             "channel": channel}, invoice=shown[0], note=note)
        return views.dispute_modal(meta={"channel": channel}, invoice=None, invoices=shown,
                                   note=note)

    open_modal_for(context, client, body.get("trigger_id"), user_id, view)


def _quote(message: dict) -> str:
    """The message, as the dispute's note starts (plain text: shown escaped wherever shown).
    Slack sends a message's text with the `&`, `<` and `>` typed in it as entities; the note
    has them back as typed (else every place that shows it would show `&amp;`)."""
    who = message.get("user")
    text = (message.get("text") or "").strip()
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    quoted = (f"From a message by <@{who}>: " if who else "From a message: ") + text
    return quoted[:NOTE_MAX]
