"""Cash application: record incoming payments and apply them to open invoices.

Every payment — REST API, CSV import, bank statement, the `/o2c pay` modal — goes through
`record_payment` (or, for many at once, a `workflows.cash_runs.CashRun`), which runs the
matching engine (`workflows.matching`, fed by `workflows.cash_candidates`) and then one of the
outcomes of SPEC §3:

* confident (>= `cashapp_confidence`): the plan is applied — full match; bank fee within
  tolerance written off (`bank_fee`) so the invoice closes; early-payment discount written off
  (`early_payment_discount`); a larger short payment applied and flagged as a `Deduction`; an
  overpayment applied with the rest kept as unapplied credit;
* not confident: nothing is applied, the payment is `needs_review`, its top candidates are
  stored as `PaymentSuggestion` rows and a suggestion card with one-click Apply buttons goes to
  the AR channel (`apply_suggestion` applies one, exactly once, for a collector or admin);
* no candidate at all: `unapplied`, and the AR channel is told (a collector can name the
  customer on the card: `assign_customer`).

People's decisions teach the engine (`workflows.cash_rules`): applying a suggestion, naming
the customer of an unidentified payment, correcting an application (`correct_application`).

The primitives — `allocate`, `write_off` — keep the AR invariants (`workflows.invariants`)
under concurrency: balances move by conditional UPDATEs only. Each settlement is dated by
when the money moved, not when it was recorded (`models.invoices` docstring): an allocation
and a fee or discount write-off by the payment's `value_date` (the bank statement's value
date, else the date of `received_at` as its sender stated it, see `value_date_of`; Stripe's
payments: the business date, `workflows.stripe_events`), the day the engine also judges an
early-payment discount by (`facts_of`, `day_of`), a
bad-debt write-off by its effective date; a date in a closed month is booked in the first
open month (`workflows.periods`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from models import (
    Allocation,
    Customer,
    Deduction,
    DeductionStatus,
    Invoice,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    PaymentSuggestion,
    ReversedKind,
    ReversedSettlement,
    Role,
    WriteOff,
    money,
)
from workflows import (
    audit,
    bulk,
    cash_rules,
    deductions,
    exposure,
    matching,
    outbox,
    periods,
    policy,
    refunds,
    webhooks,
)
from workflows import validation as v
from workflows.cash_candidates import CustomerNames
from workflows.cash_runs import (
    ENGINE,
    CashRun,
    card_context,
    card_of,
    checked,
    day_of,
    facts_of,
    line_rows,
    payment_card,
    rules_for,
    same_money,
    suggestion_json,
    value_date_of,
)
from workflows.errors import (
    AlreadyDecided,
    Conflict,
    NotFound,
    OverallocationError,
    PermissionDenied,
    ValidationFailed,
)
from workflows.inputs import PaymentIn
from workflows.invoicing import (
    lock_invoice,
    lock_invoices,
    reduce_balance,
    write_off_settled_at,
)
from workflows.masterdata import customer_by_external_id
from workflows.matching import FIT_NONE
from workflows.users import require_role

__all__ = ["ENGINE", "CashRun", "PaymentIn", "facts_of", "rules_for", "value_date_of"]

_PAYMENTS = Payment.__table__
_PAYMENT_BY_EXTERNAL_ID = sa.select(_PAYMENTS.c.id).where(
    _PAYMENTS.c.external_id == sa.bindparam("e"))
# The exactly-once primitive: take `amount` from what the payment has left, or nothing.
_TAKE_FROM_PAYMENT = (
    sa.update(_PAYMENTS)
    .where(_PAYMENTS.c.id == sa.bindparam("payment"),
           _PAYMENTS.c.unapplied_minor >= sa.bindparam("amount"))
    .values(unapplied_minor=_PAYMENTS.c.unapplied_minor - sa.bindparam("amount"))
    .returning(_PAYMENTS.c.unapplied_minor))
MANUAL = "manual"  # allocation method of every human choice (Apply click, payment modal)
REVIEWABLE = (PaymentStatus.NEEDS_REVIEW, PaymentStatus.UNAPPLIED)


def get_payment(session: Session, payment_id: int) -> Payment:
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def payment_allocations(session: Session, payment_id: int) -> list[tuple[Allocation, Invoice]]:
    return list(session.exec(select(Allocation, Invoice)
                             .join(Invoice, Invoice.id == Allocation.invoice_id)
                             .where(Allocation.payment_id == payment_id)
                             .order_by(Allocation.id)).all())


def _by_external_id(session: Session, external_id: str | None) -> Payment | None:
    if not external_id:
        return None
    found = session.connection().execute(_PAYMENT_BY_EXTERNAL_ID, {"e": external_id}).scalar()
    return session.get(Payment, found) if found is not None else None


def claim_unkeyed(session: Session, rows: list[PaymentIn], *, source: str, actor: str) -> int:
    """Payments recorded before their rows were keyed by content (`external_id` NULL): each
    of `rows` (in file order, each with the `external_id` derived from its content and its
    occurrence), when no payment has that id yet, takes over the oldest earlier payment of
    `source` it describes that is still unkeyed — same amount, currency, moment received,
    payer, reference and method — by giving it the id (so the second of two identical rows
    takes the second such payment). So a file imported before the upgrade and again after it
    records nothing twice. Returns how many were claimed (audited each). The unkeyed
    payments received within the file's days are read once."""
    table = Payment.__table__
    unkeyed = (table.c.external_id.is_(None), table.c.source == source)
    if not rows or session.execute(select(table.c.id).where(*unkeyed).limit(1)).first() is None:
        return 0  # nothing unkeyed to claim (every database imported after the upgrade)
    wanted: list[tuple[PaymentIn, tuple]] = []
    for data in rows:
        try:
            amount, currency = checked(data)
        except ValidationFailed:
            continue  # the run refuses the row itself
        wanted.append((data, (amount, currency, data.received_at, data.payer_name,
                              data.reference, data.method)))
    if not wanted:
        return 0
    earliest = min(content[2] for _, content in wanted)
    latest = max(content[2] for _, content in wanted)
    earlier: dict[tuple, list[int]] = {}
    for row in session.execute(
            select(table.c.id, table.c.amount_minor, table.c.currency, table.c.received_at,
                   table.c.payer_name, table.c.reference, table.c.method)
            .where(*unkeyed, table.c.received_at >= earliest, table.c.received_at <= latest)
            .order_by(table.c.id)):
        # (moments compare and hash as instants: the column gives them back aware, in UTC)
        earlier.setdefault((row.amount_minor, row.currency, row.received_at,
                            row.payer_name, row.reference, row.method), []).append(row.id)
    if not earlier:
        return 0
    taken: set[str] = set()
    for part in bulk.in_parts(data.external_id for data, _ in wanted):
        taken.update(session.execute(select(table.c.external_id).where(
            table.c.external_id.in_(part))).scalars())
    claimed = 0
    for data, content in wanted:
        ids = earlier.get(content)
        if data.external_id in taken or not ids:
            continue
        payment_id = ids.pop(0)  # the oldest still unkeyed
        session.execute(sa.update(table).where(table.c.id == payment_id)
                        .values(external_id=data.external_id))
        audit.record(session, actor=actor, action="payment.keyed", entity_type="payment",
                     entity_id=payment_id, external_id=data.external_id,
                     reason="imported before rows without an external_id were keyed by "
                            "their content")
        claimed += 1
    return claimed


