"""The Apply button on a payment suggestion card (AR channel).

The role is checked on the server (collector or admin); the workflow claims the payment with a
conditional UPDATE, so a double click, a replay or two collectors clicking at once apply it
once. Whoever is refused, or comes second, gets an ephemeral explanation (escaped: error details
may quote ERP invoice numbers)."""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks import cashapp as answers
from handlers.common import describe_error, now_of, tell_user, transaction
from workflows.cash_application import apply_suggestion
from workflows.errors import AlreadyDecided, DomainError, PermissionDenied


def on_apply(body: dict, action: dict, respond: Respond, client: WebClient,
             context: BoltContext) -> None:
    user_id = body["user"]["id"]
    try:
        payment_id, rank = (int(part) for part in str(action.get("value", "")).split(":", 1))
    except ValueError:
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    try:
        with transaction(context) as session:
            payment = apply_suggestion(session, payment_id=payment_id, rank=rank,
                                       actor=user_id, now=now_of(context))
            decision = (payment.match_details or {}).get("decision") or {}
            text = answers.applied_answer(payment_id=payment_id, rank=rank,
                                          status=payment.status,
                                          invoices=decision.get("invoices", []),
                                          currency=payment.currency)
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except AlreadyDecided as done:
        text = answers.already_applied_answer(done.decided_by)
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)
