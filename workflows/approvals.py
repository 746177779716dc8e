"""Approval requests (credit, discount): requested when an order is submitted, decided exactly
once on a Slack card, re-nudged when they wait too long (SPEC §3 "Approvals").

Exactly once is the database's job, not memory's: `decide` locks the order row (decisions on
one order queue up, so "was that the last approval?" sees committed state) and then takes the
decision with a conditional `UPDATE approvals ... WHERE id = :id AND status = 'pending'`. Only
the statement that changed the row (rowcount 1) goes on to audit, move the order and write the
notifications; everyone else — a double click, a Slack retry, a replayed payload, a second
approver a moment late, another server process — gets `AlreadyDecided` naming who decided, and
changes nothing. Reminders claim their slot the same way (`reminders_sent` as a version), so
several schedulers never nudge twice.

Refusals (`PermissionDenied`: wrong role, or segregation of duties — whoever asked and the
order's sales rep may never decide) carry what to audit; the handler's transaction records them
after rolling back.

The same machinery decides the back office's requests (SPEC §3): a credit note, a write-off, a
fee waiver. Such an approval has a `subject_id` instead of an order; its `Subject`
(`subject_for`, an explicit table) says which row to lock, what the card shows and what an
approval or a rejection does (`workflows.credit_notes`, `workflows.write_offs`). Everything
else — roles, segregation of duties, the conditional UPDATE, the audit, the card updated in
place, the requester's DM, reminders, `/o2c approvals` — is shared.

Approval tiers (`workflows.tiers`): above a tier, the first approval is recorded
(`first_decided_by`, a conditional UPDATE of its own, audited as `approval.first_approved`) and
the approval stays pending until a second decision by the tier's role, by someone else than the
first approver, the requester and (for an order) its sales rep. Both are on the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Customer,
    Order,
    OrderStatus,
    OutboxMessage,
    Role,
    User,
    UserRole,
)
from workflows import audit, outbox, tiers
from workflows import policy as policies
from workflows.credit import ApprovalNeed, credit_need, customer_snapshot
from workflows.errors import (
    AlreadyDecided,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.receivables import credit_exposure
from workflows.users import has_role
from workflows.validation import SLACK_USER_ID
from workflows.workcalendar import Holidays, working_time_between

# Who stands behind a request that did not come from a Slack user.
SYSTEM_REQUESTERS = {"api": "REST API", "import": "CSV import", "system": "o2c"}
ROLE_FOR_KIND = {ApprovalKind.CREDIT: Role.CREDIT_APPROVER,
                 ApprovalKind.DISCOUNT: Role.DISCOUNT_APPROVER,
                 ApprovalKind.CREDIT_NOTE: Role.CREDIT_APPROVER,
                 ApprovalKind.WRITE_OFF: Role.CREDIT_APPROVER,
                 ApprovalKind.FEE_WAIVER: Role.CREDIT_APPROVER,
                 ApprovalKind.CREDIT_REQUEST: Role.CREDIT_APPROVER}
ORDER_CARD = "approval_card"
SUBJECT_CARD = "backoffice_approval_card"
NOTE_MAX = 2000
DECIDE_ACTION = "approval.decide"


# -- back-office subjects -------------------------------------------------------------------------

@dataclass(frozen=True)
class Subject:
    """How the approval of a back-office request behaves (see the module docstring).

    `model` is the request's table (its row is locked while a decision is taken, so decisions
    on one request queue up); `context(session, approval, row)` is the card's view of it;
    `approved` / `rejected` (session, approval, row, user_id, now[, note]) carry the decision
    out; `excluded(session, row)` names who else may not decide it, and why (e.g. whoever
    opened the dispute a credit note settles)."""

    kind: str
    model: type
    context: Callable[[Session, Approval, Any], dict]
    approved: Callable[..., None]
    rejected: Callable[..., None]
    pending: Callable[[Any], bool]
    excluded: Callable[[Session, Any], dict[str, str]] = lambda session, row: {}


def subject_for(kind: str) -> Subject:
    """The back-office subjects, one explicit table (imported here, not at module level: those
    modules request their approvals through this one)."""
    from workflows import credit_notes, workflow_steps, write_offs

    subjects = {ApprovalKind.CREDIT_NOTE: credit_notes.APPROVAL,
                ApprovalKind.WRITE_OFF: write_offs.WRITE_OFF_APPROVAL,
                ApprovalKind.FEE_WAIVER: write_offs.FEE_WAIVER_APPROVAL,
                ApprovalKind.CREDIT_REQUEST: workflow_steps.CREDIT_REQUEST_APPROVAL}
    try:
        return subjects[ApprovalKind(kind)]
    except (KeyError, ValueError):
        raise NotFound(f"no back-office approval of kind {kind!r}") from None


def is_order_approval(approval: Approval) -> bool:
    return approval.order_id is not None


# -- requesting ---------------------------------------------------------------------------------

def request_approval(session: Session, *, order: Order, need: ApprovalNeed, requested_by: str,
                     now: datetime) -> Approval:
    """Create (or reopen) the order's approval of this kind, audit it, post the card; a
    discount request also raises a real-time alert in the alerts channel."""
    _ensure_requester(session, requested_by)
    existing = session.exec(select(Approval).where(Approval.order_id == order.id,
                                                   Approval.kind == need.kind)).first()
    approval = existing or Approval(order_id=order.id, kind=need.kind, requested_by=requested_by)
    approval.requested_by = requested_by
    approval.status = ApprovalStatus.PENDING
    approval.reasons = need.reasons
    approval.snapshot = need.snapshot
    approval.created_at = now
    approval.decided_by = approval.decided_at = approval.decision_note = None
    approval.first_decided_by = approval.first_decided_at = approval.first_note = None
    approval.amount_minor, approval.currency = order.total_minor, order.currency
    tier_amount = credit_tier_amount(session, order, need)
    approval.second_role = tiers.second_role(policies.current(session), need.kind,
                                             tier_amount, order.currency)
    approval.last_reminded_at = None
    approval.reminders_sent = 0
    session.add(approval)
    session.flush()
    audit.record(session, actor=requested_by, action="approval.requested",
                 entity_type="approval", entity_id=approval.id, to_state="pending",
                 kind=need.kind, order=order.number, second_role=approval.second_role, at=now,
                 **({"tier_amount_minor": tier_amount} if tier_amount != order.total_minor
                    else {}))
    customer = session.get(Customer, order.customer_id)
    card = outbox.post_to_channel(session, channel="approvals", template=ORDER_CARD,
                                  context=approval_context(approval, order, customer))
    approval.card_outbox_id = card.id
    session.add(approval)
    if need.kind == ApprovalKind.DISCOUNT:
        outbox.post_to_channel(session, channel="alerts", template="discount_alert",
                               context=approval_context(approval, order, customer))
    return approval


def credit_tier_amount(session: Session, order: Order, need: ApprovalNeed) -> int:
    """What an approval tier compares for `need`: the order's total, but for a credit approval
    the credit the customer would have if it and every other order of theirs waiting for a
    credit decision were approved — the exposure (open balances, approved orders not yet
    invoiced, this order) plus those orders. So credit split into orders each under a tier
    is still above it. (An order in another currency than the customer's, whose exposure the
    bot cannot add up without exchange rates, is measured alone.)"""
    exposure = need.snapshot.get("exposure_minor")
    if (need.kind != ApprovalKind.CREDIT or exposure is None
            or need.snapshot.get("currency") != order.currency):
        return order.total_minor
    waiting = session.exec(
        select(sa.func.coalesce(sa.func.sum(Order.total_minor - Order.cancelled_minor), 0))
        .join(Approval, Approval.order_id == Order.id)
        .where(Order.customer_id == order.customer_id, Order.id != order.id,
               Order.currency == order.currency, Approval.kind == ApprovalKind.CREDIT,
               Approval.status == ApprovalStatus.PENDING)).one()
    return max(order.total_minor, int(exposure) + int(waiting))


def retier_waiting(session: Session, customer_id: int, *, actor: str) -> list[Approval]:
    """The customer's waiting orders were priced again (`orders.reprice_for_tax_rate`): each
    of their approvals not decided at all yet that needs no second decision is measured again
    as when it was requested (`credit_tier_amount`, with the exposure as it is now) and, now
    above its tier, needs the tier's second decision — audited (`approval.tier_raised`). A
    tier is never dropped: an approver may have relied on it."""
    from workflows.receivables import credit_exposure

    rows = session.exec(
        select(Approval, Order).join(Order, Order.id == Approval.order_id)
        .where(Order.customer_id == customer_id, Order.status == OrderStatus.PENDING_APPROVAL,
               Approval.status == ApprovalStatus.PENDING, Approval.second_role.is_(None),
               Approval.first_decided_by.is_(None))
        .order_by(Approval.id)).all()
    policy = policies.current(session)
    raised = []
    for approval, order in rows:
        customer = session.get(Customer, order.customer_id)
        snapshot = {"exposure_minor": credit_exposure(session, customer.id,
                                                      extra_minor=order.total_minor),
                    "currency": customer.currency}
        amount = credit_tier_amount(session, order, ApprovalNeed(approval.kind, [], snapshot))
        role = tiers.second_role(policy, approval.kind, amount, order.currency)
        if role is None:
            continue
        approval.second_role = role
        session.add(approval)
        audit.record(session, actor=actor, action="approval.tier_raised",
                     entity_type="approval", entity_id=approval.id, kind=approval.kind,
                     order=order.number, second_role=role, tier_amount_minor=amount,
                     reason="the order was priced again")
        if approval.kind != ApprovalKind.CREDIT:  # a credit card is refreshed at commit
            _show_decision(session, approval, order, customer)
        raised.append(approval)
    return raised


def request_subject_approval(session: Session, *, kind: str, subject_id: int,
                             amount_minor: int, currency: str, requested_by: str,
                             now: datetime, reasons: list[dict] | None = None,
                             tier_amount_minor: int | None = None) -> Approval:
    """An approval card for a back-office request (a credit note, a write-off, a fee
    waiver), with a tier's second decision when its amount is above one. Audited.

    `tier_amount_minor`: what the tier compares when it is more than the request (the
    subject's requests on the same invoice together: a request split in two under a tier
    is still above it); default `amount_minor`."""
    _ensure_requester(session, requested_by)
    tier_amount = amount_minor if tier_amount_minor is None else tier_amount_minor
    approval = Approval(kind=kind, subject_id=subject_id, requested_by=requested_by,
                        reasons=reasons or [], amount_minor=amount_minor, currency=currency,
                        second_role=tiers.second_role(policies.current(session), kind,
                                                      tier_amount, currency),
                        created_at=now)
    session.add(approval)
    session.flush()
    audit.record(session, actor=requested_by, action="approval.requested",
                 entity_type="approval", entity_id=approval.id, to_state="pending",
                 kind=kind, subject_id=subject_id, amount_minor=amount_minor,
                 currency=currency, second_role=approval.second_role, at=now,
                 **({"tier_amount_minor": tier_amount} if tier_amount != amount_minor else {}))
    subject = subject_for(kind)
    row = _subject_row(session, approval, subject)
    card = outbox.post_to_channel(session, channel="approvals", template=SUBJECT_CARD,
                                  context=subject_context(session, approval, subject, row))
    approval.card_outbox_id = card.id
    session.add(approval)
    return approval


def _ensure_requester(session: Session, requested_by: str) -> None:
    """`requested_by` references users; integrations ("api", "import") get a row of their own
    so their requests can be stored (they can never decide: they hold no role)."""
    if session.get(User, requested_by) is None:
        session.add(User(slack_user_id=requested_by,
                         name=SYSTEM_REQUESTERS.get(requested_by, requested_by)))
        session.flush()


def requester_label(requested_by: str) -> str | None:
    """A readable name for a non-Slack requester (None for a Slack user id)."""
    if SLACK_USER_ID.match(requested_by or ""):
        return None
    return SYSTEM_REQUESTERS.get(requested_by, requested_by)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _common_context(approval: Approval, reminder: dict | None) -> dict:
    return {"approval_id": approval.id, "kind": approval.kind, "status": approval.status,
            "requested_by": approval.requested_by,
            "requested_by_label": requester_label(approval.requested_by),
            "requested_at": _iso(approval.created_at),
            "reasons": approval.reasons, "snapshot": approval.snapshot,
            "decided_by": approval.decided_by, "decided_at": _iso(approval.decided_at),
            "note": approval.decision_note, "reminder": reminder,
            "amount_minor": approval.amount_minor, "currency": approval.currency,
            "second_role": approval.second_role,
            "first_decided_by": approval.first_decided_by,
            "first_decided_at": _iso(approval.first_decided_at),
            "first_note": approval.first_note}


def approval_context(approval: Approval, order: Order, customer: Customer, *,
                     reminder: dict | None = None) -> dict:
    """What the card, the alert and the DMs show, frozen at the time they are written."""
    return {**_common_context(approval, reminder),
            "order": {"number": order.number, "total_minor": order.total_minor,
                      "currency": order.currency, "customer": customer.name,
                      "status": order.status},
            "sales_rep": order.sales_rep_id}


def subject_context(session: Session, approval: Approval, subject: Subject, row: Any, *,
                    reminder: dict | None = None) -> dict:
    """The back-office card's context: the approval's, plus what the subject shows
    (`subject`: title, customer, amount, facts, links)."""
    return {**_common_context(approval, reminder),
            "subject": subject.context(session, approval, row)}


# -- deciding -----------------------------------------------------------------------------------

FIRST_APPROVED = "first_approved"  # a Decision's outcome when a tier's second one is pending


@dataclass
class Decision:
    approval: Approval
    order: Order | None
    outcome: str  # approved | rejected | first_approved
    cancelled: list[int] = field(default_factory=list)  # other approvals cancelled by a reject


def needs_second(approval: Approval) -> bool:
    """The next decision is a tier's second one (a first approval was given)."""
    return approval.second_role is not None and approval.first_decided_by is not None


