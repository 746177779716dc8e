"""Cash application: record incoming payments and apply them to open invoices.

Every payment — REST API, CSV import, bank statement, the `/o2c pay` modal — goes through
`record_payment`, which runs the matching engine (`workflows.matching`, fed by
`workflows.cash_candidates`) and then one of the outcomes of SPEC §3:

* confident (>= `cashapp_confidence`): the plan is applied — full match; bank fee within
  tolerance written off (`bank_fee`) so the invoice closes; early-payment discount written off
  (`early_payment_discount`); a larger short payment applied and flagged as a `Deduction`; an
  overpayment applied with the rest kept as unapplied credit;
* not confident: nothing is applied, the payment is `needs_review`, its top candidates are
  stored in `match_details` and a suggestion card with one-click Apply buttons goes to the AR
  channel (`apply_suggestion` applies one, exactly once, for a collector or admin);
* no candidate at all: `unapplied`, and the AR channel is told.

The primitives — `allocate`, `write_off` — keep the AR invariants (`workflows.invariants`)
under concurrency: balances move by conditional UPDATEs only. Each settlement is dated by
when the money moved, not when it was recorded (`models.invoices` docstring): an allocation
and a fee or discount write-off by the payment's `value_date` (the bank statement's value
date, else the date of `received_at` as its sender stated it, see `value_date_of`), a
bad-debt write-off by its effective date; a date in a closed month is booked in the first
open month (`workflows.periods`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from models import (
    Allocation,
    Customer,
    Invoice,
    Payment,
    PaymentStatus,
    Role,
    WriteOff,
    money,
)
from workflows import audit, deductions, matching, outbox, periods, policy, webhooks
from workflows import policy as policies
from workflows import validation as v
from workflows.cash_candidates import gather
from workflows.errors import (
    AlreadyDecided,
    Conflict,
    FieldError,
    NotFound,
    OverallocationError,
    ValidationFailed,
)
from workflows.inputs import PaymentIn
from workflows.invoicing import reduce_balance, write_off_settled_at
from workflows.masterdata import customer_by_external_id
from workflows.users import require_role

ENGINE = "cashapp-1"
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


def record_payment(session: Session, data: PaymentIn, *, actor: str, source: str = "api",
                   apply_to: list[str] | None = None) -> tuple[Payment, bool]:
    """Store a payment (or return the one already stored under its external_id) and apply it.

    Re-sending the same payment (same `external_id`, amount, currency and `received_at`)
    changes nothing and returns the first one. The same `external_id` with another amount,
    currency or receipt time is another payment claiming the first one's identity: `Conflict`
    naming the fields that differ (the payer name, reference, customer and method only describe
    a payment, so a re-send that differs there still gets the first payment). `apply_to`
    (invoice numbers, from a person in the payment modal) skips the engine: the payment is
    applied to those invoices in that order, as a manual choice. Returns (payment, created)."""
    currency = v.currency("currency", data.currency)
    amount = v.amount_minor("amount", data.amount, currency, positive=True)
    if data.received_at.tzinfo is None:
        raise ValidationFailed.of("received_at", "needs a time zone, e.g. 2026-11-23T10:00:00Z")
    v.in_years("received_at", data.received_at)  # before it is converted to UTC
    for name in ("payer_name", "reference", "customer", "method", "external_id"):
        v.text(name, getattr(data, name))
    existing = _by_external_id(session, data.external_id)
    if existing is not None:
        return _same_payment(existing, amount, currency, data.received_at), False
    customer: Customer | None = None
    if data.customer:
        customer = customer_by_external_id(session, data.customer)
        if customer.currency != currency:
            raise ValidationFailed.of("currency", f"{customer.name} is billed in "
                                      f"{customer.currency}, not {currency}")
    targets = _manual_targets(session, apply_to, currency, customer) if apply_to else None
    payment = Payment(external_id=data.external_id or None,
                      customer_id=customer.id if customer else None, amount_minor=amount,
                      currency=currency, received_at=data.received_at,
                      value_date=data.value_date or value_date_of(data.received_at),
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
        return _same_payment(existing, amount, currency, data.received_at), False
    audit.record(session, actor=actor, action="payment.received", entity_type="payment",
                 entity_id=payment.id, amount_minor=amount, currency=currency,
                 external_id=payment.external_id, source=source)
    if targets is not None:
        _apply_manually(session, payment, targets, actor=actor)
    else:
        apply_payment(session, payment, actor=actor)
    webhooks.payment_events(session, payment, created=True)
    return payment, True


def value_date_of(received_at: datetime) -> date:
    """The calendar day a payment was received on, as its sender stated it: the date of
    `received_at` in the offset it came with. An ERP that sends 2026-06-15T00:00:00+02:00, a
    CSV's 2026-06-15 (midnight UTC) and the payment modal's noon in the collector's zone all
    mean 15 June; converting to UTC or to our own zone first would move some of them a day."""
    return received_at.date()


def _same_payment(existing: Payment, amount_minor: int, currency: str,
                  received_at: datetime) -> Payment:
    """The payment already stored under an external_id, if the re-sent one is the same money
    (amount, currency, time received); else Conflict naming each field that differs."""
    differ = []
    if money.from_minor(existing.amount_minor, existing.currency) != \
            money.from_minor(amount_minor, currency):
        differ.append(FieldError("amount", f"recorded as "
                                 f"{money.to_str(existing.amount_minor, existing.currency)}, "
                                 f"this one says {money.to_str(amount_minor, currency)}"))
    if existing.currency != currency:
        differ.append(FieldError("currency", f"recorded in {existing.currency}, this one says "
                                 f"{currency}"))
    if existing.received_at != received_at:
        differ.append(FieldError("received_at", "recorded as received at "
                                 f"{existing.received_at.astimezone(UTC).isoformat()}, this "
                                 f"one says {received_at.astimezone(UTC).isoformat()}"))
    if differ:
        raise Conflict(f"payment {existing.external_id} was already recorded (#{existing.id}) "
                       f"with another {', '.join(e.field for e in differ)}; nothing was "
                       "changed. A different payment needs its own external_id.",
                       errors=differ)
    return existing


def _manual_targets(session: Session, numbers: list[str], currency: str,
                    customer: Customer | None) -> list[Invoice]:
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
        if invoice.balance_minor == 0:
            raise ValidationFailed.of("apply_to", f"{number} is already paid")
        invoices.append(invoice)
    return invoices


def _apply_manually(session: Session, payment: Payment, invoices: list[Invoice], *,
                    actor: str) -> None:
    for invoice in invoices:
        if payment.unapplied_minor == 0:
            break
        allocate(session, payment=payment, invoice=invoice,
                 amount_minor=min(payment.unapplied_minor, invoice.balance_minor),
                 method=MANUAL, actor=actor)
    payment.match_details = {"engine": ENGINE, "outcome": "manual", "write_off_minor": 0,
                             "suggestions": []}
    refresh_status(session, payment)


# -- the `/o2c pay` modal ------------------------------------------------------------------------
def record_from_slack(session: Session, data: PaymentIn, *, user_id: str,
                      apply_to: list[str] | None = None) -> tuple[Payment, bool]:
    """A payment a collector (or admin) typed into the `/o2c pay` modal: the role is checked,
    the payment is recorded like every other one (source "slack"), and the DM telling them
    what became of it (`payment_recorded`) is written in the same transaction. A double
    submission (the same view, so the same external_id) records and tells once."""
    require_role(session, user_id=user_id, roles=(Role.COLLECTOR,), action="payment.record",
                 entity_type="command", entity_id="pay")
    payment, created = record_payment(session, data, actor=user_id, source="slack",
                                      apply_to=apply_to or None)
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
                            for a, invoice in payment_allocations(session, payment.id)]}


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


# -- the engine's outcome ------------------------------------------------------------------------
def rules_for(session: Session) -> matching.Rules:
    """The policy's matching rules, read once per transaction (a statement import of
    thousands of lines asks once; a policy change applies to the next transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get("cashapp.rules")
    if cached is not None and cached[0] is transaction:
        return cached[1]
    current = policies.current(session)
    rules = matching.Rules(threshold=current.cashapp_confidence,
                           fee_bp=money.pct_to_bp(current.bank_fee_pct),
                           fee_max=current.bank_fee_max)
    session.info["cashapp.rules"] = (transaction, rules)
    return rules


