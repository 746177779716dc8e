"""Credit notes (SPEC §3 "Back office"): the only way an issued invoice is corrected.

* **Requested** in Slack (the invoice card, an accepted dispute) or by the API, against one
  invoice, by lines or by amount, with a reason. A request waits for a credit approver (never
  the requester, nor whoever opened the dispute it settles) on an approval card
  (`workflows.approvals`, kind `credit_note`; above a tier a second decision is needed).
  An ERP's own credit note (API, `source: erp`) is recorded as issued at once.
* **Issued** as `CN-<year>-<6 digits>` (immutable), e-mailed to the billing contact with a PDF.
  It takes what it can off the invoice's open balance (`CreditNote.amount_minor`, a settlement
  like a payment) and the rest — when the invoice was already (partly) paid — becomes customer
  credit (`customer_credit_minor`): money we owe back, so never more than the money applied
  to the invoice (its payments' allocations, net of refunds) less the customer credit earlier
  notes on it gave (SPEC §3: a note becomes customer credit only on a *paid* invoice).
* **Never more** than the invoice total less earlier credit notes (issued, and those still
  waiting for approval) and less what was written off (bad debt, a small balance, a bank fee
  or an early-payment discount: what we gave up on was never paid, and crediting it again
  would turn it into customer credit — 100.00 written off and then credited would be 100.00
  owed to a customer who paid nothing), and per line never more than the line's net amount.
  Checked when it is requested and again, with the invoice row locked, when it is issued.
  With balance = total - paid - credited to the balance - written off, this cap is what keeps
  customer credit within the money paid (`invariants.validate_customer_credit`).

Lines. A note by lines credits each named invoice line by quantity or by a net amount. By
quantity the rounding is cumulative, as `revenue_schedule.installments` bills: with Q units
invoiced for a net L and k credited by quantity before, q more take
half_up(L x (k + q) / Q) - half_up(L x k / Q), and the credit that reaches all Q units takes
exactly what is left of the line (net and tax), so a line returned one unit at a time is
credited to the cent (three units of 29.99 give 10.00, 9.99, 10.00; never 10.00 three times,
nor 33.33 three times out of 100.00). Its tax follows the same way. By a net amount, the
line's tax T follows pro rata, cumulatively too: with a net n credited before, m more take
half_up(T x (n + m) / L) less the tax credited before (the rest of the tax with the rest of
the net), so a line credited in net parts never gives back more tax than it carried
(201.00 + 10.05 credited 100.50 twice: 5.03, then 5.02). A note by amount (tax included) is
spread over the invoice's lines pro rata to what each still has uncredited (net + tax; the
whole net + tax when nothing was credited before), half-up, the remainder going to the
largest line; within a line its tax is, cumulatively again, half_up(T x (amount credited in
all) / (net + tax)) less the tax credited before (a line of 100.00 + 20.00 tax credited 60.03
and then 59.97 gives 10.01 and 9.99 of tax back, 100.00 of net: never 99.99). Either way
the issued note stores what it takes off each line (table `credit_note_lines`):
`credit_note_lines(session, credit_note_id)` returns it, which is what revenue recognition
reads (a credit note on a line reduces what is not yet recognised). An invoice without lines
(an ERP's bare total) has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Allocation,
    ApprovalKind,
    CreditNote,
    CreditNoteLine,
    CreditNoteRequest,
    CreditNoteStatus,
    Customer,
    Invoice,
    InvoiceLine,
    Role,
    WriteOff,
    WriteOffReason,
    money,
)
from models.limits import record_id
from workflows import approvals, audit, numbering, outbox, periods, policy, webhooks
from workflows import validation as v
from workflows.errors import Conflict, FieldError, NotFound, ValidationFailed
from workflows.inputs import CreditNoteIn, CreditNoteLineIn
from workflows.invoicing import get_invoice, lock_invoice, reduce_balance
from workflows.users import require_role

REASON_MAX = 500
SOURCES = ("slack", "api", "erp", "dispute", "o2c")
# who may ask for a credit note in Slack (admins hold every role)
REQUESTER_ROLES = (Role.SALES, Role.COLLECTOR, Role.CREDIT_APPROVER)


@dataclass(frozen=True)
class LineCredit:
    """What a credit note takes off one invoice line."""

    invoice_line_id: int
    line_no: int
    net_minor: int  # before tax
    tax_minor: int
    amount_minor: int  # net + tax
    quantity: int | None = None


def _half_up(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def pro_rata(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, each share half-up, the remainder to the
    largest weight (the first of equals), so the shares sum to `total` exactly."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    shares = [_half_up(Decimal(total) * w / whole) for w in weights]
    largest = max(range(len(weights)), key=lambda i: (weights[i], -i))
    shares[largest] += total - sum(shares)
    return shares


# -- what is credited already ------------------------------------------------------------------
def lines_of(session: Session, invoice: Invoice) -> list[InvoiceLine]:
    return list(session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
                             .order_by(InvoiceLine.line_no)))


def credited_total(session: Session, invoice_id: int, *, pending: bool) -> int:
    """The totals of the invoice's issued credit notes (and, with `pending`, of the requests
    still waiting for approval)."""
    issued = session.exec(select(sa.func.coalesce(sa.func.sum(
        CreditNote.amount_minor + CreditNote.customer_credit_minor), 0))
        .where(CreditNote.invoice_id == invoice_id)).one()
    return int(issued) + (waiting_minor(session, invoice_id) if pending else 0)


def waiting_minor(session: Session, invoice_id: int) -> int:
    """The invoice's credit-note requests waiting for approval, together."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(
        CreditNoteRequest.amount_minor), 0)).where(
        CreditNoteRequest.invoice_id == invoice_id,
        CreditNoteRequest.status == CreditNoteStatus.PENDING)).one())