def record_payment(session: Session, data: PaymentIn, *, actor: str, source: str = "api",
                   apply_to: list[str] | None = None,
                   names: CustomerNames | None = None) -> tuple[Payment, bool]:
    """Store a payment (or return the one already stored under its external_id) and apply it.

    Re-sending the same payment (same `external_id`, amount, currency and `received_at`)
    changes nothing and returns the first one. The same `external_id` with another amount,
    currency or receipt time is another payment claiming the first one's identity: `Conflict`
    naming the fields that differ (the payer name, reference, customer and method only describe
    a payment, so a re-send that differs there still gets the first payment). `apply_to`
    (invoice numbers, from a person in the payment modal) skips the engine: the payment is
    applied to those invoices in that order, as a manual choice. `names` is the database's
    name cache (`bot.db.Database.customer_names`). Returns (payment, created)."""
    if apply_to:
        return _record_manually(session, data, actor=actor, source=source, apply_to=apply_to)
    run = CashRun(session, actor=actor, source=source, names=names)
    ticket = run.add(data)
    run.flush()
    if ticket.error is not None:
        raise ticket.error
    return get_payment(session, ticket.payment_id), ticket.created


def _record_manually(session: Session, data: PaymentIn, *, actor: str, source: str,
                     apply_to: list[str]) -> tuple[Payment, bool]:
    amount, currency = checked(data)
    existing = _by_external_id(session, data.external_id)
    if existing is not None:
        same_money(existing.id, existing.external_id,
                   (existing.amount_minor, existing.currency, existing.received_at),
                   amount, currency, data.received_at)
        return existing, False
    customer: Customer | None = None
    if data.customer:
        customer = customer_by_external_id(session, data.customer)
        if customer.currency != currency:
            raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                      f"{customer.currency}, not {currency}")
    targets = _manual_targets(session, apply_to, currency, customer)
    payment = Payment(external_id=data.external_id or None,
                      customer_id=customer.id if customer else None, amount_minor=amount,
                      currency=currency, received_at=data.received_at,
                      value_date=day_of(data),
                      payer_name=data.payer_name, reference=data.reference, method=data.method,
                      source=source, unapplied_minor=amount, status=PaymentStatus.UNAPPLIED)
    try:
        with guard(session):  # a concurrent twin with the same external_id wins
            session.add(payment)
            session.flush()
    except IntegrityError:
        existing = _by_external_id(session, data.external_id)
        if existing is None:
            raise
        same_money(existing.id, existing.external_id,
                   (existing.amount_minor, existing.currency, existing.received_at),
                   amount, currency, data.received_at)
        return existing, False
    audit.record(session, actor=actor, action="payment.received", entity_type="payment",
                 entity_id=payment.id, amount_minor=amount, currency=currency,
                 external_id=payment.external_id, source=source)
    _apply_manually(session, payment, targets, actor=actor)
    webhooks.payment_events(session, payment, created=True)
    return payment, True


def _manual_targets(session: Session, numbers: list[str], currency: str,
                    customer: Customer | None, *, open_only: bool = True) -> list[Invoice]:
    invoices = []
    for number in dict.fromkeys(n.strip() for n in numbers if n.strip()):
        invoice = session.exec(select(Invoice).where(Invoice.number == number)).first()
        if invoice is None:
            raise ValidationFailed.of("apply_to", f"no invoice {number}")
        if invoice.currency != currency:
            raise ValidationFailed.of("apply_to", f"{number} is in {invoice.currency}, "
                                      f"not {currency}")
        if customer is not None and invoice.customer_id != customer.id:
            raise ValidationFailed.of("apply_to", f"{number} belongs to another customer")
        if open_only and invoice.balance_minor == 0:
            raise ValidationFailed.of("apply_to", f"{number} is already paid")
        invoices.append(invoice)
    if not invoices:
        raise ValidationFailed.of("apply_to", "name at least one invoice")
    if len({invoice.customer_id for invoice in invoices}) != 1:  # a payment has one customer
        raise ValidationFailed.of("apply_to", "name invoices of one customer")
    return invoices


def _apply_manually(session: Session, payment: Payment, invoices: list[Invoice], *,
                    actor: str) -> None:
    """The invoices a person picked when recording the payment, in that order, by the same
    rule as a correction (`correction_lines`: a bank fee within tolerance or an early-payment
    discount written off as the engine would). The invoices are locked in id order first, so
    the balances the lines are worked out on cannot move."""
    locked = lock_invoices(session, (invoice.id for invoice in invoices))
    targets = [locked[invoice.id] for invoice in invoices]
    for target in targets:
        if target.balance_minor == 0:
            raise ValidationFailed.of("apply_to", f"{target.number} is already paid")
    lines = correction_lines(session, payment, targets,
                             {target.id: target.balance_minor for target in targets})
    _apply_lines(session, payment, lines, method=MANUAL, actor=actor)
    payment.match_details = {
        **(payment.match_details or {}), "engine": ENGINE, "outcome": "manual",
        "write_off_minor": sum(amount for line in lines for amount, _ in line["write_offs"]),
        "deduction_minor": sum(line["deduction_minor"] for line in lines)}
    refresh_status(session, payment)


