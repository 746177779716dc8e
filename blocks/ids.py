"""Every action_id, block_id and callback_id the bot uses, in one place.

Handlers register on these and builders emit them; a typo becomes an import error instead of
a button that silently does nothing.
"""

# /o2c and App Home
COMMAND = "/o2c"

# approvals (credit, discount)
APPROVE = "approval_approve"
REJECT = "approval_reject"
REJECT_MODAL = "approval_reject_modal"
REJECT_REASON_BLOCK = "reject_reason"
REJECT_REASON_INPUT = "reject_reason_input"

# customers
CREDIT_HOLD = "customer_credit_hold"
CREDIT_RELEASE = "customer_credit_release"
CREDIT_RELEASE_MODAL = "customer_credit_release_modal"
CREDIT_RELEASE_REASON_BLOCK = "credit_release_reason"
CREDIT_RELEASE_REASON_INPUT = "credit_release_reason_input"

# approvals: "approve with a note" (a modal; Approve alone decides at once)
APPROVE_WITH_NOTE = "approval_approve_note"
APPROVE_NOTE_MODAL = "approval_approve_note_modal"
APPROVE_NOTE_BLOCK = "approve_note"
APPROVE_NOTE_INPUT = "approve_note_input"

# `/o2c new`: the order-entry modal. Line inputs live in blocks "order_line_<row>_<part>".
ORDER_MODAL = "order_entry_modal"
ORDER_CUSTOMER_BLOCK = "order_customer"
ORDER_CUSTOMER_SELECT = "order_customer_select"
ORDER_PRODUCT_SELECT = "order_product_select"
ORDER_QUANTITY_INPUT = "order_quantity_input"
ORDER_DISCOUNT_INPUT = "order_discount_input"
ORDER_NOTES_BLOCK = "order_notes"
ORDER_NOTES_INPUT = "order_notes_input"
ORDER_SERVICE_START_INPUT = "order_service_start"
ORDER_SERVICE_END_INPUT = "order_service_end"
ORDER_BILLING_SELECT = "order_billing_select"
ORDER_MAX_LINES = 5


def order_line_block(row: int, part: str) -> str:
    """Block id of one input of a modal line: order_line_0_product, order_line_2_quantity."""
    return f"order_line_{row}_{part}"

# collections (digest, worklist, App Home)
COLL_LOG_CALL = "collections_log_call"
COLL_PROMISE = "collections_promise"
COLL_REMINDER = "collections_reminder"
COLL_SNOOZE = "collections_snooze"
DUNNING_CONFIRM = "dunning_confirm"  # value: the waiting dunning day's request id
COLL_ACCOUNT_BLOCK = "collections_account"  # + ":<customer id>"
PROMISE_MODAL = "collections_promise_modal"
PROMISE_AMOUNT_BLOCK = "promise_amount"
PROMISE_AMOUNT_INPUT = "promise_amount_input"
PROMISE_DATE_BLOCK = "promise_date"
PROMISE_DATE_INPUT = "promise_date_input"
PROMISE_NOTE_BLOCK = "promise_note"
PROMISE_NOTE_INPUT = "promise_note_input"
CALL_MODAL = "collections_call_modal"
CALL_NOTE_BLOCK = "call_note"
CALL_NOTE_INPUT = "call_note_input"

# cash application: suggestion card and the /o2c pay modal
CASHAPP_APPLY = "cashapp_apply"
CASHAPP_ASSIGN = "cashapp_assign"  # the card's customer select (value: customer external id)
CASHAPP_ASSIGN_BLOCK = "cashapp_assign"  # + ":<payment id>"
CASHAPP_ACTIONS_BLOCK = "cashapp_actions"  # + ":<payment id>": Apply to invoices · Refund
CASHAPP_APPLY_INVOICES = "cashapp_apply_invoices"  # multi_external_select of open invoices
CASHAPP_RETURN = "cashapp_return"  # "Refund or return…" (value: payment id)
CASHAPP_RETURN_MODAL = "cashapp_return_modal"
CASHAPP_RETURN_REASON_BLOCK = "cashapp_return_reason"
CASHAPP_RETURN_REASON_INPUT = "cashapp_return_reason_input"
PAY_MODAL = "pay_modal"
PAY_AMOUNT_BLOCK, PAY_AMOUNT = "pay_amount", "pay_amount_input"
PAY_CURRENCY_BLOCK, PAY_CURRENCY = "pay_currency", "pay_currency_select"
PAY_CUSTOMER_BLOCK, PAY_CUSTOMER = "pay_customer", "pay_customer_select"
PAY_PAYER_BLOCK, PAY_PAYER = "pay_payer", "pay_payer_input"
PAY_REFERENCE_BLOCK, PAY_REFERENCE = "pay_reference", "pay_reference_input"
PAY_DATE_BLOCK, PAY_DATE = "pay_received", "pay_received_date"
PAY_INVOICES_BLOCK, PAY_INVOICES = "pay_invoices", "pay_invoices_select"

