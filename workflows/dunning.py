"""Dunning: reminders by days relative to the due date (SPEC §3), each (invoice, level) once.

Levels come from `policy.dunning_offsets` (default −3, +1, +7, +14, +30) and each gets a kind
by its position, so a changed list keeps its meaning:

* every negative offset — `friendly`: a "due soon" e-mail to the customer;
* the first positive offset — `reminder`: an "overdue" e-mail to the customer, and the
  sales rep and the collector are told in Slack (their one message of the run, below);
* the last positive offset — `final`: the final notice e-mail, and the customer goes on credit
  hold (audited as a decision, actor "system"; `credit_hold.change_hold`, a conditional UPDATE,
  so two processes dunning different invoices of one customer hold and audit it once);
* the positive offset before the last — `escalation`: the sales rep (and the collector) are
  asked in Slack to step in (a collection activity per invoice records it at once); the
  customer gets no e-mail at this level;
* any other positive offset — `firm`: a firmer e-mail to the customer.

Exactly once: a `DunningNotice` row (UNIQUE invoice_id, level) is inserted in the same
transaction as the outbox rows it causes (whose dedupe keys are unique too, derived from the
first notice each message covers). A second run, a restart, or another server process running
the same job finds the notice taken (the insert returns nothing for it) and sends nothing.

Catching up (a first run over an imported book, or after an outage): a run looks only at the
*latest* level each invoice has reached. An invoice first seen at +20 days gets the +14
escalation only — not −3, +1, +7 and +14 in one burst — and one first seen at +40 gets the
final notice; the levels passed over are recorded as skipped notices (`skipped`), so they are
never sent later. A level is sent only if no notice of that level or a later one exists.
Paid (balance 0) invoices are skipped, and so are those whose whole balance is held in dispute
(`workflows.disputes`); a partly disputed invoice is dunned for the rest, and its messages say
how much is in dispute. When a rejected dispute releases the hold, dunning resumes at the level
the invoice has reached by then.

Promises to pay (`workflows.collections`): while a promise is open and its promised date has
not passed (`_promised`; `collections.check_promises` breaks it the day after, the same rule),
the invoices it covers — the invoice it names, else the customer's invoices due by the day it
was taken (not those falling due later) — get no customer e-mail (friendly, reminder, firm,
final) and no credit hold (the final notice's). The escalation level, internal (the sales rep
asked to step in), still goes: a promise does not hide a badly late account from the people
who own it. Nothing is lost: when the promise is broken the invoice is dunned again by the
catch-up rule above — the highest level it has reached by then goes out, the ones passed over
are recorded as skipped — so a promise broken at +13 brings the +7 firm e-mail, one broken
at +30 the final notice and the credit hold, while one broken between the escalation and the
final notice (the escalation already sent) brings nothing until +30; the collector hears of
the broken promise at once (`promise_broken`). A kept promise ends the pause too: what is
left unpaid is dunned as usual.

Not flooding: a customer's e-mails of one run are combined into one statement-style e-mail
(`dunning_statement`, listing the invoices and their levels; a customer with one notice gets
that level's own e-mail), the AR channel gets one summary post per run (`dunning_summary`:
notices, e-mails, customers, the top 5 by amount, customers without a billing e-mail, credit
holds) instead of a post per notice, and each sales rep and collector one DM per run
(`dunning_people`: per kind — reminder, escalation, final and credit hold — their customers,
the top `PEOPLE_TOP` by amount with each one's first invoice and how many more, the totals by
currency and how many more customers; the person is the invoice's order's sales rep, else the
customer's, and the customer's collector, and someone who is both hears once). What changes
state stays immediate and per customer: the escalation's activities, the credit hold.

A run that would send more than `confirm_above` e-mails (setting
`O2C_DUNNING_CONFIRM_ABOVE`) first asks an admin (`request_confirmation`: one request per
dunning day, a post in the AR channel, audited) and sends nothing until one confirms
(`confirm`, `/o2c dunning confirm`); a later run that day then sends, and the next day's run
asks again if it is still that large.

Writing: the candidates are found in a read session, then written a few customers at a time in
short transactions with one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` for the
notices (what it returns is what this process claimed) and executemany inserts for the outbox
rows and collection activities: no SAVEPOINT and no flush per row. Before claiming, each write
transaction locks its invoices (id order, one read: `_locked_still_due`) and keeps those still
open: a payment committed on another host while the run writes (or waiting on the row) is
seen, so an invoice it paid gets no notice, no e-mail and no credit hold (the final notice's).

A run is recorded (`dunning_runs`) by its first write transaction; its notices point at it
and its counters (e-mails, late fees, credit holds) grow in the transactions of what they
count, and each write transaction first stamps its heartbeat. The summary post is counted
from those rows when the run ends (`summarise`). A run killed between batches (not written for
`STALE`) is taken over by the next run of any process (`take_over`): continued when it is of
the same dunning day (one summary covers both), summarised at once otherwise; a run taken
over while it was in fact still alive notices it (its heartbeat UPDATE matches nothing) and
goes on under a new row. Each notice is so counted in one summary, and each run summarised
once (a conditional UPDATE of `finished` in the summary's transaction; the post's dedupe key
is the run's first notice). The people's DMs are counted from the same rows and written in
the same transaction (`people_contexts`; dedupe key `dunning-people:<day>:<first notice>:
<user>`); both are counted ahead in a read session when the run ends (`count_ahead`: seconds
on a large first run, no write lock held) and used if the run's rows did not change since
(else counted again in the transaction). The people's DMs so wait for the run's end — or,
after a crash, for the run that takes it over — and a run taken over still tells each person
once, about both parts.

Back office (SPEC §3): a level with a late fee (`O2C_LATE_FEES`) charges it as a fee invoice in
the same transaction as its notice (`workflows.late_fees`), and the level's messages name it
(none at a level that e-mails the customer nothing: nothing would name it to them).
Before the levels, `run_all` writes off small leftovers (`workflows.write_offs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from models import (
    ActivityKind,
    CollectionActivity,
    Customer,
    DunningConfirmation,
    DunningNotice,
    DunningRunRecord,
    Invoice,
    Order,
    OutboxMessage,
    PromiseStatus,
    PromiseToPay,
    Role,
    money,
)
from workflows import audit, bulk, credit_hold, late_fees, policy, write_offs
from workflows.collections import invoice_snapshot
from workflows.errors import DomainError
from workflows.users import require_role

log = logging.getLogger(__name__)

EMAIL_KINDS = ("friendly", "reminder", "firm", "final")
BATCH = 50  # invoices per write transaction (the job chooses its own per database)
CUSTOMER_MAX = 500  # a customer with more invoices due is written (and e-mailed) in parts
FIND = 1000  # customers found per read
CONFIRM_ABOVE = 200  # e-mails a run may send without an admin's confirmation
TOP = 5  # customers named in the AR channel's summary
PEOPLE_TOP = 10  # customers named per kind in a sales rep's or collector's message of a run
STALE = timedelta(minutes=10)  # a run that has not written for this long was killed
PROMISE_ZONE_DAYS = 400  # promises taken this recently are dated with the offsets of their day


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
    skipped: int = 0  # lower levels passed over (catch-up), recorded as skipped
    emails: int = 0  # e-mails queued (one per customer and write transaction)
    customers: dict[int, dict] = field(default_factory=dict)  # dunned now: name, amounts
    no_email: dict[int, str] = field(default_factory=dict)  # customers without an e-mail
    held_names: list[str] = field(default_factory=list)
    id: int | None = None  # its `dunning_runs` row (opened by its first write transaction)
    record: DunningRunRecord | None = None  # that row's values, stamped when the run began
    waiting: int | None = None  # the confirmation this run waits for (nothing sent)
    late_fees_invalid: str | None = None  # the stored late_fees does not parse: why
    # the clock's moment the run was started at (the job passes it): its reminder and
    # escalation activities are dated by it (the worklist's last contact, the digest's week),
    # not by the real time (the sandbox's Time travel); None: the moment each row is written
    now: datetime | None = None

    def summary(self) -> dict:
        out = {"as_of": self.as_of.isoformat(), "notices": {str(k): v for k, v in
                                                            sorted(self.sent.items())},
               "credit_holds": len(self.holds), "late_fees": len(self.fees),
               "small_balances_written_off": len(self.written_off),
               "emails": self.emails, "customers": len(self.customers),
               "skipped_levels": self.skipped}
        if self.waiting is not None:
            out["waiting_for_confirmation"] = self.waiting
        if self.late_fees_invalid is not None:
            out["late_fees_invalid"] = self.late_fees_invalid
        return out


def _due(level: Level, next_offset: int | None, as_of: date, zone: tzinfo = UTC
         ) -> list[sa.ColumnElement]:
    """SQL: open invoices, not wholly in dispute, whose latest reached level is `level` and
    that have no notice of this level or a later one (`zone`: the books' time zone)."""
    notice = DunningNotice.__table__
    later_sent = sa.exists(select(notice.c.id).where(notice.c.invoice_id == Invoice.id,
                                                     notice.c.level >= level.offset))
    conditions = [Invoice.balance_minor > 0, Invoice.balance_minor > Invoice.disputed_minor,
                  Invoice.due_date <= as_of - timedelta(days=level.offset), ~later_sent]
    if level.kind != "escalation":  # the customer's e-mails and the credit hold wait
        conditions.append(~_promised(as_of, zone))
    if next_offset is not None:
        conditions.append(Invoice.due_date > as_of - timedelta(days=next_offset))
    return conditions


def _promised(as_of: date, zone: tzinfo = UTC) -> sa.ColumnElement:
    """SQL: the invoice is under a promise to pay still open on `as_of` (the promised date not
    passed: `collections.check_promises` breaks a promise the day after it). A promise on an
    invoice covers that invoice; one on the account covers the customer's invoices due by
    the day it was taken (what the collector and the customer talked about), not those
    falling due later: the business date it was taken in the books' zone `zone` (taken at
    17:00 in Los Angeles, 01:00 UTC the day after, it does not cover what falls due that
    next day). Promises taken more than `PROMISE_ZONE_DAYS` before `as_of` are dated with
    the zone's offset of then (a daylight-saving hour of difference at most)."""
    promise = PromiseToPay.__table__
    taken = policy.business_date_sql(
        promise.c.created_at, zone,
        datetime.combine(as_of - timedelta(days=PROMISE_ZONE_DAYS), time.min, tzinfo=UTC),
        datetime.combine(as_of + timedelta(days=2), time.min, tzinfo=UTC))
    return sa.exists(select(promise.c.id).where(
        promise.c.customer_id == Invoice.customer_id, promise.c.status == PromiseStatus.OPEN,
        promise.c.promised_date >= as_of,
        sa.or_(promise.c.invoice_id == Invoice.id,
               sa.and_(promise.c.invoice_id.is_(None), Invoice.due_date <= taken))))


def _levels(session: Session) -> list[tuple[Level, int | None]]:
    levels = plan(policy.current(session).dunning_offsets)
    return [(level, levels[i + 1].offset if i + 1 < len(levels) else None)
            for i, level in enumerate(levels)]


def _candidates(session: Session, level: Level, next_offset: int | None, as_of: date,
                ids: list[int]) -> list[tuple[Invoice, Customer, str | None]]:
    """Those of `ids` (found earlier in a read session) still due at `level` (`_due`), with
    their customer and order's sales rep."""
    query = (select(Invoice, Customer, Order.sales_rep_id)
             .join(Customer, Customer.id == Invoice.customer_id)
             .outerjoin(Order, Order.id == Invoice.order_id)
             .where(*_due(level, next_offset, as_of, policy.business_zone(session)),
                    Invoice.id.in_(ids))
             .order_by(Invoice.id))
    return list(session.exec(query).all())


def due_customers(session: Session, as_of: date, *, after: int = 0, limit: int = FIND
                  ) -> list[int]:
    """Ids of up to `limit` customers (above `after`, ascending) with an invoice due at a
    level (a read: no lock is taken)."""
    zone = policy.business_zone(session)
    due = [select(Invoice.customer_id).where(*_due(level, nxt, as_of, zone),
                                             Invoice.customer_id > after)
           for level, nxt in _levels(session)]
    union = sa.union(*due).subquery()
    return list(session.execute(select(union.c.customer_id).order_by(union.c.customer_id)
                                .limit(limit)).scalars())


def due_invoices(session: Session, as_of: date, customer_ids: list[int]
                 ) -> list[tuple[Level, int | None, int, int]]:
    """(level, next offset, customer id, invoice id) of every invoice of these customers due
    at a level, by customer (a read)."""
    zone = policy.business_zone(session)
    found = []
    for level, nxt in _levels(session):
        rows = session.execute(select(Invoice.customer_id, Invoice.id)
                               .where(*_due(level, nxt, as_of, zone),
                                      Invoice.customer_id.in_(customer_ids))).all()
        found += [(level, nxt, customer_id, invoice_id) for customer_id, invoice_id in rows]
    return sorted(found, key=lambda r: (r[2], r[3]))


def would_send(session: Session, as_of: date) -> dict[str, int]:
    """What a run for `as_of` would send now: notices, customers, e-mails (one per customer
    with a billing e-mail and an e-mailing level due). A read."""
    zone = policy.business_zone(session)
    levels = _levels(session)
    notices = sum(session.execute(select(sa.func.count()).select_from(Invoice)
                                  .where(*_due(level, nxt, as_of, zone))).scalar_one()
                  for level, nxt in levels)
    if not notices:
        return {"notices": 0, "customers": 0, "emails": 0}

    def customers(emailing: bool) -> int:
        due = [select(Invoice.customer_id).join(Customer, Customer.id == Invoice.customer_id)
               .where(*_due(level, nxt, as_of, zone),
                      *([Customer.billing_email.is_not(None), Customer.billing_email != ""]
                        if emailing else []))
               for level, nxt in levels if level.emails_customer or not emailing]
        if not due:
            return 0
        union = sa.union(*due).subquery()
        return session.execute(select(sa.func.count()).select_from(union)).scalar_one()

    return {"notices": notices, "customers": customers(False), "emails": customers(True)}


def _chunks(found: list[tuple[Level, int | None, int, int]], batch: int
            ) -> list[list[tuple[Level, int | None, int, int]]]:
    """Write transactions of about `batch` invoices, a customer's invoices together (up to
    CUSTOMER_MAX each)."""
    chunks: list[list] = [[]]
    for item in found:
        current = chunks[-1]
        new_customer = bool(current) and current[-1][2] != item[2]
        if current and ((new_customer and len(current) >= batch)
                        or len(current) >= max(batch, CUSTOMER_MAX)):
            chunks.append([])
        chunks[-1].append(item)
    return [c for c in chunks if c]


def _write_chunk(session: Session, chunk: list[tuple[Level, int | None, int, int]],
                 as_of: date, run: DunningRun) -> int:
    """Check the chunk's invoices again in this transaction and send what is still due."""
    by_level: dict[Level, tuple[int | None, list[int]]] = {}
    for level, nxt, _, invoice_id in chunk:
        by_level.setdefault(level, (nxt, []))[1].append(invoice_id)
    items = [(level, *row) for level, (nxt, ids) in by_level.items()
             for row in _candidates(session, level, nxt, as_of, ids)]
    return write(session, items, as_of, run)


def run_dunning(session: Session, as_of: date, *, batch: int = BATCH,
                run: DunningRun | None = None, now: datetime | None = None) -> DunningRun:
    """Dunning for `as_of` in the caller's transaction (every customer due; tests and small
    books), the AR channel's summary included (`now`: `DunningRun.now`)."""
    run = run or DunningRun(as_of, now=now)
    after = 0
    while customers := due_customers(session, as_of, after=after):
        after = customers[-1]
        found = due_invoices(session, as_of, customers)
        run.candidates = max(run.candidates, len(found))
        for chunk in _chunks(found, batch):
            _write_chunk(session, chunk, as_of, run)
    if run.id is not None:
        summarise(session, run.id)
    return run


def run_all(db, as_of: date, *, batch: int = BATCH, now: datetime | None = None,
            between: Callable[[], None] = lambda: None,
            confirm_above: int | None = None) -> DunningRun:
    """Dunning for `as_of` in batches of short transactions (a long write would hold
    SQLite's lock and delay every Slack click): the customers due are found in a read session
    (FIND at a time, in ascending order, so each is visited once per run), then written about
    `batch` invoices at a time, a customer's together, each transaction checking its
    invoices again (paid or disputed since: skipped; claimed by another process: the notice's
    unique key). `between` runs after each write transaction (the job pauses there so that a
    click waiting for SQLite's write lock gets it). With `now` (the job passes the clock's),
    small leftovers are written off first (`write_offs.write_off_small_balances`). With
    `confirm_above`, a run that would send more e-mails waits for an admin's confirmation
    (`request_confirmation`) and sends nothing. The AR channel's summary is posted last."""
    run = DunningRun(as_of, record=DunningRunRecord(as_of=as_of), now=now)
    with db.transaction() as session:  # a run killed between batches: take it over
        take_over(session, run)
    while now is not None:
        with db.transaction() as session:
            done = write_offs.write_off_small_balances(session, as_of=as_of, now=now,
                                                       limit=batch)
        run.written_off += done
        if len(done) < batch:
            break
        between()
    if confirm_above is not None:
        with db.read_session() as session:
            request = _confirmation(session, as_of)
            confirmed = request is not None and request.confirmed_at is not None
            counts = would_send(session, as_of) if not confirmed else {}
        if not confirmed and counts["emails"] > confirm_above:
            with db.transaction() as session:
                run.waiting = request_confirmation(session, as_of, counts,
                                                   threshold=confirm_above, now=now)
            return run
    after = 0
    while True:
        # the candidates are found in a read session (no write lock held while scanning)...
        with db.read_session() as session:
            customers = due_customers(session, as_of, after=after)
            found = due_invoices(session, as_of, customers) if customers else []
        if not customers:
            break
        after = customers[-1]
        run.candidates = max(run.candidates, len(found))
        for chunk in _chunks(found, batch):
            # ...and written in short transactions, each invoice checked again in it
            with db.transaction() as session:
                _write_chunk(session, chunk, as_of, run)
            between()  # let other writers in (the job passes a short pause)
    if run.id is not None:
        # counted in a read session (seconds on a large first run, no write lock held), then
        # written in a short transaction (counted again there only if the run changed since)
        with db.read_session() as session:
            counted = count_ahead(session, run.id)
        with db.transaction() as session:
            summarise(session, run.id, counted=counted)
    return run


# -- writing: bulk inserts, no per-row flush ---------------------------------------------------
def _values(row: SQLModel) -> dict:
    """A model instance (its defaults applied) as the values of a Core insert."""
    return {c.name: getattr(row, c.name) for c in row.__table__.columns if c.name != "id"}


class _Rows:
    """Rows for Core inserts of one transaction: each model's defaults (the recording time
    included) taken once from one instance, then only the fields that differ (building a
    model per row costs more than the insert)."""

    def __init__(self, as_of: date, at: datetime | None = None) -> None:
        self.notice = _values(DunningNotice(invoice_id=0, level=0, as_of=as_of))
        self.message = _values(OutboxMessage(transport="email", method="email"))
        # the activities: at the run's moment (`DunningRun.now`), else when written
        self.activity = _values(CollectionActivity(customer_id=0, kind=ActivityKind.REMINDER,
                                                   user_id="system",
                                                   **({"at": at} if at else {})))


def _claim(session: Session, items: list[tuple[Level, Invoice, Customer, str | None]],
           levels: list[Level], rows_of: _Rows, run: DunningRun) -> set[tuple[int, int]]:
    """Insert the notices of `items` and the lower levels they pass over (skipped) with one
    executemany `INSERT … ON CONFLICT DO NOTHING RETURNING` (compiled once, sent in
    multi-row batches); returns the (invoice id, level) this transaction claimed for sending."""
    rows: dict[tuple[int, int], dict] = {}
    for level, invoice, _, _ in items:
        for lower in levels:
            if lower.offset < level.offset:
                rows.setdefault((invoice.id, lower.offset), {
                    **rows_of.notice, "invoice_id": invoice.id, "level": lower.offset,
                    "skipped": True})
        rows[(invoice.id, level.offset)] = {**rows_of.notice, "invoice_id": invoice.id,
                                            "level": level.offset, "skipped": False}
    for row in rows.values():
        row["run_id"] = run.id
    table = DunningNotice.__table__
    statement = (bulk.upsert_insert(session, table)
                 .on_conflict_do_nothing(index_elements=["invoice_id", "level"])
                 .returning(table.c.invoice_id, table.c.level, table.c.skipped))
    # in key order: two processes claiming overlapping notices lock them in the same order
    claimed = set()
    for invoice_id, level, skipped in session.execute(
            statement, [rows[k] for k in sorted(rows)]).all():
        if skipped:
            run.skipped += 1
            continue
        claimed.add((invoice_id, level))
    return claimed


def write(session: Session, items: list[tuple[Level, Invoice, Customer, str | None]],
          as_of: date, run: DunningRun) -> int:
    """Claim and send `items` (level, invoice, customer, the order's sales rep): one e-mail
    per customer, the escalation's activities and the final notice's credit hold (the people
    are told when the run ends: `summarise`); returns the notices sent."""
    if not items:
        return 0
    current = policy.current(session)
    rows_of = _Rows(as_of, run.now)
    _track(session, run)
    before = (run.emails, len(run.fees), len(run.holds))
    charges = late_fees.in_force(current.late_fees)
    if charges.error is not None:
        items = _hold_for_late_fees(session, items, charges, run)
        if not items:
            return 0
    fees = bool(charges.rules)
    items = _locked_still_due(session, items)
    if not items:
        return 0
    claimed = _claim(session, items, plan(current.dunning_offsets), rows_of, run)
    items = [i for i in items if (i[1].id, i[0].offset) in claimed]
    messages: list[dict] = []
    activities: list[dict] = []
    by_customer: dict[int, list[tuple[Level, Invoice, Customer, str | None, dict]]] = {}
    for level, invoice, customer, order_rep in items:
        context = {"kind": level.kind, "level": level.offset,
                   "customer_id": customer.id, "customer_name": customer.name,
                   "invoice": invoice_snapshot(invoice, as_of),
                   "days_past_due": (as_of - invoice.due_date).days}
        if fees and level.emails_customer and customer.billing_email:  # named in an e-mail
            fee = late_fees.charge(session, invoice=invoice, customer=customer,
                                   level=level.offset, as_of=as_of)
            if fee is not None:
                context["late_fee"] = late_fees.fee_context(fee, invoice)
                run.fees.append(fee.number)
        by_customer.setdefault(customer.id, []).append((level, invoice, customer, order_rep,
                                                        context))
        run.sent[level.offset] = run.sent.get(level.offset, 0) + 1
        dunned = run.customers.setdefault(customer.id, {"name": customer.name, "amounts": {}})
        amount = invoice.balance_minor - invoice.disputed_minor
        dunned["amounts"][invoice.currency] = dunned["amounts"].get(invoice.currency, 0) + amount
    for notices in by_customer.values():
        customer = notices[0][2]
        _email(rows_of, customer, notices, as_of, messages, activities, run)
        _people_changes(session, rows_of, customer, notices, activities, run)
    if messages:
        session.execute(sa.insert(OutboxMessage.__table__), messages)
    if activities:
        session.execute(sa.insert(CollectionActivity.__table__), activities)
    emails, fees, holds = (run.emails - before[0], len(run.fees) - before[1],
                           len(run.holds) - before[2])
    if emails or fees or holds:  # the run's counters, in the transaction of what they count
        table = DunningRunRecord.__table__
        session.execute(sa.update(table).where(table.c.id == run.id).values(
            emails=table.c.emails + emails, late_fees=table.c.late_fees + fees,
            credit_holds=table.c.credit_holds + holds))
    return len(items)


def _locked_still_due(session: Session, items: list[tuple[Level, Invoice, Customer, str | None]]
                      ) -> list[tuple[Level, Invoice, Customer, str | None]]:
    """Lock the items' invoices (in id order, as `invoicing.lock_invoices` and the payment
    paths do, but with one read per `bulk.IN_LIST` of them: read fresh) and keep those still
    open and not wholly in dispute. Every level, late fees in force or not: the notice, its
    e-mail's amount, the fee and the final notice's credit hold are so decided on the balance
    as it is once no payment, credit note, write-off or dispute can change it before this
    transaction commits: `_candidates` read the rows unlocked, and a payment committed since
    (or waiting on the row) would otherwise leave a fee on the balance it paid, or put the
    customer on credit hold for an invoice just paid. Lock order: invoices, then the notices
    (`_claim`), then the customer (`credit_hold.change_hold`)."""
    locked: dict[int, Invoice] = {}
    for part in bulk.in_parts({invoice.id for _, invoice, _, _ in items}):
        locked.update((row.id, row) for row in session.exec(
            select(Invoice).where(Invoice.id.in_(part)).order_by(Invoice.id).with_for_update()
            .execution_options(populate_existing=True)))
    return [item for item in items if item[1].id in locked
            and locked[item[1].id].balance_minor > max(locked[item[1].id].disputed_minor, 0)]


def _hold_for_late_fees(session: Session, items: list, charges: late_fees.InForce,
                        run: DunningRun) -> list:
    """The stored `late_fees` does not parse: leave out the levels it names (sent with their
    fee once it is fixed), say so once per run, and go on with the rest."""
    if run.late_fees_invalid is None:
        run.late_fees_invalid = charges.error
        log.error("late_fees policy does not parse (%s); dunning levels %s held back until "
                  "it is fixed", charges.error, sorted(charges.held))
        audit.record(session, actor="system", action="late_fees.invalid", entity_type="policy",
                     entity_id="late_fees", to_state="held", reason=charges.error,
                     held_levels=sorted(charges.held), as_of=run.as_of.isoformat())
    return [i for i in items if i[0].offset not in charges.held]


def _key(invoice: Invoice, level: Level) -> str:
    return f"dunning:{invoice.id}:{level.offset}"


def _message(rows_of: _Rows, transport: str, payload: dict, dedupe_key: str) -> dict:
    method = "email" if transport == "email" else "chat.postMessage"
    return {**rows_of.message, "transport": transport, "method": method, "payload": payload,
            "dedupe_key": dedupe_key}


def _activity(rows_of: _Rows, customer: Customer, invoice: Invoice, kind: str, note: str
              ) -> dict:
    return {**rows_of.activity, "customer_id": customer.id, "invoice_id": invoice.id,
            "kind": kind, "note": note, "user_id": "system"}


def _email(rows_of: _Rows, customer: Customer, notices: list, as_of: date, messages: list[dict],
           activities: list[dict], run: DunningRun) -> None:
    """One e-mail for the customer's notices of this run: the level's own e-mail for one,
    a statement-style e-mail listing the invoices for several."""
    emailed = [n for n in notices if n[0].emails_customer]
    if not emailed:
        return
    if not customer.billing_email:
        run.no_email[customer.id] = customer.name
        return
    first_level, first_invoice = emailed[0][0], emailed[0][1]
    if len(emailed) == 1:
        template, context = f"dunning_{first_level.kind}", emailed[0][4]
        key = _key(first_invoice, first_level)
    else:
        template, key = "dunning_statement", f"{_key(first_invoice, first_level)}:statement"
        total: dict[str, int] = {}
        for n in emailed:
            inv = n[4]["invoice"]
            total[inv["currency"]] = total.get(inv["currency"], 0) + inv["amount_due_minor"]
        context = {"customer_id": customer.id, "customer_name": customer.name,
                   "as_of": as_of.isoformat(),
                   "final": any(n[0].kind == "final" for n in emailed),
                   "totals": [{"currency": c, "amount_minor": m} for c, m in sorted(total.items())],
                   "invoices": [{**n[4]["invoice"], "kind": n[0].kind, "level": n[0].offset,
                                 **({"late_fee": n[4]["late_fee"]} if "late_fee" in n[4]
                                    else {})} for n in emailed]}
    messages.append(_message(rows_of, "email", {"to": customer.billing_email, "template": template,
                                       "context": context, "attachments": []}, key))
    run.emails += 1
    for level, invoice, _, _, _ in emailed:
        activities.append(_activity(rows_of, customer, invoice, ActivityKind.REMINDER,
                                    f"dunning {level.offset:+d} ({level.kind}) e-mailed to "
                                    f"{customer.billing_email}"))


# -- at delivery: what a queued e-mail still asks for -------------------------------------------
REMINDER = "collections_reminder"  # the collector's one-click reminder, checked the same way
TEMPLATES = tuple(f"dunning_{kind}" for kind in EMAIL_KINDS) + ("dunning_statement", REMINDER)


def due_now(session: Session, template: str, context: dict) -> tuple[str, dict] | None:
    """A queued dunning e-mail, or a collector's reminder (`template`, `context`), as it is
    true now, when the outbox is about to send it (it was queued; the mail server may have
    been down for hours since): an invoice paid, credited, written off or wholly put in
    dispute meanwhile is left out; the others ask for their balance less what is in dispute
    now. A statement left with one invoice becomes that level's own e-mail; a reminder's
    "and N more" and total are counted again (`_reminder_now`). None: nothing is due any more,
    the e-mail must not go. An invoice this database does not know is kept as queued. A read."""
    if template == REMINDER:
        return _reminder_now(session, context)
    if template == "dunning_statement":
        entries = list(context.get("invoices") or [])
    else:
        invoice = context.get("invoice") or {}
        entries = [{**invoice, "kind": context.get("kind"), "level": context.get("level"),
                    **({"late_fee": context["late_fee"]} if context.get("late_fee") else {})}]
    fresh = _fresh(session, entries)
    if not fresh:
        return None
    if fresh == entries:
        return template, context
    if len(fresh) == 1 and fresh[0].get("kind") in EMAIL_KINDS:
        one = fresh[0]
        invoice = {k: v for k, v in one.items() if k not in ("kind", "level", "late_fee")}
        return f"dunning_{one['kind']}", {
            "kind": one["kind"], "level": one["level"], "customer_id": context.get("customer_id"),
            "customer_name": context.get("customer_name"), "invoice": invoice,
            "days_past_due": invoice.get("days_past_due"),
            **({"late_fee": one["late_fee"]} if one.get("late_fee") else {})}
    total: dict[str, int] = {}
    for entry in fresh:
        total[entry["currency"]] = total.get(entry["currency"], 0) + entry["amount_due_minor"]
    return "dunning_statement", {
        **context, "final": any(e.get("kind") == "final" for e in fresh),
        "totals": [{"currency": c, "amount_minor": m} for c, m in sorted(total.items())],
        "invoices": fresh}


def fees_unnamed(template: str, context: dict, now: tuple[str, dict] | None) -> list[str]:
    """The late fees a queued dunning e-mail (`template`, `context`) named that the e-mail as
    it goes (`due_now`'s answer `now`; None: withdrawn) no longer names — their invoices were
    paid or put in dispute before it went. A fee is charged with the e-mail that names it
    (`workflows.late_fees`), so these are withdrawn (`write_offs.withdraw_fees`)."""
    def named(template: str, context: dict) -> set[str]:
        if template == REMINDER:
            return set()
        entries = (context.get("invoices") or [] if template == "dunning_statement"
                   else [context])
        return {str(e["late_fee"]["number"]) for e in entries
                if isinstance(e.get("late_fee"), dict) and e["late_fee"].get("number")}

    return sorted(named(template, context) - (named(*now) if now is not None else set()))


def _fresh(session: Session, entries: list[dict]) -> list[dict]:
    """The queued invoice entries still asking for something, with today's amounts (balance
    less what is in dispute); an invoice this database does not know is kept as queued."""
    numbers = [n for n in (e.get("number") for e in entries) if n]
    now = {number: (int(balance), int(disputed)) for number, balance, disputed in
           session.execute(select(Invoice.number, Invoice.balance_minor,
                                  Invoice.disputed_minor)
                           .where(Invoice.number.in_(numbers)))} if numbers else {}
    fresh = []
    for entry in entries:
        if entry.get("number") not in now:
            fresh.append(entry)
            continue
        balance, disputed = now[entry["number"]]
        if balance - disputed <= 0:
            continue
        fresh.append({**entry, "amount_due_minor": balance - disputed,
                      "in_dispute_minor": disputed,
                      "amount_due": money.format_money(balance - disputed, entry["currency"])})
    return fresh


def _reminder_now(session: Session, context: dict) -> tuple[str, dict] | None:
    """A collector's reminder (`collections.send_reminder`) as it is true now: its listed
    invoices as `_fresh` leaves them, and its "and N more" — the customer's other invoices
    overdue on the reminder's day — and total counted again (a reminder queued before it
    carried its `customer_id` keeps the "more" it was queued with)."""
    listed = list(context.get("invoices") or [])
    fresh = _fresh(session, listed)
    more, more_due = int(context.get("more") or 0), int(context.get("more_due_minor") or 0)
    if context.get("customer_id") is not None and context.get("as_of"):
        numbers = [e.get("number") for e in listed if e.get("number")]
        count, due = session.execute(
            select(sa.func.count(), sa.func.sum(Invoice.balance_minor - Invoice.disputed_minor))
            .where(Invoice.customer_id == context["customer_id"], Invoice.balance_minor > 0,
                   Invoice.balance_minor > Invoice.disputed_minor,
                   Invoice.due_date < date.fromisoformat(context["as_of"]),
                   Invoice.number.not_in(numbers))).one()
        more, more_due = int(count), int(due or 0)
    if not fresh and not more:
        return None
    total = sum(e["amount_due_minor"] for e in fresh) + more_due
    currency = context.get("currency") or next(e["currency"] for e in [*fresh, *listed])
    now = {**context, "invoices": fresh, "more": more, "more_due_minor": more_due,
           "total_due_minor": total, "total_due": money.format_money(total, currency)}
    return (REMINDER, context) if now == context else (REMINDER, now)


PEOPLE_KINDS = ("reminder", "escalation", "final")  # the levels the rep and collector hear of


def _people_changes(session: Session, rows_of: _Rows, customer: Customer, notices: list,
                    activities: list[dict], run: DunningRun) -> None:
    """What the reminder, escalation and final levels change at once, per customer: the
    escalation's collection activities, and the credit hold on a final notice. (The sales
    rep and collector are told once per run, when it ends: `people_contexts`.)"""
    for level, invoice, _, _, _ in notices:
        if level.kind == "escalation":
            activities.append(_activity(rows_of, customer, invoice, ActivityKind.ESCALATION,
                                        f"dunning {level.offset:+d}: escalated to the sales "
                                        "rep"))
    final = next((n for n in notices if n[0].kind == "final"), None)
    if final is not None and credit_hold.change_hold(
            session, customer_id=customer.id, actor="system", on_hold=True,
            reason=f"final notice for {final[1].number}: "
            f"{final[4]['days_past_due']} days past due"):
        run.holds.append(customer.id)
        run.held_names.append(customer.name)


# -- the run in the database, and its one summary ------------------------------------------------
def _track(session: Session, run: DunningRun) -> None:
    """First thing in each write transaction: the run's row says it is alive (`heartbeat_at`,
    stamped by the UPDATE); opened by the first one, and opened anew when another run took
    this one over meanwhile (it looked killed) — so every notice belongs to one run and is
    counted in one summary. The UPDATE locks the row: a take-over waits for this transaction,
    or this transaction for it."""
    table = DunningRunRecord.__table__
    if run.id is not None and session.execute(
            sa.update(table).where(table.c.id == run.id, table.c.finished.is_(False))
            .values(finished=False)).rowcount:
        return
    record = run.record if run.id is None and run.record is not None else DunningRunRecord(
        as_of=run.as_of)
    run.id = session.execute(sa.insert(table).values(_values(record))
                             .returning(table.c.id)).scalar_one()


def take_over(session: Session, run: DunningRun) -> list[int]:
    """Runs killed between batches (not finished, nothing written for `STALE` before this run
    began): one of this run's own dunning day is continued by this run (its notices and
    counters stay, and its one summary will cover both), the others are summarised now. A
    conditional UPDATE claims each, so one process takes a killed run over. Returns the ids
    summarised."""
    table = DunningRunRecord.__table__
    began = (run.record or DunningRunRecord(as_of=run.as_of)).started_at
    stale = session.execute(select(table.c.id, table.c.as_of)
                            .where(table.c.finished.is_(False),
                                   table.c.heartbeat_at < began - STALE)
                            .order_by(table.c.id)).all()
    summarised = []
    for run_id, as_of in stale:
        if run.id is None and as_of == run.as_of:
            if session.execute(sa.update(table).where(
                    table.c.id == run_id, table.c.finished.is_(False),
                    table.c.heartbeat_at < began - STALE).values(finished=False)).rowcount:
                run.id = run_id
            continue
        if summarise(session, run_id, stale_before=began - STALE) is not None:
            summarised.append(run_id)
    return summarised


@dataclass(frozen=True)
class Counted:
    """A run's summary and people's messages counted ahead in a read session (`count_ahead`),
    and the state of its rows they were counted from (`_mark`)."""

    mark: tuple
    summary: dict | None
    people: dict[str, dict]


def _mark(session: Session, record: DunningRunRecord) -> tuple:
    """What a run's messages are counted from, in a cheap comparable form: its notices (how
    many, the last) and its counters. Only a write to the run changes it."""
    notice = DunningNotice.__table__
    count, last = session.execute(select(sa.func.count(), sa.func.max(notice.c.id))
                                  .where(notice.c.run_id == record.id)).one()
    return (count, last, record.emails, record.late_fees, record.credit_holds)


def count_ahead(session: Session, run_id: int) -> Counted | None:
    """Count run `run_id`'s summary and people's messages in a read session (no write lock
    held: on a first run over a large book this takes seconds), for `summarise` to write if
    nothing changed meanwhile."""
    record = session.get(DunningRunRecord, run_id)
    if record is None or record.finished:
        return None
    mark = _mark(session, record)  # first: a write after it shows in `summarise`'s mark
    summary = summary_context(session, record)
    return Counted(mark, summary,
                   people_contexts(session, record) if summary is not None else {})


def summarise(session: Session, run_id: int, *, stale_before: datetime | None = None,
              counted: Counted | None = None) -> int | None:
    """Finish run `run_id` (once: a conditional UPDATE) and post its one summary in the AR
    channel, and one DM to each sales rep and collector concerned (`people_contexts`), counted
    from the database — its notices, its counters — so a run killed between batches is
    summarised as exactly as one that ended (nothing is posted for a run that sent nothing).
    `counted`: counted ahead (`count_ahead`), used if the run's rows are still as they were
    then, else counted again here. Returns the summary's outbox id, or None."""
    table = DunningRunRecord.__table__
    claim = sa.update(table).where(table.c.id == run_id, table.c.finished.is_(False))
    if stale_before is not None:  # only if it is still dead (it may have written meanwhile)
        claim = claim.where(table.c.heartbeat_at < stale_before)
    if not session.execute(claim.values(finished=True)).rowcount:
        return None
    record = session.get(DunningRunRecord, run_id)
    session.refresh(record)
    if counted is None or counted.mark != _mark(session, record):
        context = summary_context(session, record)
        told = people_contexts(session, record) if context is not None else {}
    else:
        context, told = counted.summary, counted.people
    if context is None:
        return None
    # keyed by the run's first notice (unique for ever, whatever becomes of the runs table)
    first = session.execute(select(sa.func.min(DunningNotice.__table__.c.id))
                            .where(DunningNotice.__table__.c.run_id == run_id)).scalar_one()
    outbox_id = session.execute(sa.insert(OutboxMessage.__table__).values(_message(
        _Rows(record.as_of), "slack",
        {"channel": "ar", "template": "dunning_summary", "context": context},
        f"dunning-summary:{record.as_of.isoformat()}:{first}"))
        .returning(OutboxMessage.__table__.c.id)).scalar_one()
    session.execute(sa.update(table).where(table.c.id == run_id)
                    .values(summary_outbox_id=outbox_id))
    if told:  # one DM per person for the run, keyed like the summary (once, whoever sends it)
        rows_of = _Rows(record.as_of)
        session.execute(sa.insert(OutboxMessage.__table__), [_message(
            rows_of, "slack", {"channel": user, "template": "dunning_people", "context": theirs},
            f"dunning-people:{record.as_of.isoformat()}:{first}:{user}")
            for user, theirs in sorted(told.items())])
    return outbox_id


def people_contexts(session: Session, record: DunningRunRecord, *, top: int = PEOPLE_TOP
                    ) -> dict[str, dict]:
    """What each sales rep and collector is told of a run, from its rows (`summarise`): the
    run's notices at the reminder, escalation and final levels, per person — the invoice's
    order's sales rep, else the customer's, and the customer's collector (someone who is
    both hears once) — per kind: how many customers and invoices, the totals due by currency
    (balance less disputed, now), and the `top` customers by amount, each with its first
    invoice and how many more. By user id; {} when none of them was sent."""
    kinds = {lv.offset: lv.kind for lv in plan(policy.current(session).dunning_offsets)
             if lv.kind in PEOPLE_KINDS}
    if not kinds:
        return {}
    notice, inv, cust, order = (DunningNotice.__table__, Invoice.__table__,
                                Customer.__table__, Order.__table__)
    rep = sa.func.coalesce(order.c.sales_rep_id, cust.c.sales_rep_id)
    rows = session.execute(
        select(notice.c.level, inv.c.customer_id, rep, cust.c.collector_id, inv.c.currency,
               sa.func.count(), sa.func.sum(inv.c.balance_minor - inv.c.disputed_minor),
               sa.func.min(inv.c.id))
        .join(inv, inv.c.id == notice.c.invoice_id)
        .join(cust, cust.c.id == inv.c.customer_id)
        .outerjoin(order, order.c.id == inv.c.order_id)
        .where(notice.c.run_id == record.id, notice.c.skipped.is_(False),
               notice.c.level.in_(list(kinds)))
        .group_by(notice.c.level, inv.c.customer_id, rep, cust.c.collector_id,
                  inv.c.currency)).all()
    # person -> level -> customer -> {invoices, amounts by currency, first invoice id}
    people: dict[str, dict[int, dict[int, dict]]] = {}
    for level, customer_id, rep_id, collector_id, currency, count, due, first in rows:
        for user in {rep_id, collector_id} - {None, ""}:
            one = people.setdefault(user, {}).setdefault(level, {}).setdefault(
                customer_id, {"invoices": 0, "amounts": {}, "first": first})
            one["invoices"] += count
            one["amounts"][currency] = one["amounts"].get(currency, 0) + int(due or 0)
            one["first"] = min(one["first"], first)
    shown: dict[str, dict[int, list[tuple[int, dict]]]] = {}
    for user, levels in people.items():
        for level, customers in levels.items():
            shown.setdefault(user, {})[level] = sorted(
                customers.items(), key=lambda c: (-max(c[1]["amounts"].values(), default=0),
                                                  c[0]))[:top]
    invoice_ids = {c["first"] for levels in shown.values() for best in levels.values()
                   for _, c in best}
    customer_ids = {cid for levels in shown.values() for best in levels.values()
                    for cid, _ in best}
    invoices = {row.id: row for ids in bulk.in_parts(invoice_ids) for row in session.execute(
        select(inv.c.id, inv.c.number, inv.c.currency, inv.c.due_date,
               (inv.c.balance_minor - inv.c.disputed_minor).label("due"))
        .where(inv.c.id.in_(ids))).all()}
    fees = {(row.fee_for_invoice_id, row.fee_level): row for ids in bulk.in_parts(invoice_ids)
            for row in session.execute(  # the late fee charged at that level, if any
                select(inv.c.fee_for_invoice_id, inv.c.fee_level, inv.c.number,
                       inv.c.total_minor, inv.c.currency)
                .where(inv.c.fee_for_invoice_id.in_(ids), inv.c.fee_level.in_(list(kinds))))}
    customers = {row.id: row for ids in bulk.in_parts(customer_ids) for row in session.execute(
        select(cust.c.id, cust.c.name, cust.c.credit_hold).where(cust.c.id.in_(ids))).all()}
    out = {}
    for user, levels in people.items():
        sections = []
        for level in sorted(levels):
            all_customers = levels[level]
            totals: dict[str, int] = {}
            for c in all_customers.values():
                for currency, minor in c["amounts"].items():
                    totals[currency] = totals.get(currency, 0) + minor
            listed = []
            for customer_id, c in shown[user][level]:
                first = invoices[c["first"]]
                fee = fees.get((first.id, level))
                listed.append({
                    "customer_id": customer_id, "name": customers[customer_id].name,
                    "credit_hold": bool(customers[customer_id].credit_hold),
                    "invoices": c["invoices"],
                    "amounts": [{"currency": cur, "amount_minor": minor}
                                for cur, minor in sorted(c["amounts"].items())],
                    "first": {"number": first.number, "currency": first.currency,
                              "amount_due_minor": int(first.due),
                              "due_date": first.due_date.isoformat(),
                              "days_past_due": (record.as_of - first.due_date).days,
                              **({"late_fee": {"number": fee.number,
                                               "amount_minor": fee.total_minor,
                                               "currency": fee.currency}} if fee else {})}})
            sections.append({"kind": kinds[level], "level": level,
                             "customers": len(all_customers),
                             "invoices": sum(c["invoices"] for c in all_customers.values()),
                             "totals": [{"currency": cur, "amount_minor": minor}
                                        for cur, minor in sorted(totals.items())],
                             "top": listed})
        out[user] = {"as_of": record.as_of.isoformat(), "user_id": user,
                     "customers": len({cid for lv in levels.values() for cid in lv}),
                     "notices": sum(s["invoices"] for s in sections), "kinds": sections}
    return out


def summary_context(session: Session, record: DunningRunRecord) -> dict | None:
    """What the AR channel is told of a run, from its rows: notices by level, skipped levels,
    customers, the top `TOP` by amount still due (balance less disputed, now), customers
    without a billing e-mail among those due an e-mail, those put on credit hold. None when
    the run sent nothing."""
    notice, inv, cust = DunningNotice.__table__, Invoice.__table__, Customer.__table__
    ours = notice.c.run_id == record.id
    by_level = dict(session.execute(
        select(notice.c.level, sa.func.count()).where(ours, notice.c.skipped.is_(False))
        .group_by(notice.c.level)).all())
    if not by_level:
        return None
    skipped = session.execute(select(sa.func.count()).select_from(notice)
                              .where(ours, notice.c.skipped.is_(True))).scalar_one()
    sent = (select(inv.c.customer_id, cust.c.name, cust.c.billing_email, cust.c.credit_hold,
                   inv.c.currency, notice.c.level,
                   (inv.c.balance_minor - inv.c.disputed_minor).label("due"))
            .join(inv, inv.c.id == notice.c.invoice_id)
            .join(cust, cust.c.id == inv.c.customer_id)
            .where(ours, notice.c.skipped.is_(False)).subquery())
    amounts: dict[int, dict[str, int]] = {}
    top_names: dict[int, str] = {}
    for customer_id, name, currency, due in session.execute(
            select(sent.c.customer_id, sent.c.name, sent.c.currency, sa.func.sum(sent.c.due))
            .group_by(sent.c.customer_id, sent.c.name, sent.c.currency)).all():
        amounts.setdefault(customer_id, {})[currency] = int(due)
        top_names[customer_id] = name
    top = sorted(amounts.items(), key=lambda c: (-max(c[1].values(), default=0), c[0]))[:TOP]
    levels = plan(policy.current(session).dunning_offsets)
    emailing = [lv.offset for lv in levels if lv.emails_customer]
    final = [lv.offset for lv in levels if lv.kind == "final"]

    def names(*conditions) -> list[str]:
        return list(session.execute(select(sent.c.name).where(*conditions).distinct()
                                    .order_by(sent.c.name)).scalars())

    no_email = names(sent.c.level.in_(emailing),
                     sa.or_(sent.c.billing_email.is_(None), sent.c.billing_email == ""))
    held = names(sent.c.level.in_(final), sent.c.credit_hold.is_(True))
    return {"as_of": record.as_of.isoformat(), "notices": sum(by_level.values()),
            "by_level": {str(k): v for k, v in sorted(by_level.items())},
            "emails": record.emails, "customers": len(amounts),
            "skipped": skipped, "late_fees": record.late_fees,
            "top": [{"customer_id": cid, "name": top_names.get(cid, ""),
                     "amounts": [{"currency": cur, "amount_minor": minor}
                                 for cur, minor in sorted(c.items())]}
                    for cid, c in top],
            "no_email": no_email[:20], "no_email_count": len(no_email),
            "credit_holds": held[:20], "credit_hold_count": record.credit_holds}


# -- an admin's confirmation of a large run ----------------------------------------------------
def _confirmation(session: Session, as_of: date) -> DunningConfirmation | None:
    return session.exec(select(DunningConfirmation)
                        .where(DunningConfirmation.as_of == as_of)).first()


def request_confirmation(session: Session, as_of: date, counts: dict[str, int], *,
                         threshold: int, now: datetime | None) -> int:
    """Ask (once per dunning day) an admin to confirm a run of `counts`; returns the
    request's id. The AR channel is told, and the request audited, once."""
    table = DunningConfirmation.__table__
    values = _values(DunningConfirmation(as_of=as_of, emails=counts["emails"],
                                         notices=counts["notices"],
                                         customers=counts["customers"],
                                         **({"requested_at": now} if now else {})))
    new_id = session.execute(
        bulk.upsert_insert(session, table).values(values)
        .on_conflict_do_nothing(index_elements=["as_of"]).returning(table.c.id)).scalar()
    if new_id is None:  # asked already today (this run or another process)
        return _confirmation(session, as_of).id
    context = {"id": new_id, "as_of": as_of.isoformat(), "threshold": threshold, **counts}
    session.execute(sa.insert(OutboxMessage.__table__), [_message(
        _Rows(as_of), "slack", {"channel": "ar", "template": "dunning_confirm", "context": context},
        f"dunning-confirm:{new_id}")])
    audit.record(session, actor="system", action="dunning.confirmation_requested",
                 entity_type="dunning_run", entity_id=as_of.isoformat(), to_state="waiting",
                 threshold=threshold, **counts)
    return new_id


def pending_confirmation(session: Session) -> DunningConfirmation | None:
    """The latest dunning day waiting for an admin."""
    return session.exec(select(DunningConfirmation)
                        .where(DunningConfirmation.confirmed_at.is_(None))
                        .order_by(DunningConfirmation.as_of.desc())).first()


def confirm(session: Session, *, user_id: str, now: datetime,
            request_id: int | None = None) -> DunningConfirmation:
    """An admin confirms a waiting dunning day (the request `request_id` — a card's button —,
    else the latest waiting); the role is checked here, the decision audited, and a second
    confirmation changes nothing."""
    require_role(session, user_id=user_id, roles=(Role.ADMIN,), action="dunning.confirm",
                 entity_type="dunning_run", entity_id=request_id or "-")
    request = (session.get(DunningConfirmation, request_id) if request_id is not None
               else pending_confirmation(session))
    if request is None:
        raise DomainError("No dunning run is waiting for a confirmation.")
    table = DunningConfirmation.__table__
    changed = session.execute(sa.update(table).where(table.c.id == request.id,
                                                     table.c.confirmed_at.is_(None))
                              .values(confirmed_by=user_id, confirmed_at=now)).rowcount
    if changed:
        audit.record(session, actor=user_id, action="dunning.confirmed",
                     entity_type="dunning_run", entity_id=request.as_of.isoformat(),
                     from_state="waiting", to_state="confirmed", emails=request.emails,
                     notices=request.notices, customers=request.customers)
    session.refresh(request)
    return request