# -- the `/o2c pay` modal ------------------------------------------------------------------------
def record_from_slack(session: Session, data: PaymentIn, *, user_id: str,
                      apply_to: list[str] | None = None,
                      names: CustomerNames | None = None) -> tuple[Payment, bool]:
    """A payment a collector (or admin) typed into the `/o2c pay` modal: the role is checked,
    the payment is recorded like every other one (source "slack"), and the DM telling them
    what became of it (`payment_recorded`) is written in the same transaction. A double
    submission (the same view, so the same external_id) records and tells once."""
    require_role(session, user_id=user_id, roles=(Role.COLLECTOR,), action="payment.record",
                 entity_type="command", entity_id="pay")
    payment, created = record_payment(session, data, actor=user_id, source="slack",
                                      apply_to=apply_to or None, names=names)
    if created:
        outbox.post_to_user(session, user_id=user_id, template="payment_recorded",
                            context=recorded_context(session, payment),
                            dedupe_key=f"payment-recorded:{payment.id}")
    return payment, created


def check_from_slack(session: Session, data: PaymentIn, *, user_id: str,
                     apply_to: list[str] | None = None) -> None:
    """What `record_from_slack` would refuse, found with reads only: the role, the amount and
    currency, the customer's currency, the chosen invoices. The payment modal runs it before
    its ack, so each refusal shows under its field; recording checks it all again."""
    require_role(session, user_id=user_id, roles=(Role.COLLECTOR,), action="payment.record",
                 entity_type="command", entity_id="pay")
    currency = v.currency("currency", data.currency)
    v.amount_minor("amount", data.amount, currency, positive=True)
    customer: Customer | None = None
    if data.customer:
        customer = customer_by_external_id(session, data.customer)
        if customer.currency != currency:
            raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                      f"{customer.currency}, not {currency}")
    if apply_to:
        _manual_targets(session, apply_to, currency, customer)


def recorded_context(session: Session, payment: Payment) -> dict:
    """The frozen snapshot the `payment_recorded` DM renders (blocks/cashapp.py)."""
    details = payment.match_details or {}
    return {"id": payment.id, "status": payment.status, "currency": payment.currency,
            "amount_minor": payment.amount_minor, "unapplied_minor": payment.unapplied_minor,
            "write_off_minor": details.get("write_off_minor", 0),
            "allocations": [{"invoice": invoice.number,
                             "amount": money.to_str(a.amount_minor, payment.currency)}
                            for a, invoice in payment_allocations(session, payment.id)],
            "matched_because": matched_because(session, payment)}


def open_invoice_choices(session: Session, query: str, *, customer: str | None = None,
                         limit: int = 20) -> list[Invoice]:
    """Open invoices whose number contains `query` (the modal's invoice select), optionally of
    one customer (external_id), soonest due first."""
    stmt = (select(Invoice).where(Invoice.balance_minor > 0,
                                  Invoice.number.icontains(query.strip(), autoescape=True))
            .order_by(Invoice.due_date, Invoice.id).limit(limit))
    if customer:
        stmt = stmt.join(Customer, Customer.id == Invoice.customer_id).where(
            Customer.external_id == customer)
    return list(session.exec(stmt).all())


def usual_currency(session: Session, default: str = "USD") -> str:
    """The currency most customers are billed in (the modal's preselected currency)."""
    common = session.exec(select(Customer.currency).group_by(Customer.currency)
                          .order_by(sa.func.count().desc(), Customer.currency)
                          .limit(1)).first()
    return common or default


def guard(session: Session) -> AbstractContextManager:
    """A savepoint where a concurrent writer could interfere, so a clash undoes only the step.

    SQLite write transactions start with BEGIN IMMEDIATE (`bot.db`): writers are serialised,
    nothing can change between our read and our write, and the savepoint would only cost two
    statements per payment. PostgreSQL runs READ COMMITTED: there it is needed."""
    if session.get_bind().dialect.name == "sqlite":
        return nullcontext()
    return session.begin_nested()


# -- what the API answers and the cards show -----------------------------------------------------
def current_round(session: Session, payment_id: int) -> int:
    return session.exec(select(sa.func.max(PaymentSuggestion.round)).where(
        PaymentSuggestion.payment_id == payment_id)).one() or 0


def _suggestion_rows(session: Session, payment: Payment) -> list[PaymentSuggestion]:
    return list(session.exec(select(PaymentSuggestion).where(
        PaymentSuggestion.payment_id == payment.id,
        PaymentSuggestion.round == current_round(session, payment.id))
        .order_by(PaymentSuggestion.rank)).all())


def suggestions_of(session: Session, payment: Payment) -> list[dict]:
    """The suggestions waiting for a person (none once the payment is decided), as the API
    answers them and the card shows them."""
    if payment.status != PaymentStatus.NEEDS_REVIEW:
        return []
    rows = _suggestion_rows(session, payment)
    ids = {r.customer_id for r in rows if r.customer_id is not None}
    customers = {c.id: (c.external_id, c.name) for c in session.exec(
        select(Customer).where(Customer.id.in_(ids))).all()} if ids else {}
    return [suggestion_json(row.model_dump(), payment.currency,
                            customers.get(row.customer_id)) for row in rows]


def matched_because(session: Session, payment: Payment) -> list[str]:
    """The learned rules that made the engine apply this payment, as sentences."""
    details = payment.match_details or {}
    shown = [s.get("detail", "") for s in details.get("signals", [])
             if str(s.get("signal", "")).startswith("learned_") and s.get("weight", 0) > 0]
    return [text.removeprefix("matched because ") for text in shown if text]


def review_card_context(session: Session, payment: Payment) -> dict:
    """The frozen snapshot the `cashapp_review` card renders (blocks/cashapp.py)."""
    details = payment.match_details or {}
    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    values = {"amount_minor": payment.amount_minor, "currency": payment.currency,
              "payer_name": payment.payer_name, "reference": payment.reference,
              "external_id": payment.external_id, "received_at": payment.received_at,
              "source": payment.source}
    ctx = card_context(payment_card(values, payment.id, customer.name if customer else None),
                       payment.status, suggestions_of(session, payment),
                       details.get("decision"), current_round(session, payment.id) or 1)
    for key in ("returned", "return_requested"):  # (asked for, before returns were booked)
        if details.get(key):
            ctx[key] = details[key]
    return ctx


RETURN_REASON_MAX = 500  # as `Refund.reason` keeps it


