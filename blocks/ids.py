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

# cash application: suggestion card and the /o2c pay modal
CASHAPP_APPLY = "cashapp_apply"
PAY_MODAL = "pay_modal"
PAY_AMOUNT_BLOCK, PAY_AMOUNT = "pay_amount", "pay_amount_input"
PAY_CURRENCY_BLOCK, PAY_CURRENCY = "pay_currency", "pay_currency_select"
PAY_CUSTOMER_BLOCK, PAY_CUSTOMER = "pay_customer", "pay_customer_select"
PAY_PAYER_BLOCK, PAY_PAYER = "pay_payer", "pay_payer_input"
PAY_REFERENCE_BLOCK, PAY_REFERENCE = "pay_reference", "pay_reference_input"
PAY_DATE_BLOCK, PAY_DATE = "pay_received", "pay_received_date"
PAY_INVOICES_BLOCK, PAY_INVOICES = "pay_invoices", "pay_invoices_select"
