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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

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
from workflows import audit, outbox
from workflows import policy as policies
from workflows.credit import ApprovalNeed
from workflows.errors import (
    AlreadyDecided,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from workflows.users import has_role
from workflows.validation import SLACK_USER_ID
from workflows.workcalendar import working_time_between

# Who stands behind a request that did not come from a Slack user.
SYSTEM_REQUESTERS = {"api": "REST API", "import": "CSV import", "system": "o2c"}
ROLE_FOR_KIND = {ApprovalKind.CREDIT: Role.CREDIT_APPROVER,
                 ApprovalKind.DISCOUNT: Role.DISCOUNT_APPROVER}
NOTE_MAX = 2000
DECIDE_ACTION = "approval.decide"


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
    approval.last_reminded_at = None
    approval.reminders_sent = 0
    session.add(approval)
    session.flush()
    audit.record(session, actor=requested_by, action="approval.requested",
                 entity_type="approval", entity_id=approval.id, to_state="pending",
                 kind=need.kind, order=order.number, at=now)
    customer = session.get(Customer, order.customer_id)
    card = outbox.post_to_channel(session, channel="approvals", template="approval_card",
                                  context=approval_context(approval, order, customer))
    approval.card_outbox_id = card.id
    session.add(approval)
    if need.kind == ApprovalKind.DISCOUNT:
        outbox.post_to_channel(session, channel="alerts", template="discount_alert",
                               context=approval_context(approval, order, customer))
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


def approval_context(approval: Approval, order: Order, customer: Customer, *,
                     reminder: dict | None = None) -> dict:
    """What the card, the alert and the DMs show, frozen at the time they are written."""
    return {"approval_id": approval.id, "kind": approval.kind, "status": approval.status,
            "order": {"number": order.number, "total_minor": order.total_minor,
                      "currency": order.currency, "customer": customer.name,
                      "status": order.status},
            "requested_by": approval.requested_by,
            "requested_by_label": requester_label(approval.requested_by),
            "sales_rep": order.sales_rep_id,
            "requested_at": approval.created_at.isoformat() if approval.created_at else None,
            "reasons": approval.reasons, "snapshot": approval.snapshot,
            "decided_by": approval.decided_by,
            "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
            "note": approval.decision_note, "reminder": reminder}


# -- deciding -----------------------------------------------------------------------------------

@dataclass
class Decision:
    approval: Approval
    order: Order
    outcome: str  # approved | rejected
    cancelled: list[int] = field(default_factory=list)  # other approvals cancelled by a reject


def decide(*, session: Session, approval_id: int, user_id: str, approve: bool,
           now: datetime, note: str | None = None) -> Decision:
    """Approve or reject, once. Raises PermissionDenied (role, segregation of duties),
    AlreadyDecided (someone was first), ValidationFailed (a rejection needs a reason)."""
    note = (note or "").strip() or None
    approval, order = _load_for_decision(session, approval_id)
    check_decider(session, approval, order, user_id)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    if not approve and not note:
        raise ValidationFailed.of("reason", "say why the request is rejected")
    if note and len(note) > NOTE_MAX:
        raise ValidationFailed.of("reason", f"at most {NOTE_MAX} characters")
    if order.status != OrderStatus.PENDING_APPROVAL:
        raise InvalidTransition(f"order {order.number} is {order.status.replace('_', ' ')}; "
                                "there is nothing to decide")
    outcome = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if not _take(session, approval.id, status=outcome, user_id=user_id, now=now, note=note):
        session.refresh(approval)
        raise already_decided(approval)
    session.refresh(approval)
    audit.decision(session, actor=user_id, approval_id=approval.id, kind=approval.kind,
                   outcome=outcome, reason=note, order=order.number, at=now)
    customer = session.get(Customer, order.customer_id)
    decision = Decision(approval, order, outcome)
    if approve:
        if approval.kind == ApprovalKind.CREDIT and not customer.credit_reviewed:
            _mark_reviewed(session, customer, actor=user_id, approval=approval, now=now)
        siblings = _approvals_of(session, order.id)
        if all(a.status == ApprovalStatus.APPROVED for a in siblings):
            from workflows.orders import approve_order

            kinds = " and ".join(sorted(a.kind for a in siblings))
            approve_order(session, order, actor=user_id, reason=f"{kinds} approved", now=now)
    else:
        from workflows.orders import transition

        transition(session, order, OrderStatus.REJECTED, actor=user_id, now=now,
                   reason=f"{approval.kind} approval rejected: {note}")
        decision.cancelled = _cancel_pending(session, order, customer, actor=user_id, now=now)
    _show_decision(session, approval, order, customer)
    _tell_requester(session, approval, order, customer)
    return decision


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
    order = session.get(Order, approval.order_id)
    check_decider(session, approval, order, user_id)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    return approval


def check_decider(session: Session, approval: Approval, order: Order, user_id: str) -> None:
    """The clicking user's role, and segregation of duties, checked on the server."""
    role = ROLE_FOR_KIND[ApprovalKind(approval.kind)]
    refuse = {"actor": user_id, "action": DECIDE_ACTION, "entity_type": "approval",
              "entity_id": approval.id}
    if not has_role(session, user_id, role):
        raise PermissionDenied(f"Only a {role.replace('_', ' ')} can decide a {approval.kind} "
                               "request. Nothing was changed.", **refuse)
    if user_id == approval.requested_by:
        raise PermissionDenied("You asked for this approval, so someone else must decide it "
                               "(segregation of duties). Nothing was changed.", **refuse)
    if user_id == order.sales_rep_id:
        raise PermissionDenied(f"{order.number} is your own order, so someone else must "
                               "decide it (segregation of duties). Nothing was changed.",
                               **refuse)


def already_decided(approval: Approval) -> AlreadyDecided:
    when = f" at {approval.decided_at:%Y-%m-%d %H:%M} UTC" if approval.decided_at else ""
    return AlreadyDecided(f"This {approval.kind} request was already {approval.status} by "
                          f"{approval.decided_by or 'someone else'}{when}. Nothing was changed.",
                          decided_by=approval.decided_by, status=approval.status)


def _load_for_decision(session: Session, approval_id: int) -> tuple[Approval, Order]:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval #{approval_id}")
    # Lock the order first: decisions on one order run one after the other, so "is this the
    # last approval?" and the order transition see every committed decision (SQLite already
    # serialises writers with BEGIN IMMEDIATE; FOR UPDATE is omitted there).
    order = session.exec(select(Order).where(Order.id == approval.order_id).with_for_update()
                         .execution_options(populate_existing=True)).one()
    session.refresh(approval)
    return approval, order


def _take(session: Session, approval_id: int, *, status: str, user_id: str, now: datetime,
          note: str | None) -> bool:
    """The decision itself: one conditional UPDATE; True only for the statement that won."""
    table = Approval.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id == approval_id, table.c.status == ApprovalStatus.PENDING)
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
        if _take(session, other.id, status=ApprovalStatus.CANCELLED, user_id=actor, now=now,
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


def _show_decision(session: Session, approval: Approval, order: Order,
                   customer: Customer) -> None:
    """Update the card in place (chat.update on the same message), and the reminders."""
    if approval.card_outbox_id is not None:
        outbox.update_message(session, target_outbox_id=approval.card_outbox_id,
                              template="approval_card",
                              context=approval_context(approval, order, customer))
    keys = _reminder_keys(approval)
    if not keys:
        return
    for key, row_id in session.exec(
            select(OutboxMessage.dedupe_key, OutboxMessage.id)
            .where(OutboxMessage.dedupe_key.in_(keys))).all():
        outbox.update_message(session, target_outbox_id=row_id, template="approval_card",
                              context=approval_context(
                                  approval, order, customer,
                                  reminder={"number": int(key.rsplit(":", 1)[1])}))


def _tell_requester(session: Session, approval: Approval, order: Order,
                    customer: Customer) -> None:
    """DM whoever asked (for an integration's request: the order's sales rep)."""
    recipient = (approval.requested_by if requester_label(approval.requested_by) is None
                 else order.sales_rep_id)
    waiting = [a.kind for a in _approvals_of(session, order.id)
               if a.status == ApprovalStatus.PENDING]
    outbox.post_to_user(session, user_id=recipient, template="approval_decided",
                        context={**approval_context(approval, order, customer),
                                 "waiting_for": waiting})


# -- reminders ----------------------------------------------------------------------------------

def send_reminders(session: Session, *, now: datetime) -> list[dict]:
    """Re-post every request pending longer than `approval_reminder_hours` working hours
    (since it was asked, or since its last reminder) to the approvers; at most once per
    interval, never for a decided request, never twice across server processes."""
    policy = policies.current(session)
    interval = timedelta(hours=policy.approval_reminder_hours)
    pending = session.exec(
        select(Approval, Order)
        .join(Order, Order.id == Approval.order_id)
        .where(Approval.status == ApprovalStatus.PENDING,
               Order.status == OrderStatus.PENDING_APPROVAL)
        .order_by(Approval.created_at, Approval.id)).all()
    sent = []
    table = Approval.__table__
    for approval, order in pending:
        since = approval.last_reminded_at or approval.created_at
        if working_time_between(since, now, hours=policy.working_hours,
                                tz=policy.business_timezone) < interval:
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
                                      tz=policy.business_timezone)
        hours = (Decimal(int(waited.total_seconds())) / 3600).quantize(Decimal("0.1"))
        customer = session.get(Customer, order.customer_id)
        reminder = {"number": seen + 1, "working_hours": str(hours),
                    "approvers": approver_ids(session, approval, order)}
        outbox.post_to_channel(session, channel="approvals", template="approval_card",
                               context=approval_context(approval, order, customer,
                                                        reminder=reminder),
                               dedupe_key=reminder_key(approval, seen + 1))
        sent.append({"approval_id": approval.id, "order": order.number, "kind": approval.kind,
                     "reminder": seen + 1, "working_hours": str(hours)})
    return sent