class LineCredited(NamedTuple):
    """What an invoice line has been credited so far."""

    net: int
    amount: int  # net + tax
    units: int = 0  # credited by quantity

    @property
    def tax(self) -> int:
        return self.amount - self.net


NOTHING_CREDITED = LineCredited(0, 0, 0)


def credited_by_line(session: Session, invoice_id: int, *, pending: bool
                     ) -> dict[int, LineCredited]:
    """{invoice line id: (net, net + tax, units) credited}: by issued notes (their stored
    lines) and, with `pending`, by the by-lines requests still waiting (an amount request is
    spread only when it is issued). `units`: what was credited by quantity."""
    done: dict[int, LineCredited] = {}

    def add(line_id: int, net: int, amount: int, units: int | None) -> None:
        old = done.get(line_id, NOTHING_CREDITED)
        done[line_id] = LineCredited(old.net + net, old.amount + amount,
                                     old.units + (units or 0))

    for line_id, net, amount, units in session.exec(
            select(CreditNoteLine.invoice_line_id, CreditNoteLine.net_minor,
                   CreditNoteLine.amount_minor, CreditNoteLine.quantity)
            .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
            .where(CreditNote.invoice_id == invoice_id)).all():
        add(line_id, int(net), int(amount), units)
    if pending:
        for lines in session.exec(select(CreditNoteRequest.lines).where(
                CreditNoteRequest.invoice_id == invoice_id,
                CreditNoteRequest.status == CreditNoteStatus.PENDING)).all():
            for line in lines or []:
                add(int(line["invoice_line_id"]), int(line["net_minor"]),
                    int(line["amount_minor"]), line.get("quantity"))
    return done


def approved_or_waiting(session: Session, invoice_id: int) -> int:
    """The invoice's credit notes that went, or are going, through an approval: the requests
    waiting and those issued on an approval (an ERP's own note never asked). An approval tier
    compares this with its amount, so a credit split into requests each under the tier is
    still above it."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(
        CreditNoteRequest.amount_minor), 0)).where(
        CreditNoteRequest.invoice_id == invoice_id,
        sa.or_(CreditNoteRequest.status == CreditNoteStatus.PENDING,
               sa.and_(CreditNoteRequest.status == CreditNoteStatus.ISSUED,
                       CreditNoteRequest.approval_id.is_not(None))))).one())


def written_off_total(session: Session, invoice_id: int) -> int:
    """What was written off the invoice (every reason: bad debt, small balance, fees), but
    customer credit set against it (`workflows.refunds`): that is a credit note's, counted
    with the notes already."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(WriteOff.amount_minor), 0))
                            .where(WriteOff.invoice_id == invoice_id,
                                   WriteOff.reason != WriteOffReason.CUSTOMER_CREDIT)).one())


def _credit_refunded(session: Session, *where: object) -> int:
    """Customer credit given back with a refund of the money behind it (`workflows.refunds`)
    or applied to another invoice (`workflows.customer_credit`): set against its invoice as a
    write-off of reason `customer_credit`."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(WriteOff.amount_minor), 0))
                            .where(WriteOff.reason == WriteOffReason.CUSTOMER_CREDIT, *where)
                            ).one())


def paid_total(session: Session, invoice_id: int) -> int:
    """The money applied to the invoice: its allocations, net of refund reversals."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(Allocation.amount_minor), 0))
                            .where(Allocation.invoice_id == invoice_id)).one())


def customer_credit_of(session: Session, invoice_id: int) -> int:
    """The customer credit the invoice's issued notes gave, less what refunds gave back and
    what was applied to other invoices (`workflows.customer_credit`)."""
    return int(session.exec(select(sa.func.coalesce(sa.func.sum(
        CreditNote.customer_credit_minor), 0)).where(CreditNote.invoice_id == invoice_id)
        ).one()) - _credit_refunded(session, WriteOff.invoice_id == invoice_id)


def creditable(session: Session, invoice: Invoice) -> int:
    """How much can still be credited on the invoice: its total less the credit notes (waiting
    requests count as used) and the write-offs."""
    return max(invoice.total_minor - credited_total(session, invoice.id, pending=True)
               - written_off_total(session, invoice.id), 0)


# -- lines -------------------------------------------------------------------------------------
def units_credit(total: int, before: int, units: int, quantity: int) -> int:
    """What `units` more of a line's `quantity` units take of its `total` (net or tax) when
    `before` were credited by quantity already: cumulative, half-up, so any sequence of credits
    that reaches `quantity` sums to `total` exactly (see the module docstring)."""
    return (_half_up(Decimal(total) * (before + units) / quantity)
            - _half_up(Decimal(total) * before / quantity))


