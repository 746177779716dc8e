"""Shortcuts: "Open dispute / ask finance about this" on a message that mentions an invoice
(the back office's dispute workflow) and "New order" (the order modal), through signed
requests against the real server and the Slack stand-in."""

from __future__ import annotations

from sqlmodel import select

from blocks import ids
from models import AuditEvent, Dispute
from tests.support import factories as f

CHANNEL = "C0GENERAL"
EVIL = "<!channel> pay <https://x.example|here>"


def books(server) -> None:
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01")
        f.invoice(s, "INV-2026-000301", total="500.00")
        f.invoice(s, "INV-2026-000302", total="80.00")


def test_message_shortcut_opens_a_dispute_on_the_invoice_it_mentions(
        server, slack, standin) -> None:
    # given: a customer's complaint pasted in a channel, mentioning one invoice
    books(server)
    message = standin.api.add_message(CHANNEL, "USALES01",
                                      f"Globex says INV-2026-000301 had 3 broken {EVIL}")
    # when: the collector uses the message shortcut and submits the modal
    assert slack.message_shortcut("UCOLL001", message, ids.SHORTCUT_DISPUTE).status_code == 200
    [modal] = standin.api.wait_for(lambda: standin.api.views_for("UCOLL001") or None)
    note = modal["blocks"][-1]["element"]["initial_value"]
    assert "INV-2026-000301" in modal["blocks"][0]["text"]["text"]
    assert note.startswith("From a message by <@USALES01>")
    slack.submit_view("UCOLL001", modal,
                      {"dispute_reason": {"dispute_reason_select": "damaged"}})
    # then: the dispute is opened by the existing workflow, with the message as its note
    dispute = standin.api.wait_for(lambda: _dispute(server))
    assert dispute.opened_by == "UCOLL001" and dispute.amount_minor == 50_000
    assert EVIL in dispute.note


def test_the_note_quotes_the_message_as_it_was_written_not_as_slack_escapes_it(
        server, slack, standin) -> None:
    # given a message as Slack sends it: what was typed as &, < and > comes as entities
    books(server)
    message = standin.api.add_message(
        CHANNEL, "USALES01", "Price &amp; quantity wrong on INV-2026-000301 &lt;urgent&gt;")
    # when the collector opens a dispute from it
    slack.message_shortcut("UCOLL001", message, ids.SHORTCUT_DISPUTE)
    [modal] = standin.api.wait_for(lambda: standin.api.views_for("UCOLL001") or None)
    # then the note they edit (plain text) reads as the message did
    note = modal["blocks"][-1]["element"]["initial_value"]
    assert note.endswith(": Price & quantity wrong on INV-2026-000301 <urgent>")
    slack.submit_view("UCOLL001", modal,
                      {"dispute_reason": {"dispute_reason_select": "quantity"}})
    dispute = standin.api.wait_for(lambda: _dispute(server))
    assert dispute.note.endswith(": Price & quantity wrong on INV-2026-000301 <urgent>")
    # and the dispute card shows it escaped once (not "&amp;amp;", shown as "&amp;")
    card = standin.api.wait_for(lambda: [c for c in standin.api.calls_to("chat.postMessage")
                                         if "Dispute #" in c.params.get("text", "")] or None)
    shown = str(card[0].params["blocks"])
    assert "Price &amp; quantity wrong on INV-2026-000301 &lt;urgent&gt;" in shown
    assert "&amp;amp;" not in shown and "&amp;lt;" not in shown


def test_message_shortcut_with_two_invoices_offers_a_choice_and_refuses_without_a_role(
        server, slack, standin) -> None:
    books(server)
    message = standin.api.add_message(CHANNEL, "USALES01",
                                      "INV-2026-000302 and INV-2026-000301 and INV-2026-999999")
    # when: someone with no role tries
    slack.message_shortcut("UNOBODY1", message, ids.SHORTCUT_DISPUTE)
    # then: refused (audited), no modal
    standin.api.wait_for(lambda: _audited(server, "refused.dispute.open"))
    assert standin.api.views_for("UNOBODY1") == []
    # when: a sales rep does
    slack.message_shortcut("USALES01", message, ids.SHORTCUT_DISPUTE)
    # then: a select of the two invoices that exist, in the message's order
    [modal] = standin.api.wait_for(lambda: standin.api.views_for("USALES01") or None)
    select_block = modal["blocks"][0]
    assert [o["value"] for o in select_block["element"]["options"]] == [
        "INV-2026-000302", "INV-2026-000301"]


def test_message_shortcut_on_a_message_without_invoices_says_so(server, slack, standin) -> None:
    books(server)
    message = standin.api.add_message(CHANNEL, "USALES01", "lunch?")
    slack.message_shortcut("UCOLL001", message, ids.SHORTCUT_DISPUTE)
    [answer] = standin.api.wait_for(lambda: standin.api.responses or None)
    assert "mentions no invoice" in answer["payload"]["text"]


def test_global_shortcut_new_order_opens_the_order_modal(server, slack, standin) -> None:
    books(server)
    # when
    assert slack.global_shortcut("USALES01", ids.SHORTCUT_NEW_ORDER).status_code == 200
    # then
    [modal] = standin.api.wait_for(lambda: standin.api.views_for("USALES01") or None)
    assert modal["callback_id"] == ids.ORDER_MODAL
    # and: someone who may not enter orders is told so in a DM, no modal
    slack.global_shortcut("UCOLL001", ids.SHORTCUT_NEW_ORDER)
    standin.api.wait_for(lambda: standin.api.dm_messages("UCOLL001") or None)
    assert standin.api.views_for("UCOLL001") == []


def _dispute(server) -> Dispute | None:
    with server.db.read_session() as s:
        return s.exec(select(Dispute)).first()


def _audited(server, action: str) -> list[AuditEvent]:
    with server.db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)))