def through_stripe(payment: Payment) -> bool:
    """Whether the payment's money came through Stripe (a card payment, or what a won
    chargeback gave back): it goes back through Stripe too, never from the bank. Its
    `charge.refunded` (`workflows.stripe_events`) books the refund, counting only Stripe's own
    refunds: a return booked here as well would give the same money back twice (the second
    time out of its invoices, which reopen and are dunned)."""
    return payment.source == "stripe" or (payment.external_id or "").startswith("stripe:")


def refuse_stripe_return(payment: Payment, *, actor: str) -> None:
    """A payment that came through Stripe is not returned here (`through_stripe`): refused,
    and the refusal audited (a PermissionDenied: recorded after the rollback)."""
    if through_stripe(payment) and not (payment.match_details or {}).get("returned"):
        raise PermissionDenied(
            f"Payment {payment.id} came through Stripe: refund it in the Stripe dashboard; the "
            "refund is booked here when Stripe tells us. Nothing was changed.",
            actor=actor, action="payment.return", entity_type="payment", entity_id=payment.id)


def check_return(session: Session, *, payment_id: int, actor: str, reason: str) -> Payment:
    """What `return_payment` would refuse, with reads only (the modal's ack)."""
    require_role(session, user_id=actor, roles=(Role.COLLECTOR,), action="payment.return",
                 entity_type="payment", entity_id=payment_id)
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    refuse_stripe_return(payment, actor=actor)
    if not (reason or "").strip():
        raise ValidationFailed.of("reason", "say why the money goes back (it is audited)")
    if len(reason.strip()) > RETURN_REASON_MAX:
        raise ValidationFailed.of("reason", f"at most {RETURN_REASON_MAX} characters")
    returned = (payment.match_details or {}).get("returned")
    if returned:
        raise AlreadyDecided("this payment was already refunded", decided_by=returned.get("by"),
                             status="refunded")
    if payment.unapplied_minor <= 0:
        paid = money.format_money(payment.amount_minor, payment.currency)
        raise Conflict(f"the payment of {paid} is applied to invoices; nothing is left to "
                       "give back")
    return payment


def return_payment(session: Session, *, payment_id: int, actor: str, reason: str,
                   now: datetime) -> Payment:
    """"Refund or return" on a payment nobody could place: what it still holds (its unapplied
    amount) goes back to whoever sent it, recorded in the books at once as a refund
    (`workflows.refunds`: the payment's `refunded_minor`, a `refunds` row keyed
    `return:<payment id>` so a payment is given back once, dated by today's business date),
    with the reason, audited; the card says who refunded it and when, and that the bank
    transfer back to the payer is still to be made. The collector's role is checked again.
    A payment that came through Stripe is refused (audited, `through_stripe`): it is refunded
    in Stripe, and booked when Stripe says so, once whatever the order."""
    check_return(session, payment_id=payment_id, actor=actor, reason=reason)
    payment = refunds.lock_payment(session, payment_id)
    check_return(session, payment_id=payment_id, actor=actor, reason=reason)  # as locked
    reason = reason.strip()
    amount = payment.unapplied_minor
    done = refunds.refund_payment(session, payment=payment, amount_minor=amount,
                                  external_id=f"return:{payment.id}",
                                  value_date=policy.business_date(session, now), actor=actor,
                                  reason=reason)
    if done is None:  # a refund of this payment's return exists (cannot be: checked above)
        raise AlreadyDecided("this payment was already refunded", status="refunded")
    details = dict(payment.match_details or {})
    details["returned"] = {"by": actor, "at": now.isoformat(), "reason": reason,
                           "amount_minor": amount}
    payment.match_details = details
    session.add(payment)
    audit.record(session, actor=actor, action="payment.returned", entity_type="payment",
                 entity_id=payment.id, to_state=payment.status, reason=reason,
                 amount_minor=amount, payer=payment.payer_name, at=now)
    session.flush()
    _update_card(session, payment, f"cashapp-return:{payment.id}")
    return payment


def _update_card(session: Session, payment: Payment, dedupe_key: str) -> None:
    target = card_of(session, payment.id)
    if target is not None:
        outbox.update_message(session, target_outbox_id=target, template="cashapp_review",
                              context=review_card_context(session, payment),
                              dedupe_key=dedupe_key)


def _claim(session: Session, payment: Payment, **values: object) -> bool:
    """Take a payment waiting for a person, untouched, for one decision (exactly once)."""
    table = Payment.__table__
    claimed = session.execute(
        sa.update(table)
        .where(table.c.id == payment.id, table.c.status.in_([str(s) for s in REVIEWABLE]),
               table.c.unapplied_minor == table.c.amount_minor)
        .values(**values))
    return claimed.rowcount == 1


def _already(session: Session, payment: Payment) -> AlreadyDecided:
    """Why a claim found the payment taken, as it is now: read again, since the decision that
    took it may have committed while this request waited for it (PostgreSQL)."""
    session.refresh(payment)
    details = payment.match_details or {}
    who = next((done["by"] for done in (details.get(key) for key in (  # (the latest first)
        "returned", "decision", "identified")) if done and done.get("by")), None)
    if details.get("returned"):
        return AlreadyDecided(f"This payment was already refunded{f' by {who}' if who else ''}"
                              "; nothing changed.", decided_by=who, status="refunded")
    return AlreadyDecided(
        f"This payment was already applied{f' by {who}' if who else ''}; nothing changed.",
        decided_by=who, status=payment.status)