def _tax_following(line: InvoiceLine, before: LineCredited, net: int) -> int:
    """The tax a credit of a net `net` on `line` takes when `before` was credited already:
    the line's tax pro rata to the net credited in all, half-up, less the tax credited
    before, within what tax the line has left. Two halves of a line of 201.00 + 10.05 tax
    take 5.03 and 5.02, never 5.03 twice (211.06 credited of 211.05)."""
    if not line.line_total_minor:
        return 0
    return _cumulative_share(line.tax_minor, before.tax, before.net + net,
                             line.line_total_minor)


def _cumulative_share(total: int, taken: int, reached: int, whole: int) -> int:
    """Of `total`, what `reached` of `whole` reaches (half-up), less `taken` already, within
    what is left of `total` (nothing less than nothing): all the rest once `reached` is the
    whole. A line's tax following its net credited in parts, or its amount."""
    left = max(total - taken, 0)
    if reached >= whole:
        return left
    return min(max(_half_up(Decimal(total) * reached / whole) - taken, 0), left)


def _line_credit(line: InvoiceLine, item: CreditNoteLineIn, before: LineCredited,
                 currency: str, field: str) -> dict:
    """One line of a note by lines; `before`: what the line was credited already (issued
    notes and the requests still waiting)."""
    if (item.quantity is None) == (item.amount is None):
        raise ValidationFailed.of(field, "give either a quantity or an amount for the line")
    if item.quantity is not None:
        quantity = v.quantity(f"{field}.quantity", item.quantity)
        if quantity > line.quantity:
            raise ValidationFailed.of(f"{field}.quantity", f"line {line.line_no} invoiced "
                                      f"{line.quantity}, not {quantity}")
        if before.units + quantity > line.quantity:
            raise ValidationFailed.of(f"{field}.quantity", (
                f"line {line.line_no} has only {max(line.quantity - before.units, 0)} of "
                f"{line.quantity} units left to credit"))
        if before.units + quantity == line.quantity:  # the last units: all that is left
            net = line.line_total_minor - before.net
            tax = max(line.tax_minor - before.tax, 0)
        else:
            net = units_credit(line.line_total_minor, before.units, quantity, line.quantity)
            tax = units_credit(line.tax_minor, before.units, quantity, line.quantity)
    else:
        quantity = None
        net = v.amount_minor(f"{field}.amount", item.amount, currency, positive=True)
        tax = None
    if net <= 0:
        raise ValidationFailed.of(field, "comes to nothing to credit")
    if net > line.line_total_minor:
        raise ValidationFailed.of(field, f"line {line.line_no} is "
                                  f"{money.to_str(line.line_total_minor, currency)} net")
    if tax is None:  # by a net amount: the tax follows cumulatively, as units_credit does
        tax = _tax_following(line, before, net)
    return {"line_no": line.line_no, "invoice_line_id": line.id, "quantity": quantity,
            "net_minor": net, "tax_minor": tax, "amount_minor": net + tax}


def _requested_lines(session: Session, invoice: Invoice, items: list[CreditNoteLineIn]
                     ) -> list[dict]:
    if not items:
        raise ValidationFailed.of("lines", "name at least one line, or send an amount")
    if len(items) > 200:
        raise ValidationFailed.of("lines", "at most 200 lines")
    by_no = {line.line_no: line for line in lines_of(session, invoice)}
    credited = credited_by_line(session, invoice.id, pending=True)
    seen: set[int] = set()
    lines = []
    for i, item in enumerate(items):
        field = f"lines[{i}]"
        line = by_no.get(item.line_no) if isinstance(item.line_no, int) else None
        if line is None:
            raise ValidationFailed.of(f"{field}.line_no", f"{invoice.number} has no line "
                                      f"{item.line_no!r}")
        if line.line_no in seen:
            raise ValidationFailed.of(f"{field}.line_no", f"line {line.line_no} is named twice")
        seen.add(line.line_no)
        done = credited.get(line.id, NOTHING_CREDITED)
        credit = _line_credit(line, item, done, invoice.currency, field)
        before = done.net
        if before + credit["net_minor"] > line.line_total_minor:
            left = max(line.line_total_minor - before, 0)
            raise ValidationFailed.of(field, f"line {line.line_no} has only "
                                      f"{money.to_str(left, invoice.currency)} net left to "
                                      "credit")
        lines.append(credit)
    return lines


