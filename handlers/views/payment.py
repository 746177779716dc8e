"""The `/o2c pay` modal: submission (validated inline) and its two searchable selects.

The payment is recorded through `record_payment` like every other payment (source "slack"),
so the matching engine runs unless the collector picked the invoices. The view id is the
payment's external id: a double submission records it once."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, BoltContext
from sqlmodel import select

from blocks import ids
from blocks.cashapp import option
from handlers.common import caller, deps_of, transaction
from models import Customer, Invoice, Role, money
from workflows import outbox
from workflows.cash_application import PaymentIn, payment_allocations, record_payment
from workflows.errors import DomainError, PermissionDenied, ValidationFailed
from workflows.lookup import find_customer
from workflows.users import require_role

FIELD_BLOCKS = {"amount": ids.PAY_AMOUNT_BLOCK, "currency": ids.PAY_CURRENCY_BLOCK,
                "customer": ids.PAY_CUSTOMER_BLOCK, "received_at": ids.PAY_DATE_BLOCK,
                "apply_to": ids.PAY_INVOICES_BLOCK, "reference": ids.PAY_REFERENCE_BLOCK,
                "payer_name": ids.PAY_PAYER_BLOCK}


def _value(values: dict, block: str, action: str) -> dict:
    return (values.get(block) or {}).get(action) or {}


def read_form(values: dict) -> dict:
    amount = (_value(values, ids.PAY_AMOUNT_BLOCK, ids.PAY_AMOUNT).get("value") or "").strip()
    currency = (_value(values, ids.PAY_CURRENCY_BLOCK, ids.PAY_CURRENCY)
                .get("selected_option") or {}).get("value")
    customer = (_value(values, ids.PAY_CUSTOMER_BLOCK, ids.PAY_CUSTOMER)
                .get("selected_option") or {}).get("value")
    invoices = [o["value"] for o in _value(values, ids.PAY_INVOICES_BLOCK, ids.PAY_INVOICES)
                .get("selected_options") or []]
    return {"amount": amount.replace(",", ""), "currency": currency or "",
            "customer": customer,
            "payer_name": (_value(values, ids.PAY_PAYER_BLOCK, ids.PAY_PAYER).get("value")
                           or "").strip() or None,
            "reference": (_value(values, ids.PAY_REFERENCE_BLOCK, ids.PAY_REFERENCE)
                          .get("value") or "").strip() or None,
            "date": _value(values, ids.PAY_DATE_BLOCK, ids.PAY_DATE).get("selected_date"),
            "invoices": invoices}


def _check(form: dict, today: datetime) -> dict[str, str]:
    errors = {}
    try:
        minor = money.to_minor(form["amount"], form["currency"] or "USD")
        if minor <= 0:
            errors[ids.PAY_AMOUNT_BLOCK] = "Must be greater than zero."
    except money.MoneyError:
        errors[ids.PAY_AMOUNT_BLOCK] = "Type an amount like 1250.00 (no currency symbol)."
    if not form["date"]:
        errors[ids.PAY_DATE_BLOCK] = "Pick the day the money arrived."
    elif datetime.fromisoformat(form["date"]).date() > today.date():
        errors[ids.PAY_DATE_BLOCK] = "A payment cannot arrive in the future."
    return errors


def on_submit(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    user_id = body["user"]["id"]
    user = caller(context, user_id)
    tz = ZoneInfo(user.timezone or "UTC")
    form = read_form((view.get("state") or {}).get("values") or {})
    errors = _check(form, datetime.now(tz))
    if errors:
        ack(response_action="errors", errors=errors)
        return
    received = datetime.combine(datetime.fromisoformat(form["date"]).date(), time(12, 0),
                                tzinfo=tz)
    data = PaymentIn(amount=form["amount"], currency=form["currency"], received_at=received,
                     payer_name=form["payer_name"], reference=form["reference"],
                     customer=form["customer"], method="manual entry",
                     external_id=f"slack-view:{view['id']}")
    try:
        with transaction(context) as session:
            require_role(session, user_id=user_id, roles=(Role.COLLECTOR,),
                         action="payment.record", entity_type="command", entity_id="pay")
            payment, created = record_payment(session, data, actor=user_id, source="slack",
                                              apply_to=form["invoices"] or None)
            if created:
                details = payment.match_details or {}
                outbox.post_to_user(session, user_id=user_id, template="payment_recorded",
                                    context={
                    "id": payment.id, "status": payment.status, "currency": payment.currency,
                    "amount_minor": payment.amount_minor,
                    "unapplied_minor": payment.unapplied_minor,
                    "write_off_minor": details.get("write_off_minor", 0),
                    "allocations": [{"invoice": inv.number,
                                     "amount": money.to_str(a.amount_minor, payment.currency)}
                                    for a, inv in payment_allocations(session, payment.id)]})
    except PermissionDenied as refused:
        ack(response_action="errors", errors={ids.PAY_AMOUNT_BLOCK: refused.detail})
        return
    except ValidationFailed as invalid:
        ack(response_action="errors", errors={
            FIELD_BLOCKS.get(e.field, ids.PAY_AMOUNT_BLOCK): e.detail[:150]
            for e in invalid.errors} or {ids.PAY_AMOUNT_BLOCK: invalid.detail[:150]})
        return
    except DomainError as error:
        ack(response_action="errors", errors={ids.PAY_AMOUNT_BLOCK: error.detail[:150]})
        return
    ack()


def customer_options(ack: Ack, payload: dict, context: BoltContext) -> None:
    query = (payload.get("value") or "").strip()
    with deps_of(context).db.read_session() as session:
        match = find_customer(session, query, limit=10) if query else None
    found = match.candidates if match else []
    ack(options=[option(f"{c.name} ({c.external_id})", c.external_id) for c in found])


def invoice_options(ack: Ack, payload: dict, context: BoltContext) -> None:
    query = (payload.get("value") or "").strip()
    values = ((payload.get("view") or {}).get("state") or {}).get("values") or {}
    customer = (_value(values, ids.PAY_CUSTOMER_BLOCK, ids.PAY_CUSTOMER)
                .get("selected_option") or {}).get("value")
    with deps_of(context).db.read_session() as session:
        stmt = (select(Invoice).where(Invoice.balance_minor > 0,
                                      Invoice.number.ilike(f"%{query}%"))
                .order_by(Invoice.due_date).limit(20))
        if customer:
            stmt = stmt.join(Customer, Customer.id == Invoice.customer_id).where(
                Customer.external_id == customer)
        rows = session.exec(stmt).all()
    ack(options=[option(f"{inv.number} — {money.format_money(inv.balance_minor, inv.currency)}",
                        inv.number) for inv in rows])


def register(app: App) -> None:
    app.view(ids.PAY_MODAL)(on_submit)
    app.options(ids.PAY_CUSTOMER)(customer_options)
    app.options(ids.PAY_INVOICES)(invoice_options)