def _awaits_first_of_two(approval: Approval) -> bool:
    return approval.second_role is not None and approval.first_decided_by is None


def decide(*, session: Session, approval_id: int, user_id: str, approve: bool,
           now: datetime, note: str | None = None) -> Decision:
    """Approve or reject, once. Raises PermissionDenied (role, segregation of duties),
    AlreadyDecided (someone was first), ValidationFailed (a rejection needs a reason)."""
    note = (note or "").strip() or None
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval #{approval_id}")
    if not is_order_approval(approval):
        return _decide_subject(session, approval, user_id=user_id, approve=approve, now=now,
                               note=note)
    approval, order = _load_for_decision(session, approval_id)
    check_decider(session, approval, order, user_id)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    _check_note(approve, note)
    if order.status != OrderStatus.PENDING_APPROVAL:
        raise InvalidTransition(f"order {order.number} is {order.status.replace('_', ' ')}; "
                                "there is nothing to decide")
    customer = session.get(Customer, order.customer_id)
    exposure_now = credit_exposure(session, customer.id, extra_minor=order.total_minor)
    if approve and _awaits_first_of_two(approval):
        _first_approval(session, approval, user_id=user_id, now=now, note=note,
                        order=order.number)
        _record_exposure(session, approval, customer, exposure_now)
        _show_decision(session, approval, order, customer)
        _tell_requester(session, approval, order, customer)
        return Decision(approval, order, FIRST_APPROVED)
    outcome = _settle(session, approval, approve=approve, user_id=user_id, now=now, note=note,
                      order=order.number)
    _record_exposure(session, approval, customer, exposure_now)
    decision = Decision(approval, order, outcome)
    if approve:
        if approval.kind == ApprovalKind.CREDIT and not customer.credit_reviewed:
            _mark_reviewed(session, customer, actor=user_id, approval=approval, now=now)
        siblings = _approvals_of(session, order.id)
        if all(a.status == ApprovalStatus.APPROVED for a in siblings) and not _credit_again(
                session, approval, order, customer, siblings, now=now):
            from workflows.orders import approve_order

            kinds = " and ".join(sorted(a.kind for a in siblings))
            # the requester's DM below says the order is approved: the rep gets one message
            approve_order(session, order, actor=user_id, reason=f"{kinds} approved", now=now,
                          tell_rep=_dm_recipient(approval, order) != order.sales_rep_id)
    else:
        from workflows.orders import transition

        transition(session, order, OrderStatus.REJECTED, actor=user_id, now=now,
                   reason=f"{approval.kind} approval rejected: {note}")
        decision.cancelled = _cancel_pending(session, order, customer, actor=user_id, now=now)
    _show_decision(session, approval, order, customer)
    _tell_requester(session, approval, order, customer)
    return decision