def spread_over_lines(session: Session, invoice: Invoice, amount_minor: int) -> list[dict]:
    """An amount (tax included) spread over the invoice's lines pro rata to what each still
    has uncredited, half-up, remainder to the largest (see the module docstring)."""
    lines = [line for line in lines_of(session, invoice)
             if line.line_total_minor + line.tax_minor > 0]
    if not lines:
        return []
    credited = credited_by_line(session, invoice.id, pending=False)
    gross = [line.line_total_minor + line.tax_minor for line in lines]
    left = [max(g - credited.get(line.id, NOTHING_CREDITED).amount, 0)
            for g, line in zip(gross, lines, strict=True)]
    weights = left if sum(left) > 0 else gross
    shares = pro_rata(amount_minor, weights)
    spread = []
    for line, share, whole in zip(lines, shares, gross, strict=True):
        if share <= 0:
            continue
        # the tax cumulatively, as by lines: the line's net and tax credited in all stay
        # each within the line's, and a line credited in full got back both exactly
        done = credited.get(line.id, NOTHING_CREDITED)
        tax_left = max(line.tax_minor - done.tax, 0)
        tax = _cumulative_share(line.tax_minor, done.tax, done.amount + share, whole)
        tax = min(max(tax, share - max(line.line_total_minor - done.net, 0), 0), tax_left,
                  share)
        spread.append({"line_no": line.line_no, "invoice_line_id": line.id, "quantity": None,
                       "net_minor": share - tax, "tax_minor": tax, "amount_minor": share})
    return spread


def credit_by_line(session: Session, note: CreditNote) -> list[LineCredit]:
    """What an issued credit note takes off each invoice line, in line order: the lines stored
    when it was issued (by lines, or its amount spread as the module docstring says). A note
    issued before credit-note lines were recorded (before migration 0011) has none stored: its
    total is spread pro rata over the invoice's lines by their net + tax (half-up, remainder
    to the largest), tax pro rata within each line. An invoice without lines gives []."""
    rows = session.exec(select(CreditNoteLine).where(CreditNoteLine.credit_note_id == note.id)
                        .order_by(CreditNoteLine.line_no)).all()
    if rows or note.request_id is not None:
        return [LineCredit(r.invoice_line_id, r.line_no, r.net_minor, r.tax_minor,
                           r.amount_minor, r.quantity) for r in rows]
    lines = [line for line in lines_of(session, session.get(Invoice, note.invoice_id))
             if line.line_total_minor + line.tax_minor > 0]
    gross = [line.line_total_minor + line.tax_minor for line in lines]
    spread = []
    for line, share, whole in zip(lines, pro_rata(note.total_minor, gross), gross,
                                  strict=True):
        if share > 0:
            tax = _half_up(Decimal(line.tax_minor) * share / whole)
            spread.append(LineCredit(line.id, line.line_no, share - tax, tax, share))
    return spread


def credit_note_lines(session: Session, credit_note_id: int) -> list[LineCredit]:
    """Which invoice lines an issued credit note reduces, and by how much (`LineCredit`: the
    invoice line's id and number, net, tax, net + tax, the quantity when credited by
    quantity), in line order; see `credit_by_line`. Revenue recognition reads this: a credit
    note on a line reduces what is not yet recognised of it. NotFound for an unknown id."""
    note = session.get(CreditNote, credit_note_id)
    if note is None:
        raise NotFound(f"no credit note #{credit_note_id}")
    return credit_by_line(session, note)


# -- requesting --------------------------------------------------------------------------------
def _lock_invoice(session: Session, number: str) -> Invoice:
    """The invoice, locked: credit notes on one invoice are requested and issued one after the
    other, so the caps see every committed note (SQLite serialises writers already)."""
    return lock_invoice(session, get_invoice(session, number).id)


def _by_external_id(session: Session, external_id: str | None) -> CreditNoteRequest | None:
    if not external_id:
        return None
    return session.exec(select(CreditNoteRequest).where(
        CreditNoteRequest.external_id == external_id)).first()


def _asked(data: CreditNoteIn, currency: str) -> tuple:
    """What a request asks to credit, as sent (not what is left to credit now): ("amount",
    minor units) or ("lines", ((line_no, "quantity"|"amount", units or net minor), ...)) in
    line order. Amounts are compared in minor units: "100.0" and "100.00" are one amount."""
    if (data.amount is None) == (not data.lines):
        raise ValidationFailed.of("amount", "send either an amount or lines, not both")
    if not data.lines:
        return "amount", v.amount_minor("amount", data.amount, currency, positive=True)
    asked = []
    for i, item in enumerate(data.lines):
        if (item.quantity is None) == (item.amount is None):
            raise ValidationFailed.of(f"lines[{i}]", "give either a quantity or an amount for "
                                      "the line")
        asked.append((item.line_no, "quantity", item.quantity) if item.quantity is not None
                     else (item.line_no, "amount", v.amount_minor(
                         f"lines[{i}].amount", item.amount, currency, positive=True)))
    return "lines", tuple(sorted(asked))


def _asked_by(request: CreditNoteRequest) -> tuple:
    """`_asked` of a stored request: by lines, each stored line keeps its quantity (by
    quantity) or its net (by a net amount), which is what was sent."""
    if not request.lines:
        return "amount", request.amount_minor
    return "lines", tuple(sorted(
        (line["line_no"], "quantity", line["quantity"]) if line.get("quantity") is not None
        else (line["line_no"], "amount", line["net_minor"]) for line in request.lines))