def facts_of(payment: Payment) -> matching.PaymentFacts:
    return matching.PaymentFacts(
        amount_minor=payment.amount_minor, currency=payment.currency,
        received_on=payment.received_at.astimezone(UTC).date(),
        payer_name=payment.payer_name, reference=payment.reference,
        customer_id=payment.customer_id)


def match_payment(session: Session, payment: Payment) -> tuple[matching.MatchResult,
                                                                matching.Evidence]:
    """Run the engine for a stored payment (reads only)."""
    facts = facts_of(payment)
    rules = rules_for(session)
    evidence = gather(session, facts, rules)
    return matching.evaluate(facts, evidence, rules), evidence


def guard(session: Session) -> AbstractContextManager:
    """A savepoint where a concurrent writer could interfere, so a clash undoes only the step.

    SQLite write transactions start with BEGIN IMMEDIATE (`bot.db`): writers are serialised,
    nothing can change between our read and our write, and the savepoint would only cost two
    statements per payment. PostgreSQL runs READ COMMITTED: there it is needed."""
    if session.get_bind().dialect.name == "sqlite":
        return nullcontext()
    return session.begin_nested()


def apply_payment(session: Session, payment: Payment, *, actor: str) -> None:
    """Match the payment and apply the outcome (see the module docstring)."""
    result, evidence = match_payment(session, payment)
    best = result.best
    confidence = best.confidence_bp if best else None
    if result.auto:
        try:
            # one flush at the end instead of one before every conditional UPDATE
            with guard(session), session.no_autoflush:
                _apply_lines(session, payment, _lines_of(best), method=best.method,
                             actor=actor, flush=False)
                payment.confidence_bp = confidence
                payment.match_details = {
                    "engine": ENGINE, "outcome": "applied", "kind": best.kind,
                    "fit": best.fit, "signals": [s.as_dict() for s in best.signals],
                    "write_off_minor": best.write_off_minor,
                    "deduction_minor": best.deduction_minor, "suggestions": []}
                refresh_status(session, payment)
                audit.record(session, actor=actor, action="payment.matched",
                             entity_type="payment", entity_id=payment.id,
                             to_state=payment.status, method=best.method, fit=best.fit,
                             confidence_bp=confidence)
                session.flush()
            return
        except OverallocationError:  # an invoice moved under us: let a person look
            session.refresh(payment)
    payment.confidence_bp = confidence
    _send_to_review(session, payment, result, evidence)