def _credit_again(session: Session, approval: Approval, order: Order, customer: Customer,
                  siblings: list[Approval], *, now: datetime) -> bool:
    """An order that waited for discount decisions only is credit-checked again before it is
    approved: while it waited it counted in nobody's exposure, so other orders may have been
    approved into the room it was checked against (limit 1,000.00: 640.00 waiting for its
    discount, then 800.00 approved at once), the customer put on hold, or an invoice gone
    past due. When it now needs a credit approval (SPEC §3), that is requested, for whoever
    asked for the discount, and the order keeps waiting: True. An order a credit approver
    decided is not checked again (they decided with the exposure on the card)."""
    if any(a.kind == ApprovalKind.CREDIT for a in siblings):
        return False
    as_of = policies.business_date(session, now)
    need = credit_need(session, order, customer, as_of)
    if need is None:
        return False
    need.snapshot = {**customer_snapshot(session, customer, as_of,
                                         order_total_minor=order.total_minor),
                     **need.snapshot}
    credit = request_approval(session, order=order, need=need,
                              requested_by=approval.requested_by, now=now)
    audit.record(session, actor="system", action="order.credit_recheck", entity_type="order",
                 entity_id=order.id, from_state=order.status, to_state=order.status,
                 reason="; ".join(r["text"] for r in need.reasons), number=order.number,
                 approval_id=credit.id, after=f"{approval.kind} approval #{approval.id}",
                 at=now)
    return True


