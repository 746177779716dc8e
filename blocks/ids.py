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
