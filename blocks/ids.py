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

# collections (digest, worklist, App Home)
COLL_LOG_CALL = "collections_log_call"
COLL_PROMISE = "collections_promise"
COLL_REMINDER = "collections_reminder"
COLL_SNOOZE = "collections_snooze"
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