# -- a person applies a suggestion ---------------------------------------------------------------
def apply_suggestion(session: Session, *, payment_id: int, rank: int, actor: str,
                     now: datetime, round_: int | None = None,
                     names: CustomerNames | None = None) -> Payment:
    """A collector (or admin) applies suggestion `rank` of a payment waiting for review.

    Exactly once: the payment is claimed with a conditional UPDATE on its status and
    unapplied amount, so a double click, a replayed request or a concurrent click by someone
    else finds it taken and changes nothing. What the person chose teaches the engine
    (`cash_rules.teach`). The card is updated in place. `round_` (from the button) refuses a
    click on suggestions that were since replaced."""
    require_role(session, user_id=actor, roles=(Role.COLLECTOR,), action="payment.apply",
                 entity_type="payment", entity_id=payment_id)
    payment = get_payment(session, payment_id)
    current = current_round(session, payment_id)
    if round_ is not None and current and round_ != current:
        raise Conflict("These suggestions were replaced (someone named the customer); "
                       "nothing changed. Use the updated card.")
    option = session.exec(select(PaymentSuggestion).where(
        PaymentSuggestion.payment_id == payment_id, PaymentSuggestion.round == current,
        PaymentSuggestion.rank == rank)).first()
    if option is None:
        raise NotFound(f"payment {payment_id} has no suggestion {rank}")
    shown = {s["rank"]: s for s in suggestions_of(session, payment)}
    if not _claim(session, payment, status=PaymentStatus.APPLIED):
        raise _already(session, payment)
    session.refresh(payment)
    lines = option.lines
    if option.fit != FIT_NONE:
        _still_fits(session, payment, lines)
    # a shortfall already flagged is not flagged twice (`deductions.being_worked`)
    worked = deductions.being_worked(session, [line["invoice_id"] for line in lines
                                               if line["deduction_minor"] > 0])
    lines = [{**line, "deduction_minor": 0} if line["invoice_id"] in worked else line
             for line in lines]
    _apply_lines(session, payment, lines, method=MANUAL, actor=actor)
    refresh_status(session, payment)
    customer_id = option.customer_id or _customer_of_lines(session, option.lines)
    learned = cash_rules.teach(session, payment=payment, customer_id=customer_id, actor=actor,
                               source="suggestion", now=now, names=names,
                               invoice_numbers=[line["number"] for line in option.lines]) \
        if customer_id else []
    invoices = (shown[rank]["invoices"] if rank in shown else
                [{"invoice": line["number"],
                  "amount": money.to_str(line["allocate_minor"], payment.currency)}
                 for line in option.lines])
    payment.match_details = {
        **(payment.match_details or {}), "outcome": "applied_manually",
        "write_off_minor": sum(a for line in option.lines for a, _ in line["write_offs"]),
        "deduction_minor": sum(line["deduction_minor"] for line in lines),
        "decision": {"by": actor, "at": now.isoformat(), "rank": rank, "invoices": invoices,
                     "status": payment.status,
                     "learned": [_learned_text(session, rule) for rule in learned]}}
    session.add(payment)
    audit.record(session, actor=actor, action="payment.applied", entity_type="payment",
                 entity_id=payment.id, from_state="needs_review", to_state=payment.status,
                 reason=f"suggestion {rank} applied", rank=rank,
                 invoices=[line["number"] for line in option.lines],
                 learned=[rule.id for rule in learned])
    session.flush()
    _update_card(session, payment, f"cashapp-applied:{payment.id}")
    session.flush()
    webhooks.payment_events(session, payment, created=False)
    return payment


def _still_fits(session: Session, payment: Payment, lines: list[dict]) -> None:
    """A suggestion was worked out on its invoices' balances then: each line's allocation,
    write-offs (bank fee, early-payment discount) and deduction add up to that balance. An
    invoice paid, credited or reopened since would get a fee, discount or deduction that no
    longer fits it (a deduction on an invoice the credit note closed, a "bank fee" on one left
    open): refused (`Conflict`), nothing applied. The invoices are locked as they are read,
    so nothing moves them before the allocation."""
    for line in sorted(lines, key=lambda line: line["invoice_id"]):  # (one lock order)
        try:
            invoice = lock_invoice(session, line["invoice_id"])
        except NoResultFound:
            raise Conflict(f"Invoice {line['number']} no longer exists.") from None
        worked_on = (line["allocate_minor"] + line["deduction_minor"]
                     + sum(amount for amount, _ in line["write_offs"]))
        if invoice.balance_minor != worked_on:
            raise Conflict(
                f"{invoice.number} now has "
                f"{money.format_money(invoice.balance_minor, payment.currency)} open, not the "
                f"{money.format_money(worked_on, payment.currency)} this suggestion was worked "
                "out on. Apply the payment to the invoices as they are now: "
                f"`/o2c payment {payment.id} apply <invoice> …`.")


def _customer_of_lines(session: Session, lines: list[dict]) -> int | None:
    owners = {session.get(Invoice, line["invoice_id"]).customer_id for line in lines}
    return owners.pop() if len(owners) == 1 else None


def _learned_text(session: Session, rule: object) -> str:
    customer = session.get(Customer, rule.customer_id)
    return cash_rules.describe(rule.kind, customer.name, rule.shown, rule.seen_on)


def _apply_lines(session: Session, payment: Payment, lines: list[dict], *, method: str,
                 actor: str) -> None:
    for line in lines:
        invoice = session.get(Invoice, line["invoice_id"])
        if invoice is None:
            raise OverallocationError(f"invoice {line['number']} no longer exists")
        if line["allocate_minor"] > 0:
            allocate(session, payment=payment, invoice=invoice,
                     amount_minor=line["allocate_minor"], method=method, actor=actor)
        for amount, reason in line["write_offs"]:
            write_off(session, invoice=invoice, amount_minor=amount, reason=reason,
                      actor=actor, payment=payment)
        if line["deduction_minor"] > 0:  # flagged, with a card in AR (workflows.deductions)
            deductions.flag(session, payment=payment, invoice=invoice,
                            amount_minor=line["deduction_minor"], actor=actor)
    session.flush()


# -- a person says whose an unidentified payment is ----------------------------------------------
def assign_customer(session: Session, *, payment_id: int, customer: str, actor: str,
                    now: datetime, names: CustomerNames | None = None) -> Payment:
    """A collector names the customer of a payment waiting for a person (unidentified, or with
    suggestions): the engine matches it again knowing the customer — applied if that settles
    it, else new suggestions for that customer, else kept as that customer's credit — and
    remembers how that customer paid. Exactly once (the payment is claimed)."""
    require_role(session, user_id=actor, roles=(Role.COLLECTOR,), action="payment.identify",
                 entity_type="payment", entity_id=payment_id)
    # locked, then read: a collector naming it at the same moment waits and sees this one's
    payment = refunds.lock_payment(session, payment_id)
    who = customer_by_external_id(session, customer)
    if who.currency != payment.currency:
        raise ValidationFailed.of("customer", f"{who.name} is billed in {who.currency}, "
                                  f"not {payment.currency}")
    named = (payment.match_details or {}).get("identified") or {}
    if named and payment.customer_id == who.id:  # (a second collector, a replay)
        raise AlreadyDecided(f"{named.get('by')} already said payment #{payment.id} is "
                             f"{who.name}'s; nothing changed. To apply it, pick its "
                             "invoices.", decided_by=named.get("by"), status="identified")
    if payment.customer_id is not None and payment.customer_id != who.id:
        raise Conflict(f"Payment #{payment.id} already belongs to another customer; correct "
                       "it by applying it to the right invoices.")
    before = payment.status
    if not _claim(session, payment, customer_id=who.id):
        raise _already(session, payment)
    session.refresh(payment)
    learned = cash_rules.teach(session, payment=payment, customer_id=who.id, actor=actor,
                               source="customer", now=now, names=names)
    run = CashRun(session, actor=actor, source=payment.source, names=names)
    run.rematch(payment, customer=who, round_=current_round(session, payment.id) + 1)
    session.refresh(payment)
    payment.match_details = {**(payment.match_details or {}), "identified": {
        "by": actor, "at": now.isoformat(), "customer": who.external_id,
        "customer_name": who.name,
        "learned": [_learned_text(session, rule) for rule in learned]}}
    session.add(payment)
    audit.record(session, actor=actor, action="payment.identified", entity_type="payment",
                 entity_id=payment.id, from_state=before, to_state=payment.status,
                 reason=f"the customer is {who.external_id}", at=now, customer=who.external_id,
                 learned=[rule.id for rule in learned])
    session.flush()
    webhooks.payment_events(session, payment, created=False)
    return payment


