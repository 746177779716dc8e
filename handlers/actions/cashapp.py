"""The Apply button and the customer select on a payment suggestion card (AR channel).

The role is checked on the server (collector or admin); the workflow claims the payment with a
conditional UPDATE, so a double click, a replay or two collectors clicking at once apply it
once. Whoever is refused, or comes second, gets an ephemeral explanation (escaped: error details
may quote ERP invoice numbers). Both teach the engine how that customer pays. Both are acked
at once and run after the ack (registered in `handlers.actions`); the select's options come
from `handlers.views.payment.customer_options`."""

from __future__ import annotations

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient

from blocks import cashapp as answers
from handlers.common import describe_error, now_of, tell_user, transaction
from handlers.deps import deps_of
from models import money
from workflows.cash_application import apply_suggestion, assign_customer, payment_allocations
from workflows.errors import AlreadyDecided, DomainError, PermissionDenied


def on_apply(body: dict, action: dict, respond: Respond, client: WebClient,
             context: BoltContext) -> None:
    user_id = body["user"]["id"]
    try:  # "<payment>:<rank>:<round>" ("<payment>:<rank>" on cards made before rounds)
        parts = [int(part) for part in str(action.get("value", "")).split(":")]
        payment_id, rank, round_ = (*parts, None)[:3] if len(parts) in (2, 3) else ()
    except ValueError:
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    try:
        with transaction(context) as session:
            payment = apply_suggestion(session, payment_id=payment_id, rank=rank,
                                       actor=user_id, now=now_of(context), round_=round_,
                                       names=deps_of(context).db.customer_names)
            decision = (payment.match_details or {}).get("decision") or {}
            text = answers.applied_answer(payment_id=payment_id, rank=rank,
                                          status=payment.status,
                                          invoices=decision.get("invoices", []),
                                          currency=payment.currency,
                                          learned=decision.get("learned"))
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except AlreadyDecided as done:
        text = answers.already_applied_answer(done.decided_by)
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)


def on_assign(body: dict, action: dict, respond: Respond, client: WebClient,
              context: BoltContext) -> None:
    user_id = body["user"]["id"]
    customer = (action.get("selected_option") or {}).get("value")
    try:
        payment_id = int(str(action.get("block_id", "")).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    if not customer:
        return
    try:
        with transaction(context) as session:
            payment = assign_customer(session, payment_id=payment_id, customer=customer,
                                      actor=user_id, now=now_of(context),
                                      names=deps_of(context).db.customer_names)
            identified = (payment.match_details or {}).get("identified") or {}
            invoices = [{"invoice": inv.number,
                         "amount": money.to_str(a.amount_minor, payment.currency)}
                        for a, inv in payment_allocations(session, payment.id)]
            text = answers.identified_answer(
                payment_id=payment.id, customer_name=identified.get("customer_name") or customer,
                status=payment.status, invoices=invoices, currency=payment.currency,
                learned=identified.get("learned"))
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except AlreadyDecided as done:
        text = answers.already_applied_answer(done.decided_by)
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)