def _record_exposure(session: Session, approval: Approval, customer: Customer,
                     exposure_minor: int) -> None:
    """The customer's exposure (this order included) when the approver decided, kept beside
    the one frozen when the card was posted: the updated card shows both, so an approver sees
    when other orders moved the customer meanwhile (issue 13)."""
    snapshot = dict(approval.snapshot or {})
    snapshot["at_decision"] = {"exposure_minor": exposure_minor,
                               "credit_limit_minor": customer.credit_limit_minor,
                               "currency": customer.currency}
    approval.snapshot = snapshot  # a new dict: the JSON column sees the change
    session.add(approval)


def refresh_waiting_cards(session: Session, customer_ids: set[int]) -> None:
    """The customers' exposure may have moved (`workflows.exposure`): each of their credit
    cards still waiting is updated in place with the exposure as it is now (its own order
    included) — only when that, or the limit, differs from what the card shows. The cards'
    approvals are locked first (PostgreSQL: FOR UPDATE, in id order), so a concurrent
    transaction refreshing them waits and then reads what this one committed."""
    ordered = sorted(customer_ids)
    rows: list[int] = []
    for start in range(0, len(ordered), 500):  # (a bank statement moves thousands)
        rows += session.exec(
            select(Approval.id).join(Order, Order.id == Approval.order_id)
            .where(Order.customer_id.in_(ordered[start:start + 500]),
                   Approval.status == ApprovalStatus.PENDING,
                   Order.status == OrderStatus.PENDING_APPROVAL)).all()
    if not rows:
        return
    rows.sort()
    waiting: list[Approval] = []
    for start in range(0, len(rows), 500):
        waiting += session.exec(
            select(Approval).where(Approval.id.in_(rows[start:start + 500]))
            .order_by(Approval.id).with_for_update()
            .execution_options(populate_existing=True)).all()
    for approval in waiting:
        snapshot = dict(approval.snapshot or {})
        if "exposure_minor" not in snapshot or approval.status != ApprovalStatus.PENDING:
            continue
        order = session.get(Order, approval.order_id)
        customer = session.get(Customer, order.customer_id)
        now = {"exposure_minor": credit_exposure(session, customer.id,
                                                 extra_minor=order.total_minor),
               "credit_limit_minor": customer.credit_limit_minor,
               "currency": customer.currency}
        shown = snapshot.get("now") or snapshot
        if (shown.get("exposure_minor"), shown.get("credit_limit_minor")) == (
                now["exposure_minor"], now["credit_limit_minor"]):
            continue  # the card already says this
        snapshot["now"] = now
        approval.snapshot = snapshot  # a new dict: the JSON column sees the change
        session.add(approval)
        _show_decision(session, approval, order, customer)