# -- a person corrects an application ------------------------------------------------------------
def correct_application(session: Session, *, payment_id: int, invoices: list[str],
                        actor: str, now: datetime,
                        names: CustomerNames | None = None) -> Payment:
    """A collector applies a payment to the invoices they name instead of what it was applied
    to (by the engine or a person): every allocation, write-off and deduction of the payment
    is reversed (audited, invoice balances restored), the payment is applied to `invoices` in
    that order — a bank fee or early-payment discount written off where the engine would
    write it off (`correction_lines`) — learned rules that led to the first application are
    retired, and the engine learns how this customer paid. A payment nobody applied yet is
    simply applied. A correction that would leave the payment where it is (the same
    invoices, amounts and write-offs) is refused: nothing to correct, nothing changed.

    The payment, then every invoice the correction touches (those it is on, those named), are
    locked in id order first: two corrections crossing each other's invoices wait, not
    deadlock, and the balances the new application is worked out on cannot move."""
    require_role(session, user_id=actor, roles=(Role.COLLECTOR,), action="payment.correct",
                 entity_type="payment", entity_id=payment_id)
    payment = refunds.lock_payment(session, payment_id)
    # an invoice this payment paid may be named again (a second pick on the card keeps the
    # first): whether each is open is checked as it is once the payment is taken off it
    targets = _manual_targets(session, invoices, payment.currency, None, open_only=False)
    owners = {t.customer_id for t in targets}
    if len(owners) != 1:
        raise ValidationFailed.of("apply_to", "name invoices of one customer")
    current = _settlements_of(session, payment.id)
    locked = lock_invoices(session, [*current, *(t.id for t in targets)])
    targets = [locked[t.id] for t in targets]
    restored = {t.id: t.balance_minor + current.get(t.id, (0, ()))[0]
                + sum(amount for amount, _ in current.get(t.id, (0, ()))[1]) for t in targets}
    for target in targets:
        if restored[target.id] == 0:
            raise ValidationFailed.of("apply_to", f"{target.number} is already paid")
    lines = correction_lines(session, payment, targets, restored)
    planned = {line["invoice_id"]: (line["allocate_minor"], tuple(sorted(
        (amount, reason) for amount, reason in line["write_offs"]))) for line in lines}
    if planned and planned == current:
        raise Conflict(f"Payment #{payment.id} is already applied that way "
                       f"({_settlement_text(payment, lines)}); nothing changed.")
    before = [(inv.number, a.amount_minor) for a, inv in payment_allocations(session,
                                                                             payment.id)]
    _reverse(session, payment, actor=actor, now=now)
    customer_id = owners.pop()
    payment.customer_id = customer_id
    old = payment.match_details or {}
    retired = cash_rules.retire_used(session, rule_ids=old.get("learned", []),
                                     payment=payment, actor=actor, now=now,
                                     customer_id=customer_id)
    _apply_lines(session, payment, lines, method=MANUAL, actor=actor)
    refresh_status(session, payment)
    learned = cash_rules.teach(session, payment=payment, customer_id=customer_id, actor=actor,
                               source="correction", now=now, names=names,
                               invoice_numbers=[t.number for t in targets])
    after = [(inv.number, a.amount_minor) for a, inv in payment_allocations(session,
                                                                            payment.id)]
    invoices_after = [{"invoice": n, "amount": money.to_str(a, payment.currency)}
                      for n, a in after]
    written = [[line["number"], amount, reason] for line in lines
               for amount, reason in line["write_offs"]]
    # who said whose the payment is, only while it still is theirs (the audit keeps it): a
    # correction onto another customer's invoices makes the payment that customer's
    owner = session.get(Customer, customer_id).external_id
    stale = {"learned"} | ({"identified"} if (old.get("identified") or {}).get("customer")
                           not in (None, owner) else set())
    payment.match_details = {
        **{k: val for k, val in old.items() if k not in stale}, "outcome": "corrected",
        "write_off_minor": sum(amount for _, amount, _ in written),
        "deduction_minor": sum(line["deduction_minor"] for line in lines),
        "decision": {"by": actor, "at": now.isoformat(), "rank": None, "corrected": True,
                     "invoices": invoices_after, "status": payment.status,
                     "learned": [_learned_text(session, rule) for rule in learned]}}
    session.add(payment)
    audit.record(session, actor=actor, action="payment.corrected", entity_type="payment",
                 entity_id=payment.id, to_state=payment.status, at=now,
                 reason="applied to other invoices by a person",
                 before=[[n, a] for n, a in before], after=[[n, a] for n, a in after],
                 written_off=written, retired=[r.id for r in retired],
                 learned=[r.id for r in learned])
    session.flush()
    _update_card(session, payment, f"cashapp-corrected:{payment.id}:{len(before)}:"
                 f"{now.isoformat()}")
    session.flush()
    webhooks.payment_events(session, payment, created=False)
    return payment


def _settlements_of(session: Session,
                    payment_id: int) -> dict[int, tuple[int, tuple[tuple[int, str], ...]]]:
    """What the payment has settled on each invoice: invoice id -> (allocated, its write-offs
    as sorted (amount, reason) pairs)."""
    allocated: dict[int, int] = {}
    for allocation, invoice in payment_allocations(session, payment_id):
        allocated[invoice.id] = allocated.get(invoice.id, 0) + allocation.amount_minor
    written: dict[int, list[tuple[int, str]]] = {}
    for row in session.exec(select(WriteOff).where(WriteOff.payment_id == payment_id)):
        written.setdefault(row.invoice_id, []).append((row.amount_minor, row.reason))
    return {invoice_id: (allocated.get(invoice_id, 0), tuple(sorted(written.get(invoice_id, []))))
            for invoice_id in {*allocated, *written}}


