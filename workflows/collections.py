"""Collections: the collector's ranked worklist, the daily digest, and what a collector does
about an account (log a call, take a promise to pay, send a reminder, snooze it).

Priority (SPEC §3), per account, documented here because collectors will ask "why is this one
first?":

    priority = weighted overdue × risk

    weighted overdue = Σ over the account's overdue invoices of
                       open balance not in dispute (major units) × weight(days past due)
        weight: 1–30 days 1.0 · 31–60 days 1.5 · 61–90 days 2.0 · 90+ days 3.0
        (so one 100.00 invoice 95 days late outranks two 100.00 invoices 10 days late)

    risk = 1 + 0.10 × late-paid invoices in the last 365 days   (at most 10 counted)
             + 0.50 × promises broken in the last 365 days      (at most 4 counted)
             + 0.25 × disputed open invoices                    (at most 4 counted)
        (1.0 for a customer who always paid on time; at most 5.0)

All arithmetic is `Decimal`; the weighted sum is computed in SQL as an integer (balance in minor
units × weight in tenths) and divided once in Python. Amounts in different currencies are
ranked by their nominal value (the system holds no exchange rates); totals are per currency.

Scale: the worklists of *all* collectors come from one grouped query over invoices (one row per
customer with open AR) streamed in chunks, with a bounded heap per collector, so memory does not
grow with the number of invoices (bench/digest.py: 1M open invoices, 50k customers).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    AGING_BUCKETS,
    ActivityKind,
    Allocation,
    CollectionActivity,
    Customer,
    DigestRun,
    Invoice,
    OutboxMessage,
    Payment,
    PromiseStatus,
    PromiseToPay,
    Role,
    User,
    UserRole,
    money,
)
from workflows import outbox, policy, receipts
from workflows import validation as v
from workflows.errors import Conflict, NotFound, ValidationFailed
from workflows.users import require_role
from workflows.workcalendar import zone_or_utc

COLLECTOR_ROLES = (Role.COLLECTOR,)  # admins hold every role
# weight(days past due) in tenths, by aging bucket (see the module docstring)
WEIGHT_TENTHS = {"1-30": 10, "31-60": 15, "61-90": 20, "90+": 30}
TEN = Decimal(10)
RISK_LATE, RISK_LATE_CAP = Decimal("0.10"), 10
RISK_BROKEN, RISK_BROKEN_CAP = Decimal("0.50"), 4
RISK_DISPUTE, RISK_DISPUTE_CAP = Decimal("0.25"), 4
HISTORY_DAYS = 365
# payments dated after `as_of` (an as-of look back) keep the business zone's offsets this far
HISTORY_FUTURE_DAYS = 62
TOP_ACCOUNTS = 10  # accounts shown in a digest / worklist; the rest are "and N more"
SNOOZE_DAYS = 7
PROMISE_MAX_DAYS = 180
CHUNK = 2000
# The worklist of the customers nobody collects (no collector assigned): its digest goes to the
# AR channel (the logical channel "ar", `O2C_AR_CHANNEL`), where the AR team already gets what
# no one person owns (unmatched cash, deductions, a broken promise nobody took). The key is
# that channel's, so it cannot clash with a Slack user id.
UNASSIGNED = "ar"


def _collector_in(column: sa.ColumnElement, collector_ids: list[str]) -> sa.ColumnElement:
    """SQL: the customer's collector is one of `collector_ids` (UNASSIGNED: none)."""
    named = [c for c in collector_ids if c != UNASSIGNED]
    condition = column.in_(named) if named else sa.false()
    if UNASSIGNED in collector_ids:
        condition = sa.or_(condition, column.is_(None), column == "")
    return condition


# -- priority ------------------------------------------------------------------------------------
def weight(days_past_due: int) -> Decimal:
    """The weight of an invoice's balance by how late it is (0 when not yet due)."""
    if days_past_due <= 0:
        return Decimal(0)
    if days_past_due <= 30:
        bucket = "1-30"
    elif days_past_due <= 60:
        bucket = "31-60"
    elif days_past_due <= 90:
        bucket = "61-90"
    else:
        bucket = "90+"
    return Decimal(WEIGHT_TENTHS[bucket]) / TEN


def risk_factor(*, late_paid: int, broken_promises: int, disputes: int) -> Decimal:
    return (Decimal(1) + RISK_LATE * min(late_paid, RISK_LATE_CAP)
            + RISK_BROKEN * min(broken_promises, RISK_BROKEN_CAP)
            + RISK_DISPUTE * min(disputes, RISK_DISPUTE_CAP))


def priority(*, weighted_tenths_minor: int, currency: str, risk: Decimal) -> Decimal:
    """weighted overdue (major units) × risk, to the cent."""
    weighted = money.from_minor(weighted_tenths_minor, currency) / TEN
    return (weighted * risk).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# -- worklists -----------------------------------------------------------------------------------
