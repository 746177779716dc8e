"""Links sent to customers (issue 19): the rows behind them and what they let a customer do.

A link is a `CustomerLink` row; its URL carries the row's id signed with HMAC
(`bot.customer_links`, the secret lives only in the environment). This module decides, from
the row, whether a verified link still works (`check`), and carries out the one decision a
backorder link allows, once (`choose_backorder`). A backorder is decided once, by whoever is
first: the customer through the link, or the sales rep (an admin) in Slack; after either, the
link answers what was decided and changes nothing (`decided_by_staff`). The rep may still
override the customer's choice deliberately, with a reason (`workflows.fulfilment`, audited
as `order.backorder_override`). Both take the order's row lock first, so two at once decide
once. Portal links are made by a collector in
Slack and revoked there (`portal_link`, `revoke`). Times come from the caller (`now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    AuditEvent,
    BackorderChoice,
    Customer,
    CustomerLink,
    LinkScope,
    Order,
    OutboxMessage,
    OutboxStatus,
    Role,
)
from workflows import audit, outbox, policy
from workflows.errors import NotFound, PermissionDenied
from workflows.users import has_role

BACKORDER_DAYS = 14  # a backorder choice is asked for two weeks; after that the rep decides
PORTAL_DAYS = 30
CHOICE_LABELS = {BackorderChoice.SHIP_NOW: "ship what is available now",
                 BackorderChoice.WAIT: "wait and ship everything together",
                 BackorderChoice.CANCEL_SHORT: "cancel the missing quantities"}
# who may hand a customer their page, and take it back
PORTAL_ROLES = (Role.COLLECTOR, Role.ADMIN)


@dataclass
class LinkState:
    link: CustomerLink | None
    # "ok", "unknown", "expired", "revoked", "used" (the customer chose), "decided" (the rep
    # or an admin decided the backorder first)
    status: str


def backorder_link(session: Session, *, order: Order, now: datetime) -> CustomerLink:
    """The order's backorder link (one per order: the unique constraint keeps it one)."""
    link = session.exec(select(CustomerLink).where(
        CustomerLink.order_id == order.id,
        CustomerLink.scope == LinkScope.BACKORDER)).first()
    if link is None:
        link = CustomerLink(customer_id=order.customer_id, scope=LinkScope.BACKORDER,
                            order_id=order.id, created_by="system", created_at=now,
                            expires_at=now + timedelta(days=BACKORDER_DAYS))
        session.add(link)
        session.flush()
    return link


def portal_link(session: Session, *, customer: Customer, actor: str, now: datetime,
                days: int = PORTAL_DAYS) -> CustomerLink:
    """A new self-serve link for `customer`, asked for by a collector (or an admin)."""
    if not any(has_role(session, actor, role) for role in PORTAL_ROLES):
        raise PermissionDenied("Only collectors and admins can send a customer their page.",
                               actor=actor, action="customer.portal_link",
                               entity_type="customer", entity_id=customer.id)
    link = CustomerLink(customer_id=customer.id, scope=LinkScope.PORTAL, created_by=actor,
                        created_at=now, expires_at=now + timedelta(days=days))
    session.add(link)
    session.flush()
    audit.record(session, actor=actor, action="customer.portal_link", entity_type="customer",
                 entity_id=customer.id, reason=f"self-serve link {link.id}, valid {days} days",
                 link_id=link.id, expires_at=link.expires_at.isoformat(), at=now)
    return link


def revoke(session: Session, *, customer: Customer, actor: str, now: datetime) -> int:
    """Revoke every live link of `customer` (its page and any backorder choice not made);
    returns how many. A page-link e-mail still queued (or failed, to be re-queued) with one
    of them is withdrawn with it, never sent (`withdraw_page_link_emails`); one already sent
    stays as it was."""
    if not any(has_role(session, actor, role) for role in PORTAL_ROLES):
        raise PermissionDenied("Only collectors and admins can revoke a customer's links.",
                               actor=actor, action="customer.links_revoked",
                               entity_type="customer", entity_id=customer.id)
    table = CustomerLink.__table__
    live = sa.and_(table.c.customer_id == customer.id, table.c.revoked_at.is_(None),
                   table.c.used_at.is_(None), table.c.expires_at > now)
    ids = list(session.execute(sa.select(table.c.id).where(live)).scalars())
    result = session.execute(sa.update(table).where(live, table.c.id.in_(ids))
                             .values(revoked_at=now, revoked_by=actor))
    audit.record(session, actor=actor, action="customer.links_revoked",
                 entity_type="customer", entity_id=customer.id,
                 reason=f"{result.rowcount} live link(s) revoked", count=result.rowcount,
                 at=now)
    withdraw_page_link_emails(session, ids, actor=actor, now=now,
                              reason="withdrawn: its link was revoked before it was sent")
    return result.rowcount