def correction_lines(session: Session, payment: Payment, targets: list[Invoice],
                     balances: dict[int, int]) -> list[dict]:
    """How a person's correction applies the payment to `targets` (in that order), each open
    for `balances[id]` once the payment is taken off it, by the engine's own rule for a
    payment naming its invoices (`matching.settle` with a reference, the policy's bank-fee
    tolerance): exactly, after their early-payment discounts or short by a bank fee within
    tolerance (the fee or discount written off); short by more, applied in order and the
    invoice left short flagged as a deduction, unless one is being worked on it already
    (SPEC: a larger short payment is applied partially and flagged as a deduction, so the
    shortfall is worked, not forgotten); more than they have open, the rest left as
    unapplied credit. Rows as `_apply_lines` takes
    them."""
    items = [matching.OpenItem(t.id, t.number, t.customer_id, t.currency, balances[t.id],
                               t.total_minor, t.issue_date, t.payment_terms or "", None,
                               t.order_id) for t in targets]
    amount = payment.amount_minor - (payment.refunded_minor or 0)
    _, lines, _ = matching.settle(items, amount, facts_of(payment).received_on,
                                  rules_for(session), allow_partial=True)
    rows = line_rows(lines)
    # a shortfall already flagged (another payment's deduction still being worked) is not
    # flagged twice: this payment pays part of what that deduction is about
    worked = deductions.being_worked(session, [t.id for t in targets], payment_id=payment.id)
    for row in rows:
        if row["invoice_id"] in worked:
            row["deduction_minor"] = 0
    return rows


def _settlement_text(payment: Payment, lines: list[dict]) -> str:
    """ "USD 987.50 to INV-2026-000101, USD 12.50 written off as bank fee" """
    parts = []
    for line in lines:
        if line["allocate_minor"]:
            parts.append(f"{money.format_money(line['allocate_minor'], payment.currency)} to "
                         f"{line['number']}")
        parts += [f"{money.format_money(amount, payment.currency)} written off as "
                  f"{reason.replace('_', ' ')}" for amount, reason in line["write_offs"]]
    return ", ".join(parts)


_RESTORE = (sa.update(Invoice.__table__)
            .where(Invoice.__table__.c.id == sa.bindparam("invoice"))
            .values(balance_minor=Invoice.__table__.c.balance_minor + sa.bindparam("amount"),
                    paid_at=None)
            .returning(Invoice.__table__.c.balance_minor))


def _reverse(session: Session, payment: Payment, *, actor: str, now: datetime) -> None:
    """Undo every allocation and write-off of the payment (audited, and kept as
    `ReversedSettlement` rows: a report as known before now still counts them); its
    deductions, still open, are resolved as "reversed" (their cards say so). Each invoice it
    reopens is as a balance change makes it: what is in dispute follows the balance, a
    pay-now session for the old balance is expired (`payment_links`)."""
    from workflows import credit_notes, customer_credit, disputes, payment_links

    if payment.refunded_minor:
        how = "refunded" if payment.refunded_minor >= payment.amount_minor else "partly refunded"
        raise Conflict(f"Payment #{payment.id} was {how}; correct it in your ERP. "
                       "Nothing changed.")
    allocations = payment_allocations(session, payment.id)
    write_offs = list(session.exec(select(WriteOff).where(
        WriteOff.payment_id == payment.id)).all())
    short = list(session.exec(select(Deduction).where(
        Deduction.payment_id == payment.id)).all())
    if any(d.status != DeductionStatus.OPEN for d in short):
        raise Conflict("A deduction of this payment is being dealt with or was resolved; "
                       "nothing changed.")
    # a closed month never changes (`workflows.periods`): what it counted stays
    lock = periods.lock_date(session)
    closed = sorted(day for day in (*(a.effective_date for a, _ in allocations),
                                    *(w.effective_date for w in write_offs))
                    if lock is not None and day <= lock)
    if closed:
        raise Conflict(f"Payment #{payment.id} was applied in a closed period (booked on "
                       f"{closed[0].isoformat()}; closed through {periods.period_of(lock)}), "
                       "so it cannot be undone here; correct it with a credit note or in the "
                       "next period. Nothing changed.")
    # a credit note on a paid invoice made part of the money customer credit (money we owe
    # back, `workflows.credit_notes`): taking the money off the invoice would leave that credit
    # standing on money nobody paid
    # customer credit applied to another invoice moved this payment's money there (its
    # allocations of method customer_credit, `workflows.customer_credit`): undoing them here
    # would give that credit a second time on money taken off the credited invoice
    if any(a.method == customer_credit.METHOD for a, _ in allocations):
        raise Conflict(f"Customer credit of a credit note was applied with "
                       f"payment #{payment.id}'s money; correct it in your ERP. "
                       "Nothing changed.")
    mine: dict[int, int] = {}
    for allocation, invoice in allocations:
        mine[invoice.id] = mine.get(invoice.id, 0) + allocation.amount_minor
    for invoice_id, amount in mine.items():
        credit = credit_notes.customer_credit_of(session, invoice_id)
        if credit and credit > credit_notes.paid_total(session, invoice_id) - amount:
            invoice = session.get(Invoice, invoice_id)
            raise Conflict(f"A credit note on {invoice.number} gave "
                           f"{money.format_money(credit, invoice.currency)} of this payment "
                           "back as customer credit; correct it in your ERP. Nothing changed.")
    touched = {inv.id for _, inv in allocations} | {w.invoice_id for w in write_offs}
    for invoice_id in touched:
        invoice = session.get(Invoice, invoice_id)
        if invoice.order_id is not None and invoice.balance_minor == 0:
            order = session.get(Order, invoice.order_id)
            if order.status in (OrderStatus.PAID, OrderStatus.CLOSED):
                raise Conflict(f"{invoice.number} settled order {order.number}, which is "
                               f"{order.status}; correct it in your ERP. Nothing changed.")
    # what is taken back is kept, for the reports as the books knew them before (`?known_at=`)
    session.add_all([
        *(ReversedSettlement(kind=ReversedKind.ALLOCATION, invoice_id=a.invoice_id,
                             payment_id=payment.id, amount_minor=a.amount_minor,
                             method=a.method, effective_date=a.effective_date,
                             created_at=a.created_at)
          for a, _ in allocations),
        *(ReversedSettlement(kind=ReversedKind.WRITE_OFF, invoice_id=w.invoice_id,
                             payment_id=payment.id, amount_minor=w.amount_minor,
                             reason=w.reason, effective_date=w.effective_date,
                             created_at=w.created_at)
          for w in write_offs)])
    conn = session.connection()
    for allocation, invoice in allocations:
        conn.execute(_RESTORE, {"invoice": invoice.id, "amount": allocation.amount_minor})
        audit.record(session, actor=actor, action="payment.allocation_reversed",
                     entity_type="payment", entity_id=payment.id, invoice=invoice.number,
                     amount_minor=allocation.amount_minor, method=allocation.method)
        session.delete(allocation)
    for row in write_offs:
        conn.execute(_RESTORE, {"invoice": row.invoice_id, "amount": row.amount_minor})
        audit.record(session, actor=actor, action="invoice.write_off_reversed",
                     entity_type="invoice", entity_id=row.invoice_id,
                     amount_minor=row.amount_minor, reason=row.reason, payment_id=payment.id)
        session.delete(row)
    for row in short:
        audit.record(session, actor=actor, action="payment.deduction_reversed",
                     entity_type="invoice", entity_id=row.invoice_id,
                     amount_minor=row.amount_minor, payment_id=payment.id,
                     deduction_id=row.id)
        deductions.reverse(session, row.id, by=actor, now=now)  # (Conflict if taken since)
    session.flush()
    for invoice_id in sorted(touched):
        obj = session.get(Invoice, invoice_id)
        session.refresh(obj)
        disputes.refresh_invoice(session, obj)
        payment_links.balance_changed(session, obj)
        exposure.moved(session, obj.customer_id)
    conn.execute(sa.update(_PAYMENTS).where(_PAYMENTS.c.id == payment.id)
                 .values(unapplied_minor=_PAYMENTS.c.amount_minor))
    session.expire(payment, ["unapplied_minor"])
    session.refresh(payment)