def _same_request(existing: CreditNoteRequest, invoice: Invoice, data: CreditNoteIn, *,
                  source: str, reason: str, requested_by: str) -> CreditNoteRequest:
    """The request already stored under `data.external_id`, when `data` asks for the same
    credit note: the same invoice, the same amount or the same lines (each by the same
    quantity or net amount), reason, source, requester and issue date. Anything else is another
    credit note under a key already taken: Conflict naming the key and each field that differs
    (never the first note answered as if it were this one). Compared with what was sent, not
    with what is left to credit: a replay after the first was requested (or issued) is the same
    request, though the lines it names have nothing left."""
    differ = []
    if existing.invoice_id != invoice.id:
        differ.append(FieldError("invoice", "the key was used for another invoice"))
    else:
        (mode, asked), (was_mode, was) = _asked(data, invoice.currency), _asked_by(existing)
        if mode != was_mode:
            differ.append(FieldError(mode, f"the key was used for a credit note by {was_mode}"))
        elif asked != was:
            differ.append(FieldError(mode, f"the key was used for other {mode}" if mode ==
                                     "lines" else "the key was used for another amount ("
                                     f"{money.to_str(was, invoice.currency)})"))
    for field, now_, then in (("reason", reason, existing.reason),
                              ("source", source, existing.source),
                              ("requested_by", requested_by, existing.requested_by),
                              ("issue_date", data.issue_date, existing.issue_date)):
        if now_ != then:
            differ.append(FieldError(field, f"the key was used with another {field}"))
    if differ:
        raise Conflict(f"external_id {existing.external_id} was already used for another "
                       f"credit note (#{existing.id}) with another "
                       f"{', '.join(e.field for e in differ)}; nothing was changed. A "
                       "different credit note needs its own external_id.", errors=differ)
    return existing


def _checked_fields(session: Session, data: CreditNoteIn, actor: str, via: str
                    ) -> tuple[str, str, str]:
    """(source, reason, requested_by); the requester's role when `actor` is a Slack user.
    `data.source` is what an integration says (erp, or nothing); `via` is where the request
    came in (api, slack, dispute), which is its source unless it is an ERP's own."""
    if data.source not in (None, "erp"):
        raise ValidationFailed.of("source", "must be erp (posted as issued) or left out")
    source = data.source or via
    if source not in SOURCES:
        raise ValueError(f"unknown credit note channel {via!r}")
    slack_user = v.SLACK_USER_ID.match(actor or "") is not None
    if slack_user:
        require_role(session, user_id=actor, roles=REQUESTER_ROLES,
                     action="credit_note.request", entity_type="invoice",
                     entity_id=data.invoice)
    reason = (v.text("reason", data.reason) or "").strip()
    if not reason:
        raise ValidationFailed.of("reason", "a credit note needs a reason")
    if len(reason) > REASON_MAX:
        raise ValidationFailed.of("reason", f"at most {REASON_MAX} characters")
    v.text("external_id", data.external_id)
    requested_by = actor
    if not slack_user and data.requested_by:
        if not v.SLACK_USER_ID.match(data.requested_by):
            raise ValidationFailed.of("requested_by", "must be a Slack user id such as "
                                      "U012AB3CD")
        requested_by = data.requested_by
    return source, reason, requested_by


def _lines_and_amount(session: Session, invoice: Invoice, data: CreditNoteIn
                      ) -> tuple[list[dict], int]:
    if (data.amount is None) == (not data.lines):
        raise ValidationFailed.of("amount", "send either an amount or lines, not both")
    if data.lines:
        lines = _requested_lines(session, invoice, data.lines)
        return lines, sum(line["amount_minor"] for line in lines)
    return [], v.amount_minor("amount", data.amount, invoice.currency, positive=True)


def check_credit_cap(session: Session, invoice: Invoice, amount_minor: int, *,
                     field: str = "amount") -> None:
    """Never more than the invoice total less earlier and pending credit notes and what was
    written off."""
    left = creditable(session, invoice)
    if amount_minor > left:
        written_off = written_off_total(session, invoice.id)
        why = (f"; {money.to_str(written_off, invoice.currency)} of it was written off and "
               "cannot be credited" if written_off else "")
        raise ValidationFailed.of(field, (
            f"{invoice.number} can be credited {money.to_str(left, invoice.currency)} more at "
            f"most (its total less earlier and pending credit notes and write-offs{why}), not "
            f"{money.to_str(amount_minor, invoice.currency)}"))


def _check_issue_date(data: CreditNoteIn, source: str) -> None:
    if data.issue_date is not None and source != "erp":
        raise ValidationFailed.of("issue_date", "only an ERP's own credit note (source erp) "
                                  "carries its issue date")


def check_request(session: Session, data: CreditNoteIn, *, actor: str, via: str = "api"
                  ) -> None:
    """What `request_credit_note` would refuse, found with reads only (the role, the reason,
    the invoice, the amount or lines and the cap): a modal runs it before its ack, so each
    refusal shows under its field; the request checks it all again with the invoice locked."""
    source, _, _ = _checked_fields(session, data, actor, via)
    invoice = get_invoice(session, data.invoice)
    lines, amount = _lines_and_amount(session, invoice, data)
    if _by_external_id(session, data.external_id) is None:
        check_credit_cap(session, invoice, amount, field="lines" if lines else "amount")
        _check_issue_date(data, source)