@dataclass
class Promise:
    status: str
    amount_minor: int
    promised_date: date


@dataclass
class Account:
    customer_id: int
    name: str
    currency: str
    collector_id: str | None
    sales_rep_id: str | None
    buckets: dict[str, int]
    oldest_overdue_due: date | None
    days_late: int
    weighted_tenths_minor: int
    late_paid: int
    broken_promises: int
    disputes: int
    last_contact: datetime | None
    promise: Promise | None
    snoozed_until: date | None
    risk: Decimal = Decimal(1)
    score: Decimal = Decimal(0)

    @property
    def overdue_minor(self) -> int:
        return sum(amount for name, amount in self.buckets.items() if name != "current")

    @property
    def open_minor(self) -> int:
        return sum(self.buckets.values())

    def snapshot(self) -> dict:
        """JSON-ready, for outbox contexts (the digest is rendered from it later)."""
        return {
            "customer_id": self.customer_id, "name": self.name, "currency": self.currency,
            "overdue_minor": self.overdue_minor, "open_minor": self.open_minor,
            "days_late": self.days_late, "score": str(self.score), "risk": str(self.risk),
            "late_paid": self.late_paid, "broken_promises": self.broken_promises,
            "disputes": self.disputes,
            "last_contact": self.last_contact.isoformat() if self.last_contact else None,
            "promise": ({"status": self.promise.status, "amount_minor": self.promise.amount_minor,
                         "date": self.promise.promised_date.isoformat()}
                        if self.promise else None),
        }


@dataclass
class Worklist:
    collector_id: str
    as_of: date
    totals: dict[str, dict[str, int]] = field(default_factory=dict)  # currency -> bucket -> minor
    accounts: list[Account] = field(default_factory=list)  # ranked, at most `top`
    total_accounts: int = 0  # accounts with something overdue and not snoozed
    snoozed: int = 0

    @property
    def more(self) -> int:
        return max(self.total_accounts - len(self.accounts), 0)

    def snapshot(self) -> dict:
        return {"collector_id": self.collector_id, "as_of": self.as_of.isoformat(),
                "totals": self.totals, "accounts": [a.snapshot() for a in self.accounts],
                "total_accounts": self.total_accounts, "more": self.more,
                "snoozed": self.snoozed}


def _edges(as_of: date) -> list[date]:
    return [as_of - timedelta(days=d) for d in (30, 60, 90)]