def refresh_status(session: Session, payment: Payment) -> None:
    """Payment status derived from amounts: applied / partially_applied / unapplied."""
    if payment.unapplied_minor == 0:
        payment.status = PaymentStatus.APPLIED
    elif payment.unapplied_minor < payment.amount_minor:
        payment.status = PaymentStatus.PARTIALLY_APPLIED
    elif payment.status != PaymentStatus.NEEDS_REVIEW:
        payment.status = PaymentStatus.UNAPPLIED
    session.add(payment)


def allocate(session: Session, *, payment: Payment, invoice: Invoice, amount_minor: int,
             method: str, actor: str) -> Allocation:
    """Move `amount_minor` of a payment onto an invoice; never more than either has open."""
    if amount_minor <= 0:
        raise ValidationFailed.of("amount", "must be greater than zero")
    if invoice.currency != payment.currency:
        raise ValidationFailed.of("currency", f"payment is {payment.currency}, invoice "
                                  f"{invoice.number} is {invoice.currency}")
    left = session.connection().execute(_TAKE_FROM_PAYMENT, {
        "payment": payment.id, "amount": amount_minor}).first()
    if left is None:
        raise OverallocationError(f"payment {payment.id} has less than "
                                  f"{money.format_money(amount_minor, payment.currency)} left")
    reduce_balance(session, invoice, amount_minor, settled_at=payment.received_at)
    # the database's value after the conditional UPDATE (RETURNING saves a re-read)
    set_committed_value(payment, "unapplied_minor", left[0])
    booked = periods.booking(session, payment.value_date, not_before=invoice.issue_date)
    allocation = Allocation(payment_id=payment.id, invoice_id=invoice.id,
                            amount_minor=amount_minor, method=method, created_by=actor,
                            value_date=booked.value_date, effective_date=booked.effective_date)
    session.add(allocation)
    if payment.customer_id is None:
        payment.customer_id = invoice.customer_id
        session.add(payment)
    audit.record(session, actor=actor, action="payment.allocated", entity_type="payment",
                 entity_id=payment.id, invoice=invoice.number, amount_minor=amount_minor,
                 method=method, reason=booked.note, **booked.as_dict())
    return allocation


def write_off(session: Session, *, invoice: Invoice, amount_minor: int, reason: str,
              actor: str, payment: Payment | None = None, now: datetime | None = None,
              effective_date: date | None = None) -> WriteOff:
    """Write off part of an invoice's balance (bank fee, early-payment discount, bad debt).

    One that is part of a payment (fee, discount) is dated by the payment's value date and
    settles when the payment was received; one of our own (bad debt) is dated by its
    `effective_date` (default: the business date of `now`, when it is recorded), which may
    neither precede the invoice's issue date nor lie after today, and settles then (see
    `invoicing.reduce_balance`)."""
    if payment is None and now is None:
        raise TypeError("a write-off without a payment needs `now` (when it is recorded)")
    today = policy.business_date(session, now) if now is not None else None
    if payment is not None:
        value, settled_at = payment.value_date, payment.received_at
    else:
        value = effective_date or today
        if value < invoice.issue_date:
            raise ValidationFailed.of("effective_date", f"{value.isoformat()} is before "
                                      f"{invoice.number} was issued "
                                      f"({invoice.issue_date.isoformat()})")
        if value > today:
            raise ValidationFailed.of("effective_date", f"{value.isoformat()} is in the future "
                                      f"(today is {today.isoformat()})")
        settled_at = write_off_settled_at(now, value)
    reduce_balance(session, invoice, amount_minor, settled_at=settled_at)
    booked = periods.booking(session, value, not_before=invoice.issue_date)
    row = WriteOff(invoice_id=invoice.id, payment_id=payment.id if payment else None,
                   amount_minor=amount_minor, reason=reason, created_by=actor,
                   **({"created_at": now} if now else {}), value_date=booked.value_date,
                   effective_date=booked.effective_date)
    session.add(row)
    session.flush()
    audit.write_off(session, actor=actor, invoice_id=invoice.id, amount_minor=amount_minor,
                    currency=invoice.currency, reason=reason,
                    payment_id=payment.id if payment else None, booking=booked)
    return row