def request_credit_note(session: Session, data: CreditNoteIn, *, actor: str, now: datetime,
                        via: str = "api", dispute_id: int | None = None
                        ) -> tuple[CreditNoteRequest, bool]:
    """Ask for a credit note (or record an ERP's, issued at once). Returns (request, created):
    the same `external_id` with the same request returns the first one; with another (other
    lines, amount, invoice, reason...) it is a Conflict (`_same_request`).

    `actor`: the Slack user asking (their role is checked), or "api" for an integration
    (whose `requested_by`, when given, is the Slack user behind it: they may not approve it)."""
    source, reason, requested_by = _checked_fields(session, data, actor, via)
    invoice = _lock_invoice(session, data.invoice)
    existing = _by_external_id(session, data.external_id)  # after the lock: a twin committed
    if existing is not None:
        return _same_request(existing, invoice, data, source=source, reason=reason,
                             requested_by=requested_by), False
    lines, amount = _lines_and_amount(session, invoice, data)
    check_credit_cap(session, invoice, amount, field="lines" if lines else "amount")
    _check_issue_date(data, source)
    erp = source == "erp"
    request = CreditNoteRequest(
        invoice_id=invoice.id, customer_id=invoice.customer_id, currency=invoice.currency,
        amount_minor=amount, lines=lines, reason=reason, source=source,
        external_id=data.external_id or None, requested_by=requested_by,
        dispute_id=dispute_id, issue_date=data.issue_date, created_at=now)
    session.add(request)
    session.flush()
    audit.record(session, actor=actor, action="credit_note.requested",
                 entity_type="credit_note_request", entity_id=request.id,
                 to_state="issued" if erp else CreditNoteStatus.PENDING, reason=reason,
                 invoice=invoice.number, amount_minor=amount, currency=invoice.currency,
                 source=source, lines=len(lines), dispute_id=dispute_id, at=now)
    if erp:
        issue(session, request, actor=actor, now=now, invoice=invoice)
    else:
        approval = approvals.request_subject_approval(
            session, kind=ApprovalKind.CREDIT_NOTE, subject_id=request.id,
            amount_minor=amount, currency=invoice.currency, requested_by=requested_by,
            now=now, reasons=[{"code": "credit_note", "text": reason}],
            tier_amount_minor=approved_or_waiting(session, invoice.id))  # (this one included)
        request.approval_id = approval.id
        session.add(request)
    return request, True