def withdraw_page_link_emails(session: Session, link_ids: list[int], *, actor: str,
                              now: datetime, reason: str) -> list[int]:
    """Page-link e-mails (`send_portal_link`) of these links not sent yet (queued, or failed
    and so re-queueable) become `withdrawn` (never sent, the reason in `last_error`), each
    audited as `customer.link_email_withdrawn`. A row a worker is sending right now is left
    to the worker, which checks the link just before it sends (`page_link_live`). Returns
    the rows withdrawn."""
    if not link_ids:
        return []
    table = OutboxMessage.__table__
    unsent = sa.and_(table.c.transport == "email",
                     table.c.dedupe_key.in_([page_link_key(i) for i in link_ids]),
                     table.c.status.in_((OutboxStatus.PENDING, OutboxStatus.FAILED)))
    rows = list(session.execute(sa.select(table.c.id, table.c.dedupe_key, table.c.status)
                                .where(unsent).order_by(table.c.id)))
    return [row_id for row_id, key, status in rows if withdraw_page_link_email(
        session, row_id, only_if=unsent, from_state=status, link_id=int(key.rsplit(":", 1)[1]),
        actor=actor, reason=reason, now=now)]


def withdraw_page_link_email(session: Session, row_id: int, *, only_if: Any, from_state: str,
                             link_id: int | None, actor: str, reason: str,
                             now: datetime) -> bool:
    """The page-link e-mail `row_id` becomes `withdrawn` (never sent, the reason in
    `last_error`) if `only_if` still holds of it (not sent yet; or, for the outbox worker
    about to send it, still its claim), audited as `customer.link_email_withdrawn`. Whether it
    was."""
    table = OutboxMessage.__table__
    if not session.execute(sa.update(table).where(only_if, table.c.id == row_id).values(
            status=OutboxStatus.WITHDRAWN, last_error=reason, claimed_at=None,
            claimed_by=None)).rowcount:
        return False
    audit.record(session, actor=actor, action="customer.link_email_withdrawn",
                 entity_type="outbox", entity_id=row_id, from_state=from_state,
                 to_state=OutboxStatus.WITHDRAWN, reason=reason, link_id=link_id, at=now)
    return True


def page_link_key(link_id: int) -> str:
    """The dedupe key of the e-mail that sends a customer their page link."""
    return f"customer-page-link:{link_id}"


def page_link_live(session: Session, link_id: int | None, *, now: datetime) -> str:
    """Whether a page-link e-mail may still go out: its link's state ("ok", else why not)."""
    return check(session, link_id, scope=LinkScope.PORTAL, now=now).status


def check(session: Session, link_id: int | None, *, scope: str, now: datetime) -> LinkState:
    """What a verified link may still do. The signature was checked by the caller; an id
    that names no link of that scope is "unknown", like a forged one."""
    link = _fresh(session, CustomerLink.id == link_id) if link_id is not None else None
    if link is None or link.scope != scope:
        return LinkState(None, "unknown")
    if link.revoked_at is not None:
        return LinkState(link, "revoked")
    if link.used_at is not None:
        return LinkState(link, "used")
    if scope == LinkScope.BACKORDER and decided_by_staff(session, link) is not None:
        return LinkState(link, "decided")
    if link.expires_at <= now:
        return LinkState(link, "expired")
    return LinkState(link, "ok")


def seen(session: Session, link: CustomerLink, *, what: str, now: datetime,
         client: str | None = None) -> None:
    """Every access through a link is logged (who the link is for, what was looked at)."""
    link.last_seen_at = now
    session.add(link)
    audit.record(session, actor=f"link:{link.id}", action="customer.link_access",
                 entity_type="customer", entity_id=link.customer_id, reason=what,
                 link_id=link.id, scope=link.scope, client=client, at=now)


def choose_backorder(session: Session, *, link_id: int, choice: str, now: datetime) -> str:
    """The customer's backorder choice through their link: recorded once (a conditional
    UPDATE: a second click, a forwarded e-mail or a concurrent click finds it taken), carried
    out like the rep's, and told to the rep (DM) and billing (AR channel). Returns the link's
    state: "ok" when this call recorded the choice, else why nothing changed."""
    from workflows import fulfilment
    from workflows.orders import lock_order, order_snapshot

    choice = BackorderChoice(choice)
    state = check(session, link_id, scope=LinkScope.BACKORDER, now=now)
    if state.status == "ok":  # the order's lock first, as the rep's choice takes it, then again
        lock_order(session, order_of(session, state.link))
        state = check(session, link_id, scope=LinkScope.BACKORDER, now=now)
    if state.status in ("used", "decided"):
        _refuse(session, state.link, choice, now=now)
    if state.status != "ok":
        return state.status
    table = CustomerLink.__table__
    taken = session.execute(
        sa.update(table).where(table.c.id == link_id, table.c.used_at.is_(None),
                               table.c.revoked_at.is_(None), table.c.expires_at > now)
        .values(choice=choice.value, used_at=now))
    if taken.rowcount != 1:  # revoked (or expired) meanwhile: revoking takes no order lock
        return check(session, link_id, scope=LinkScope.BACKORDER, now=now).status
    order = session.get(Order, state.link.order_id)
    actor = "customer"
    why = f"the customer chose to {CHOICE_LABELS[choice]}"
    if choice == BackorderChoice.SHIP_NOW:
        fulfilment.ship_partial(session, order=order, actor=actor, now=now, by_customer=True)
    elif choice == BackorderChoice.WAIT:
        fulfilment.wait_for_stock(session, order=order, actor=actor, now=now,
                                  by_customer=True)
        fulfilment.tell_billing(session, order, choice="wait", actor=actor)
    else:
        lines = fulfilment.short_order_lines(session, order)
        for line in [li for li in lines if li.qty_backordered > 0]:
            fulfilment.cancel_line(session, order=order, line_no=line.line_no, actor=actor,
                                   reason=why, now=now, by_customer=True)
    audit.record(session, actor=actor, action="order.customer_choice", entity_type="order",
                 entity_id=order.id, reason=why, number=order.number, choice=choice.value,
                 link_id=link_id, at=now)
    customer = session.get(Customer, order.customer_id)
    outbox.post_to_user(session, user_id=order.sales_rep_id, template="order_status",
                        context={"order": order_snapshot(order, customer), "reasons": [
                            f"{why} (through their backorder link); you can still "
                            "override it with the backorder buttons"]})
    return "ok"