def _lines_of(plan: matching.Plan) -> list[dict]:
    return [{"invoice_id": line.item.id, "number": line.item.number,
             "allocate_minor": line.allocate_minor,
             "write_offs": [[amount, reason] for amount, reason in line.write_offs],
             "deduction_minor": line.deduction_minor} for line in plan.lines]


def _apply_lines(session: Session, payment: Payment, lines: list[dict], *, method: str,
                 actor: str, flush: bool = True) -> None:
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
    if flush:
        session.flush()


def _money(minor: int, currency: str) -> str:
    return money.to_str(minor, currency)


def _send_to_review(session: Session, payment: Payment, result: matching.MatchResult,
                    evidence: matching.Evidence) -> None:
    cur = payment.currency
    suggestions, options = [], []
    for rank, plan in enumerate(result.suggestions, start=1):
        customer = evidence.customers.get(plan.customer_id)
        suggestions.append({
            "rank": rank, "customer": customer.external_id if customer else None,
            "customer_name": customer.name if customer else None,
            "confidence": plan.confidence_text, "fit": plan.fit,
            "invoices": [{"invoice": line.item.number,
                          "amount": _money(line.allocate_minor, cur)} for line in plan.lines],
            "write_off": _money(plan.write_off_minor, cur),
            "unapplied_amount": _money(plan.unapplied_minor, cur),
            "reasons": [s.detail for s in plan.signals if s.detail and s.weight > 0],
            "concerns": [s.detail for s in plan.signals if s.detail and s.weight < 0]})
        options.append({"rank": rank, "customer_id": plan.customer_id, "kind": plan.kind,
                        "fit": plan.fit, "lines": _lines_of(plan),
                        "signals": [s.as_dict() for s in plan.signals]})
    payment.status = PaymentStatus.NEEDS_REVIEW if suggestions else PaymentStatus.UNAPPLIED
    details = {"engine": ENGINE, "outcome": "review" if suggestions else "unmatched",
               "write_off_minor": 0, "suggestions": suggestions, "options": options}
    payment.match_details = details
    session.add(payment)
    session.flush()
    card = outbox.post_to_channel(session, channel="ar", template="cashapp_review",
                                  context=review_card_context(payment),
                                  dedupe_key=f"cashapp-review:{payment.id}")
    payment.match_details = {**details, "card_outbox_id": card.id}
    session.add(payment)
    audit.record(session, actor="system", action="payment.review", entity_type="payment",
                 entity_id=payment.id, to_state=payment.status,
                 confidence_bp=payment.confidence_bp, suggestions=len(suggestions))