# -- issuing -------------------------------------------------------------------------------------
def issue(session: Session, request: CreditNoteRequest, *, actor: str, now: datetime,
          invoice: Invoice | None = None, allow_customer_credit: bool = True) -> CreditNote:
    """Issue an approved (or an ERP's) request: CN number, the balance (and customer credit),
    its lines, the e-mail with the PDF. Conflict when the caps no longer allow it."""
    if invoice is None:
        invoice = session.exec(select(Invoice).where(Invoice.id == request.invoice_id)
                               .with_for_update()
                               .execution_options(populate_existing=True)).one()
    written_off = written_off_total(session, invoice.id)
    before = credited_total(session, invoice.id, pending=False) + written_off
    if before + request.amount_minor > invoice.total_minor:
        left = max(invoice.total_minor - before, 0)
        why = (f" ({money.format_money(written_off, invoice.currency)} of it was written off)"
               if written_off else "")
        raise Conflict(f"{invoice.number} can only be credited "
                       f"{money.format_money(left, invoice.currency)} more now{why}; this "
                       "credit note of "
                       f"{money.format_money(request.amount_minor, invoice.currency)} "
                       "cannot be issued. Nothing was changed.")
    today = policy.business_date(session, now)
    value = request.issue_date or today  # ours: today; booked from the invoice's issue date
    if request.issue_date is not None and value < invoice.issue_date:
        raise ValidationFailed.of("issue_date", f"{value.isoformat()} is before "
                                  f"{invoice.number} was issued "
                                  f"({invoice.issue_date.isoformat()})")
    if value > today:
        raise ValidationFailed.of("issue_date", f"{value.isoformat()} is in the future "
                                  f"(today is {today.isoformat()})")
    lines = request.lines or spread_over_lines(session, invoice, request.amount_minor)
    if request.lines:
        credited = credited_by_line(session, invoice.id, pending=False)
        for line in lines:
            row = session.get(InvoiceLine, line["invoice_line_id"])
            if credited.get(row.id, NOTHING_CREDITED).net + line["net_minor"] \
                    > row.line_total_minor:
                raise Conflict(f"line {row.line_no} of {invoice.number} was credited "
                               "meanwhile; this credit note cannot be issued. Nothing was "
                               "changed.")
    to_invoice = (min(request.amount_minor, invoice.balance_minor) if allow_customer_credit
                  else request.amount_minor)
    if request.amount_minor > to_invoice:  # customer credit: only money actually paid
        paid_back = (paid_total(session, invoice.id)
                     - customer_credit_of(session, invoice.id))
        if request.amount_minor - to_invoice > paid_back:
            raise Conflict(f"{invoice.number} has "
                           f"{money.format_money(max(paid_back, 0), invoice.currency)} paid "
                           "that is not credited back yet; this credit note of "
                           f"{money.format_money(request.amount_minor, invoice.currency)} "
                           "would owe the customer more than they paid and cannot be issued. "
                           "Nothing was changed.")
    if to_invoice > 0:
        reduce_balance(session, invoice, to_invoice, settled_at=None)  # a correction
    booked = periods.booking(session, value, not_before=invoice.issue_date)
    note = CreditNote(number=numbering.next_credit_note_number(session, value),
                      invoice_id=invoice.id, amount_minor=to_invoice,
                      customer_credit_minor=request.amount_minor - to_invoice,
                      currency=invoice.currency, reason=request.reason, created_by=actor,
                      created_at=now, value_date=booked.value_date,
                      effective_date=booked.effective_date,
                      source="erp" if request.source == "erp" else "o2c",
                      request_id=request.id)
    session.add(note)
    session.flush()
    for line in lines:
        session.add(CreditNoteLine(credit_note_id=note.id, invoice_line_id=line["invoice_line_id"],
                                   line_no=line["line_no"], quantity=line.get("quantity"),
                                   net_minor=line["net_minor"], tax_minor=line["tax_minor"],
                                   amount_minor=line["amount_minor"]))
    request.status = CreditNoteStatus.ISSUED
    request.decided_at = request.decided_at or now
    request.decided_by = request.decided_by or actor
    session.add(request)
    reason = request.reason if not booked.moved else f"{request.reason}; {booked.note}"
    audit.record(session, actor=actor, action="invoice.credit_note", entity_type="invoice",
                 entity_id=invoice.id, to_state="credited", credit_note=note.number,
                 amount_minor=to_invoice, customer_credit_minor=note.customer_credit_minor,
                 request_id=request.id, reason=reason, at=now, **booked.as_dict())
    webhooks.emit(session, "credit_note.issued",
                  lambda: webhooks.credit_note_data(session, note, invoice),
                  key=f"credit_note.issued:{note.number}", at=now)
    if request.dispute_id is not None:
        from workflows import disputes

        disputes.credit_issued(session, request.dispute_id, note=note, now=now)
    customer = session.get(Customer, invoice.customer_id)
    if customer.billing_email:
        outbox.send_email(session, to=customer.billing_email, template="credit_note",
                          context={"credit_note_number": note.number},
                          attachments=[{"kind": "credit_note_pdf", "number": note.number}],
                          dedupe_key=f"credit-note-email:{note.number}")
    session.flush()
    return note


def issue_direct(session: Session, *, invoice_number: str, amount: str, reason: str,
                 actor: str, now: datetime, issue_date: date | None = None,
                 source: str = "o2c") -> CreditNote:
    """A credit note issued without an approval, against the open balance only (more than is
    open is refused, `OverallocationError`): `invoicing.issue_credit_note`, kept for the
    callers that issue one of their own (the demo seed, scripts, tests)."""
    invoice = _lock_invoice(session, invoice_number)
    minor = v.amount_minor("amount", amount, invoice.currency, positive=True)
    if not (reason or "").strip():
        raise ValidationFailed.of("reason", "a credit note needs a reason")
    if issue_date is not None:
        issue_date = v.parse_date("issue_date", issue_date)
    check_credit_cap(session, invoice, minor)  # requests waiting for approval count too
    request = CreditNoteRequest(
        invoice_id=invoice.id, customer_id=invoice.customer_id, currency=invoice.currency,
        amount_minor=minor, lines=[], reason=reason.strip()[:REASON_MAX],
        status=CreditNoteStatus.PENDING, source="erp" if actor == "api" else source,
        requested_by=actor, issue_date=issue_date, created_at=now)
    session.add(request)
    session.flush()
    return issue(session, request, actor=actor, now=now, invoice=invoice,
                 allow_customer_credit=False)


# -- the approval's subject (workflows.approvals) ------------------------------------------------
def _approved(session: Session, approval, request: CreditNoteRequest, user_id: str,
              now: datetime) -> None:
    request.decided_by, request.decided_at = user_id, now
    issue(session, request, actor=user_id, now=now)


def _rejected(session: Session, approval, request: CreditNoteRequest, user_id: str,
              now: datetime, note: str | None) -> None:
    request.status = CreditNoteStatus.REJECTED
    request.decided_by, request.decided_at, request.decision_note = user_id, now, note
    session.add(request)
    audit.record(session, actor=user_id, action="credit_note.rejected",
                 entity_type="credit_note_request", entity_id=request.id,
                 from_state=CreditNoteStatus.PENDING, to_state=CreditNoteStatus.REJECTED,
                 reason=note, at=now)
    if request.dispute_id is not None:
        from workflows import disputes

        disputes.credit_rejected(session, request.dispute_id, now=now, note=note)