def _account_query(as_of: date, collector_ids: list[str] | None,
                   customer_id: int | None, zone: tzinfo = UTC) -> sa.Select:
    """`zone`: the books' time zone, whose dates say whether a payment was late."""
    inv = Invoice.__table__
    d30, d60, d90 = _edges(as_of)
    # the last year of business days (midnight in the books' zone)
    since = datetime.combine(as_of - timedelta(days=HISTORY_DAYS), time.min,
                             tzinfo=zone).astimezone(UTC)
    # a literal 0, not a bound parameter, so the planner can match the partial index
    is_open = inv.c.balance_minor > sa.literal_column("0")
    due = inv.c.due_date

    def open_sum(cond: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, bal), else_=0)), 0)

    # what is in dispute is left out of the buckets and of priority (workflows.disputes)
    bal = inv.c.balance_minor - inv.c.disputed_minor
    overdue = due < as_of
    weighted = sa.case(
        (sa.not_(overdue), 0),
        (due >= d30, bal * WEIGHT_TENTHS["1-30"]),
        (due >= d60, bal * WEIGHT_TENTHS["31-60"]),
        (due >= d90, bal * WEIGHT_TENTHS["61-90"]),
        else_=bal * WEIGHT_TENTHS["90+"])
    # Open balances by bucket: reads the partial covering index ix_invoices_open_aging only.
    agg = (select(
        inv.c.customer_id.label("customer_id"),
        open_sum(due >= as_of).label("b_current"),
        open_sum(sa.and_(due < as_of, due >= d30)).label("b_1_30"),
        open_sum(sa.and_(due < d30, due >= d60)).label("b_31_60"),
        open_sum(sa.and_(due < d60, due >= d90)).label("b_61_90"),
        open_sum(due < d90).label("b_90"),
        sa.func.coalesce(sa.func.sum(weighted), 0).label("weighted"),
        sa.func.min(sa.case((sa.and_(overdue, bal > 0), due), else_=None)).label("oldest_due"),
        sa.func.coalesce(sa.func.sum(sa.case((inv.c.disputed_minor > 0, 1), else_=0)), 0)
        .label("disputes"),
    ).where(is_open).group_by(inv.c.customer_id))
    # Late-payment history: invoices settled after their due date in the last year, by the
    # business date of the payment (17:00 in Los Angeles on the due date is 01:00 UTC the day
    # after, and on time)
    paid_on = policy.business_date_sql(inv.c.paid_at, zone, since, datetime.combine(
        as_of + timedelta(days=HISTORY_FUTURE_DAYS), time.min, tzinfo=UTC))
    late = (select(inv.c.customer_id.label("customer_id"), sa.func.count().label("n"))
            .where(inv.c.balance_minor == 0, inv.c.paid_at.is_not(None),
                   inv.c.paid_at >= since, paid_on > due)
            .group_by(inv.c.customer_id))
    cust = Customer.__table__
    if customer_id is not None:
        agg = agg.where(inv.c.customer_id == customer_id)
        late = late.where(inv.c.customer_id == customer_id)
    elif collector_ids is not None:
        mine = select(cust.c.id).where(_collector_in(cust.c.collector_id, collector_ids))
        agg = agg.where(inv.c.customer_id.in_(mine))
        late = late.where(inv.c.customer_id.in_(mine))
    agg, late = agg.subquery("agg"), late.subquery("late")

    prom = PromiseToPay.__table__
    broken = (select(prom.c.customer_id, sa.func.count().label("n"))
              .where(prom.c.status == PromiseStatus.BROKEN, prom.c.broken_at >= since)
              .group_by(prom.c.customer_id).subquery("broken"))
    latest_promise_id = (select(prom.c.customer_id, sa.func.max(prom.c.id).label("id"))
                         .group_by(prom.c.customer_id).subquery("latest_promise_id"))
    latest_promise = prom.alias("latest_promise")
    act = CollectionActivity.__table__
    contact = (select(act.c.customer_id, sa.func.max(act.c.at).label("at"))
               .where(act.c.kind != ActivityKind.SNOOZE)
               .group_by(act.c.customer_id).subquery("contact"))
    snooze = (select(act.c.customer_id, sa.func.max(act.c.snooze_until).label("until"))
              .where(act.c.kind == ActivityKind.SNOOZE)
              .group_by(act.c.customer_id).subquery("snooze"))

    query = (select(
        cust.c.id, cust.c.name, cust.c.currency, cust.c.collector_id, cust.c.sales_rep_id,
        agg.c.b_current, agg.c.b_1_30, agg.c.b_31_60, agg.c.b_61_90, agg.c.b_90,
        agg.c.weighted, agg.c.oldest_due, agg.c.disputes, sa.func.coalesce(late.c.n, 0),
        sa.func.coalesce(broken.c.n, 0), contact.c.at, snooze.c.until,
        latest_promise.c.status, latest_promise.c.amount_minor, latest_promise.c.promised_date)
        .select_from(agg.join(cust, cust.c.id == agg.c.customer_id)
                     .outerjoin(late, late.c.customer_id == cust.c.id)
                     .outerjoin(broken, broken.c.customer_id == cust.c.id)
                     .outerjoin(contact, contact.c.customer_id == cust.c.id)
                     .outerjoin(snooze, snooze.c.customer_id == cust.c.id)
                     .outerjoin(latest_promise_id, latest_promise_id.c.customer_id == cust.c.id)
                     .outerjoin(latest_promise, latest_promise.c.id == latest_promise_id.c.id)))
    return query


