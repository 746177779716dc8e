"""Buttons of the back office (issue 14): on the invoice card (Dispute · Request credit note ·
Write off · Waive fee), on a digest or worklist row (Dispute), on a dispute card (Accept ·
Reject · Reassign) and on a deduction card (Open dispute · Write off · Bill back).

Each click is acked at once (`handlers.actions.register`); after the ack the listener re-checks
on the server who is clicking (a refusal is audited, and explained by the app's error handler)
and whether the record still allows it, then opens its modal (the decision happens on submit,
`handlers.views.backoffice`) — or, for Bill back, acts once (one e-mail per deduction and
day). Thin: parse, one workflow call, a builder from `blocks.backoffice`.
"""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import select

from blocks import backoffice as views
from blocks import ids
from blocks.i18n import Formats
from blocks.text import esc
from handlers.common import (
    action_id_value,
    checking,
    formats_of,
    now_of,
    open_modal_for,
    tell_user,
    transaction,
)
from models import Customer, Invoice, money
from workflows import credit_notes, deductions, disputes, write_offs
from workflows.users import require_role


def _channel(body: dict) -> str | None:
    return (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id")


def _invoice(session, invoice_id: int) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        from workflows.errors import NotFound

        raise NotFound(f"no invoice #{invoice_id}")
    return invoice


def _open_info(session, invoice: Invoice) -> dict:
    customer = session.get(Customer, invoice.customer_id)
    return {"number": invoice.number, "customer": customer.name,
            "open_minor": disputes.undisputed_open(invoice), "currency": invoice.currency}


def _shown(info: dict, fmt: Formats) -> dict:
    """An invoice open to dispute as the modal shows it: its open amount in `fmt`."""
    return {**info, "open": fmt.money(info["open_minor"], info["currency"])}


# -- disputes -------------------------------------------------------------------------------------
def on_dispute_open(body: dict, client: WebClient, context: BoltContext) -> None:
    user_id, invoice_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        invoice = _invoice(session, invoice_id)
        require_role(session, user_id=user_id, roles=disputes.OPENER_ROLES,
                     action="dispute.open", entity_type="invoice", entity_id=invoice.number)
        info = _open_info(session, invoice)
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.dispute_modal(meta={"invoice": info["number"],
                                                         "channel": _channel(body)},
                                                   invoice=_shown(info, fmt)))


def on_dispute_from_account(body: dict, client: WebClient,
                            context: BoltContext) -> None:
    user_id, customer_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        require_role(session, user_id=user_id, roles=disputes.OPENER_ROLES,
                     action="dispute.open", entity_type="customer", entity_id=customer_id)
        rows = session.exec(select(Invoice).where(
            Invoice.customer_id == customer_id,
            Invoice.balance_minor > Invoice.disputed_minor)
            .order_by(Invoice.due_date, Invoice.id).limit(100)).all()
        invoices = [{"number": i.number, "open_minor": disputes.undisputed_open(i),
                     "currency": i.currency} for i in rows]
    if not invoices:
        tell_user(body, None, client, "Nothing of this customer is open to dispute.")
        return
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.dispute_modal(
                       meta={"customer_id": customer_id, "channel": _channel(body)},
                       invoice=None, invoices=[_shown(i, fmt) for i in invoices]))


def _resolve_view(session, dispute_id: int, user_id: str, action: str) -> dict:
    dispute = disputes.ensure_open(session, dispute_id=dispute_id, user_id=user_id,
                                   action=action)
    invoice = session.get(Invoice, dispute.invoice_id)
    return {"id": dispute.id, "invoice": invoice.number,
            "customer": session.get(Customer, dispute.customer_id).name,
            "amount_minor": dispute.amount_minor, "currency": dispute.currency,
            "amount_plain": money.to_str(dispute.amount_minor, dispute.currency),
            "reason": dispute.reason}


def _on_resolve(body: dict, client: WebClient, context: BoltContext,
                outcome: str) -> None:
    user_id, dispute_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        dispute = _resolve_view(session, dispute_id, user_id, f"dispute.{outcome}")
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.resolve_modal(dispute=_amount_shown(dispute, fmt),
                                                   outcome=outcome, channel=_channel(body)))


def _amount_shown(dispute: dict, fmt: Formats) -> dict:
    return {**dispute, "amount": fmt.money(dispute["amount_minor"], dispute["currency"])}


def on_dispute_accept(body: dict, client: WebClient, context: BoltContext) -> None:
    _on_resolve(body, client, context, "accepted")


def on_dispute_reject(body: dict, client: WebClient, context: BoltContext) -> None:
    _on_resolve(body, client, context, "rejected")


def on_dispute_reassign(body: dict, client: WebClient,
                        context: BoltContext) -> None:
    user_id, dispute_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        dispute = _resolve_view(session, dispute_id, user_id, "dispute.reassign")
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.reassign_modal(dispute=_amount_shown(dispute, fmt),
                                                    channel=_channel(body)))


# -- deductions -----------------------------------------------------------------------------------
def _settled(invoice_number: str) -> str:
    return (f":white_check_mark: {esc(invoice_number)} has nothing open any more: the "
            "deduction is resolved (settled); nothing else was done.")


def _settle_instead(body: dict, respond: Respond, client: WebClient, context: BoltContext,
                    deduction_id: int, invoice_number: str) -> None:
    """A click on a deduction whose invoice has nothing open any more (paid, credited or
    written off since): it is resolved instead of opening a modal that could only refuse."""
    user_id = body["user"]["id"]
    with transaction(context) as session:
        deductions.settle_if_closed(session, deduction_id, by=user_id, now=now_of(context))
    tell_user(body, respond, client, _settled(invoice_number))