def review_card_context(payment: Payment, customer_name: str | None = None) -> dict:
    """The frozen snapshot the `cashapp_review` card renders (blocks/cashapp.py)."""
    details = payment.match_details or {}
    return {
        "payment": {"id": payment.id, "amount_minor": payment.amount_minor,
                    "currency": payment.currency, "payer_name": payment.payer_name,
                    "reference": payment.reference, "external_id": payment.external_id,
                    "received_at": payment.received_at.isoformat(), "source": payment.source,
                    "customer_name": customer_name},
        "status": payment.status,
        "suggestions": details.get("suggestions", []),
        "decision": details.get("decision"),
    }


# -- a person applies a suggestion ---------------------------------------------------------------
def apply_suggestion(session: Session, *, payment_id: int, rank: int, actor: str,
                     now: datetime) -> Payment:
    """A collector (or admin) applies suggestion `rank` of a payment waiting for review.

    Exactly once: the payment is claimed with a conditional UPDATE on its status and
    unapplied amount, so a double click, a replayed request or a concurrent click by someone
    else finds it taken and changes nothing. The card is updated in place."""
    require_role(session, user_id=actor, roles=(Role.COLLECTOR,), action="payment.apply",
                 entity_type="payment", entity_id=payment_id)
    payment = get_payment(session, payment_id)
    details = dict(payment.match_details or {})
    option = next((o for o in details.get("options", []) if o.get("rank") == rank), None)
    if option is None:
        raise NotFound(f"payment {payment_id} has no suggestion {rank}")
    table = Payment.__table__
    claimed = session.execute(
        sa.update(table)
        .where(table.c.id == payment.id, table.c.status.in_([str(s) for s in REVIEWABLE]),
               table.c.unapplied_minor == table.c.amount_minor)
        .values(status=PaymentStatus.APPLIED))
    if claimed.rowcount != 1:
        decision = details.get("decision") or {}
        who = decision.get("by")
        raise AlreadyDecided(
            f"This payment was already applied{f' by {who}' if who else ''}; nothing changed.",
            decided_by=who, status=payment.status)
    session.refresh(payment)
    _apply_lines(session, payment, option["lines"], method=MANUAL, actor=actor)
    refresh_status(session, payment)
    suggestion = next(s for s in details["suggestions"] if s["rank"] == rank)
    details.update(
        outcome="applied_manually", suggestions=[],  # answered; `options` keeps what was offered
        write_off_minor=sum(a for line in option["lines"] for a, _ in line["write_offs"]),
        deduction_minor=sum(line["deduction_minor"] for line in option["lines"]),
        decision={"by": actor, "at": now.isoformat(), "rank": rank,
                  "invoices": suggestion["invoices"], "status": payment.status})
    payment.match_details = details
    session.add(payment)
    audit.record(session, actor=actor, action="payment.applied", entity_type="payment",
                 entity_id=payment.id, from_state="needs_review", to_state=payment.status,
                 reason=f"suggestion {rank} applied", rank=rank,
                 invoices=[line["number"] for line in option["lines"]])
    if details.get("card_outbox_id"):
        outbox.update_message(session, target_outbox_id=details["card_outbox_id"],
                              template="cashapp_review",
                              context=review_card_context(payment),
                              dedupe_key=f"cashapp-applied:{payment.id}")
    session.flush()
    webhooks.payment_events(session, payment, created=False)
    return payment


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