def _check_note(approve: bool, note: str | None) -> None:
    if not approve and not note:
        raise ValidationFailed.of("reason", "say why the request is rejected")
    if note and len(note) > NOTE_MAX:
        raise ValidationFailed.of("reason", f"at most {NOTE_MAX} characters")


def _settle(session: Session, approval: Approval, *, approve: bool, user_id: str,
            now: datetime, note: str | None, **context: object) -> str:
    """Take the final decision on `approval` once (`already_decided` when someone was first)
    and audit it with `context` (the order, or the back-office subject): the outcome."""
    outcome = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if not _take(session, approval, status=outcome, user_id=user_id, now=now, note=note):
        session.refresh(approval)
        raise already_decided(approval)
    session.refresh(approval)
    audit.decision(session, actor=user_id, approval_id=approval.id, kind=approval.kind,
                   outcome=outcome, reason=note, at=now, **context, **_tier_data(approval))
    return outcome


def _tier_data(approval: Approval) -> dict:
    if approval.second_role is None:
        return {}
    return {"second_role": approval.second_role, "first_decided_by": approval.first_decided_by}


def _first_approval(session: Session, approval: Approval, *, user_id: str, now: datetime,
                    note: str | None, **data: Any) -> None:
    """A tier's first approval, taken once (a conditional UPDATE of its own)."""
    table = Approval.__table__
    taken = session.execute(
        sa.update(table)
        .where(table.c.id == approval.id, table.c.status == ApprovalStatus.PENDING,
               table.c.first_decided_by.is_(None))
        .values(first_decided_by=user_id, first_decided_at=now, first_note=note)).rowcount
    session.refresh(approval)
    if taken != 1:
        raise already_decided(approval)
    audit.record(session, actor=user_id, action="approval.first_approved",
                 entity_type="approval", entity_id=approval.id, from_state="pending",
                 to_state="pending", reason=note, kind=approval.kind,
                 second_role=approval.second_role, at=now, **data)


def _decide_subject(session: Session, approval: Approval, *, user_id: str, approve: bool,
                    now: datetime, note: str | None) -> Decision:
    subject = subject_for(approval.kind)
    row = _subject_row(session, approval, subject, lock=True)  # decisions queue up
    session.refresh(approval)
    check_subject_decider(session, approval, row, user_id, subject=subject)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    _check_note(approve, note)
    if not subject.pending(row):
        raise InvalidTransition("this request is not waiting for a decision any more")
    if approve and _awaits_first_of_two(approval):
        _first_approval(session, approval, user_id=user_id, now=now, note=note,
                        subject_id=approval.subject_id)
        _show_subject(session, approval, subject, row)
        _tell_subject_requester(session, approval, subject, row)
        return Decision(approval, None, FIRST_APPROVED)
    outcome = _settle(session, approval, approve=approve, user_id=user_id, now=now, note=note,
                      subject_id=approval.subject_id)
    if approve:
        subject.approved(session, approval, row, user_id, now)
    else:
        subject.rejected(session, approval, row, user_id, now, note)
    _show_subject(session, approval, subject, row)
    _tell_subject_requester(session, approval, subject, row)
    return Decision(approval, None, outcome)


def _mark_reviewed(session: Session, customer: Customer, *, actor: str, approval: Approval,
                   now: datetime) -> None:
    """An approved credit request for a new customer is its first credit review: later
    orders within policy are then approved without asking again (audited)."""
    customer.credit_reviewed = True
    customer.updated_at = now
    session.add(customer)
    audit.record(session, actor=actor, action="customer.credit_reviewed", entity_type="customer",
                 entity_id=customer.id, from_state="new", to_state="reviewed", at=now,
                 reason=f"credit approval #{approval.id} approved")


def ensure_decidable(session: Session, *, approval_id: int, user_id: str) -> Approval:
    """The checks of `decide` without deciding: used before opening the reject/note modal so
    a refused click is explained at once (and audited) instead of after typing a reason."""
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval #{approval_id}")
    if is_order_approval(approval):
        order = session.get(Order, approval.order_id)
        check_decider(session, approval, order, user_id)
    else:
        subject = subject_for(approval.kind)
        row = _subject_row(session, approval, subject)
        check_subject_decider(session, approval, row, user_id, subject=subject)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    return approval


def step_role(approval: Approval) -> str:
    """The role the next decision needs: the kind's, or a tier's after the first approval."""
    if needs_second(approval):
        return approval.second_role
    return ROLE_FOR_KIND[ApprovalKind(approval.kind)]


def _refuse(approval: Approval, user_id: str) -> dict:
    return {"actor": user_id, "action": DECIDE_ACTION, "entity_type": "approval",
            "entity_id": approval.id}