# backorders: the rep's choices on the backorder notice (button value: the order number; the
# cancel button's: "<order number>:<line no>", one per short line, in block "backorder_line:<n>")
BACKORDER_SHIP_PARTIAL = "backorder_ship_partial"
BACKORDER_WAIT = "backorder_wait"
BACKORDER_CANCEL_LINE = "backorder_cancel_line"
BACKORDER_CHOICES_BLOCK = "backorder_choices"
BACKORDER_LINE_BLOCK = "backorder_line"  # + ":<line no>"

# back office (issue 14). Button values: a dispute, deduction or invoice id; the account row's
# Dispute button: the customer id.
DISPUTE_OPEN = "backoffice_dispute_open"  # invoice card (value: invoice id)
DISPUTE_FROM_ACCOUNT = "backoffice_dispute_account"  # digest / worklist row (customer id)
DISPUTE_MODAL = "backoffice_dispute_modal"
DISPUTE_INVOICE_BLOCK, DISPUTE_INVOICE = "dispute_invoice", "dispute_invoice_select"
DISPUTE_REASON_BLOCK, DISPUTE_REASON = "dispute_reason", "dispute_reason_select"
DISPUTE_AMOUNT_BLOCK, DISPUTE_AMOUNT = "dispute_amount", "dispute_amount_input"
DISPUTE_NOTE_BLOCK, DISPUTE_NOTE = "dispute_note", "dispute_note_input"
DISPUTE_ACCEPT = "backoffice_dispute_accept"
DISPUTE_REJECT = "backoffice_dispute_reject"
DISPUTE_REASSIGN = "backoffice_dispute_reassign"
DISPUTE_RESOLVE_MODAL = "backoffice_dispute_resolve_modal"
RESOLVE_CREDIT_BLOCK, RESOLVE_CREDIT = "resolve_credit", "resolve_credit_input"
RESOLVE_NOTE_BLOCK, RESOLVE_NOTE = "resolve_note", "resolve_note_input"
REASSIGN_MODAL = "backoffice_reassign_modal"
REASSIGN_USER_BLOCK, REASSIGN_USER = "reassign_user", "reassign_user_select"
DEDUCTION_DISPUTE = "backoffice_deduction_dispute"
DEDUCTION_WRITE_OFF = "backoffice_deduction_write_off"
DEDUCTION_BILL_BACK = "backoffice_deduction_bill_back"
CREDIT_NOTE_REQUEST = "backoffice_credit_note_request"  # invoice card (value: invoice id)
CREDIT_NOTE_MODAL = "backoffice_credit_note_modal"
WRITE_OFF_REQUEST = "backoffice_write_off_request"  # invoice card (value: invoice id)
WRITE_OFF_MODAL = "backoffice_write_off_modal"  # also a deduction's (metadata deduction_id)
FEE_WAIVE = "backoffice_fee_waive"  # a late-fee invoice's card (value: invoice id)
FEE_WAIVE_MODAL = "backoffice_fee_waive_modal"
BO_AMOUNT_BLOCK, BO_AMOUNT = "backoffice_amount", "backoffice_amount_input"
BO_REASON_BLOCK, BO_REASON = "backoffice_reason", "backoffice_reason_input"

# a button that opens a URL ("Pay now"); Slack still sends the click, which is only acked
OPEN_LINK = "open_link"

# shortcuts (issue 17): callback ids, as in manifest.yml
SHORTCUT_DISPUTE = "o2c_dispute_message"  # message shortcut "Open dispute / ask finance"
SHORTCUT_NEW_ORDER = "o2c_new_order"  # global shortcut "New order"