def _refuse(session: Session, link: CustomerLink, choice: BackorderChoice, *,
             now: datetime) -> None:
    """A choice through the link after the backorder was decided: audited as refused."""
    session.refresh(link)
    audit.refusal(session, actor=f"link:{link.id}", action="order.customer_choice",
                  entity_type="order", entity_id=link.order_id,
                  reason=f"already decided: {decision_text(session, link)}",
                  choice=choice.value, link_id=link.id, at=now)


def decided_by_staff(session: Session, link: CustomerLink) -> AuditEvent | None:
    """The sales rep's (or an admin's) first decision in Slack of the backorder of the link's
    order (one link per order) — a choice (ship partial, wait, cancel a short line) or
    cancelling the rest —, or None."""
    if link.order_id is None:
        return None
    return session.exec(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "order", AuditEvent.entity_id == str(link.order_id),
               AuditEvent.action.in_(STAFF_DECISIONS),
               AuditEvent.actor.not_in(("customer", "system")))
        .order_by(AuditEvent.id).limit(1)).first()


STAFF_DECISIONS = ("order.backorder_choice", "order.line_cancelled")
STAFF_LABELS = {"ship_partial": "ship what is available now",
                "wait": "wait and ship everything together",
                "cancel_line": "cancel the missing quantities"}


def decision_text(session: Session, link: CustomerLink) -> str:
    """What was decided on the link's order, in the customer's words: "you chose to …" or
    "your sales contact decided to …"."""
    if link.used_at is not None and link.choice:
        return f"you chose to {CHOICE_LABELS[BackorderChoice(link.choice)]}"
    event = decided_by_staff(session, link)
    if event is None:
        return "nothing was decided yet"
    if event.action == "order.line_cancelled":
        what = ("cancel what was left to ship" if event.data.get("rest")
                else STAFF_LABELS["cancel_line"])
    else:
        what = STAFF_LABELS.get(event.data.get("choice"), "decide it")
    return f"your sales contact decided to {what}"


def order_of(session: Session, link: CustomerLink) -> Order:
    order = session.get(Order, link.order_id) if link.order_id else None
    if order is None:
        raise NotFound("this link names no order")
    return order


def customer_choice(session: Session, order_id: int) -> CustomerLink | None:
    """The order's backorder link once the customer used it."""
    return _fresh(session, CustomerLink.order_id == order_id,
                  CustomerLink.scope == LinkScope.BACKORDER, CustomerLink.used_at.is_not(None))


def choice_column(order_id: sa.ColumnElement) -> sa.ScalarSelect:
    """The choice the customer made through the order's backorder link, as a column of a query
    over orders (`workflows.queries.order_view` reads it with the order, in one round trip)."""
    return (select(CustomerLink.choice)
            .where(CustomerLink.order_id == order_id, CustomerLink.scope == LinkScope.BACKORDER,
                   CustomerLink.used_at.is_not(None))
            .order_by(CustomerLink.id).limit(1).scalar_subquery())


def _fresh(session: Session, *where: object) -> CustomerLink | None:
    """A link as committed now (links change by conditional UPDATEs, not through the ORM)."""
    return session.exec(select(CustomerLink).where(*where)
                        .execution_options(populate_existing=True)).first()


def send_portal_link(session: Session, *, customer: Customer, actor: str, now: datetime
                     ) -> tuple[CustomerLink, str]:
    """A new self-serve link e-mailed to the customer (the billing contact, else the notice
    contact), asked for by a collector in Slack. The URL is signed when the e-mail is
    rendered; the row stays without secrets."""
    from workflows.errors import ValidationFailed

    to = customer.billing_email or customer.notice_email
    if not to:
        raise ValidationFailed.of("billing_email", f"{customer.name} has no e-mail address; "
                                  "add one before sending their page")
    link = portal_link(session, customer=customer, actor=actor, now=now)
    outbox.send_email(session, to=to, template="notice_page_link",
                      dedupe_key=page_link_key(link.id),
                      context={"customer": customer.name, "link_id": link.id,
                               "link_expires_at": policy.business_moment(session,
                                                                         link.expires_at)})
    return link, to
