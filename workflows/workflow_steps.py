"""Workflow Builder steps (Bolt custom functions, `function_executed`), each completed or failed
exactly once.

* "Request credit approval" (`request_credit_approval`): customer, amount, reason -> a credit
  request (`credit_requests`) decided on the usual back-office approval card by a credit
  approver. Approving it raises the customer's credit limit to the amount asked for (never
  lowers it; audited as `customer.credit_limit_changed`, in the decision's transaction). The
  decision completes the step with `decision`, `approver`, `note`, `credit_limit` (the
  limit after it, e.g. "USD 2,500.00") and `limit_raised`.
* "Look up customer balance" (`look_up_customer_balance`): customer -> `open_ar`, `overdue`,
  `credit_available` (amounts with their currency, as of today in the business time zone).
* "Log collection activity" (`log_collection_activity`): customer, note -> a logged call or
  note on the account (collectors) -> `activity_id`.

Every step acts for the person who ran the workflow (`requested_by`, a
`slack#/types/user_context` input: Slack fills it from the trigger or the last button pressed,
and a builder cannot type one in — a `user_id` input could be fixed to an admin's id by anyone
who builds a workflow); their role is checked here, as for a click, and a refusal is audited.
A plain user id there (a step built against the older manifest) fails the step. Bad input
fails the step with a message naming the input, which Workflow Builder shows.

Exactly once: the step's completion (functions.completeSuccess) or failure
(functions.completeError) is an outbox row keyed by the execution id (`step:<id>`, unique in
the database), written in the same transaction as what the step did — so a Slack retry, a
second process or a crash can neither complete it twice nor lose it; the credit request is
unique per execution too, and its completion is written by the one decision on its card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    ApprovalKind,
    CreditRequest,
    CreditRequestStatus,
    Customer,
    OutboxMessage,
    Role,
    money,
)
from workflows import approvals, audit, collections, outbox, policy
from workflows.errors import DomainError, PermissionDenied
from workflows.lookup import find_customer
from workflows.receivables import customer_position
from workflows.users import require_role
from workflows.validation import SLACK_USER_ID

REQUEST_CREDIT = "request_credit_approval"
BALANCE = "look_up_customer_balance"
LOG_ACTIVITY = "log_collection_activity"
COMPLETE, FAIL = "functions.completeSuccess", "functions.completeError"
REQUESTER_ROLES = (Role.SALES, Role.COLLECTOR)  # admins hold every role
VIEWER_ROLES = tuple(Role)
TEXT_MAX = 2000


class StepError(DomainError):
    """Bad input: the step fails with this message, shown in Workflow Builder."""


@dataclass(frozen=True)
class StepRun:
    execution_id: str
    callback_id: str
    inputs: dict


def step_key(execution_id: str) -> str:
    return f"step:{execution_id}"


def run_step(session: Session, run: StepRun, *, now: datetime) -> str:
    """Do the step once and queue its completion (or failure) in this transaction; returns
    "completed", "failed", "waiting" (a credit request's card) or "duplicate"."""
    if _already_run(session, run.execution_id):
        return "duplicate"
    step = STEPS.get(run.callback_id)
    try:
        if step is None:
            raise StepError(f"this app has no step {run.callback_id!r}")
        with session.begin_nested():  # what a failing step did is rolled back
            outputs = step(session, run, now)
    except DomainError as error:
        if isinstance(error, PermissionDenied):
            audit.refusal_of(session, error)
        _queue(session, run.execution_id, FAIL, {"error": _message(error)})
        return "failed"
    if outputs is None:
        return "waiting"
    _queue(session, run.execution_id, COMPLETE, {"outputs": outputs})
    return "completed"


def fail_unexpectedly(session: Session, execution_id: str, message: str) -> bool:
    """After a step failed with something that is not a refusal (a bug, a deadlock: its
    transaction rolled back, nothing done), fail it with `message`, once, so the workflow
    is not left waiting for a completion that never comes (Slack does not send an acked
    event again). False when the step was completed or failed already."""
    if _already_run(session, execution_id):
        return False
    try:
        with session.begin_nested():
            _queue(session, execution_id, FAIL, {"error": message[:TEXT_MAX]})
    except IntegrityError:  # another copy of the execution queued its answer meanwhile
        return False
    return True


def _message(error: DomainError) -> str:
    return (getattr(error, "detail", None) or str(error))[:TEXT_MAX]


def _already_run(session: Session, execution_id: str) -> bool:
    if outbox.has_message(session, step_key(execution_id)):
        return True
    return session.exec(select(CreditRequest.id).where(
        CreditRequest.function_execution_id == execution_id)).first() is not None


def _queue(session: Session, execution_id: str, method: str, args: dict) -> None:
    session.add(OutboxMessage(transport="slack", method=method,
                              dedupe_key=step_key(execution_id),
                              payload={"args": {"function_execution_id": execution_id,
                                                **args}}))
    session.flush()


# -- inputs ---------------------------------------------------------------------------------------
def _text(run: StepRun, name: str, *, required: bool = True) -> str:
    value = run.inputs.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise StepError(f"{name}: is required")
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise StepError(f"{name}: must be text")
    value = str(value).strip()
    if "\x00" in value or len(value) > TEXT_MAX:
        raise StepError(f"{name}: must be text of at most {TEXT_MAX} characters")
    return value


def _actor(session: Session, run: StepRun, roles: tuple[str, ...], action: str) -> str:
    given = run.inputs.get("requested_by")
    user_id = given.get("id") if isinstance(given, dict) else None
    if not isinstance(user_id, str) or len(user_id) > 32 or not SLACK_USER_ID.match(user_id):
        raise StepError("requested_by: must be the person who ran the workflow (a user "
                        "context), not a user picked when the workflow was built")
    require_role(session, user_id=user_id, roles=roles, action=action,
                 entity_type="workflow_step", entity_id=run.execution_id)
    return user_id


def _customer(session: Session, run: StepRun) -> Customer:
    query = _text(run, "customer")
    match = find_customer(session, query)
    if match.customer is None:
        closest = ", ".join(c.name for c in match.candidates[:3])
        raise StepError(f"customer: no single customer matches {query!r}"
                        + (f" (closest: {closest})" if closest else ""))
    return match.customer


# -- the steps ------------------------------------------------------------------------------------
def request_credit(session: Session, run: StepRun, now: datetime) -> None:
    actor = _actor(session, run, REQUESTER_ROLES, "workflow.request_credit")
    customer = _customer(session, run)
    try:
        amount = money.parse_amount(_text(run, "amount"), customer.currency)
    except money.MoneyError as error:
        raise StepError(f"amount: {error} ({customer.currency})") from None
    if amount <= 0:
        raise StepError("amount: must be more than 0")
    request = CreditRequest(customer_id=customer.id, currency=customer.currency,
                            amount_minor=amount, reason=_text(run, "reason"),
                            requested_by=actor, function_execution_id=run.execution_id,
                            created_at=now)
    session.add(request)
    session.flush()
    audit.record(session, actor=actor, action="credit_request.requested",
                 entity_type="credit_request", entity_id=request.id, to_state="pending",
                 customer=customer.external_id, amount_minor=amount,
                 currency=customer.currency, execution=run.execution_id, at=now)
    approvals.request_subject_approval(session, kind=ApprovalKind.CREDIT_REQUEST,
                                       subject_id=request.id, amount_minor=amount,
                                       currency=customer.currency, requested_by=actor,
                                       now=now)
    return None  # completed when the card is decided (_decided)


def balance(session: Session, run: StepRun, now: datetime) -> dict:
    _actor(session, run, VIEWER_ROLES, "workflow.balance")
    customer = _customer(session, run)
    position = customer_position(session, customer, policy.business_date(session, now), now=now)
    cur = customer.currency
    return {"open_ar": money.format_money(position.aging.total, cur),
            "overdue": money.format_money(position.aging.overdue, cur),
            "credit_available": money.format_money(position.available_credit_minor, cur)}


def log_activity(session: Session, run: StepRun, now: datetime) -> dict:
    actor = _actor(session, run, collections.COLLECTOR_ROLES, "workflow.log_activity")
    customer = _customer(session, run)
    activity = collections.log_call(session, customer_id=customer.id, actor=actor,
                                    note=_text(run, "note"), now=now)
    audit.record(session, actor=actor, action="collections.activity_logged",
                 entity_type="customer", entity_id=customer.id, activity=activity.id,
                 via="workflow_step", execution=run.execution_id, at=now)
    return {"activity_id": str(activity.id)}


STEPS = {REQUEST_CREDIT: request_credit, BALANCE: balance, LOG_ACTIVITY: log_activity}


# -- the credit request's approval (a back-office subject of workflows.approvals) -------------
def _decided(session: Session, approval: Any, request: CreditRequest, *, status: str,
             user_id: str, now: datetime, note: str | None, raised: bool = False) -> None:
    request.status = status
    request.decided_by, request.decided_at, request.decision_note = user_id, now, note
    session.add(request)
    audit.record(session, actor=user_id, action=f"credit_request.{status}",
                 entity_type="credit_request", entity_id=request.id,
                 from_state=CreditRequestStatus.PENDING, to_state=status, reason=note, at=now)
    customer = session.get(Customer, request.customer_id)
    _queue(session, request.function_execution_id, COMPLETE, {"outputs": {
        "decision": status, "approver": user_id, "note": note or "",
        "credit_limit": money.format_money(customer.credit_limit_minor, customer.currency),
        "limit_raised": raised}})


def _approved(session: Session, approval: Any, request: CreditRequest, user_id: str,
              now: datetime) -> None:
    raised = _raise_limit(session, request, user_id=user_id, approval=approval, now=now)
    _decided(session, approval, request, status=CreditRequestStatus.APPROVED, user_id=user_id,
             now=now, note=approval.decision_note, raised=raised)


def _raise_limit(session: Session, request: CreditRequest, *, user_id: str, approval: Any,
                 now: datetime) -> bool:
    """The approved amount becomes the customer's credit limit when it is higher (a limit is
    never lowered here); the customer row is locked, so two approvals at once keep the higher
    one. Audited as a credit-limit change; returns whether it was raised."""
    customer = session.get(Customer, request.customer_id, with_for_update=True,
                           populate_existing=True)
    before = customer.credit_limit_minor
    if request.amount_minor <= before:
        return False
    customer.credit_limit_minor = request.amount_minor
    customer.updated_at = now
    session.add(customer)
    session.flush()
    audit.record(session, actor=user_id, action="customer.credit_limit_changed",
                 entity_type="customer", entity_id=customer.id,
                 external_id=customer.external_id, currency=customer.currency,
                 changes={"credit_limit_minor": [before, request.amount_minor]},
                 reason=f"credit request #{request.id} approved (approval #{approval.id})",
                 credit_request=request.id, at=now)
    return True


def _rejected(session: Session, approval: Any, request: CreditRequest, user_id: str,
              now: datetime, note: str | None) -> None:
    _decided(session, approval, request, status=CreditRequestStatus.REJECTED, user_id=user_id,
             now=now, note=note)


def card_view(session: Session, approval: Any, request: CreditRequest) -> dict:
    customer = session.get(Customer, request.customer_id)
    # as of the day it was asked, in the business time zone (what is overdue is the books')
    position = customer_position(session, customer,
                                 policy.business_date(session, request.created_at))
    cur = request.currency
    return {"title": f"Credit for {customer.name}", "customer": customer.name,
            "customer_id": customer.id, "amount_minor": request.amount_minor,
            "currency": cur, "reason": request.reason, "status": request.status,
            "facts": [("Credit limit", money.format_money(customer.credit_limit_minor, cur)),
                      ("Exposure", money.format_money(position.exposure_minor, cur)),
                      ("Overdue", money.format_money(position.aging.overdue, cur))]}


def _exclusions(session: Session, request: CreditRequest) -> dict[str, str]:
    """The customer's sales rep may not approve more credit for their own customer (as an
    order's rep may not approve the order), even when they also approve credit."""
    customer = session.get(Customer, request.customer_id)
    if customer is None or not customer.sales_rep_id:
        return {}
    return {customer.sales_rep_id: f"You are {customer.name}'s sales rep"}


CREDIT_REQUEST_APPROVAL = approvals.Subject(
    kind=ApprovalKind.CREDIT_REQUEST, model=CreditRequest, context=card_view,
    approved=_approved, rejected=_rejected,
    pending=lambda request: request.status == CreditRequestStatus.PENDING,
    excluded=_exclusions)
