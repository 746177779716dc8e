"""Dunning: reminders by days relative to the due date (SPEC §3), each (invoice, level) once.

Levels come from `policy.dunning_offsets` (default −3, +1, +7, +14, +30) and each gets a kind
by its position, so a changed list keeps its meaning:

* every negative offset — `friendly`: a "due soon" e-mail to the customer;
* the first positive offset — `reminder`: an "overdue" e-mail to the customer, and the
  real-time *overdue notice* in Slack to the sales rep and the collector;
* the last positive offset — `final`: the final notice e-mail, and the customer goes on credit
  hold (audited as a decision, actor "system"; `credit_hold.change_hold`, a conditional UPDATE,
  so two processes dunning different invoices of one customer hold and audit it once);
* the positive offset before the last — `escalation`: the sales rep (and the collector) are
  asked in Slack to step in; the customer gets no e-mail at this level;
* any other positive offset — `firm`: a firmer e-mail to the customer.

Exactly once: a `DunningNotice` row (UNIQUE invoice_id, level) is inserted in the same
transaction as the outbox rows it causes (whose dedupe keys are unique too). A second run, a
restart, or another server process running the same job hits the constraint and sends nothing.

Catching up: a run looks only at the *latest* level each invoice has reached. An invoice first
seen at +20 days gets the +14 escalation only — not −3, +1, +7 and +14 in one burst — and one
first seen at +40 gets the final notice. A level is sent only if no notice of that level or a
later one exists for the invoice. Paid (balance 0) invoices are skipped, and so are those whose
whole balance is held in dispute (`workflows.disputes`); a partly disputed invoice is dunned
for the rest, and its messages say how much is in dispute. When a rejected dispute releases
the hold, dunning resumes at the level the invoice has reached by then.

Back office (SPEC §3): a level with a late fee (`O2C_LATE_FEES`) charges it as a fee invoice in
the same savepoint as its notice (`workflows.late_fees`), and the level's messages name it.
Before the levels, `run_all` writes off small leftovers (`workflows.write_offs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import ActivityKind, CollectionActivity, Customer, DunningNotice, Invoice, Order
from workflows import credit_hold, late_fees, outbox, policy, write_offs
from workflows.collections import invoice_snapshot

EMAIL_KINDS = ("friendly", "reminder", "firm", "final")
BATCH = 50  # invoices per write transaction (the job chooses its own per database)
FIND = 5000  # invoice ids per level found per read


@dataclass(frozen=True)
class Level:
    offset: int  # days relative to the due date
    kind: str  # friendly, reminder, firm, escalation, final

    @property
    def emails_customer(self) -> bool:
        return self.kind in EMAIL_KINDS


def plan(offsets: list[int]) -> list[Level]:
    """Give each offset its kind (see the module docstring); sorted by offset."""
    offsets = sorted(set(offsets))
    positive = [o for o in offsets if o > 0]
    levels = []
    for offset in offsets:
        if offset <= 0:
            kind = "friendly"
        elif offset == positive[0]:
            kind = "reminder"
        elif offset == positive[-1]:
            kind = "final"
        elif len(positive) >= 3 and offset == positive[-2]:
            kind = "escalation"
        else:
            kind = "firm"
        levels.append(Level(offset, kind))
    return levels


@dataclass
class DunningRun:
    as_of: date
    sent: dict[int, int] = field(default_factory=dict)  # level -> notices created now
    holds: list[int] = field(default_factory=list)  # customers put on credit hold
    candidates: int = 0
    fees: list[str] = field(default_factory=list)  # fee invoices charged
    written_off: list[str] = field(default_factory=list)  # small balances written off

    def summary(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "notices": {str(k): v for k, v in
                                                             sorted(self.sent.items())},
                "credit_holds": len(self.holds), "late_fees": len(self.fees),
                "small_balances_written_off": len(self.written_off)}


def _due(level: Level, next_offset: int | None, as_of: date) -> list[sa.ColumnElement]:
    """SQL: open invoices, not wholly in dispute, whose latest reached level is `level` and
    that have no notice of this level or a later one."""
    notice = DunningNotice.__table__
    later_sent = sa.exists(select(notice.c.id).where(notice.c.invoice_id == Invoice.id,
                                                     notice.c.level >= level.offset))
    conditions = [Invoice.balance_minor > 0, Invoice.balance_minor > Invoice.disputed_minor,
                  Invoice.due_date <= as_of - timedelta(days=level.offset), ~later_sent]
    if next_offset is not None:
        conditions.append(Invoice.due_date > as_of - timedelta(days=next_offset))
    return conditions


def _candidates(session: Session, level: Level, next_offset: int | None, as_of: date,
                limit: int, ids: list[int] | None = None
                ) -> list[tuple[Invoice, Customer, str | None]]:
    """The invoices due at `level` (`_due`), with their customer and order's sales rep;
    with `ids`, only those (found earlier in a read session, checked again here)."""
    query = (select(Invoice, Customer, Order.sales_rep_id)
             .join(Customer, Customer.id == Invoice.customer_id)
             .outerjoin(Order, Order.id == Invoice.order_id)
             .where(*_due(level, next_offset, as_of))
             .order_by(Invoice.id).limit(limit))
    if ids is not None:
        query = query.where(Invoice.id.in_(ids))
    return list(session.exec(query).all())


def due_invoices(session: Session, as_of: date, *, limit: int
                 ) -> list[tuple[Level, int | None, list[int]]]:
    """Per level, the ids of up to `limit` invoices due at it (a read: no lock is taken)."""
    levels = plan(policy.current(session).dunning_offsets)
    found = []
    for i, level in enumerate(levels):
        next_offset = levels[i + 1].offset if i + 1 < len(levels) else None
        ids = list(session.exec(select(Invoice.id).where(*_due(level, next_offset, as_of))
                                .order_by(Invoice.id).limit(limit)).all())
        found.append((level, next_offset, ids))
    return found


def run_dunning(session: Session, as_of: date, *, batch: int = BATCH,
                run: DunningRun | None = None) -> DunningRun:
    """One batch of dunning for `as_of`: at most `batch` invoices per level. Call it again
    (in a new transaction) while `run.candidates` reached the batch size; `run_all` does."""
    run = run or DunningRun(as_of)
    levels = plan(policy.current(session).dunning_offsets)
    run.candidates = 0
    for i, level in enumerate(levels):
        next_offset = levels[i + 1].offset if i + 1 < len(levels) else None
        found = _candidates(session, level, next_offset, as_of, batch)
        run.candidates = max(run.candidates, len(found))
        for invoice, customer, order_rep in found:
            if _send_level(session, level, invoice, customer, order_rep, as_of, run):
                run.sent[level.offset] = run.sent.get(level.offset, 0) + 1
    return run


def run_all(db, as_of: date, *, batch: int = BATCH, now: datetime | None = None,
            between: Callable[[], None] = lambda: None) -> DunningRun:
    """Dunning for `as_of` in batches of short transactions (a long write would hold
    SQLite's lock and delay every Slack click): the invoices due are found in a read session
    (up to FIND per level at a time), then written `batch` at a time, each transaction
    checking its invoices again (paid or disputed since: skipped; claimed by another process:
    the notice's unique key). `between` runs after each write transaction (the job pauses
    there so that a click waiting for SQLite's write lock gets it). With `now` (the job passes
    the clock's), small leftovers are written off first (`write_offs.write_off_small_balances`).
    A pass that sends nothing ends the run, so an invoice that cannot be claimed never loops."""
    run = DunningRun(as_of)
    while now is not None:
        with db.transaction() as session:
            done = write_offs.write_off_small_balances(session, as_of=as_of, now=now,
                                                       limit=batch)
        run.written_off += done
        if len(done) < batch:
            break
        between()
    while True:
        # the candidates are found in a read session (no write lock held while scanning)...
        with db.read_session() as session:
            found = due_invoices(session, as_of, limit=FIND)
        sent = 0
        for level, next_offset, ids in found:
            for start in range(0, len(ids), batch):
                chunk = ids[start:start + batch]
                # ...and written in short transactions, each invoice checked again in it
                with db.transaction() as session:
                    for invoice, customer, order_rep in _candidates(
                            session, level, next_offset, as_of, len(chunk), ids=chunk):
                        if _send_level(session, level, invoice, customer, order_rep, as_of,
                                       run):
                            run.sent[level.offset] = run.sent.get(level.offset, 0) + 1
                            sent += 1
                between()  # let other writers in (the job passes a short pause)
        run.candidates = max((len(ids) for _, _, ids in found), default=0)
        if run.candidates < FIND or not sent:
            return run


def _send_level(session: Session, level: Level, invoice: Invoice, customer: Customer,
                order_rep: str | None, as_of: date, run: DunningRun) -> bool:
    """Claim (invoice, level) and write what it causes; False when someone else claimed it."""
    key = f"dunning:{invoice.id}:{level.offset}"
    try:
        with session.begin_nested():
            notice = DunningNotice(invoice_id=invoice.id, level=level.offset, as_of=as_of)
            session.add(notice)
            session.flush()
            context = {"kind": level.kind, "level": level.offset,
                       "customer_id": customer.id, "customer_name": customer.name,
                       "invoice": invoice_snapshot(invoice, as_of),
                       "days_past_due": (as_of - invoice.due_date).days}
            fee = late_fees.charge(session, invoice=invoice, customer=customer,
                                   level=level.offset, as_of=as_of)
            if fee is not None:
                context["late_fee"] = late_fees.fee_context(fee, invoice)
                run.fees.append(fee.number)
            if level.emails_customer:
                if customer.billing_email:
                    message = outbox.send_email(session, to=customer.billing_email,
                                                template=f"dunning_{level.kind}",
                                                context=context, dedupe_key=key)
                    notice.outbox_id = message.id
                    _log(session, customer, invoice, ActivityKind.REMINDER,
                         f"dunning {level.offset:+d} ({level.kind}) e-mailed to "
                         f"{customer.billing_email}")
                else:
                    outbox.post_to_channel(session, channel="ar", template="dunning_no_email",
                                           context=context, dedupe_key=key + ":no-email")
            rep = order_rep or customer.sales_rep_id
            people = [u for u in dict.fromkeys([rep, customer.collector_id]) if u]
            if level.kind == "reminder":
                _tell(session, people, "overdue_notice", context, key)
            elif level.kind == "escalation":
                _tell(session, people, "dunning_escalation", context, key)
                _log(session, customer, invoice, ActivityKind.ESCALATION,
                     f"dunning {level.offset:+d}: escalated to the sales rep")
            elif level.kind == "final":
                if credit_hold.change_hold(
                        session, customer_id=customer.id, actor="system", on_hold=True,
                        reason=f"final notice for {invoice.number}: "
                        f"{context['days_past_due']} days past due"):
                    run.holds.append(customer.id)
                context = {**context, "credit_hold": True}
                _tell(session, people, "dunning_final", context, key)
                outbox.post_to_channel(session, channel="ar", template="dunning_final",
                                       context=context, dedupe_key=key + ":ar")
            session.add(notice)
            session.flush()
    except IntegrityError:
        return False
    return True


def _tell(session: Session, people: list[str], template: str, context: dict, key: str) -> None:
    if not people:
        outbox.post_to_channel(session, channel="ar", template=template, context=context,
                               dedupe_key=f"{key}:ar-{template}")
    for user_id in people:
        outbox.post_to_user(session, user_id=user_id, template=template, context=context,
                            dedupe_key=f"{key}:{user_id}")


def _log(session: Session, customer: Customer, invoice: Invoice, kind: str, note: str) -> None:
    session.add(CollectionActivity(customer_id=customer.id, invoice_id=invoice.id, kind=kind,
                                   note=note, user_id="system"))