def _check_role_and_steps(session: Session, approval: Approval, user_id: str) -> None:
    refuse = _refuse(approval, user_id)
    role = step_role(approval)
    what = approval.kind.replace("_", " ")
    if not has_role(session, user_id, role):
        if needs_second(approval):
            raise PermissionDenied(f"This {what} request is above the approval tier: after "
                                   f"the first approval, only a {role.replace('_', ' ')} can "
                                   "take the second decision. Nothing was changed.", **refuse)
        raise PermissionDenied(f"Only a {role.replace('_', ' ')} can decide a {what} "
                               "request. Nothing was changed.", **refuse)
    if user_id == approval.requested_by:
        raise PermissionDenied("You asked for this approval, so someone else must decide it "
                               "(segregation of duties). Nothing was changed.", **refuse)
    if needs_second(approval) and user_id == approval.first_decided_by:
        raise PermissionDenied("You gave the first approval, so someone else must take the "
                               "second decision (approval tier). Nothing was changed.",
                               **refuse)


def check_decider(session: Session, approval: Approval, order: Order, user_id: str) -> None:
    """The clicking user's role, and segregation of duties, checked on the server."""
    _check_role_and_steps(session, approval, user_id)
    if user_id == order.sales_rep_id:
        raise PermissionDenied(f"{order.number} is your own order, so someone else must "
                               "decide it (segregation of duties). Nothing was changed.",
                               **_refuse(approval, user_id))


def check_subject_decider(session: Session, approval: Approval, row: Any, user_id: str, *,
                          subject: Subject) -> None:
    _check_role_and_steps(session, approval, user_id)
    why = subject.excluded(session, row).get(user_id)
    if why:
        raise PermissionDenied(f"{why}, so someone else must decide it (segregation of "
                               "duties). Nothing was changed.", **_refuse(approval, user_id))


def already_decided(approval: Approval) -> AlreadyDecided:
    what = approval.kind.replace("_", " ")
    if approval.status == ApprovalStatus.PENDING and approval.first_decided_by:
        return AlreadyDecided(f"This {what} request was already approved once by "
                              f"{approval.first_decided_by}; it waits for the second decision "
                              f"of a {approval.second_role}. Nothing was changed.",
                              decided_by=approval.first_decided_by, status="first approved")
    when = f" at {approval.decided_at:%Y-%m-%d %H:%M} UTC" if approval.decided_at else ""
    return AlreadyDecided(f"This {what} request was already {approval.status} by "
                          f"{approval.decided_by or 'someone else'}{when}. Nothing was changed.",
                          decided_by=approval.decided_by, status=approval.status)


def _load_for_decision(session: Session, approval_id: int) -> tuple[Approval, Order]:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval #{approval_id}")
    # Lock its customer, then the order (`orders.lock_order`, the one lock order), before
    # the approval row and any stock. The order: decisions on one order run one after the
    # other, so "is this the last approval?" and the order transition see every committed
    # decision. The customer: an order of the customer submitted at the same moment waits
    # for this decision (or this one for it), so the credit check of whichever comes second
    # sees the first; and shipping, cancelling or restocking the customer's other orders
    # (which refreshes this card when it commits) never holds stock this decision waits for
    # while it waits for this card. (SQLite serialises writers; FOR UPDATE is omitted there.)
    from workflows.orders import lock_order

    order = session.get(Order, approval.order_id)
    lock_order(session, order)
    session.refresh(approval)
    return approval, order


def _take(session: Session, approval: Approval, *, status: str, user_id: str, now: datetime,
          note: str | None) -> bool:
    """The decision itself: one conditional UPDATE; True only for the statement that won.
    It also requires the tier's first approval to be what this decision saw."""
    table = Approval.__table__
    seen = approval.first_decided_by
    result = session.execute(
        sa.update(table)
        .where(table.c.id == approval.id, table.c.status == ApprovalStatus.PENDING,
               table.c.first_decided_by.is_(None) if seen is None
               else table.c.first_decided_by == seen)
        .values(status=status, decided_by=user_id, decided_at=now, decision_note=note))
    return result.rowcount == 1


def _approvals_of(session: Session, order_id: int) -> list[Approval]:
    return list(session.exec(select(Approval).where(Approval.order_id == order_id)
                             .order_by(Approval.id)
                             .execution_options(populate_existing=True)))


def cancel_pending(session: Session, order: Order, *, actor: str, now: datetime,
                   reason: str) -> list[int]:
    """The order went away (withdrawn, cancelled): its pending approvals are cancelled and
    their cards show it."""
    customer = session.get(Customer, order.customer_id)
    return _cancel_pending(session, order, customer, actor=actor, now=now, reason=reason)


def _cancel_pending(session: Session, order: Order, customer: Customer, *, actor: str,
                    now: datetime, reason: str = "order rejected") -> list[int]:
    """A rejected order needs no other decision: its pending approvals are cancelled."""
    cancelled = []
    for other in _approvals_of(session, order.id):
        if other.status != ApprovalStatus.PENDING:
            continue
        if _take(session, other, status=ApprovalStatus.CANCELLED, user_id=actor, now=now,
                 note=reason):
            session.refresh(other)
            audit.decision(session, actor=actor, approval_id=other.id, kind=other.kind,
                           outcome=ApprovalStatus.CANCELLED, reason=reason,
                           order=order.number, at=now)
            _show_decision(session, other, order, customer)
            cancelled.append(other.id)
    return cancelled


def _reminder_keys(approval: Approval) -> list[str]:
    return [reminder_key(approval, n) for n in range(1, approval.reminders_sent + 1)]