def _to_date(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value  # type: ignore[return-value]
    return date.fromisoformat(str(value)[:10])


def _to_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # type: ignore[union-attr]


def _account(row: tuple, as_of: date) -> Account:
    (cid, name, currency, collector, rep, b0, b1, b2, b3, b4, weighted, oldest, disputes,
     late_paid, broken, last_contact, snoozed, p_status, p_amount, p_date) = row
    oldest = _to_date(oldest)
    account = Account(
        customer_id=cid, name=name, currency=currency, collector_id=collector,
        sales_rep_id=rep,
        buckets=dict(zip(AGING_BUCKETS, (int(b0), int(b1), int(b2), int(b3), int(b4)),
                         strict=True)),
        oldest_overdue_due=oldest, days_late=(as_of - oldest).days if oldest else 0,
        weighted_tenths_minor=int(weighted), late_paid=int(late_paid),
        broken_promises=int(broken), disputes=int(disputes),
        last_contact=_to_datetime(last_contact),
        promise=(Promise(p_status, int(p_amount), _to_date(p_date)) if p_status else None),
        snoozed_until=_to_date(snoozed))
    account.risk = risk_factor(late_paid=account.late_paid,
                               broken_promises=account.broken_promises,
                               disputes=account.disputes)
    account.score = priority(weighted_tenths_minor=account.weighted_tenths_minor,
                             currency=currency, risk=account.risk)
    return account


# Row positions in `_account_query` results (the hot loop reads rows without building objects).
_COLLECTOR, _CURRENCY, _BUCKETS, _WEIGHTED = 3, 2, slice(5, 10), 10
_DISPUTES, _LATE, _BROKEN, _SNOOZED = 12, 13, 14, 16


def build_worklists(session: Session, as_of: date, *, collector_ids: Iterable[str] | None = None,
                    top: int = TOP_ACCOUNTS) -> dict[str, Worklist]:
    """Ranked worklists for every collector (or the given ones), keeping only the `top`
    accounts of each in memory. Collectors with no open AR get an empty worklist when they are
    named in `collector_ids`.

    The loop over customers stays cheap: plain row reads and the Decimal score; full
    `Account` objects are built for the heap's winners alone."""
    wanted = sorted(set(collector_ids)) if collector_ids is not None else None
    result: dict[str, Worklist] = {c: Worklist(c, as_of) for c in wanted or []}
    heaps: dict[str, list] = {}
    query = _account_query(as_of, wanted, None, policy.business_zone(session)
                           ).execution_options(yield_per=CHUNK)
    for row in session.execute(query):
        collector, currency = row[_COLLECTOR] or UNASSIGNED, row[_CURRENCY]
        worklist = result.get(collector)
        if worklist is None:
            worklist = result[collector] = Worklist(collector, as_of)
        totals = worklist.totals.get(currency)
        if totals is None:
            totals = worklist.totals[currency] = dict.fromkeys(AGING_BUCKETS, 0)
        amounts = row[_BUCKETS]
        for name, amount in zip(AGING_BUCKETS, amounts, strict=True):
            totals[name] += int(amount)
        overdue = sum(int(a) for a in amounts[1:])
        if overdue <= 0:
            continue
        snoozed = _to_date(row[_SNOOZED])
        if snoozed and snoozed > as_of:
            worklist.snoozed += 1
            continue
        worklist.total_accounts += 1
        risk = risk_factor(late_paid=int(row[_LATE]), broken_promises=int(row[_BROKEN]),
                           disputes=int(row[_DISPUTES]))
        score = priority(weighted_tenths_minor=int(row[_WEIGHTED]), currency=currency,
                         risk=risk)
        # highest score first; ties: more overdue, then the older customer
        key = (score, money.from_minor(overdue, currency), -row[0])
        heap = heaps.setdefault(collector, [])
        if len(heap) < top:
            heapq.heappush(heap, (key, tuple(row)))
        elif key > heap[0][0]:
            heapq.heapreplace(heap, (key, tuple(row)))
    for collector, heap in heaps.items():
        result[collector].accounts = [_account(r, as_of) for _, r in
                                      sorted(heap, key=lambda item: item[0], reverse=True)]
    return result


def worklist(session: Session, collector_id: str, as_of: date, *, top: int = TOP_ACCOUNTS
             ) -> Worklist:
    return build_worklists(session, as_of, collector_ids=[collector_id], top=top)[collector_id]


def account(session: Session, customer_id: int, as_of: date) -> Account | None:
    """One customer's account figures (None when nothing is open)."""
    row = session.execute(_account_query(as_of, None, customer_id,
                                         policy.business_zone(session))).first()
    return _account(tuple(row), as_of) if row else None


# -- the daily digest ----------------------------------------------------------------------------
def collectors(session: Session) -> list[str]:
    """Who gets a digest: users holding the collector role, and anyone assigned as the
    collector of a customer; then UNASSIGNED (the AR channel) when a customer with no
    collector has an open invoice past its due date (by the day's own rules, the digest may
    still find nothing overdue and then sends nothing: `prepare_digests`)."""
    by_role = session.exec(select(UserRole.user_id).where(UserRole.role == Role.COLLECTOR)).all()
    assigned = session.exec(select(Customer.collector_id).where(
        Customer.collector_id.is_not(None), Customer.collector_id != "").distinct()).all()
    people = sorted(set(by_role) | set(assigned))
    cust, inv = Customer.__table__, Invoice.__table__
    unassigned = session.execute(select(inv.c.id).join(cust, cust.c.id == inv.c.customer_id)
                                 .where(_collector_in(cust.c.collector_id, [UNASSIGNED]),
                                        inv.c.balance_minor > inv.c.disputed_minor,
                                        inv.c.balance_minor > sa.literal_column("0"))
                                 .limit(1)).first()
    return [*people, UNASSIGNED] if unassigned is not None else people


def prepare_digests(session: Session, as_of: date, *,
                    collector_ids: Iterable[str] | None = None,
                    top: int = TOP_ACCOUNTS) -> dict[str, dict]:
    """The digest contexts (collector -> outbox context) of the collectors who have not had
    their digest for `as_of` yet. Only reads: run it in a read session, since building the
    worklists is the slow part (seconds on a million invoices) and must not hold SQLite's
    write lock; then `record_digests` in a short write transaction."""
    wanted = list(collector_ids) if collector_ids is not None else collectors(session)
    if not wanted:
        return {}
    already = set(session.exec(select(DigestRun.collector_id).where(
        DigestRun.run_date == as_of, DigestRun.collector_id.in_(wanted))).all())
    todo = [c for c in wanted if c not in already]
    if not todo:
        return {}
    # all collectors: one unfiltered pass (cheapest); some: only their customers
    lists = build_worklists(session, as_of, top=top,
                            collector_ids=None if collector_ids is None else todo)
    zones = dict(session.exec(select(User.slack_user_id, User.timezone).where(
        User.slack_user_id.in_(todo))).all())
    out = {collector: {**lists.get(collector, Worklist(collector, as_of)).snapshot(),
                       "tz": zones.get(collector) or "UTC"} for collector in todo}
    if UNASSIGNED in out:  # the AR channel: in the business time zone, and only with accounts
        unassigned = lists.get(UNASSIGNED)
        if unassigned is None or not (unassigned.total_accounts or unassigned.snoozed):
            del out[UNASSIGNED]
        else:
            out[UNASSIGNED].update(unassigned=True,
                                   tz=policy.current(session).business_timezone or "UTC")
    return out


def record_digests(session: Session, as_of: date, digests: dict[str, dict]) -> list[str]:
    """Queue the prepared digests: a `DigestRun` and an outbox DM per collector, in the
    caller's (short) write transaction. `DigestRun` (collector, run_date) is unique: a
    collector another process (or an earlier run) already recorded is skipped. Returns the
    collectors queued now."""
    if not digests:
        return []
    already = set(session.exec(select(DigestRun.collector_id).where(
        DigestRun.run_date == as_of, DigestRun.collector_id.in_(list(digests)))).all())
    queued = []
    for collector, context in digests.items():
        if collector in already:
            continue
        run = DigestRun(collector_id=collector, run_date=as_of)
        try:
            with session.begin_nested():
                session.add(run)
                session.flush()
                post = (outbox.post_to_channel(session, channel=UNASSIGNED,
                                               template="collections_digest", context=context,
                                               dedupe_key=f"digest:{collector}:{as_of}")
                        if collector == UNASSIGNED else
                        outbox.post_to_user(session, user_id=collector,
                                            template="collections_digest", context=context,
                                            dedupe_key=f"digest:{collector}:{as_of}"))
                run.outbox_id = post.id
                session.add(run)
        except IntegrityError:
            continue  # another process sent it first
        queued.append(collector)
    return queued


# -- what a collector does -----------------------------------------------------------------------
def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    return customer


def require_collector(session: Session, *, user_id: str, action: str,
                      customer_id: int | str = "-") -> None:
    require_role(session, user_id=user_id, roles=COLLECTOR_ROLES, action=action,
                 entity_type="customer", entity_id=customer_id)


def _activity(session: Session, *, customer_id: int, kind: str, user_id: str, at: datetime,
              note: str | None = None, invoice_id: int | None = None,
              snooze_until: date | None = None) -> CollectionActivity:
    """What a collector did, dated by the business clock (`at` is the caller's `now`, SPEC
    §5.10), not by the recording clock: the worklist's last contact and the digest rows it
    refreshes (its 7 days) follow the sandbox's Time travel and a frozen test clock."""
    row = CollectionActivity(customer_id=customer_id, kind=kind, user_id=user_id, note=note,
                             invoice_id=invoice_id, snooze_until=snooze_until, at=at)
    session.add(row)
    session.flush()
    return row


def check_call(session: Session, *, customer_id: int, actor: str, note: str | None) -> str:
    """What `log_call` would refuse, with reads only (the modal runs it before its ack): the
    collector role, the customer, the note. Returns the note as it will be stored."""
    require_collector(session, user_id=actor, action="collections.log_call",
                      customer_id=customer_id)
    get_customer(session, customer_id)
    note = (note or "").strip()
    if not note:
        raise ValidationFailed.of("note", "say what was agreed or learned on the call")
    if len(note) > 2000:
        raise ValidationFailed.of("note", "must be at most 2000 characters")
    return note


def log_call(session: Session, *, customer_id: int, actor: str, note: str, now: datetime
             ) -> CollectionActivity:
    note = check_call(session, customer_id=customer_id, actor=actor, note=note)
    row = _activity(session, customer_id=customer_id, kind=ActivityKind.CALL, user_id=actor,
                    at=now, note=note)
    refresh_digest_rows(session, customer_id=customer_id, done=row, contact=True)
    return row


DIGEST_REFRESH_DAYS = 7  # digests older than this are left as they were


def refresh_digest_rows(session: Session, *, customer_id: int, done: CollectionActivity,
                        contact: bool = False) -> int:
    """The customer's row in the digests of the last days (its collector's) is updated in
    place (chat.update, in this transaction): last contact, the open promise, and what was
    just done, by whom (issue 13). Returns how many digests were updated. "The last days":
    a digest's `run_date` is the day in its reader's zone (the collector's Slack zone; the AR
    channel's: the business zone), so the days are counted back from the date of the action
    in that zone: 18:00 in Los Angeles on 23 Nov (02:00 UTC on the 24th) reaches back to the
    collector's digest of 16 Nov."""
    at = done.at
    # The digest runs are locked (in id order) while their rows are rewritten: two actions on
    # one account at once (a call logged while a snooze is clicked) queue up here, so each
    # update builds on the other's instead of losing it.
    collector = session.exec(select(Customer.collector_id)
                             .where(Customer.id == customer_id)).first() or UNASSIGNED
    if at is None:
        since = date.min
    else:
        zone = (policy.business_zone(session) if collector == UNASSIGNED else zone_or_utc(
            session.exec(select(User.timezone).where(User.slack_user_id == collector)).first()))
        since = at.astimezone(zone).date() - timedelta(days=DIGEST_REFRESH_DAYS)
    runs = session.exec(select(DigestRun.outbox_id).where(
        DigestRun.collector_id == collector, DigestRun.run_date >= since,
        DigestRun.outbox_id.is_not(None))
        .order_by(DigestRun.id).limit(50).with_for_update()).all()
    if not runs:
        return 0
    promise = session.exec(select(PromiseToPay).where(
        PromiseToPay.customer_id == customer_id, PromiseToPay.status == PromiseStatus.OPEN)
        .order_by(PromiseToPay.id.desc())).first()
    updated = 0
    for message in session.exec(select(OutboxMessage).where(OutboxMessage.id.in_(runs))):
        # updates build on updates; they come after the digest (`id >` bounds the scan: the
        # outbox has no index on target_outbox_id)
        latest = session.exec(select(OutboxMessage.payload).where(
            OutboxMessage.id > message.id, OutboxMessage.target_outbox_id == message.id)
            .order_by(OutboxMessage.id.desc()).limit(1)).first()
        context = dict((latest or message.payload or {}).get("context") or {})
        accounts = context.get("accounts") or []
        if not any(a.get("customer_id") == customer_id for a in accounts):
            continue
        fresh = []
        for account in accounts:
            if account.get("customer_id") == customer_id:
                account = dict(account)
                if contact and at is not None:
                    account["last_contact"] = at.isoformat()
                account["promise"] = ({"status": promise.status,
                                       "amount_minor": promise.amount_minor,
                                       "date": promise.promised_date.isoformat()}
                                      if promise else None)
                account["done"] = [*(account.get("done") or [])[-4:], {
                    "kind": done.kind, "by": done.user_id, "note": done.note,
                    "at": at.isoformat() if at else None}]
            fresh.append(account)
        context["accounts"] = fresh
        outbox.update_message(session, target_outbox_id=message.id,
                              template="collections_digest", context=context)
        updated += 1
    return updated


def snooze(session: Session, *, customer_id: int, actor: str, as_of: date, now: datetime,
           days: int = SNOOZE_DAYS) -> date:
    """Hide an account from the worklist and digest until `as_of + days` (dunning goes on).
    Once per customer and end date, whoever clicks and however often (`receipts.claim`):
    a repeat raises `receipts.AlreadyHandled` carrying the `until` of the first."""
    require_collector(session, user_id=actor, action="collections.snooze",
                      customer_id=customer_id)
    get_customer(session, customer_id)
    until = as_of + timedelta(days=days)
    receipt = receipts.claim(session, key=f"snooze:{customer_id}:{until.isoformat()}",
                             kind="snooze", actor=actor)
    receipts.remember(session, receipt, until=until.isoformat())
    row = _activity(session, customer_id=customer_id, kind=ActivityKind.SNOOZE, user_id=actor,
                    at=now, note=f"snoozed until {until.isoformat()}", snooze_until=until)
    refresh_digest_rows(session, customer_id=customer_id, done=row)
    return until


def overdue_invoices(session: Session, customer_id: int, as_of: date, limit: int = 20
                     ) -> list[Invoice]:
    """Overdue invoices with something open that is not in dispute."""
    return list(session.exec(select(Invoice).where(
        Invoice.customer_id == customer_id, Invoice.balance_minor > 0,
        Invoice.balance_minor > Invoice.disputed_minor,
        Invoice.due_date < as_of).order_by(Invoice.due_date, Invoice.id).limit(limit)))


def invoice_snapshot(invoice: Invoice, as_of: date) -> dict:
    """An invoice as a reminder shows it: the amount due leaves out what is in dispute."""
    due = invoice.balance_minor - invoice.disputed_minor
    return {"number": invoice.number, "issue_date": invoice.issue_date.isoformat(),
            "due_date": invoice.due_date.isoformat(),
            "days_past_due": (as_of - invoice.due_date).days, "currency": invoice.currency,
            "total_minor": invoice.total_minor, "amount_due_minor": due,
            "in_dispute_minor": invoice.disputed_minor,
            "total": money.to_str(invoice.total_minor, invoice.currency),
            "amount_due": money.format_money(due, invoice.currency)}


def send_reminder(session: Session, *, customer_id: int, actor: str, as_of: date,
                  now: datetime) -> OutboxMessage:
    """E-mail the customer a statement of overdue invoices, at most once per day (the outbox
    dedupe key), so a double click sends one e-mail. The day is the books' (`now` in the
    business time zone), not the clicker's `as_of`: two collectors a date line apart would
    otherwise e-mail the same customer twice within minutes."""
    require_collector(session, user_id=actor, action="collections.reminder",
                      customer_id=customer_id)
    customer = get_customer(session, customer_id)
    if not customer.billing_email:
        raise ValidationFailed.of("billing_email", f"{customer.name} has no billing e-mail on "
                                  "file; add one through the API or CSV import")
    invoices = overdue_invoices(session, customer_id, as_of)
    if not invoices:
        raise Conflict(f"{customer.name} has nothing overdue")
    # the total asked for is every overdue invoice's, not only the ones the e-mail lists
    count, total = session.execute(
        select(sa.func.count(), sa.func.sum(Invoice.balance_minor - Invoice.disputed_minor))
        .where(Invoice.customer_id == customer_id, Invoice.balance_minor > 0,
               Invoice.balance_minor > Invoice.disputed_minor,
               Invoice.due_date < as_of)).one()
    total = int(total)
    listed = sum(i.balance_minor - i.disputed_minor for i in invoices)
    context = {"customer_id": customer.id, "customer_name": customer.name,
               "as_of": as_of.isoformat(), "currency": customer.currency,
               "invoices": [invoice_snapshot(i, as_of) for i in invoices],
               "more": int(count) - len(invoices), "more_due_minor": total - listed,
               "total_due_minor": total,
               "total_due": money.format_money(total, customer.currency)}
    try:
        with session.begin_nested():
            message = outbox.send_email(
                session, to=customer.billing_email, template="collections_reminder",
                context=context, dedupe_key=f"reminder:{customer_id}:"
                f"{policy.business_date(session, now).isoformat()}")
    except IntegrityError:
        raise Conflict(f"A reminder already went to {customer.name} today.") from None
    row = _activity(session, customer_id=customer_id, kind=ActivityKind.REMINDER,
                    user_id=actor, at=now, note=f"reminder e-mailed to {customer.billing_email}")
    refresh_digest_rows(session, customer_id=customer_id, done=row, contact=True)
    return message


# -- promises to pay -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PromiseIn:
    """A promise to pay as checked by `check_promise`, ready to record."""

    customer: Customer
    amount_minor: int
    promised_date: date
    note: str | None


def check_promise(session: Session, *, customer_id: int, actor: str, amount: str,
                  promised_date: date | str | None, note: str | None, as_of: date
                  ) -> PromiseIn:
    """What `create_promise` would refuse, with reads only (the modal runs it before its ack,
    so each error shows under its field): the collector role, the amount (at most the open
    balance), the date (today to `PROMISE_MAX_DAYS` ahead), the note. Field errors name
    `amount`, `date` or `note`."""
    require_collector(session, user_id=actor, action="collections.promise",
                      customer_id=customer_id)
    customer = get_customer(session, customer_id)
    minor = v.amount_minor("amount", v.typed_amount(amount), customer.currency, positive=True)
    if promised_date in (None, ""):
        raise ValidationFailed.of("date", "pick the date the customer promised to pay by")
    day = v.parse_date("date", promised_date)  # type: ignore[arg-type]
    if day < as_of:
        raise ValidationFailed.of("date", "must be today or later")
    if day > as_of + timedelta(days=PROMISE_MAX_DAYS):
        raise ValidationFailed.of("date", f"must be within {PROMISE_MAX_DAYS} days")
    open_minor = int(session.exec(select(sa.func.coalesce(sa.func.sum(Invoice.balance_minor), 0))
                                  .where(Invoice.customer_id == customer_id,
                                         Invoice.balance_minor > 0)).one())
    if minor > open_minor:
        raise ValidationFailed.of("amount", "more than the customer's open balance of "
                                  f"{money.format_money(open_minor, customer.currency)}")
    note = v.text("note", (note or "").strip() or None)
    if note and len(note) > 2000:
        raise ValidationFailed.of("note", "must be at most 2000 characters")
    return PromiseIn(customer, minor, day, note)


def create_promise(session: Session, *, customer_id: int, actor: str, amount: str,
                   promised_date: date | str | None, note: str | None, as_of: date,
                   now: datetime, invoice_id: int | None = None) -> PromiseToPay:
    """Record a promise to pay, checked by `check_promise`. A new promise replaces the
    customer's open one. Until its promised date has passed, the customer gets no dunning
    e-mail and no credit hold on what it covers (`workflows.dunning._promised`)."""
    checked = check_promise(session, customer_id=customer_id, actor=actor, amount=amount,
                            promised_date=promised_date, note=note, as_of=as_of)
    customer, minor, day, note = (checked.customer, checked.amount_minor,
                                  checked.promised_date, checked.note)
    table = PromiseToPay.__table__
    session.execute(sa.update(table).where(table.c.customer_id == customer_id,
                                           table.c.status == PromiseStatus.OPEN)
                    .values(status=PromiseStatus.CANCELLED))
    promise = PromiseToPay(customer_id=customer_id, invoice_id=invoice_id, amount_minor=minor,
                           currency=customer.currency, promised_date=day, note=note,
                           created_by=actor)
    session.add(promise)
    session.flush()
    row = _activity(session, customer_id=customer_id, kind=ActivityKind.PROMISE,
                    user_id=actor, at=now, invoice_id=invoice_id,
                    note=f"promised {money.format_money(minor, customer.currency)} by {day}"
                    + (f": {note}" if note else ""))
    refresh_digest_rows(session, customer_id=customer_id, done=row, contact=True)
    return promise


def _paid_since(session: Session, promise: PromiseToPay, by: date | None) -> int:
    """Money applied to the customer's (or the promised invoice's) invoices since the promise
    was taken, counting payments whose money arrived by the day `by`: a promise is kept by
    when the money arrived, not by when it was applied — a payment received on the promised
    date and imported (bank statement) or applied by hand the next day keeps it. When it
    arrived is the payment's value date (the bank's, else the day of `received_at` in the
    offset its sender gave: a wire at 20:00 in New York on the promised day is 01:00 UTC the
    next day, and still on time). Only allocations made after the promise was taken count:
    money applied before was already off the balance it was about."""
    query = (select(sa.func.coalesce(sa.func.sum(Allocation.amount_minor), 0))
             .join(Invoice, Invoice.id == Allocation.invoice_id)
             .join(Payment, Payment.id == Allocation.payment_id)
             .where(Invoice.customer_id == promise.customer_id,
                    Allocation.created_at >= promise.created_at))
    if promise.invoice_id is not None:
        query = query.where(Invoice.id == promise.invoice_id)
    if by is not None:
        query = query.where(Payment.value_date <= by)
    return int(session.exec(query).one())


@dataclass
class PromiseCheck:
    kept: list[int] = field(default_factory=list)
    broken: list[int] = field(default_factory=list)


def check_promises(session: Session, as_of: date) -> PromiseCheck:
    """Keep promises whose money arrived; break, the day after the promised date, those whose
    money did not — alerting the collector and the sales rep once (dedupe keys), and raising
    the customer's risk (broken promises count in `risk_factor`)."""
    result = PromiseCheck()
    table = PromiseToPay.__table__
    open_promises = session.exec(select(PromiseToPay).where(
        PromiseToPay.status == PromiseStatus.OPEN).order_by(PromiseToPay.id)).all()
    for promise in open_promises:
        deadline = datetime.combine(promise.promised_date + timedelta(days=1), time.min,
                                    tzinfo=UTC)
        if _paid_since(session, promise, promise.promised_date) >= promise.amount_minor:
            outcome = PromiseStatus.KEPT
        elif promise.promised_date < as_of:
            outcome = PromiseStatus.BROKEN
        else:
            continue
        values: dict = {"status": outcome}
        if outcome == PromiseStatus.BROKEN:
            values["broken_at"] = deadline  # the end of the promised day, whenever we noticed
        changed = session.execute(sa.update(table).where(
            table.c.id == promise.id, table.c.status == PromiseStatus.OPEN).values(**values))
        if changed.rowcount != 1:
            continue  # another process decided it
        if outcome == PromiseStatus.KEPT:
            result.kept.append(promise.id)
            continue
        result.broken.append(promise.id)
        _alert_broken(session, promise, as_of)
    return result


def _alert_broken(session: Session, promise: PromiseToPay, as_of: date) -> None:
    customer = session.get(Customer, promise.customer_id)
    paid = _paid_since(session, promise, None)
    context = {"promise_id": promise.id, "customer_id": customer.id,
               "customer": customer.name, "currency": promise.currency,
               "amount_minor": promise.amount_minor, "paid_minor": paid,
               "promised_date": promise.promised_date.isoformat(), "note": promise.note,
               "taken_by": promise.created_by}
    people = [u for u in dict.fromkeys([customer.collector_id, customer.sales_rep_id,
                                        promise.created_by]) if u]
    for user_id in people:
        outbox.post_to_user(session, user_id=user_id, template="promise_broken",
                            context=context, dedupe_key=f"promise-broken:{promise.id}:{user_id}")
    if not people:
        outbox.post_to_channel(session, channel="ar", template="promise_broken",
                               context=context, dedupe_key=f"promise-broken:{promise.id}:ar")
