"""Read-only views for lookups (`/o2c`, the REST API's GETs): one function per screen, each a
handful of indexed queries, returning plain dataclasses the `blocks` builders render."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import bindparam, func
from sqlmodel import Session, select

from models import (
    Approval,
    AuditEvent,
    Customer,
    Invoice,
    Order,
    OrderLine,
    Payment,
    Shipment,
)
from workflows import customer_notices
from workflows.cash_application import matched_because, payment_allocations, suggestions_of
from workflows.receivables import CustomerPosition, Held, customer_position, held_for

RECENT_ORDERS = 15


@dataclass
class OrderView:
    order: Order
    customer: Customer
    lines: list[OrderLine]
    approvals: list[Approval]
    shipments: list[Shipment]
    invoices: list[Invoice]
    history: list[AuditEvent] = field(default_factory=list)
    # what the customer was told (issue 19): order, backorder, shipment, delivery notices
    notices: list[dict] = field(default_factory=list)
    # the customer's backorder choice through their link, if they made one
    customer_choice: str | None = None

    @property
    def balance_minor(self) -> int:
        return sum(inv.balance_minor for inv in self.invoices)

    @property
    def invoiced_minor(self) -> int:
        return sum(inv.total_minor for inv in self.invoices)


def _order_reads() -> dict[str, object]:
    """`order_view`'s statements, built once: the order's number and id are bound parameters,
    so each answer only binds them (SQLAlchemy builds a statement's expression tree and its
    cache key again every time it is written out, which cost an answer more than its reads)."""
    from workflows.customer_links import choice_column

    order_id = bindparam("order_id")

    def of_order(entity, *order_by):
        return select(entity).where(entity.order_id == order_id).order_by(*order_by)

    return {
        "order": (select(Order, Customer, choice_column(Order.id))
                  .join(Customer, Customer.id == Order.customer_id)
                  .where(Order.number == bindparam("number"))),
        "history": (select(AuditEvent).where(AuditEvent.entity_type == "order",
                                             AuditEvent.entity_id == bindparam("entity_id"))
                    .order_by(AuditEvent.id)),
        "lines": of_order(OrderLine, OrderLine.line_no),
        "approvals": of_order(Approval, Approval.id),
        "shipments": of_order(Shipment, Shipment.id),
        "invoices": of_order(Invoice, Invoice.id),
    }


ORDER_READS = _order_reads()


def order_view(session: Session, number: str, *, with_history: bool = False) -> OrderView | None:
    """The order with its customer and the customer's backorder choice read in one query,
    then its lines, approvals, shipments, invoices and notices (a few rows each)."""
    reads = ORDER_READS
    found = session.exec(reads["order"], params={"number": number.strip().upper()}).first()
    if found is None:
        return None
    order, customer, choice = found
    of_order = {"order_id": order.id}
    history = []
    if with_history:
        history = list(session.exec(reads["history"], params={"entity_id": str(order.id)}))
    return OrderView(
        order=order, customer=customer,
        lines=list(session.exec(reads["lines"], params=of_order)),
        approvals=list(session.exec(reads["approvals"], params=of_order)),
        shipments=list(session.exec(reads["shipments"], params=of_order)),
        invoices=list(session.exec(reads["invoices"], params=of_order)),
        history=history, notices=customer_notices.history(session, order.id),
        customer_choice=choice)


def recent_orders(session: Session, customer_id: int, limit: int = RECENT_ORDERS
                  ) -> tuple[list[Order], int]:
    from sqlalchemy import func

    orders = list(session.exec(select(Order).where(Order.customer_id == customer_id)
                               .order_by(Order.order_date.desc(), Order.id.desc())
                               .limit(limit)))
    total = session.exec(select(func.count()).select_from(Order)
                         .where(Order.customer_id == customer_id)).one()
    return orders, int(total)


def open_invoices(session: Session, customer_id: int, limit: int = 20) -> list[Invoice]:
    return list(session.exec(select(Invoice).where(Invoice.customer_id == customer_id,
                                                   Invoice.balance_minor > 0)
                             .order_by(Invoice.due_date, Invoice.id).limit(limit)))


def open_invoice_count(session: Session, customer_id: int) -> int:
    return int(session.exec(select(func.count()).select_from(Invoice).where(
        Invoice.customer_id == customer_id, Invoice.balance_minor > 0)).one())


@dataclass
class CustomerView:
    position: CustomerPosition
    open_invoices: list[Invoice]
    collector_name: str | None = None
    sales_rep_name: str | None = None
    # unapplied payments and customer credit, per currency (`receivables.held_for`): today's
    held: list[Held] = field(default_factory=list)


def customer_view(session: Session, customer: Customer, as_of: date, *,
                  now: datetime | None = None) -> CustomerView:
    return CustomerView(position=customer_position(session, customer, as_of, now=now),
                        open_invoices=open_invoices(session, customer.id),
                        held=held_for(session, customer.id))


@dataclass
class InvoiceView:
    invoice: Invoice
    customer: Customer
    order_number: str | None
    allocations: list[tuple[int, int, str]]  # (payment id, amount, method)
    history: list[AuditEvent]
    credit_notes: list = field(default_factory=list)  # issued CreditNote rows
    pending_credit_notes: list = field(default_factory=list)  # CreditNoteRequest rows
    disputes: list = field(default_factory=list)
    fees: list[Invoice] = field(default_factory=list)  # late-fee invoices charged for it
    fee_for: str | None = None  # for a late-fee invoice: the invoice it charges for
    lines: list = field(default_factory=list)  # InvoiceLine rows
    write_offs: list = field(default_factory=list)  # WriteOff rows, oldest first


def invoice_view(session: Session, number: str) -> InvoiceView | None:
    from models import Allocation, WriteOff

    invoice = session.exec(select(Invoice).where(Invoice.number == number)).first()
    if invoice is None:
        return None
    order = session.get(Order, invoice.order_id) if invoice.order_id else None
    allocations = [(a.payment_id, a.amount_minor, a.method) for a in session.exec(
        select(Allocation).where(Allocation.invoice_id == invoice.id).order_by(Allocation.id))]
    history = list(session.exec(select(AuditEvent).where(
        AuditEvent.entity_type == "invoice", AuditEvent.entity_id == str(invoice.id))
        .order_by(AuditEvent.id)))
    from workflows import credit_notes, disputes

    original = session.get(Invoice, invoice.fee_for_invoice_id) \
        if invoice.fee_for_invoice_id else None
    return InvoiceView(invoice, session.get(Customer, invoice.customer_id),
                       order.number if order else None, allocations, history,
                       credit_notes=credit_notes.notes_of(session, invoice.id),
                       pending_credit_notes=credit_notes.pending_of(session, invoice.id),
                       disputes=disputes.disputes_of(session, invoice.id),
                       fees=list(session.exec(select(Invoice).where(
                           Invoice.fee_for_invoice_id == invoice.id).order_by(Invoice.id))),
                       fee_for=original.number if original else None,
                       lines=credit_notes.lines_of(session, invoice),
                       write_offs=list(session.exec(select(WriteOff).where(
                           WriteOff.invoice_id == invoice.id).order_by(WriteOff.id))))


def payment_view(session: Session, payment: Payment) -> dict:
    return {"payment": payment,
            "allocations": payment_allocations(session, payment.id),
            "suggestions": suggestions_of(session, payment),
            "matched_because": matched_because(session, payment)}