def reminder_key(approval: Approval, number: int) -> str:
    # The card's outbox id is part of the key: a reopened request starts a new round.
    return f"approval-reminder:{approval.id}:{approval.card_outbox_id}:{number}"


def _update_cards(session: Session, approval: Approval, template: str,
                  context: Callable[[dict | None], dict]) -> None:
    """Update the card in place (chat.update on the same message), and the reminders."""
    if approval.card_outbox_id is not None:
        outbox.update_message(session, target_outbox_id=approval.card_outbox_id,
                              template=template, context=context(None))
    keys = _reminder_keys(approval)
    if not keys:
        return
    for key, row_id in session.exec(
            select(OutboxMessage.dedupe_key, OutboxMessage.id)
            .where(OutboxMessage.dedupe_key.in_(keys))).all():
        outbox.update_message(session, target_outbox_id=row_id, template=template,
                              context=context({"number": int(key.rsplit(":", 1)[1])}))


def _show_decision(session: Session, approval: Approval, order: Order,
                   customer: Customer) -> None:
    _update_cards(session, approval, ORDER_CARD, lambda reminder: approval_context(
        approval, order, customer, reminder=reminder))


def _show_subject(session: Session, approval: Approval, subject: Subject, row: Any) -> None:
    _update_cards(session, approval, SUBJECT_CARD, lambda reminder: subject_context(
        session, approval, subject, row, reminder=reminder))


def show_subject_card(session: Session, approval: Approval) -> None:
    """Refresh a back-office card after its request changed (e.g. issued)."""
    subject = subject_for(approval.kind)
    _show_subject(session, approval, subject, _subject_row(session, approval, subject))


def _dm_recipient(approval: Approval, order: Order) -> str:
    return (approval.requested_by if requester_label(approval.requested_by) is None
            else order.sales_rep_id)


def _tell_requester(session: Session, approval: Approval, order: Order,
                    customer: Customer) -> None:
    """DM whoever asked (for an integration's request: the order's sales rep)."""
    recipient = _dm_recipient(approval, order)
    waiting = [a.kind for a in _approvals_of(session, order.id)
               if a.status == ApprovalStatus.PENDING]
    outbox.post_to_user(session, user_id=recipient, template="approval_decided",
                        context={**approval_context(approval, order, customer),
                                 "waiting_for": waiting})


def _tell_subject_requester(session: Session, approval: Approval, subject: Subject,
                            row: Any) -> None:
    """DM the Slack user who asked (an integration's request has nobody to tell)."""
    if requester_label(approval.requested_by) is not None:
        return
    outbox.post_to_user(session, user_id=approval.requested_by,
                        template="backoffice_approval_decided",
                        context=subject_context(session, approval, subject, row))


