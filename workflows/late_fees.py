"""Late fees and interest per dunning level (SPEC §3 "Back office"; off unless configured).

`O2C_LATE_FEES` (policy `late_fees`): comma-separated `level:charge`, a charge being
`fee=<amount>` (fixed, in the invoice's currency) and/or `rate=<annual %>` (simple interest),
joined by `+` or given as two items for one level: `7:fee=25.00,30:rate=8`,
`30:fee=10.00+rate=8`. Levels are dunning offsets in days after the due date (a level the
dunning plan does not have is never reached).

When dunning sends level L for an invoice (`workflows.dunning`), `charge` bills

    fee      = the fixed amount, rounded half-up to the currency's minor unit
    interest = undisputed open balance x rate / 100 x days / 365 (actual/365),
               half-up to the minor unit, per invoice

where `days` runs from the due date — or, when an earlier level already charged interest on
the invoice, from the last day that charge covered — to the day of the run. Several levels
with a rate (`30:rate=10,60:rate=10`) so bill each overdue day once: at +30 for days 1-30, at
+60 for days 31-60, never days 1-30 again. The interest line records the days it covers
(`service_start`..`service_end`, the run's day included); a fee invoice charged before lines
carried them covers through its issue date (it was issued on the day of its run). Each charge
is on the undisputed open balance of its own run: a payment between two levels lowers the
later charge's base, for the days that charge covers (the balance is not averaged by day).
A waived charge stays charged for its days: waiving forgives them, a later level does not
bill them again. The balance is the one read under the invoice's row lock
(`invoicing.lock_invoices`, taken by `dunning.write` before the notices are claimed): a
payment, credit note, write-off or dispute committed on another host while dunning runs is
either waited for and seen (paid: no notice, no fee; paid in part: the fee on what is left)
or comes after the fee.

as a *fee invoice* (source "fee", `INV-<year>-<n>`, due on receipt) that refers to the
original (`fee_for_invoice_id`, `fee_level`). It is charged once per (invoice, level): the
dunning notice of that level is claimed in the same savepoint, and a unique index on
(`fee_for_invoice_id`, `fee_level`) is the database's last word. The level's dunning e-mail
names it. No fee is charged on a fee invoice, nor for an amount in dispute, nor at a level
whose notice e-mails the customer nothing (the sales rep's escalation, a customer with no
billing e-mail: `workflows.dunning.write`) — a fee is charged with the e-mail that names it;
the interest of those days is billed by the next level that e-mails; and a fee whose e-mail
did not go after all (its invoice paid or put in dispute before the outbox sent it:
`bot.outbox`, `dunning.fees_unnamed`) is waived by the system (`write_offs.withdraw_fees`).
A collector may waive a fee (`workflows.write_offs.waive_fee`).

A charge is never more than the largest amount the books hold (`models.limits.
MAX_AMOUNT_MINOR`, 15 digits: every stored amount can be paid, credited and read through the
API): interest at a high rate on a balance near the bound for a long time (or a fixed fee
set near it in a currency with three decimals) is capped there — the fixed fee first, the
interest with what is left, its line saying "capped" — audited `late_fee.capped` with what
was computed, and logged.

A value that does not parse is refused when it is set (`workflows.policy.set_value`). One
stored anyway (an older version, a hand-edited row) does not stop dunning: `in_force` holds
back the levels it names — their notices are neither sent nor claimed, so they go out with
their fee on the first run after it is fixed — every other level is sent, and the run says
so (audit `late_fees.invalid`, an error in the log, `late_fees_invalid` in its summary).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlmodel import Session, select

from models import Customer, Invoice, InvoiceLine, money
from models.limits import MAX_AMOUNT_DIGITS, MAX_AMOUNT_MINOR
from workflows import audit, exposure, invoicing, numbering, policy
from workflows.validation import setting_amount_ok

log = logging.getLogger(__name__)

DAYS_IN_YEAR = Decimal(365)
INTEREST = "Interest "  # how an interest line's description starts


@dataclass(frozen=True)
class LateFee:
    level: int
    fee: Decimal | None = None  # major units of the invoice's currency
    rate: Decimal | None = None  # annual percent


def _amount(text: str, item: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{item!r}: {text!r} is not a number") from None
    if not setting_amount_ok(value):
        raise ValueError(f"{item!r}: {text!r} must be at least 0, with at most "
                         f"{MAX_AMOUNT_DIGITS} digits before the point and 3 after it")
    return value


def parse_late_fees(text: str) -> dict[int, LateFee]:
    """`7:fee=25.00,30:rate=8` -> {7: LateFee(7, fee=25.00), 30: LateFee(30, rate=8)};
    ValueError naming what is wrong."""
    fees: dict[int, LateFee] = {}
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        level_text, sep, charges = item.partition(":")
        try:
            level = int(level_text.strip())
        except ValueError:
            raise ValueError(f"{item!r}: the level must be days after the due date, e.g. "
                             "7:fee=25.00") from None
        if not sep or level <= 0:
            raise ValueError(f"{item!r}: use <days after due>:fee=<amount> or "
                             ":rate=<annual %>, e.g. 7:fee=25.00")
        current = fees.get(level, LateFee(level))
        for charge in (c.strip() for c in charges.split("+")):
            name, eq, value = charge.partition("=")
            name = name.strip().lower()
            if not eq or name not in ("fee", "rate"):
                raise ValueError(f"{item!r}: {charge!r} is not fee=<amount> or rate=<%>")
            number = _amount(value.strip(), item)
            if name == "fee":
                if current.fee is not None:
                    raise ValueError(f"{item!r}: level {level} has two fees")
                current = LateFee(level, number, current.rate)
            else:
                if current.rate is not None:
                    raise ValueError(f"{item!r}: level {level} has two rates")
                if number > 100:
                    raise ValueError(f"{item!r}: a rate is at most 100 (% a year)")
                current = LateFee(level, current.fee, number)
        fees[level] = current
    return fees


@dataclass(frozen=True)
class InForce:
    """The late fees dunning applies: `rules` by level, or — when the stored value does not
    parse — `error` saying why and the levels it names, `held` back until it is fixed."""

    rules: dict[int, LateFee]
    error: str | None = None
    held: frozenset[int] = frozenset()


def in_force(text: str) -> InForce:
    try:
        return InForce(parse_late_fees(text))
    except ValueError as exc:
        named = set()
        for item in (text or "").split(","):
            try:
                named.add(int(item.partition(":")[0].strip()))
            except ValueError:
                continue  # not a level at all: it names none
        return InForce({}, str(exc), frozenset(named))


def _half_up(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Charge:
    fixed_minor: int
    interest_minor: int
    base_minor: int  # the undisputed open balance interest was charged on
    days: int
    rate: Decimal | None
    since: date | None = None  # interest runs over the days after it, up to the run's day

    @property
    def total_minor(self) -> int:
        return self.fixed_minor + self.interest_minor


def interest_charged_through(session: Session, invoice: Invoice) -> date | None:
    """The last day earlier interest charges on `invoice` covered (None: none charged)."""
    rows = session.exec(
        select(InvoiceLine.service_end, InvoiceLine.description, Invoice.issue_date)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.fee_for_invoice_id == invoice.id, Invoice.source == "fee")).all()
    covered = [end if end is not None else issued for end, description, issued in rows
               if end is not None or (description or "").startswith(INTEREST)]
    return max(covered, default=None)


def compute(invoice: Invoice, rule: LateFee, as_of: date, *,
            interest_since: date | None = None) -> Charge:
    """The fee and interest of one level for one invoice at `as_of` (module docstring):
    interest for the days after `interest_since` (default: the due date) up to `as_of`."""
    base = max(invoice.balance_minor - invoice.disputed_minor, 0)
    since = max(invoice.due_date, interest_since or invoice.due_date)
    days = max((as_of - since).days, 0)
    fixed = (int(money.round_half_up(rule.fee, invoice.currency).scaleb(
        money.exponent(invoice.currency))) if rule.fee else 0)
    interest = (_half_up(Decimal(base) * rule.rate / 100 * days / DAYS_IN_YEAR)
                if rule.rate and base else 0)
    return Charge(fixed, interest, base, days, rule.rate, since)


def charge(session: Session, *, invoice: Invoice, customer: Customer, level: int,
           as_of: date, now: datetime | None = None) -> Invoice | None:
    """Bill the level's late fee as a fee invoice (once per invoice and level; the caller
    holds the dunning notice's savepoint and the invoice's row lock, `invoice` read under it:
    `dunning.write`). None when the level charges nothing."""
    rule = parse_late_fees(policy.current(session).late_fees).get(level)
    if rule is None or invoice.fee_for_invoice_id is not None or invoice.source == "fee":
        return None
    if invoice.balance_minor <= invoice.disputed_minor:
        return None  # all that is open is in dispute: nothing is late
    fee = compute(invoice, rule, as_of, interest_since=(
        interest_charged_through(session, invoice) if rule.rate else None))
    if fee.total_minor <= 0:
        return None
    cur = invoice.currency
    computed = fee.total_minor
    if computed > MAX_AMOUNT_MINOR:  # never stored beyond the bound every amount keeps
        fixed = min(fee.fixed_minor, MAX_AMOUNT_MINOR)
        fee = replace(fee, fixed_minor=fixed,
                      interest_minor=min(fee.interest_minor, MAX_AMOUNT_MINOR - fixed))
    capped = " (capped at the largest amount)" if computed != fee.total_minor else ""
    lines: list[tuple[str, int, tuple[date, date] | None]] = []
    if fee.fixed_minor:
        lines.append((f"Late fee, reminder {level} days after the due date of "
                      f"{invoice.number}{capped if not fee.interest_minor else ''}",
                      fee.fixed_minor, None))
    if fee.interest_minor:
        lines.append((f"{INTEREST}{fee.rate.normalize():f}% a year on "
                      f"{money.format_money(fee.base_minor, cur)} for {fee.days} days "
                      f"({invoice.number}){capped}", fee.interest_minor,
                      (fee.since + timedelta(days=1), as_of)))
    # a run `--as-of` a day in a closed month issues it on the first open day
    # (`workflows.invoicing.booked_issue_date`); its interest still runs to `as_of`
    booked = invoicing.booked_issue_date(session, as_of)
    issued = booked.effective_date
    bill = Invoice(number=numbering.next_free_invoice_number(session, issued),
                   customer_id=invoice.customer_id, order_id=None, source="fee", currency=cur,
                   issue_date=issued, due_date=issued, payment_terms="DUE_ON_RECEIPT",
                   billing_address=customer.billing_address,
                   shipping_address=customer.shipping_address, subtotal_minor=0,
                   fees_minor=fee.total_minor, total_minor=fee.total_minor,
                   balance_minor=fee.total_minor, fee_for_invoice_id=invoice.id,
                   fee_level=level, **({"created_at": now} if now else {}))
    session.add(bill)
    session.flush()  # the unique (fee_for_invoice_id, fee_level): charged once
    exposure.moved(session, bill.customer_id)
    for number, (description, amount, days) in enumerate(lines, start=1):
        session.add(InvoiceLine(invoice_id=bill.id, line_no=number, description=description[:200],
                                quantity=1, unit_price_minor=amount, line_total_minor=amount,
                                revenue_type="fee", service_start=days and days[0],
                                service_end=days and days[1]))
    audit.record(session, actor="system", action="late_fee.charged", entity_type="invoice",
                 entity_id=invoice.id, to_state="charged", fee_invoice=bill.number,
                 level=level, fixed_minor=fee.fixed_minor, interest_minor=fee.interest_minor,
                 base_minor=fee.base_minor, days=fee.days, currency=cur,
                 interest_from=(fee.since + timedelta(days=1)).isoformat()
                 if fee.interest_minor else None,
                 rate=str(fee.rate) if fee.rate is not None else None)
    if capped:
        log.warning("late fee on %s at level %s capped: %s minor units computed, %s charged",
                    invoice.number, level, computed, fee.total_minor)
        audit.record(session, actor="system", action="late_fee.capped", entity_type="invoice",
                     entity_id=invoice.id, to_state="capped", fee_invoice=bill.number,
                     level=level, computed_minor=computed, charged_minor=fee.total_minor,
                     currency=cur)
    audit.record(session, actor="system", action="invoice.issued", entity_type="invoice",
                 entity_id=bill.id, to_state="open", number=bill.number,
                 total_minor=bill.total_minor, fee_for=invoice.number, level=level,
                 **invoicing.booking_audit(booked))
    return bill


def fee_context(bill: Invoice, invoice: Invoice) -> dict:
    """What a dunning message says about the fee it charged."""
    return {"number": bill.number, "amount_minor": bill.total_minor,
            "currency": bill.currency, "for_invoice": invoice.number,
            "amount": money.format_money(bill.total_minor, bill.currency)}
