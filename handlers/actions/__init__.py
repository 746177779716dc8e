"""Button and select listeners (`block_actions`), one module per feature, all registered here.

Each click is acked at once (`acknowledge`); the listener runs after the ack (`after_ack`, a
Bolt lazy listener), re-checks the clicking user's role on the server and answers only them.
A select's options are answered in the ack itself (`ack(options=...)`).
"""

from __future__ import annotations

from slack_bolt import App

from blocks import ids
from handlers.actions import approvals, backoffice, backorders, cashapp, collections, credit_hold
from handlers.common import acknowledge, after_ack


def register(app: App) -> None:
    for action_id, listener in (
        (ids.APPROVE, approvals.on_approve),
        (ids.APPROVE_WITH_NOTE, approvals.on_approve_with_note),
        (ids.REJECT, approvals.on_reject),
        (ids.BACKORDER_SHIP_PARTIAL, backorders.on_ship_partial),
        (ids.BACKORDER_WAIT, backorders.on_wait),
        (ids.BACKORDER_CANCEL_LINE, backorders.on_cancel_line),
        (ids.CASHAPP_APPLY, cashapp.on_apply),
        (ids.CASHAPP_ASSIGN, cashapp.on_assign),
        (ids.CASHAPP_APPLY_INVOICES, cashapp.on_apply_invoices),
        (ids.CASHAPP_RETURN, cashapp.on_return),
        (ids.COLL_PROMISE, collections.on_promise),
        (ids.COLL_LOG_CALL, collections.on_log_call),
        (ids.COLL_REMINDER, collections.on_reminder),
        (ids.COLL_SNOOZE, collections.on_snooze),
        (ids.DUNNING_CONFIRM, collections.on_dunning_confirm),
        (ids.CREDIT_HOLD, credit_hold.on_hold),
        (ids.CREDIT_RELEASE, credit_hold.on_release),
        (ids.DISPUTE_OPEN, backoffice.on_dispute_open),
        (ids.DISPUTE_FROM_ACCOUNT, backoffice.on_dispute_from_account),
        (ids.DISPUTE_ACCEPT, backoffice.on_dispute_accept),
        (ids.DISPUTE_REJECT, backoffice.on_dispute_reject),
        (ids.DISPUTE_REASSIGN, backoffice.on_dispute_reassign),
        (ids.DEDUCTION_DISPUTE, backoffice.on_deduction_dispute),
        (ids.DEDUCTION_WRITE_OFF, backoffice.on_deduction_write_off),
        (ids.DEDUCTION_BILL_BACK, backoffice.on_deduction_bill_back),
        (ids.CREDIT_NOTE_REQUEST, backoffice.on_credit_note_request),
        (ids.WRITE_OFF_REQUEST, backoffice.on_write_off_request),
        (ids.FEE_WAIVE, backoffice.on_fee_waive),
    ):
        app.action(action_id)(ack=acknowledge, lazy=[after_ack(listener)])
    # the options of the card's selects are their ack (only for whoever may then choose)
    app.options(ids.CASHAPP_ASSIGN)(cashapp.customer_choices)
    app.options(ids.CASHAPP_APPLY_INVOICES)(cashapp.invoice_choices)
    # a URL button ("Pay now"): the browser opens the link; Slack still sends the click, which
    # needs only its ack (without one Slack shows the user an error)
    app.action(ids.OPEN_LINK)(acknowledge)