def _subject_row(session: Session, approval: Approval, subject: Subject, *,
                 lock: bool = False) -> Any:
    """The request an approval decides; locked (FOR UPDATE) while a decision is taken."""
    query = select(subject.model).where(subject.model.id == approval.subject_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.exec(query).first()
    if row is None:
        raise NotFound(f"approval #{approval.id} has no {approval.kind} request")
    return row


# -- reminders ----------------------------------------------------------------------------------

def send_reminders(session: Session, *, now: datetime) -> list[dict]:
    """Re-post every request pending longer than `approval_reminder_hours` working hours
    (since it was asked, or since its last reminder) to the approvers; at most once per
    interval, never for a decided request, never twice across server processes."""
    policy = policies.current(session)
    closed = Holidays.of(policy.holidays)
    interval = timedelta(hours=policy.approval_reminder_hours)
    pending = session.exec(
        select(Approval, Order)
        .outerjoin(Order, Order.id == Approval.order_id)
        .where(Approval.status == ApprovalStatus.PENDING,
               sa.or_(Approval.order_id.is_(None),
                      Order.status == OrderStatus.PENDING_APPROVAL))
        .order_by(Approval.created_at, Approval.id)).all()
    sent = []
    table = Approval.__table__
    for approval, order in pending:
        since = approval.last_reminded_at or approval.created_at
        if working_time_between(since, now, hours=policy.working_hours,
                                tz=policy.business_timezone, holidays=closed) < interval:
            continue
        subject = row = None
        if order is None:
            subject = subject_for(approval.kind)
            row = _subject_row(session, approval, subject)
            if not subject.pending(row):
                continue
        seen = approval.reminders_sent
        claimed = session.execute(
            sa.update(table)
            .where(table.c.id == approval.id, table.c.status == ApprovalStatus.PENDING,
                   table.c.reminders_sent == seen)
            .values(reminders_sent=seen + 1, last_reminded_at=now)).rowcount == 1
        if not claimed:
            continue  # decided meanwhile, or another process reminded first
        session.refresh(approval)
        waited = working_time_between(approval.created_at, now, hours=policy.working_hours,
                                      tz=policy.business_timezone, holidays=closed)
        hours = (Decimal(int(waited.total_seconds())) / 3600).quantize(Decimal("0.1"))
        reminder = {"number": seen + 1, "working_hours": str(hours),
                    "approvers": approver_ids(session, approval, order, row=row,
                                              subject=subject)}
        if order is not None:
            customer = session.get(Customer, order.customer_id)
            template = ORDER_CARD
            context = approval_context(approval, order, customer, reminder=reminder)
            label = order.number
        else:
            template = SUBJECT_CARD
            context = subject_context(session, approval, subject, row, reminder=reminder)
            label = context["subject"].get("title")
        outbox.post_to_channel(session, channel="approvals", template=template,
                               context=context, dedupe_key=reminder_key(approval, seen + 1))
        sent.append({"approval_id": approval.id, "order": label, "kind": approval.kind,
                     "reminder": seen + 1, "working_hours": str(hours)})
    return sent


def approver_ids(session: Session, approval: Approval, order: Order | None, limit: int = 10, *,
                 row: Any = None, subject: Subject | None = None) -> list[str]:
    """Who holds the role the next decision needs (admins are not pinged unless the tier asks
    for them), minus those segregation of duties excludes."""
    role = step_role(approval)
    users = session.exec(select(UserRole.user_id).where(UserRole.role == role)
                         .order_by(UserRole.user_id)).all()
    excluded = {approval.requested_by}
    if order is not None:
        excluded.add(order.sales_rep_id)
    if needs_second(approval):
        excluded.add(approval.first_decided_by)
    if subject is not None:
        excluded.update(subject.excluded(session, row))
    return [u for u in users if u not in excluded][:limit]


# -- overview (`/o2c approvals`) ----------------------------------------------------------------

@dataclass
class PendingItem:
    approval: Approval
    order: Order | None
    customer: Customer
    waiting: timedelta  # working time since it was asked
    title: str = ""  # the order number, or the back-office request's title
    amount_minor: int = 0
    currency: str = ""


@dataclass
class PendingOverview:
    to_decide: list[PendingItem]  # requests this user may decide (oldest first)
    requested: list[PendingItem]  # this user's own requests (or their orders') still waiting
    can_decide_kinds: list[str]
    to_decide_total: int = 0
    requested_total: int = 0


def pending_overview(session: Session, user_id: str, *, now: datetime,
                     limit: int = 15) -> PendingOverview:
    policy = policies.current(session)
    closed = Holidays.of(policy.holidays)
    kinds = [kind.value for kind, role in ROLE_FOR_KIND.items()
             if has_role(session, user_id, role)]
    rows = session.exec(
        select(Approval, Order, Customer)
        .join(Order, Order.id == Approval.order_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Approval.status == ApprovalStatus.PENDING)
        .order_by(Approval.created_at, Approval.id)).all()
    # (item, the user asked for it or it is their own order, the user may not decide it)
    items: list[tuple[PendingItem, bool, bool]] = []
    for approval, order, customer in rows:
        mine = user_id in (approval.requested_by, order.sales_rep_id)
        item = PendingItem(approval, order, customer, working_time_between(
            approval.created_at, now, hours=policy.working_hours, tz=policy.business_timezone,
            holidays=closed),
            title=order.number, amount_minor=order.total_minor, currency=order.currency)
        items.append((item, mine, mine))
    for approval in session.exec(select(Approval).where(
            Approval.status == ApprovalStatus.PENDING, Approval.order_id.is_(None))
            .order_by(Approval.created_at, Approval.id)).all():
        subject = subject_for(approval.kind)
        row = _subject_row(session, approval, subject)
        view = subject.context(session, approval, row)
        item = PendingItem(approval, None, session.get(Customer, view["customer_id"]),
                           working_time_between(approval.created_at, now,
                                                hours=policy.working_hours,
                                                tz=policy.business_timezone, holidays=closed),
                           title=view["title"], amount_minor=approval.amount_minor or 0,
                           currency=approval.currency or "")
        mine = approval.requested_by == user_id
        # e.g. whoever opened the dispute a credit note settles (`check_subject_decider`)
        barred = mine or user_id in subject.excluded(session, row)
        items.append((item, mine, barred))
    items.sort(key=lambda entry: (entry[0].approval.created_at, entry[0].approval.id))
    to_decide, requested = [], []
    for item, mine, barred in items:
        if mine:
            requested.append(item)
        elif not barred and has_role(session, user_id, step_role(item.approval)) and not (
                needs_second(item.approval) and item.approval.first_decided_by == user_id):
            to_decide.append(item)
    return PendingOverview(to_decide[:limit], requested[:limit], kinds,
                           to_decide_total=len(to_decide), requested_total=len(requested))


def context_of(session: Session, approval: Approval) -> dict:
    """The card's context loaded from the database (for modals opened from a card), with a
    `summary` (title, customer, amount) every kind has."""
    if is_order_approval(approval):
        order = session.get(Order, approval.order_id)
        ctx = approval_context(approval, order, session.get(Customer, order.customer_id))
        ctx["summary"] = {"title": order.number, "customer": ctx["order"]["customer"],
                          "amount_minor": order.total_minor, "currency": order.currency}
        return ctx
    subject = subject_for(approval.kind)
    ctx = subject_context(session, approval, subject, _subject_row(session, approval, subject))
    view = ctx["subject"]
    ctx["summary"] = {"title": view["title"], "customer": view["customer"],
                      "amount_minor": approval.amount_minor or 0,
                      "currency": approval.currency or ""}
    return ctx
