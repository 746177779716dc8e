"""Every notification template escapes what users, customers, ERPs and banks supplied.

Each template registered in `blocks.templates` is rendered from a realistic context (the shape
its workflow writes) in which every free-text string value carries a mention and a forged
link. Slack reads a message's `text` fallback and every mrkdwn text as markup, so neither may
contain them raw; escaping twice (`&amp;lt;`) would show the reader garbage, so that is checked
too (in every text, plain_text included).

Values kept as they are (`STRUCTURED`): those whose format the system guarantees and the
templates parse or rely on — ISO dates and timestamps, currency codes and time zones, state and
kind vocabularies, Slack user ids (rendered as `<@U…>` mentions on purpose), numbers computed
by the workflows (KPI figures, scores, amounts as decimal strings) and document numbers the
system generates itself (`SO-1001`, the invoice it issues on shipment). Invoice numbers that may
come from an ERP (collections, cash application) are free text and are substituted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from blocks import templates
from sandbox.blockkit import validate_message

HOSTILE = "<!channel> <https://x.example|Bank>"
RAW = ("<!channel>", "<https://x.example|Bank>")
TWICE = ("&amp;lt;", "&amp;gt;", "&amp;amp;")

DATES = {"as_of", "date", "due_date", "issue_date", "promised_date", "last_contact",
         "requested_at", "decided_at", "received_at", "at", "opened_at", "resolved_at",
         "first_decided_at", "billed_back_at",
         # months of the revenue close ("2026-06")
         "period", "month", "months"}
CODES = {"currency", "tz", "kind", "status", "audience", "code", "waiting_for"}
SLACK_IDS = {"collector_id", "requested_by", "sales_rep", "decided_by", "taken_by", "by",
             "approvers"}
NUMBERS = {"score", "risk", "amount", "write_off", "unapplied_amount", "working_hours",
           "total", "amount_due", "margin_before_pct", "margin_after_pct",
           # KPI figures (workflows/kpis.to_json) and aging buckets
           "ar", "current_ar", "credit_sales", "dso", "best_possible_dso", "count_back_dso",
           "average_days_delinquent", "cei_pct", "auto_match_rate_pct",
           "auto_match_amount_pct", "approval_turnaround_hours", "order_cycle_days",
           "invoice_accuracy_pct", "current", "1-30", "31-60", "61-90", "90+",
           # the revenue close's figures (workflows/revenue.close_summary)
           "recognized", "deferred", "unbilled", "goods", "service", "subscription"}
# links the bot makes itself (an invoice's "Pay now" link), and provider ids (Stripe's)
LINKS = {"pay_url", "external_id", "dispute_id", "deal_id"}
STRUCTURED = DATES | CODES | SLACK_IDS | NUMBERS | LINKS
# (parent key, key) of system-generated document numbers: an order's number (SO-1001) and the
# top-level "invoice" of order_shipped (the invoice issued for the shipment, INV-2026-000001)
SYSTEM_NUMBERS: set[tuple[str | None, str]] = set()


def hostile(value: object, *, key: str | None = None, parent: str | None = None) -> object:
    """The context with HOSTILE appended to every free-text string value."""
    if isinstance(value, dict):
        return {k: hostile(v, key=k, parent=key) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile(v, key=key, parent=parent) for v in value]
    if isinstance(value, str) and key not in STRUCTURED and (parent, key) not in SYSTEM_NUMBERS:
        return f"{value} {HOSTILE}"
    return value


# -- realistic contexts, one or more per template ----------------------------------------------
ORDER = {"number": "SO-1001", "status": "pending_approval", "currency": "USD",
         "total_minor": 1_250_000, "customer": "Acme Ltd", "sales_rep": "USALES01"}
INVOICE = {"number": "ERP-77/2026", "issue_date": "2026-09-24", "due_date": "2026-10-24",
           "days_past_due": 30, "currency": "USD", "total_minor": 100_000,
           "amount_due_minor": 80_000, "total": "1000.00", "amount_due": "USD 800.00"}
DUNNING = {"kind": "final", "level": 30, "customer_id": 7, "customer_name": "Acme Ltd",
           "invoice": INVOICE, "days_past_due": 30}
CREDIT_SNAPSHOT = {
    "currency": "USD", "credit_limit_minor": 1_000_000, "exposure_minor": 1_400_000,
    "open_ar_minor": 150_000, "overdue_minor": 50_000,
    "aging": {"current": 100_000, "1-30": 50_000, "31-60": 0, "61-90": 0, "90+": 0},
    "oldest_days_past_due": 12, "credit_reviewed": True, "credit_hold": False,
    "history": {"paid": 4, "paid_late": 1, "avg_days_late": 6, "days": 365}}
DISCOUNT_SNAPSHOT = {"currency": "USD", "lost_minor": 30_000, "lines": [
    {"line_no": 1, "sku": "WID-100", "name": "Widget, large", "quantity": 10,
     "unit_price_minor": 10_000, "discount_bp": 3000, "max_bp": 1500, "gross_minor": 100_000,
     "net_minor": 70_000, "lost_minor": 30_000, "cost_minor": 50_000,
     "margin_before_minor": 50_000, "margin_after_minor": 20_000,
     "margin_before_pct": "50.0", "margin_after_pct": "28.6"}]}


def approval(kind: str, status: str = "pending", **extra: object) -> dict:
    snapshot = CREDIT_SNAPSHOT if kind == "credit" else DISCOUNT_SNAPSHOT
    reasons = ([{"code": "over_limit", "text": "exposure would exceed the credit limit"}]
               if kind == "credit" else
               [{"code": "discount_over_max", "text": "WID-100: discount 30% over 15%"}])
    return {"approval_id": 3, "kind": kind, "status": status, "order": ORDER,
            "requested_by": "USALES01", "requested_by_label": None, "sales_rep": "USALES01",
            "requested_at": "2026-11-23T09:00:00+00:00", "reasons": reasons,
            "snapshot": snapshot, "decided_by": None, "decided_at": None, "note": None,
            "reminder": None, **extra}


DECIDED = {"decided_by": "UCREDIT1", "decided_at": "2026-11-23T10:00:00+00:00",
           "note": "Customer confirmed a prepayment"}
SUGGESTION = {"rank": 1, "customer": "C-1", "customer_name": "Acme Ltd",
              "confidence": "high", "fit": 0.93,
              "invoices": [{"invoice": "ERP-77/2026", "amount": "800.00"}],
              "write_off": "1.50", "unapplied_amount": "0.00",
              "reasons": ["invoice number in the reference"],
              "concerns": ["payer name differs from the customer"]}
PAYMENT = {"id": 9, "amount_minor": 79_850, "currency": "USD", "payer_name": "ACME LTD",
           "reference": "INV ERP-77/2026 thanks", "external_id": "BANK-2026-11-23-0001",
           "received_at": "2026-11-23T08:00:00+00:00", "source": "camt053",
           "customer_name": "Acme Ltd"}
KPIS = {"as_of": "2026-11-23", "window_days": 90, "currency": "USD", "ar": "125000.00",
        "current_ar": "100000.00", "credit_sales": "300000.00", "dso": "37.5",
        "best_possible_dso": "30.0", "count_back_dso": "35.1",
        "average_days_delinquent": "7.5", "cei_pct": "88.2",
        "cash_application": {"payments": 40, "auto_match_rate_pct": "82.5",
                             "auto_match_amount_pct": "90.1"},
        "approval_turnaround_hours": "2.5", "order_cycle_days": "3.2",
        "invoice_accuracy_pct": "99.0",
        "aging": {"USD": {"current": "100000.00", "1-30": "20000.00", "31-60": "5000.00",
                          "61-90": "0.00", "90+": "0.00"}}}
ACCOUNT = {"customer_id": 7, "name": "Acme Ltd", "currency": "USD", "overdue_minor": 50_000,
           "open_minor": 150_000, "days_late": 12, "score": "500.00", "risk": "1.00",
           "last_contact": "2026-11-20T10:00:00+00:00",
           "promise": {"status": "open", "amount_minor": 5000, "date": "2026-11-30"}}

CONTEXTS: dict[str, list[tuple[str, dict]]] = {
    "approval_card": [
        ("credit pending", approval("credit", requested_by="api", requested_by_label="REST API")),
        ("discount reminder", approval("discount", reminder={
            "number": 2, "working_hours": "4.0", "approvers": ["UDISC001"]})),
        ("credit approved", approval("credit", "approved", **DECIDED)),
        ("discount rejected", approval("discount", "rejected", **DECIDED)),
    ],
    "discount_alert": [("pending", approval("discount"))],
    "approval_decided": [
        ("approved", approval("credit", "approved", waiting_for=["discount"], **DECIDED)),
        ("rejected", approval("discount", "rejected", **DECIDED)),
    ],
    "order_status": [("approval", {"order": ORDER,
                                   "reasons": ["exposure would exceed the credit limit"]})],
    "backorder_notice": [
        ("sales rep", {"order": ORDER, "lines": [
            {"line_no": 1, "sku": "WID-100", "ordered": 10, "backordered": 4}]}),
        ("billing", {"order": ORDER, "audience": "billing", "lines": [
            {"line_no": 1, "sku": "WID-100", "ordered": 10, "backordered": 4}]}),
        ("rep after wait", {"order": ORDER, "audience": "rep", "choice": "wait",
                            "by": "USALES01", "lines": [
                                {"line_no": 1, "sku": "WID-100", "ordered": 10,
                                 "backordered": 4, "reserved": 6}]}),
    ],
    "order_shipped": [("invoiced", {"order": {**ORDER, "status": "invoiced"},
                                    "carrier": "DHL", "tracking_number": "JD0146000",
                                    "invoice": "INV-2026-000001",
                                    "invoice_total_minor": 1_250_000}),
                      ("with a pay link", {"order": {**ORDER, "status": "invoiced"},
                                           "carrier": "DHL", "tracking_number": "JD0146000",
                                           "invoice": "INV-2026-000001",
                                           "invoice_total_minor": 1_250_000,
                                           "pay_url": "https://o2c.example/pay/abc"})],
    "text": [("notice", {"text": "Statement import finished: 3 lines need review"})],
    "cashapp_review": [
        ("suggestions", {"payment": PAYMENT, "status": "needs_review",
                         "suggestions": [SUGGESTION, {**SUGGESTION, "rank": 2,
                                                      "customer_name": None}],
                         "decision": None}),
        ("applied", {"payment": PAYMENT, "status": "applied", "suggestions": [],
                     "decision": {"by": "UCOLL001", "at": "2026-11-23T11:00:00+00:00",
                                  "rank": 1, "invoices": SUGGESTION["invoices"],
                                  "status": "applied"}}),
        ("unidentified", {"payment": PAYMENT, "status": "unapplied", "suggestions": [],
                          "decision": None}),
        ("to be returned", {"payment": PAYMENT, "status": "unapplied", "suggestions": [],
                            "decision": None, "return_requested": {
                                "by": "UCOLL001", "at": "2026-11-23T11:00:00+00:00",
                                "reason": "sent by mistake"}}),
    ],
    "payment_recorded": [
        (status, {"id": 9, "currency": "USD", "amount_minor": 79_850, "status": status,
                  "allocations": [{"invoice": "ERP-77/2026", "amount": "798.50"}],
                  "unapplied_minor": 0, "write_off_minor": 150})
        for status in ("applied", "needs_review", "unapplied")
    ],
    "kpi_report": [("weekly", {"kpis": KPIS})],
    "collections_digest": [
        ("accounts", {"collector_id": "UCOLL001", "as_of": "2026-11-23",
                      "totals": {"USD": {"current": 100_000, "1-30": 50_000, "31-60": 0,
                                         "61-90": 0, "90+": 0}},
                      "accounts": [ACCOUNT], "total_accounts": 3, "more": 2, "snoozed": 1,
                      "tz": "Europe/Berlin"}),
        ("updated after a call", {"collector_id": "UCOLL001", "as_of": "2026-11-23",
                                  "totals": {}, "accounts": [{**ACCOUNT, "done": [
                                      {"kind": "call", "by": "UCOLL001",
                                       "at": "2026-11-23T11:00:00+00:00",
                                       "note": "AP says Friday"}]}],
                                  "total_accounts": 1, "more": 0, "snoozed": 0}),
    ],
    "overdue_notice": [("reminder", {**DUNNING, "kind": "reminder", "level": 1,
                                     "days_past_due": 1})],
    "dunning_escalation": [("escalation", {**DUNNING, "kind": "escalation", "level": 14,
                                           "days_past_due": 14})],
    "dunning_final": [("final", {**DUNNING, "credit_hold": True}),
                      ("several", {**DUNNING, "credit_hold": True,
                                   "more": ["INV-2026-000124", "ERP-77/2026"]})],
    "dunning_no_email": [("reminder", {**DUNNING, "kind": "reminder", "level": 1})],
    "dunning_summary": [("catch-up", {
        "as_of": "2026-11-23", "notices": 42, "by_level": {"1": 30, "7": 10, "30": 2},
        "emails": 17, "customers": 17, "skipped": 12, "late_fees": 1,
        "top": [{"customer_id": 7, "name": "Acme Ltd",
                 "amounts": [{"currency": "USD", "amount_minor": 120_000},
                             {"currency": "EUR", "amount_minor": 5_000}]}],
        "no_email": ["Globex"], "no_email_count": 3,
        "credit_holds": ["Acme Ltd"], "credit_hold_count": 1})],
    "dunning_people": [("a run", {
        "as_of": "2026-11-23", "user_id": "UCOLL001", "customers": 12, "notices": 20,
        "kinds": [{"kind": kind, "level": level, "customers": 11, "invoices": 15,
                   "totals": [{"currency": "USD", "amount_minor": 120_000}],
                   "top": [{"customer_id": 7, "name": "Acme Ltd", "credit_hold": True,
                            "invoices": 3, "amounts": [{"currency": "USD",
                                                        "amount_minor": 120_000}],
                            "first": {**INVOICE, "days_past_due": level,
                                      "late_fee": {"number": "FEE-77/2026",
                                                   "amount_minor": 2_500,
                                                   "currency": "USD"}}}]}
                  for kind, level in (("reminder", 1), ("escalation", 14), ("final", 30))]})],
    "dunning_confirm": [("waiting", {"id": 3, "as_of": "2026-11-23", "threshold": 200,
                                     "notices": 774_000, "customers": 50_000,
                                     "emails": 50_000})],
    "promise_broken": [("broken", {"promise_id": 4, "customer_id": 7, "customer": "Acme Ltd",
                                   "currency": "USD", "amount_minor": 50_000,
                                   "paid_minor": 10_000, "promised_date": "2026-11-20",
                                   "note": "CFO said Friday", "taken_by": "UCOLL001"})],
    "revenue_close": [("one currency", {
        "period": "2026-06", "months": ["2026-05", "2026-06"], "currencies": {"USD": {
            "recognized": "1006.46", "deferred": "203.54", "unbilled": "0.00",
            "by_type": {"goods": "810.00", "service": "97.83", "subscription": "98.63"},
            "previous": {"month": "2026-05", "recognized": "0.00", "deferred": "0.00",
                         "unbilled": "0.00"}}}}),
        ("nothing yet", {"period": "2026-06", "months": ["2026-06"], "currencies": {}})],
    "email_queued": [("queued", {"outbox_id": 12, "to": "ap@acme.example",
                                 "subject": "Overdue invoices of Acme Ltd",
                                 "summary": "Dear Acme Ltd, invoice ERP-77/2026 is overdue."}),
                     ("with a pay link", {"outbox_id": 12, "to": "ap@acme.example",
                                          "subject": "Invoice ERP-77/2026",
                                          "summary": "Dear Acme Ltd, please pay.",
                                          "pay_url": "http://127.0.0.1:3000/pay/abc"})],
    "webhook_disabled": [("disabled", {"subscription_id": 3,
                                       "url": "https://erp.example/hooks?x=1",
                                       "reason": "every delivery failed since 2026-03-02; "
                                                 "last: HTTP 500",
                                       "since": "2026-03-02T09:00:00+00:00"})],
    "provider_payment": [
        ("applied", {"provider_name": "Stripe", "payment_id": 9, "amount_minor": 50_000,
                     "currency": "USD", "customer_name": "Acme Ltd",
                     "invoice": "ERP-77/2026", "unapplied_minor": 0,
                     "external_id": "stripe:pi_3N", "note": None,
                     "applied": [{"invoice": "ERP-77/2026", "amount": "500.00"}]}),
        ("left to the engine", {"provider_name": "Stripe", "payment_id": 9,
                                "amount_minor": 50_000, "currency": "USD",
                                "customer_name": None, "invoice": "ERP-77/2026",
                                "unapplied_minor": 50_000, "external_id": "stripe:pi_3N",
                                "note": "No invoice ERP-77/2026 here", "applied": []})],
    "provider_refund": [("reopened", {"provider_name": "Stripe", "payment_id": 9,
                                      "amount_minor": 20_000, "currency": "USD",
                                      "customer_name": "Acme Ltd",
                                      "from_unapplied_minor": 5_000,
                                      "reopened": [{"invoice": "ERP-77/2026",
                                                    "amount": "150.00"}]})],
    "provider_dispute": [("chargeback", {"provider_name": "Stripe", "payment_id": 9,
                                         "amount_minor": 50_000, "currency": "USD",
                                         "customer_name": "Acme Ltd",
                                         "invoice": "ERP-77/2026",
                                         "reason": "product_not_received",
                                         "dispute_id": "dp_1N", "due_by": "2026-03-20"}),
                         ("money taken back", {"provider_name": "Stripe", "payment_id": 9,
                                               "amount_minor": 50_000, "currency": "USD",
                                               "customer_name": "Acme Ltd",
                                               "invoice": "ERP-77/2026", "reason": "fraudulent",
                                               "dispute_id": "dp_1N", "held": [{
                                                   "invoice": "ERP-77/2026",
                                                   "amount_minor": 50_000, "dispute": 4}]})],
    "provider_dispute_closed": [("won", {"provider_name": "Stripe", "payment_id": 9,
                                         "amount_minor": 50_000, "currency": "USD",
                                         "customer_name": "Acme Ltd", "status": "won",
                                         "dispute_id": "dp_1N", "payment_back": 10,
                                         "disputes": []}),
                                ("lost", {"provider_name": "Stripe", "payment_id": 9,
                                          "amount_minor": 50_000, "currency": "USD",
                                          "customer_name": "Acme Ltd", "status": "lost",
                                          "dispute_id": "dp_1N", "disputes": [4]})],
    "crm_deal_refused": [("unknown sku", {"deal_id": "123456", "deal_name": "Acme renewal",
                                          "reason": "lines[0].sku: unknown SKU 'X-1'"})],
    "email_failed": [("refused", {"outbox_id": 12, "to": "ap@acme.example",
                                  "customer": "Acme Ltd", "kind": "invoice",
                                  "invoices": ["ERP-77/2026"],
                                  "reason": "recipient refused: 550 5.1.1 no such user"}),
                     ("nothing named", {"outbox_id": 13, "to": None, "customer": None,
                                        "kind": "payment reminder", "invoices": [],
                                        "reason": "smtp 554: rejected"})],
}

# the back office (issue 14)
DISPUTE = {"dispute_id": 5, "status": "open", "reason": "damaged", "note": "3 broken",
           "amount_minor": 40_000, "currency": "USD", "customer": "Acme Ltd",
           "invoice": {"number": "ERP-77/2026", "total_minor": 100_000,
                       "balance_minor": 100_000, "due_date": "2026-11-01"},
           "opened_by": "UCOLL001", "opened_at": "2026-11-20T10:00:00+00:00",
           "source": "slack", "owner_id": "USALES01", "owner_channel": None,
           "resolved_by": None, "resolved_at": None, "resolution_note": None,
           "credit_amount_minor": None, "credit_status": None, "credit_note": None,
           "reminder": None}
RESOLVED = {**DISPUTE, "status": "accepted", "resolved_by": "USALES01",
            "resolved_at": "2026-11-21T10:00:00+00:00", "resolution_note": "agreed on call",
            "credit_amount_minor": 30_000, "credit_status": "issued",
            "credit_note": "CN-2026-000004"}
DEDUCTION = {"deduction_id": 3, "status": "open", "resolution": None, "amount_minor": 5_000,
             "currency": "USD", "customer": "Acme Ltd",
             "invoice": {"number": "ERP-77/2026", "total_minor": 100_000,
                         "balance_minor": 5_000},
             "payment": {"id": 9, "amount_minor": 95_000, "payer_name": "ACME LTD",
                         "reference": "ERP-77/2026 less damage",
                         "received_at": "2026-11-20T09:00:00+00:00"},
             "dispute_id": None, "resolved_by": None, "billed_back_at": None, "bill_backs": 0,
             "note": None}
SUBJECT = {"title": "Credit note for ERP-77/2026", "customer": "Acme Ltd", "customer_id": 7,
           "invoice": "ERP-77/2026", "invoice_total_minor": 100_000,
           "invoice_balance_minor": 60_000, "credited_before_minor": 10_000,
           "amount_minor": 30_000, "currency": "USD", "reason": "dispute #5 accepted",
           "status": "pending_approval", "source": "dispute", "dispute_id": 5,
           "lines": [{"line_no": 1, "quantity": 2, "amount_minor": 30_000}],
           "number": None, "customer_credit_minor": 0}
BO_APPROVAL = {"approval_id": 11, "kind": "credit_note", "status": "pending",
               "requested_by": "USALES01", "requested_by_label": None,
               "requested_at": "2026-11-21T10:00:00+00:00", "reasons": [], "snapshot": {},
               "decided_by": None, "decided_at": None, "note": None, "reminder": None,
               "amount_minor": 30_000, "currency": "USD", "second_role": "admin",
               "first_decided_by": "UCREDIT1",
               "first_decided_at": "2026-11-21T11:00:00+00:00", "first_note": "ok by me",
               "subject": SUBJECT}
WRITTEN = {**BO_APPROVAL, "kind": "write_off", "status": "approved", "second_role": None,
           "first_decided_by": None, "first_decided_at": None, "first_note": None,
           "decided_by": "UCREDIT1", "decided_at": "2026-11-22T10:00:00+00:00",
           "subject": {**SUBJECT, "title": "Bad-debt write-off of ERP-77/2026",
                       "kind": "bad_debt", "status": "written_off", "dispute_id": None,
                       "deduction_id": 3, "lines": [], "written_off_minor": 60_000,
                       "due_date": "2026-11-01"}}
CONTEXTS.update({
    "record_card": [
        ("order", {"kind": "order", "number": "SO-1001", "status": "approved",
                   "customer": "Acme Ltd", "currency": "USD", "total_minor": 5_397,
                   "balance_minor": 0, "date": "2026-11-20"}),
        ("invoice", {"kind": "invoice", "number": "ERP-77/2026", "status": "overdue",
                     "customer": "Acme Ltd", "currency": "EUR", "total_minor": 123_456,
                     "balance_minor": 100_000, "date": "2026-10-24"}),
        ("credit note", {"kind": "credit_note", "number": "CN-2026-000004",
                         "status": "issued", "customer": "Acme Ltd", "invoice": "ERP-77/2026",
                         "currency": "USD", "total_minor": 5_000, "balance_minor": None,
                         "date": "2026-11-21"})],
    "dispute_card": [("open", DISPUTE), ("accepted", RESOLVED),
                     ("reminder", {**DISPUTE, "reminder": 2, "owner_id": None,
                                   "owner_channel": "CDISPUTES"}),
                     ("reassigned", {**DISPUTE, "reassigned_to": "USALES02"})],
    "dispute_resolved": [("rejected", {**RESOLVED, "status": "rejected",
                                       "credit_amount_minor": None, "credit_note": None})],
    "dispute_escalated": [("escalated", {**DISPUTE, "working_days": 5})],
    "deduction_card": [("open", DEDUCTION),
                       ("credited in part", {**DEDUCTION, "left_minor": 3_000, "dispute_id": 5,
                                             "note": "CN-2026-000004 credited USD 20.00"}),
                       ("resolved", {**DEDUCTION, "status": "resolved",
                                     "resolution": "credited", "dispute_id": 5,
                                     "billed_back_at": "2026-11-21T10:00:00+00:00",
                                     "bill_backs": 1, "note": "dispute #5 rejected"})],
    "backoffice_approval_card": [
        ("first approved", BO_APPROVAL),
        ("reminded", {**BO_APPROVAL, "reminder": {"number": 1, "working_hours": "4.5",
                                                  "approvers": ["UADMIN01"]}}),
        ("issued", {**BO_APPROVAL, "status": "approved", "decided_by": "UADMIN01",
                    "decided_at": "2026-11-22T10:00:00+00:00",
                    "subject": {**SUBJECT, "status": "issued", "number": "CN-2026-000004",
                                "customer_credit_minor": 5_000}}),
        ("written off", WRITTEN),
        # a Workflow Builder step's credit request: no invoice, facts of the customer
        ("credit request", {**BO_APPROVAL, "kind": "credit_request", "second_role": None,
                            "first_decided_by": None, "subject": {
                                "title": "Credit for Acme Ltd", "customer": "Acme Ltd",
                                "customer_id": 7, "amount_minor": 250_000,
                                "currency": "USD", "reason": "a big order",
                                "status": "pending",
                                "facts": [["Credit limit", "USD 10,000.00"],
                                          ["Exposure", "USD 2,000.00"]]}})],
    "backoffice_approval_decided": [("first step", BO_APPROVAL),
                                    ("rejected", {**WRITTEN, "status": "rejected",
                                                  "note": "customer will pay"})],
})


def cases() -> Iterator:
    for name, variants in CONTEXTS.items():
        for variant, ctx in variants:
            yield pytest.param(name, ctx, id=f"{name}-{variant}")


def mrkdwn_texts(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from mrkdwn_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from mrkdwn_texts(value)


def test_every_registered_template_has_a_context_here() -> None:
    assert sorted(CONTEXTS) == templates.names()


@pytest.mark.parametrize(("name", "ctx"), list(cases()))
def test_templates_escape_user_supplied_text(name: str, ctx: dict) -> None:
    # given a realistic context whose free text mentions the channel and forges a link
    evil = hostile(ctx)
    # when
    rendered = templates.render(name, evil)
    # then the fallback text and every mrkdwn text carry it escaped, never raw
    texts = [rendered.get("text") or "", *mrkdwn_texts(rendered)]
    leaks = [t for t in texts for raw in RAW if raw in t]
    assert leaks == []
    dump = json.dumps(rendered, ensure_ascii=False)
    assert [twice for twice in TWICE if twice in dump] == []
    if evil != ctx:  # the substituted text is shown, escaped once
        assert "&lt;!channel&gt; &lt;https://x.example|Bank&gt;" in dump
    assert validate_message(rendered) == (None, [])
