"""AR invariants as named checks, each returning a list of violations (empty = healthy).

Used by tests (including Hypothesis property tests over random workflows) and runnable against
a live database. Each says why it exists.
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from models import (
    Allocation,
    CreditNote,
    CreditNoteLine,
    CreditNoteRequest,
    CreditNoteStatus,
    Deduction,
    DeductionStatus,
    Dispute,
    DisputeStatus,
    Invoice,
    InvoiceLine,
    KpiDaily,
    Order,
    OrderLine,
    Payment,
    Product,
    Refund,
    WriteOff,
    WriteOffReason,
    WriteOffRequest,
    WriteOffRequestStatus,
)
from models.revenue import SubscriptionBilling
from workflows import deductions


def validate_payment_allocations(session: Session) -> list[str]:
    """A payment can never pay out more than it brought in: allocations (net of refund
    reversals) + unapplied + refunded = amount."""
    alloc = (select(Allocation.payment_id, sa.func.sum(Allocation.amount_minor).label("s"))
             .group_by(Allocation.payment_id).subquery())
    rows = session.exec(
        select(Payment.id, Payment.amount_minor, Payment.unapplied_minor,
               Payment.refunded_minor, sa.func.coalesce(alloc.c.s, 0))
        .outerjoin(alloc, alloc.c.payment_id == Payment.id)).all()
    return [f"payment {pid}: allocated {a} + unapplied {u} + refunded {r} != amount {amt}"
            for pid, amt, u, r, a in rows
            if a + u + r != amt or a > amt or u < 0 or a < 0 or r < 0]


def validate_refunds(session: Session) -> list[str]:
    """What a payment says went back (`refunded_minor`, which the invariant above balances)
    is what its refunds say (`refunds` rows, which the statements' unapplied cash reads), in
    its currency, each taking no more from unapplied credit than its amount: else a statement
    and the payment disagree about what we hold for the customer."""
    given = (select(Refund.payment_id, sa.func.sum(Refund.amount_minor).label("s"))
             .group_by(Refund.payment_id).subquery())
    refunded = sa.func.coalesce(given.c.s, 0)
    problems = [f"payment {pid}: refunded {r} but its refunds sum to {s}"
                for pid, r, s in session.exec(
                    select(Payment.id, Payment.refunded_minor, refunded)
                    .outerjoin(given, given.c.payment_id == Payment.id)
                    .where(Payment.refunded_minor != refunded).order_by(Payment.id)).all()]
    problems += [f"refund {rid} of payment {pid}: {cur} on a {pcur} payment, or "
                 f"{taken} of {amount} from unapplied credit"
                 for rid, pid, cur, pcur, taken, amount in session.exec(
                     select(Refund.id, Refund.payment_id, Refund.currency, Payment.currency,
                            Refund.from_unapplied_minor, Refund.amount_minor)
                     .join(Payment, Payment.id == Refund.payment_id)
                     .where(sa.or_(Refund.currency != Payment.currency,
                                   Refund.from_unapplied_minor < 0,
                                   Refund.from_unapplied_minor > Refund.amount_minor))
                     .order_by(Refund.id)).all()]
    return problems


def validate_invoice_balances(session: Session) -> list[str]:
    """balance = total - allocations - credit notes - write-offs, and never negative."""
    def summed(model: type, column: sa.Column) -> sa.Subquery:
        return (select(model.invoice_id, sa.func.sum(column).label("s"))
                .group_by(model.invoice_id).subquery())

    a = summed(Allocation, Allocation.amount_minor)
    c = summed(CreditNote, CreditNote.amount_minor)
    w = summed(WriteOff, WriteOff.amount_minor)
    rows = session.exec(
        select(Invoice.number, Invoice.total_minor, Invoice.balance_minor,
               sa.func.coalesce(a.c.s, 0), sa.func.coalesce(c.c.s, 0),
               sa.func.coalesce(w.c.s, 0))
        .outerjoin(a, a.c.invoice_id == Invoice.id)
        .outerjoin(c, c.c.invoice_id == Invoice.id)
        .outerjoin(w, w.c.invoice_id == Invoice.id)).all()
    problems = []
    for number, total, balance, alloc, credit, wo in rows:
        if balance != total - alloc - credit - wo:
            problems.append(f"invoice {number}: balance {balance} != {total} - {alloc} - "
                            f"{credit} - {wo}")
        if balance < 0:
            problems.append(f"invoice {number}: negative balance {balance}")
    return problems


def validate_invoice_totals(session: Session) -> list[str]:
    """An invoice's total is what its header says it is made of: subtotal - discount + tax +
    fees, none of them negative (SPEC §5.8: issued invoices are immutable; every path builds
    them so — shipments and subscriptions in `invoicing._issue`, late fees as fees, an ERP's
    total as its subtotal). A total or a part edited after issue no longer adds up."""
    made = (Invoice.subtotal_minor - Invoice.discount_minor + Invoice.tax_minor
            + Invoice.fees_minor)
    rows = session.exec(
        select(Invoice.number, Invoice.total_minor, Invoice.subtotal_minor,
               Invoice.discount_minor, Invoice.tax_minor, Invoice.fees_minor)
        .where(sa.or_(Invoice.total_minor != made, Invoice.subtotal_minor < 0,
                      Invoice.discount_minor < 0, Invoice.tax_minor < 0,
                      Invoice.fees_minor < 0))
        .order_by(Invoice.id)).all()
    return [f"invoice {n}: total {t} != subtotal {s} - discount {d} + tax {x} + fees {fe}"
            for n, t, s, d, x, fe in rows]


# Invoices we build ourselves, whose lines make them up (an ERP's lines are informational).
OUR_INVOICES = ("o2c", "fee")


def validate_issued_invoices(session: Session) -> list[str]:
    """Issued invoices are immutable (SPEC §5.8), so ours still say what they said when they
    were issued:

    * their lines make them up: lines' net + tax = total; on a shipment or subscription
      invoice (source o2c) the lines' quantity x unit price = subtotal, their net =
      subtotal - discount, their tax = tax, and each line's net lies between 0 and its
      quantity x unit price (a discount never adds). A late-fee invoice's lines are its fees.
    * the due date is the issue date plus the payment terms' days (`invoicing.Terms`).

    An ERP's invoice is what the ERP sent: its total (checked above) is the truth, its lines
    may be absent or informational, its due date its own."""
    from workflows.invoicing import Terms

    ours = Invoice.source.in_(OUR_INVOICES)
    gross = InvoiceLine.quantity * InvoiceLine.unit_price_minor
    lines = (select(InvoiceLine.invoice_id,
                    sa.func.sum(InvoiceLine.line_total_minor).label("net"),
                    sa.func.sum(InvoiceLine.tax_minor).label("tax"),
                    sa.func.sum(gross).label("gross"),
                    sa.func.sum(sa.case((sa.or_(InvoiceLine.line_total_minor < 0,
                                                InvoiceLine.line_total_minor > gross,
                                                InvoiceLine.tax_minor < 0), 1),
                                        else_=0)).label("odd"))
             .group_by(InvoiceLine.invoice_id).subquery())
    net, tax = sa.func.coalesce(lines.c.net, 0), sa.func.coalesce(lines.c.tax, 0)
    summed_gross, odd = sa.func.coalesce(lines.c.gross, 0), sa.func.coalesce(lines.c.odd, 0)
    shipped = Invoice.source == "o2c"
    problems = []
    for number, source, total, subtotal, discount, tax_, n, t, g, bad in session.exec(
            select(Invoice.number, Invoice.source, Invoice.total_minor,
                   Invoice.subtotal_minor, Invoice.discount_minor, Invoice.tax_minor,
                   net, tax, summed_gross, odd)
            .outerjoin(lines, lines.c.invoice_id == Invoice.id)
            .where(ours, sa.or_(net + tax != Invoice.total_minor, odd > 0, sa.and_(shipped, sa.or_(
                summed_gross != Invoice.subtotal_minor,
                net != Invoice.subtotal_minor - Invoice.discount_minor,
                tax != Invoice.tax_minor))))
            .order_by(Invoice.id)).all():
        if n + t != total:
            problems.append(f"invoice {number}: lines {n} net + {t} tax != total {total}")
        if bad:
            problems.append(f"invoice {number}: {bad} line(s) with a net outside 0..quantity "
                            "x unit price or a negative tax")
        if source == "o2c" and (g, n, t) != (subtotal, subtotal - discount, tax_):
            problems.append(f"invoice {number}: lines {g} gross, {n} net, {t} tax; the invoice "
                            f"says subtotal {subtotal}, discount {discount}, tax {tax_}")
    # the due date: one check per (terms, issue date, due date) there is
    for terms, issued, due, first in session.exec(
            select(Invoice.payment_terms, Invoice.issue_date, Invoice.due_date,
                   sa.func.min(Invoice.number))
            .where(ours).group_by(Invoice.payment_terms, Invoice.issue_date,
                                  Invoice.due_date)).all():
        try:
            expected = Terms.parse(terms).due_date(issued)
        except ValueError:
            problems.append(f"invoice {first}: unknown payment terms {terms!r}")
            continue
        if due != expected:
            problems += [f"invoice {number}: due {due}, but {terms} from {issued} is "
                         f"{expected}" for number in session.exec(
                             select(Invoice.number).where(
                                 ours, Invoice.payment_terms == terms,
                                 Invoice.issue_date == issued, Invoice.due_date == due)
                             .order_by(Invoice.id)).all()]
    return problems


def validate_customer_credit(session: Session) -> list[str]:
    """The customer credit an invoice's credit notes gave is money we owe back, so never more
    than the money paid on it (its allocations, net of refunds): a note on a written off or
    unpaid invoice must not become credit for money nobody paid (SPEC §3, customer credit
    only on a paid invoice), and a refund of the money behind the credit gives the credit
    back first (`workflows.refunds`: a write-off of reason `customer_credit` sets it against
    the invoice), so the customer never keeps credit for money they got back. With the
    balance invariant this is also the credit ceiling: credit notes + write-offs never
    exceed the total."""
    paid = (select(Allocation.invoice_id, sa.func.sum(Allocation.amount_minor).label("p"))
            .group_by(Allocation.invoice_id).subquery())
    given = (select(CreditNote.invoice_id,
                    sa.func.sum(CreditNote.customer_credit_minor).label("c"))
             .where(CreditNote.customer_credit_minor != 0)
             .group_by(CreditNote.invoice_id).subquery())
    back = (select(WriteOff.invoice_id, sa.func.sum(WriteOff.amount_minor).label("b"))
            .where(WriteOff.reason == WriteOffReason.CUSTOMER_CREDIT)
            .group_by(WriteOff.invoice_id).subquery())
    applied = sa.func.coalesce(paid.c.p, 0)
    credit = sa.func.coalesce(given.c.c, 0) - sa.func.coalesce(back.c.b, 0)
    return [f"invoice {number}: customer credit {c} > money applied {p}" if c >= 0 else
            f"invoice {number}: customer credit given back beyond what its notes gave ({c})"
            for number, c, p in session.exec(
                select(Invoice.number, credit, applied)
                .outerjoin(given, given.c.invoice_id == Invoice.id)
                .outerjoin(back, back.c.invoice_id == Invoice.id)
                .outerjoin(paid, paid.c.invoice_id == Invoice.id)
                .where(sa.or_(given.c.c.is_not(None), back.c.b.is_not(None)),
                       sa.or_(credit > applied, credit < 0))
                .order_by(Invoice.id)).all()]


def validate_order_totals(session: Session) -> list[str]:
    """An order's net (total - tax) equals the sum of its lines, each rounded once: totals
    describe what was ordered. What was cancelled since is `cancelled_minor`, between 0 and
    the total, and 0 when no quantity (or subscription term) is cancelled (exposure counts
    total - cancelled).
    """
    cancelled_term = sa.case((OrderLine.cancelled_from.is_not(None), 1), else_=0)
    sums = (select(OrderLine.order_id, sa.func.sum(OrderLine.line_total_minor).label("s"),
                   sa.func.sum(OrderLine.qty_cancelled + cancelled_term).label("c"))
            .group_by(OrderLine.order_id).subquery())
    rows = session.exec(select(Order.number, Order.total_minor, Order.tax_minor,
                               Order.cancelled_minor, sums.c.s, sums.c.c)
                        .join(sums, sums.c.order_id == Order.id)).all()
    problems = [f"order {n}: total {t} - tax {tax} != lines {s}"
                for n, t, tax, _, s, _ in rows if t - tax != s]
    problems += [f"order {n}: cancelled value {cv} outside 0..{t}"
                 for n, t, _, cv, _, _ in rows if not 0 <= cv <= t]
    problems += [f"order {n}: cancelled value {cv} but no unit cancelled"
                 for n, _, _, cv, _, c in rows if cv > 0 and not c]
    return problems


def validate_order_lines(session: Session) -> list[str]:
    """Each line's quantities add up: shipped + cancelled never exceed what was ordered, and
    what is reserved and backordered never exceeds what is still open."""
    rows = session.exec(
        select(Order.number, OrderLine.line_no, OrderLine.quantity, OrderLine.qty_shipped,
               OrderLine.qty_cancelled, OrderLine.qty_reserved, OrderLine.qty_backordered)
        .join(Order, Order.id == OrderLine.order_id)
        .where(sa.or_(OrderLine.qty_shipped < 0, OrderLine.qty_cancelled < 0,
                      OrderLine.qty_reserved < 0, OrderLine.qty_backordered < 0,
                      OrderLine.qty_shipped + OrderLine.qty_cancelled > OrderLine.quantity,
                      OrderLine.qty_reserved + OrderLine.qty_backordered
                      > OrderLine.quantity - OrderLine.qty_shipped - OrderLine.qty_cancelled))
    ).all()
    return [f"order {n} line {no}: ordered {q}, shipped {s}, cancelled {c}, reserved {r}, "
            f"backordered {b}" for n, no, q, s, c, r, b in rows]


def validate_stock(session: Session) -> list[str]:
    """A product's reserved stock is what its order lines hold, and 0 <= reserved <= on hand:
    stock is never promised twice nor shipped below zero."""
    held = (select(OrderLine.product_id, sa.func.sum(OrderLine.qty_reserved).label("r"))
            .group_by(OrderLine.product_id).subquery())
    rows = session.exec(select(Product.sku, Product.on_hand, Product.reserved,
                               sa.func.coalesce(held.c.r, 0))
                        .outerjoin(held, held.c.product_id == Product.id)).all()
    return [f"product {sku}: on hand {oh}, reserved {r}, order lines hold {h}"
            for sku, oh, r, h in rows if not 0 <= r <= oh or r != h]


def validate_disputes(session: Session) -> list[str]:
    """What an invoice holds in dispute is exactly min(what its disputes hold, its balance),
    the flag says whether it is more than zero, and each dispute holds what its state says:
    all of it while open, nothing once rejected or withdrawn, at most its amount. Dunning,
    priority and the overdue figures trust `disputed_minor`. (Set-based: the database finds
    the few rows to look at, so a nightly run on millions of rows is a handful of queries.)"""
    held = (select(Dispute.invoice_id, sa.func.sum(Dispute.held_minor).label("h"))
            .group_by(Dispute.invoice_id).subquery())
    rows = session.exec(select(Invoice.number, Invoice.balance_minor, Invoice.disputed_minor,
                               Invoice.disputed, sa.func.coalesce(held.c.h, 0))
                        .outerjoin(held, held.c.invoice_id == Invoice.id)
                        .where(sa.or_(Invoice.disputed_minor != 0, Invoice.disputed,
                                      held.c.h > 0))).all()
    problems = [f"invoice {n}: in dispute {d}, but its disputes hold {h} of balance {b}"
                for n, b, d, _, h in rows if d != min(int(h), b)]
    problems += [f"invoice {n}: disputed flag {flag} with {d} in dispute"
                 for n, _, d, flag, _ in rows if bool(flag) != (d > 0)]
    settled = (DisputeStatus.REJECTED, DisputeStatus.WITHDRAWN)
    for did, status, held_minor, amount, released_at in session.exec(
            select(Dispute.id, Dispute.status, Dispute.held_minor, Dispute.amount_minor,
                   Dispute.released_at)
            .where(sa.or_(Dispute.held_minor < 0, Dispute.held_minor > Dispute.amount_minor,
                          sa.and_(Dispute.status == DisputeStatus.OPEN,
                                  Dispute.held_minor != Dispute.amount_minor),
                          sa.and_(Dispute.status.in_(settled), Dispute.held_minor != 0),
                          sa.and_(Dispute.held_minor == 0,
                                  Dispute.status != DisputeStatus.OPEN,
                                  Dispute.released_at.is_(None))))
            .order_by(Dispute.id)).all():
        if not 0 <= held_minor <= amount:
            problems.append(f"dispute {did}: holds {held_minor} of {amount}")
        if status == DisputeStatus.OPEN and held_minor != amount:
            problems.append(f"dispute {did}: open but holds {held_minor} of {amount}")
        if status in settled and held_minor:
            problems.append(f"dispute {did}: {status} but still holds {held_minor}")
        if held_minor == 0 and status != DisputeStatus.OPEN and released_at is None:
            problems.append(f"dispute {did}: holds nothing but was never released")
    open_twice = session.exec(select(Dispute.invoice_id).where(
        Dispute.status == DisputeStatus.OPEN).group_by(Dispute.invoice_id)
        .having(sa.func.count() > 1)).all()
    problems += [f"invoice #{i}: more than one open dispute" for i in open_twice]
    return problems


def validate_credit_notes(session: Session) -> list[str]:
    """An invoice is never credited more than its total (issued notes, and with the requests
    still waiting); a note's lines add up to its total; a line is never credited more than
    its net + tax when the lines make up the invoice; an issued request has exactly one note
    and no other request has one."""
    problems = []
    issued = (select(CreditNote.invoice_id, sa.func.sum(
        CreditNote.amount_minor + CreditNote.customer_credit_minor).label("c"))
        .group_by(CreditNote.invoice_id).subquery())
    waiting = (select(CreditNoteRequest.invoice_id,
                      sa.func.sum(CreditNoteRequest.amount_minor).label("w"))
               .where(CreditNoteRequest.status == CreditNoteStatus.PENDING)
               .group_by(CreditNoteRequest.invoice_id).subquery())
    for number, total, credited, pending in session.exec(
            select(Invoice.number, Invoice.total_minor, sa.func.coalesce(issued.c.c, 0),
                   sa.func.coalesce(waiting.c.w, 0))
            .outerjoin(issued, issued.c.invoice_id == Invoice.id)
            .outerjoin(waiting, waiting.c.invoice_id == Invoice.id)
            .where(sa.or_(issued.c.c > 0, waiting.c.w > 0))).all():
        if credited > total:
            problems.append(f"invoice {number}: credited {credited} of total {total}")
        if credited + pending > total:
            problems.append(f"invoice {number}: credited {credited} + waiting {pending} > "
                            f"total {total}")
    note_total = CreditNote.amount_minor + CreditNote.customer_credit_minor
    problems += [f"credit note {number}: amounts {amount} + {extra}"
                 for number, amount, extra in session.exec(
                     select(CreditNote.number, CreditNote.amount_minor,
                            CreditNote.customer_credit_minor)
                     .where(sa.or_(CreditNote.amount_minor < 0,
                                   CreditNote.customer_credit_minor < 0, note_total <= 0))
                     .order_by(CreditNote.id)).all()]
    lines = (select(CreditNoteLine.credit_note_id,
                    sa.func.sum(CreditNoteLine.amount_minor).label("s"))
             .group_by(CreditNoteLine.credit_note_id).subquery())
    problems += [f"credit note {number}: lines add up to {summed}, not {total}"
                 for number, summed, total in session.exec(
                     select(CreditNote.number, lines.c.s, note_total)
                     .join(lines, lines.c.credit_note_id == CreditNote.id)
                     .where(lines.c.s != note_total).order_by(CreditNote.id)).all()]
    problems += [f"credit note {number} line {no}: {net} + {tax} != {amount}"
                 for number, no, net, tax, amount in session.exec(
                     select(CreditNote.number, CreditNoteLine.line_no,
                            CreditNoteLine.net_minor, CreditNoteLine.tax_minor,
                            CreditNoteLine.amount_minor)
                     .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
                     .where(CreditNoteLine.net_minor + CreditNoteLine.tax_minor
                            != CreditNoteLine.amount_minor)
                     .order_by(CreditNote.id, CreditNoteLine.line_no)).all()]
    gross = InvoiceLine.line_total_minor + InvoiceLine.tax_minor
    covered = (select(InvoiceLine.invoice_id).group_by(InvoiceLine.invoice_id)
               .having(sa.func.sum(gross) == sa.select(Invoice.total_minor).where(
                   Invoice.id == InvoiceLine.invoice_id).scalar_subquery()))
    for line_id, line_no, line_gross, credited in session.exec(
            select(InvoiceLine.id, InvoiceLine.line_no, gross,
                   sa.func.sum(CreditNoteLine.amount_minor))
            .join(CreditNoteLine, CreditNoteLine.invoice_line_id == InvoiceLine.id)
            .where(InvoiceLine.invoice_id.in_(covered))
            .group_by(InvoiceLine.id, InvoiceLine.line_no, gross)).all():
        if credited > line_gross:
            problems.append(f"invoice line {line_id} (no {line_no}): credited {credited} of "
                            f"{line_gross}")
    notes = (select(CreditNote.request_id, sa.func.count().label("n"))
             .where(CreditNote.request_id.is_not(None)).group_by(CreditNote.request_id)
             .subquery())
    count = sa.func.coalesce(notes.c.n, 0)
    problems += [f"credit note request {rid}: {status} with {n} note(s)"
                 for rid, status, n in session.exec(
                     select(CreditNoteRequest.id, CreditNoteRequest.status, count)
                     .outerjoin(notes, notes.c.request_id == CreditNoteRequest.id)
                     .where(sa.or_(count > 1, sa.and_(
                         CreditNoteRequest.status == CreditNoteStatus.ISSUED, count != 1),
                         sa.and_(CreditNoteRequest.status != CreditNoteStatus.ISSUED,
                                 count != 0)))
                     .order_by(CreditNoteRequest.id)).all()]
    return problems


def validate_write_off_requests(session: Session) -> list[str]:
    """A write-off request was executed exactly when it says so: written off with its one
    write-off (of at most the amount asked), anything else without one."""
    problems = []
    done = WriteOffRequest.status == WriteOffRequestStatus.WRITTEN_OFF
    for rid, status, write_off_id, asked, amount in session.exec(
            select(WriteOffRequest.id, WriteOffRequest.status, WriteOffRequest.write_off_id,
                   WriteOffRequest.amount_minor, WriteOff.amount_minor)
            .outerjoin(WriteOff, WriteOff.id == WriteOffRequest.write_off_id)
            .where(sa.or_(sa.and_(done, WriteOffRequest.write_off_id.is_(None)),
                          sa.and_(~done, WriteOffRequest.write_off_id.is_not(None)),
                          WriteOff.amount_minor > WriteOffRequest.amount_minor))
            .order_by(WriteOffRequest.id)).all():
        if (status == WriteOffRequestStatus.WRITTEN_OFF) != (write_off_id is not None):
            problems.append(f"write-off request {rid}: {status} with write-off "
                            f"{write_off_id}")
        if amount is not None and amount > asked:
            problems.append(f"write-off request {rid}: wrote off {amount} of {asked} asked")
    return problems


def validate_fee_invoices(session: Session) -> list[str]:
    """A late-fee invoice charges one level of one other invoice (never another fee), and its
    lines make up its total."""
    fee = aliased(Invoice)
    problems = []
    lines = (select(InvoiceLine.invoice_id, sa.func.sum(InvoiceLine.line_total_minor).label("s"))
             .group_by(InvoiceLine.invoice_id).subquery())
    summed = sa.func.coalesce(lines.c.s, 0)
    for number, level, source, total, lines_total, original_fee in session.exec(
            select(Invoice.number, Invoice.fee_level, Invoice.source, Invoice.total_minor,
                   summed, fee.fee_for_invoice_id)
            .join(fee, fee.id == Invoice.fee_for_invoice_id)
            .outerjoin(lines, lines.c.invoice_id == Invoice.id)
            .where(sa.or_(Invoice.fee_level.is_(None), Invoice.source != "fee",
                          summed != Invoice.total_minor, fee.fee_for_invoice_id.is_not(None)))
            ).all():
        if level is None or source != "fee":
            problems.append(f"fee invoice {number}: level {level}, source {source}")
        if lines_total != total:
            problems.append(f"fee invoice {number}: lines {lines_total} != total {total}")
        if original_fee is not None:
            problems.append(f"fee invoice {number}: charges a fee on a fee")
    return problems


def validate_deductions(session: Session) -> list[str]:
    """A deduction's state matches what was done about it: one that is disputed has a dispute,
    one waiting for a write-off has a pending request, a resolved one says how, one that the
    credit notes of its disputes covered is not left unresolved (credited in part, it stays
    open for the rest: `workflows.deductions.credited`); an invoice has at most one deduction
    not resolved."""
    disputed = sa.exists().where(Dispute.deduction_id == Deduction.id)
    asked = sa.exists().where(WriteOffRequest.deduction_id == Deduction.id,
                              WriteOffRequest.status == WriteOffRequestStatus.PENDING)
    no_dispute = sa.and_(Deduction.status == DeductionStatus.DISPUTED, ~disputed)
    nobody_asked = sa.and_(Deduction.status == DeductionStatus.WRITE_OFF_PENDING, ~asked)
    unexplained = sa.and_(Deduction.status == DeductionStatus.RESOLVED,
                          sa.func.coalesce(Deduction.resolution, "") == "")
    credited = (select(sa.func.coalesce(sa.func.sum(
        CreditNote.amount_minor + CreditNote.customer_credit_minor), 0))
        .join(CreditNoteRequest, CreditNoteRequest.id == CreditNote.request_id)
        .join(Dispute, Dispute.id == CreditNoteRequest.dispute_id)
        .where(Dispute.deduction_id == Deduction.id).scalar_subquery())
    covered = sa.and_(Deduction.status == DeductionStatus.OPEN,
                      credited >= Deduction.amount_minor)
    problems = []
    for did, status in session.exec(select(Deduction.id, Deduction.status)
                                    .where(sa.or_(no_dispute, nobody_asked, unexplained,
                                                  covered))
                                    .order_by(Deduction.id)).all():
        problems.append(f"deduction {did}: " + {
            DeductionStatus.DISPUTED: "disputed without a dispute",
            DeductionStatus.WRITE_OFF_PENDING: "waiting for a write-off nobody asked",
            DeductionStatus.OPEN: "open though its disputes' credit notes covered it",
        }.get(status, "resolved without a resolution"))
    # one shortfall, one deduction: a later short payment on the invoice pays part of it
    # (`deductions.being_worked`), so what is outstanding — what is left of it, at most the
    # invoice's balance — never counts the same money twice nor more than is open
    active = Deduction.status.in_([str(s) for s in deductions.ACTIVE])
    for number, n in session.exec(
            select(Invoice.number, sa.func.count(Deduction.id))
            .join(Deduction, Deduction.invoice_id == Invoice.id).where(active)
            .group_by(Invoice.id, Invoice.number).having(sa.func.count(Deduction.id) > 1)
            .order_by(Invoice.id)).all():
        problems.append(f"invoice {number}: {n} deductions being worked at once (one "
                        "shortfall counted more than once)")
    return problems


def validate_subscription_billings(session: Session) -> list[str]:
    """A billed subscription period is one of its line's periods (its days and the net amount
    that period bills, `orders.subscription_periods`), invoiced to the order's customer, and
    starts before the day the line stops (`cancelled_from`): a period billed for another
    amount or other days, to someone else, or after the customer left is money wrong. (Once
    per period: the table's key.)"""
    from workflows.orders import subscription_periods

    problems = []
    rows = session.exec(select(SubscriptionBilling, OrderLine, Order.customer_id,
                               Invoice.customer_id)
                        .join(OrderLine, OrderLine.id == SubscriptionBilling.order_line_id)
                        .join(Order, Order.id == OrderLine.order_id)
                        .join(Invoice, Invoice.id == SubscriptionBilling.invoice_id)
                        .order_by(SubscriptionBilling.order_line_id,
                                  SubscriptionBilling.period_start)).all()
    periods: dict[int, set[tuple]] = {}
    for billed, line, ordered_by, billed_to in rows:
        what = f"subscription line {line.id}, period from {billed.period_start.isoformat()}"
        if line.id not in periods:
            periods[line.id] = set(subscription_periods(line)) if line.billing else set()
        if (billed.period_start, billed.period_end, billed.amount_minor) not in periods[line.id]:
            problems.append(f"{what}: billed {billed.amount_minor} to "
                            f"{billed.period_end.isoformat()}, not one of the line's periods")
        if line.cancelled_from is not None and billed.period_start >= line.cancelled_from:
            problems.append(f"{what}: billed though the line stops from "
                            f"{line.cancelled_from.isoformat()}")
        if billed_to != ordered_by:
            problems.append(f"{what}: invoiced to customer {billed_to}, the order is customer "
                            f"{ordered_by}'s")
    return problems


def kpi_rollups_recomputed(session: Session
                           ) -> tuple[dict[tuple[str, object], dict[str, int]], list[str]]:
    """`kpi_daily` as the base rows say it should be (its non-zero figures per currency and
    day, see `models.system.KpiDaily`), and the payments whose `auto_allocated_minor` or
    `manual_allocations` differ from their allocations."""
    expected: dict[tuple[str, object], dict[str, int]] = {}

    def add(currency: str, day: object, **figures: int) -> None:
        row = expected.setdefault((currency, day), {})
        for name, value in figures.items():
            row[name] = row.get(name, 0) + int(value or 0)

    not_fee = sa.case((Invoice.fee_for_invoice_id.is_(None), 1), else_=0)
    fee_total = sa.case((Invoice.fee_for_invoice_id.is_(None), 0), else_=Invoice.total_minor)
    for currency, day, sales, issued, fees in session.exec(
            select(Invoice.currency, Invoice.issue_date, sa.func.sum(Invoice.total_minor),
                   sa.func.sum(not_fee), sa.func.sum(fee_total))
            .group_by(Invoice.currency, Invoice.issue_date)).all():
        add(currency, day, sales_minor=sales, invoices_issued=issued, fees_minor=fees)
    for model in (Allocation, CreditNote, WriteOff):
        for currency, effective, issued_on, amount in session.exec(
                select(Invoice.currency, model.effective_date, Invoice.issue_date,
                       sa.func.sum(model.amount_minor))
                .join(Invoice, Invoice.id == model.invoice_id)
                .group_by(Invoice.currency, model.effective_date, Invoice.issue_date)).all():
            add(currency, max(effective, issued_on), settled_minor=amount)
    for currency, day, amount in session.exec(  # (credit notes against sales: 0030)
            select(Invoice.currency, CreditNote.effective_date,
                   sa.func.sum(CreditNote.amount_minor))
            .join(Invoice, Invoice.id == CreditNote.invoice_id)
            .where(Invoice.fee_for_invoice_id.is_(None))
            .group_by(Invoice.currency, CreditNote.effective_date)).all():
        add(currency, day, credited_minor=amount)
    for currency, day, amount in session.exec(
            select(Invoice.currency, WriteOff.effective_date, sa.func.sum(WriteOff.amount_minor))
            .join(Invoice, Invoice.id == WriteOff.invoice_id)
            .where(WriteOff.reason == WriteOffReason.BAD_DEBT)
            .group_by(Invoice.currency, WriteOff.effective_date)).all():
        add(currency, day, bad_debt_minor=amount)
    is_manual = Allocation.method == "manual"
    per_payment = (select(Allocation.payment_id,
                          sa.func.sum(sa.case((is_manual, 0), else_=Allocation.amount_minor))
                          .label("auto"),
                          sa.func.sum(sa.case((is_manual, 1), else_=0)).label("manual"))
                   .group_by(Allocation.payment_id).subquery())
    problems = []
    for pid, currency, received_at, status, amount, stored_auto, stored_manual, auto, manual \
            in session.exec(
                select(Payment.id, Payment.currency, Payment.received_at, Payment.status,
                       Payment.amount_minor, Payment.auto_allocated_minor,
                       Payment.manual_allocations, sa.func.coalesce(per_payment.c.auto, 0),
                       sa.func.coalesce(per_payment.c.manual, 0))
                .outerjoin(per_payment, per_payment.c.payment_id == Payment.id)).all():
        if (stored_auto, stored_manual) != (auto, manual):
            problems.append(f"payment {pid}: auto-allocated {stored_auto}, manual "
                            f"allocations {stored_manual} stored; its allocations say "
                            f"{auto}, {manual}")
        matched = status in ("applied", "partially_applied") and manual == 0 and auto != 0
        add(currency, received_at.astimezone(UTC).date(), payments=1,
            payments_auto=int(matched), received_minor=amount,
            auto_matched_minor=auto if matched else 0)
    return ({key: {n: v for n, v in row.items() if v} for key, row in expected.items()
             if any(row.values())}, problems)


def validate_kpi_rollups(session: Session) -> list[str]:
    """The KPIs read sums per day (`kpi_daily`) and per payment instead of the base rows:
    database triggers keep them in the same statement as every write (migration
    0023_kpi_rollups); they must equal a recomputation from the base rows, to the cent."""
    expected, problems = kpi_rollups_recomputed(session)
    names = [c.name for c in KpiDaily.__table__.c
             if c.name not in ("currency", "day", "stripe")]
    stored = {}
    for currency, day, *values in session.exec(  # a day's stripes summed
            select(KpiDaily.currency, KpiDaily.day,
                   *(sa.func.sum(KpiDaily.__table__.c[n]) for n in names))
            .group_by(KpiDaily.currency, KpiDaily.day)).all():
        figures = {n: int(v) for n, v in zip(names, values, strict=True) if v}
        if figures:
            stored[(currency, day)] = figures
    for key in sorted(set(expected) | set(stored), key=str):
        if expected.get(key, {}) != stored.get(key, {}):
            problems.append(f"kpi_daily {key[0]} {key[1]}: stored {stored.get(key, {})}, "
                            f"recomputed {expected.get(key, {})}")
    return problems


ALL = [validate_payment_allocations, validate_refunds, validate_invoice_balances,
       validate_invoice_totals, validate_issued_invoices, validate_customer_credit,
       validate_order_totals,
       validate_order_lines, validate_stock, validate_disputes, validate_credit_notes,
       validate_write_off_requests, validate_fee_invoices, validate_deductions,
       validate_subscription_billings, validate_kpi_rollups]


def validate_all(session: Session) -> list[str]:
    return [problem for check in ALL for problem in check(session)]