def on_deduction_dispute(body: dict, respond: Respond, client: WebClient,
                         context: BoltContext) -> None:
    user_id, deduction_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        deduction = deductions.check(session, deduction_id=deduction_id, user_id=user_id,
                                     action="deduction.dispute")
        invoice = session.get(Invoice, deduction.invoice_id)
        closed = invoice.balance_minor == 0
        info = _open_info(session, invoice)
        amount = money.to_str(min(deductions.left_minor(session, deduction),
                                  disputes.undisputed_open(invoice)), invoice.currency)
    if closed:
        _settle_instead(body, respond, client, context, deduction_id, info["number"])
        return
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.dispute_modal(
                       meta={"deduction_id": deduction_id, "invoice": info["number"],
                             "channel": _channel(body)}, invoice=_shown(info, fmt),
                       amount=amount))


def on_deduction_write_off(body: dict, respond: Respond, client: WebClient,
                           context: BoltContext) -> None:
    user_id, deduction_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        deduction = deductions.check(session, deduction_id=deduction_id, user_id=user_id,
                                     action="deduction.write_off")
        invoice = session.get(Invoice, deduction.invoice_id)
        closed, cur = invoice.balance_minor == 0, invoice.currency
        minor = 0 if closed else deductions.write_off_amount(session, deduction, invoice)
    if closed:
        _settle_instead(body, respond, client, context, deduction_id, invoice.number)
        return
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.amount_reason_modal(
        callback_id=ids.WRITE_OFF_MODAL, title="Write off deduction", submit="Ask approval",
        meta={"deduction_id": deduction_id, "channel": _channel(body)},
        summary=f"Write off the deduction of *{fmt.money(minor, cur)}* on "
                f"*{esc(invoice.number)}*. A credit approver decides.", amount=None,
        amount_label=None, reason_label="Why it is written off"))


def on_deduction_bill_back(body: dict, respond: Respond, client: WebClient,
                           context: BoltContext) -> None:
    user_id, deduction_id = body["user"]["id"], action_id_value(body)
    fmt = formats_of(context, user_id, client)  # before any transaction
    with transaction(context) as session:
        deduction = deductions.bill_back(session, deduction_id=deduction_id, actor=user_id,
                                         now=now_of(context))
        invoice = session.get(Invoice, deduction.invoice_id)
        due = deductions.due_minor(session, deduction, invoice)  # what the e-mail asks for
        text = _settled(invoice.number) if deduction.status == "resolved" else (
            f":email: The customer was e-mailed that {fmt.money(due, invoice.currency)} of "
            f"{esc(invoice.number)} is still due; the deduction stays open.")
    tell_user(body, respond, client, text)


# -- credit notes, write-offs, fee waivers (the invoice card) -------------------------------------
def on_credit_note_request(body: dict, client: WebClient,
                           context: BoltContext) -> None:
    user_id, invoice_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        invoice = _invoice(session, invoice_id)
        require_role(session, user_id=user_id, roles=credit_notes.REQUESTER_ROLES,
                     action="credit_note.request", entity_type="invoice",
                     entity_id=invoice.number)
        left = credit_notes.creditable(session, invoice)
        number, cur = invoice.number, invoice.currency
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.amount_reason_modal(
        callback_id=ids.CREDIT_NOTE_MODAL, title="Request credit note", submit="Ask approval",
        meta={"invoice": number, "channel": _channel(body)},
        summary=f"A credit note on *{esc(number)}*: at most {fmt.money(left, cur)} can still "
                "be credited. A credit approver (not you) decides; by lines: the REST API.",
        amount=money.to_str(left, cur), amount_label=f"Amount ({cur}, tax included)",
        reason_label="Reason (printed on the credit note)"))


def on_write_off_request(body: dict, client: WebClient,
                         context: BoltContext) -> None:
    user_id, invoice_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        invoice = _invoice(session, invoice_id)
        require_role(session, user_id=user_id, roles=write_offs.REQUESTER_ROLES,
                     action="write_off.request", entity_type="invoice",
                     entity_id=invoice.number)
        number, cur, left = invoice.number, invoice.currency, invoice.balance_minor
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.amount_reason_modal(
        callback_id=ids.WRITE_OFF_MODAL, title="Write off bad debt", submit="Ask approval",
        meta={"invoice": number, "channel": _channel(body)},
        summary=f"Write off (bad debt) on *{esc(number)}*, {fmt.money(left, cur)} open. A "
                "credit approver (not you) decides.", amount=money.to_str(left, cur),
        amount_label=f"Amount ({cur})", reason_label="Why it is written off"))


def on_fee_waive(body: dict, client: WebClient, context: BoltContext) -> None:
    user_id, invoice_id = body["user"]["id"], action_id_value(body)
    with checking(context) as session:
        invoice = _invoice(session, invoice_id)
        require_role(session, user_id=user_id, roles=write_offs.WAIVER_ROLES,
                     action="late_fee.waive", entity_type="invoice", entity_id=invoice.number)
        number, left, cur = invoice.number, invoice.balance_minor, invoice.currency
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: views.amount_reason_modal(
        callback_id=ids.FEE_WAIVE_MODAL, title="Waive late fee", submit="Waive",
        meta={"invoice": number, "channel": _channel(body)},
        summary=f"Waive the late fee *{esc(number)}* ({fmt.money(left, cur)} open). Above "
                "the waiver threshold a credit approver decides.", amount=None, amount_label=None,
        reason_label="Why it is waived"))