def approver_ids(session: Session, approval: Approval, order: Order, limit: int = 10
                 ) -> list[str]:
    """Who holds the approver role for this kind (admins are not pinged), minus those
    segregation of duties excludes."""
    role = ROLE_FOR_KIND[ApprovalKind(approval.kind)]
    users = session.exec(select(UserRole.user_id).where(UserRole.role == role)
                         .order_by(UserRole.user_id)).all()
    return [u for u in users if u not in (approval.requested_by, order.sales_rep_id)][:limit]


# -- overview (`/o2c approvals`) ----------------------------------------------------------------

@dataclass
class PendingItem:
    approval: Approval
    order: Order
    customer: Customer
    waiting: timedelta  # working time since it was asked


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
    kinds = [kind.value for kind, role in ROLE_FOR_KIND.items()
             if has_role(session, user_id, role)]
    rows = session.exec(
        select(Approval, Order, Customer)
        .join(Order, Order.id == Approval.order_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Approval.status == ApprovalStatus.PENDING)
        .order_by(Approval.created_at, Approval.id)).all()
    to_decide, requested = [], []
    for approval, order, customer in rows:
        mine = user_id in (approval.requested_by, order.sales_rep_id)
        if not mine and approval.kind not in kinds:
            continue
        item = PendingItem(approval, order, customer, working_time_between(
            approval.created_at, now, hours=policy.working_hours, tz=policy.business_timezone))
        (requested if mine else to_decide).append(item)
    return PendingOverview(to_decide[:limit], requested[:limit], kinds,
                           to_decide_total=len(to_decide), requested_total=len(requested))


def context_of(session: Session, approval: Approval) -> dict:
    """`approval_context` loaded from the database (for modals opened from a card)."""
    order = session.get(Order, approval.order_id)
    return approval_context(approval, order, session.get(Customer, order.customer_id))