def card_view(session: Session, approval, request: CreditNoteRequest) -> dict:
    """What the approval card shows about the request (JSON)."""
    invoice = session.get(Invoice, request.invoice_id)
    customer = session.get(Customer, request.customer_id)
    note = session.exec(select(CreditNote).where(CreditNote.request_id == request.id)).first()
    issued_before = credited_total(session, invoice.id, pending=False) - (
        note.total_minor if note is not None else 0)
    return {"title": f"Credit note for {invoice.number}", "customer": customer.name,
            "customer_id": customer.id, "invoice": invoice.number,
            "invoice_total_minor": invoice.total_minor,
            "invoice_balance_minor": invoice.balance_minor,
            "credited_before_minor": issued_before, "amount_minor": request.amount_minor,
            "currency": request.currency, "reason": request.reason,
            "status": request.status, "source": request.source,
            "dispute_id": request.dispute_id,
            "lines": [{"line_no": li["line_no"], "quantity": li.get("quantity"),
                       "amount_minor": li["amount_minor"]} for li in request.lines or []],
            "number": note.number if note is not None else None,
            "customer_credit_minor": note.customer_credit_minor if note is not None else 0}


def _exclusions(session: Session, request: CreditNoteRequest) -> dict[str, str]:
    """Whoever opened the dispute a credit note settles may not approve it either."""
    if request.dispute_id is None:
        return {}
    from models import Dispute

    dispute = session.get(Dispute, request.dispute_id)
    if dispute is None or not v.SLACK_USER_ID.match(dispute.opened_by or ""):
        return {}
    return {dispute.opened_by: f"You opened dispute #{dispute.id} this credit note settles"}


APPROVAL = approvals.Subject(
    kind=ApprovalKind.CREDIT_NOTE, model=CreditNoteRequest, context=card_view,
    approved=_approved, rejected=_rejected,
    pending=lambda request: request.status == CreditNoteStatus.PENDING, excluded=_exclusions)


# -- reading -------------------------------------------------------------------------------------
@dataclass
class CreditNoteView:
    request: CreditNoteRequest
    invoice: Invoice
    customer: Customer
    note: CreditNote | None
    lines: list[LineCredit]
    history: list


def credit_note_view(session: Session, key: str) -> CreditNoteView:
    """By CN number, or by the request's id (a request waiting for approval has no number)."""
    from models import AuditEvent

    key = key.strip()
    note = session.exec(select(CreditNote).where(CreditNote.number == key)).first()
    request = None
    if note is not None and note.request_id is not None:
        request = session.get(CreditNoteRequest, note.request_id)
    elif note is None and (request_id := record_id(key)) is not None:
        request = session.get(CreditNoteRequest, request_id)
        if request is not None:
            note = session.exec(select(CreditNote).where(
                CreditNote.request_id == request.id)).first()
    if note is None and request is None:
        raise NotFound(f"no credit note {key}")
    if request is None:  # a note issued before requests were recorded
        request = CreditNoteRequest(id=None, invoice_id=note.invoice_id, customer_id=0,
                                    currency=note.currency, amount_minor=note.total_minor,
                                    reason=note.reason, status=CreditNoteStatus.ISSUED,
                                    source=note.source, requested_by=note.created_by,
                                    created_at=note.created_at)
    invoice = session.get(Invoice, request.invoice_id)
    history = list(session.exec(select(AuditEvent).where(sa.or_(
        sa.and_(AuditEvent.entity_type == "credit_note_request",
                AuditEvent.entity_id == str(request.id)),
        sa.and_(AuditEvent.entity_type == "approval", request.approval_id is not None,
                AuditEvent.entity_id == str(request.approval_id or 0)),
        sa.and_(AuditEvent.entity_type == "invoice", AuditEvent.entity_id == str(invoice.id),
                AuditEvent.action == "invoice.credit_note",
                AuditEvent.data["credit_note"].as_string() == (note.number if note else "")),
    )).order_by(AuditEvent.id)))
    return CreditNoteView(request, invoice, session.get(Customer, invoice.customer_id), note,
                          credit_by_line(session, note) if note is not None else [], history)


def customer_credit_minor(session: Session, customer_id: int) -> int:
    """Customer credit from credit notes on invoices that were already paid, less what
    refunds gave back of it and what was applied to other invoices (every currency summed:
    `receivables.held_for` has it per currency)."""
    given = int(session.exec(select(sa.func.coalesce(sa.func.sum(
        CreditNote.customer_credit_minor), 0)).join(
        Invoice, Invoice.id == CreditNote.invoice_id).where(
        Invoice.customer_id == customer_id)).one())
    return given - _credit_refunded(session, WriteOff.invoice_id.in_(
        select(Invoice.id).where(Invoice.customer_id == customer_id)))


def notes_of(session: Session, invoice_id: int) -> list[CreditNote]:
    return list(session.exec(select(CreditNote).where(CreditNote.invoice_id == invoice_id)
                             .order_by(CreditNote.id)))


def pending_of(session: Session, invoice_id: int) -> list[CreditNoteRequest]:
    return list(session.exec(select(CreditNoteRequest).where(
        CreditNoteRequest.invoice_id == invoice_id,
        CreditNoteRequest.status == CreditNoteStatus.PENDING).order_by(CreditNoteRequest.id)))
