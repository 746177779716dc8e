"""Modal listeners (`view_submission`, `block_suggestion`, a modal's `dispatch_action`), one
module per feature, all registered here.

A submission acks first: its ack function checks the form with reads only, answering bad input
inline (`response_action: "errors"`, the form stays open) or closing the modal; the workflow
then runs after the ack (`after_ack`, a Bolt lazy listener) and the user is told its outcome.
Select options are the ack itself (`ack(options=...)`).
"""

from __future__ import annotations

from slack_bolt import App

from blocks import ids
from handlers.common import acknowledge, after_ack
from handlers.views import (
    approvals,
    backoffice,
    collections,
    credit_hold,
    order_entry,
    payment,
)


def register(app: App) -> None:
    for callback_id, check, run in (
        (ids.ORDER_MODAL, order_entry.check_submission, order_entry.create_order),
        (ids.PAY_MODAL, payment.check_submission, payment.record_payment),
        (ids.REJECT_MODAL, approvals.check_reject, approvals.reject),
        (ids.APPROVE_NOTE_MODAL, approvals.check_approve_with_note,
         approvals.approve_with_note),
        (ids.PROMISE_MODAL, collections.check_promise, collections.record_promise),
        (ids.CALL_MODAL, collections.check_call, collections.record_call),
        (ids.DISPUTE_MODAL, backoffice.check_dispute, backoffice.open_dispute),
        (ids.DISPUTE_RESOLVE_MODAL, backoffice.check_resolve, backoffice.resolve_dispute),
        (ids.REASSIGN_MODAL, backoffice.check_reassign, backoffice.reassign_dispute),
        (ids.CREDIT_NOTE_MODAL, backoffice.check_credit_note, backoffice.request_credit_note),
        (ids.WRITE_OFF_MODAL, backoffice.check_write_off, backoffice.request_write_off),
        (ids.FEE_WAIVE_MODAL, backoffice.check_fee_waiver, backoffice.waive_fee),
        (ids.CREDIT_RELEASE_MODAL, credit_hold.check_release, credit_hold.release),
        (ids.CASHAPP_RETURN_MODAL, payment.check_return, payment.record_return),
    ):
        app.view(callback_id)(ack=check, lazy=[after_ack(run)])

    app.action(ids.ORDER_PRODUCT_SELECT)(ack=acknowledge,
                                         lazy=[after_ack(order_entry.on_product_chosen)])
    app.options(ids.ORDER_CUSTOMER_SELECT)(order_entry.on_customer_options)
    app.options(ids.ORDER_PRODUCT_SELECT)(order_entry.on_product_options)
    app.options(ids.PAY_CUSTOMER)(payment.customer_options)
    app.options(ids.PAY_INVOICES)(payment.invoice_options)
