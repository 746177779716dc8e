"""The `/o2c pay` modal: submission (validated inline) and its two searchable selects.

The submission acks first: before the ack only reads happen (fields, role, the customer's
currency, the chosen invoices; `workflows.cash_application.check_from_slack`), and a refusal
stays in the form under its field. After the ack the payment is recorded (and the DM about it
written, in the same transaction) by `workflows.cash_application.record_from_slack` like every
other payment (source "slack"), so the matching engine runs unless the collector picked the
invoices. The view id is claimed in the same transaction (`workflows.receipts`) and is the
payment's external id: a double, replayed or concurrent submission records it once."""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from blocks import ids
from blocks.cashapp import customer_option, invoice_option
from blocks.text import esc
from handlers.common import (
    caller,
    checking,
    deps_of,
    describe_error,
    form_value,
    formats_of,
    known_formats,
    metadata_id,
    now_of,
    options_for,
    transaction,
    view_metadata,
)
from models import Role, limits, money
from workflows import receipts
from workflows.cash_application import (
    check_from_slack,
    open_invoice_choices,
    record_from_slack,
    return_payment,
)
from workflows.cash_application import check_return as cash_return_check
from workflows.errors import DomainError
from workflows.inputs import PaymentIn, build
from workflows.lookup import find_customer
from workflows.users import require_role
from workflows.validation import typed_amount

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
    return {"amount": typed_amount(amount), "currency": currency or "",
            "customer": customer,
            "payer_name": (_value(values, ids.PAY_PAYER_BLOCK, ids.PAY_PAYER).get("value")
                           or "").strip() or None,
            "reference": (_value(values, ids.PAY_REFERENCE_BLOCK, ids.PAY_REFERENCE)
                          .get("value") or "").strip() or None,
            "date": _value(values, ids.PAY_DATE_BLOCK, ids.PAY_DATE).get("selected_date"),
            "invoices": invoices}


def _check(form: dict, today: date) -> dict[str, str]:
    errors = {}
    try:  # the same strict parse and bound as the API and CSV import (models.limits)
        minor = money.parse_amount(form["amount"], form["currency"] or "USD")
        if minor <= 0:
            errors[ids.PAY_AMOUNT_BLOCK] = "Must be greater than zero."
    except money.MoneyError as exc:
        errors[ids.PAY_AMOUNT_BLOCK] = (f"Type an amount like 1250.00 (no currency symbol): "
                                        f"{exc}")[:150]
    if not form["date"]:
        errors[ids.PAY_DATE_BLOCK] = "Pick the day the money arrived."
    elif date.fromisoformat(form["date"][:10]) > today:
        errors[ids.PAY_DATE_BLOCK] = "A payment cannot arrive in the future."
    elif date.fromisoformat(form["date"][:10]).year < limits.MIN_YEAR:
        errors[ids.PAY_DATE_BLOCK] = f"Pick a day after {limits.MIN_YEAR}."
    return errors


def check_submission(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    """The ack of a submission: the fields, the collector role, the customer's currency and
    the chosen invoices (reads only). Bad input keeps the form open with each error under its
    field; good input closes it, and the payment is recorded and matched after the ack
    (`record_payment`)."""
    user_id = body["user"]["id"]
    now = _now(context, user_id)
    form = read_form((view.get("state") or {}).get("values") or {})
    errors = _check(form, now.date())
    if errors:
        ack(response_action="errors", errors=errors)
        return
    try:
        with checking(context, in_ack=True) as session:  # a refusal is audited
            check_from_slack(session, _payment(form, view, now.tzinfo), user_id=user_id,
                             apply_to=form["invoices"])
    except DomainError as error:  # refused (role) or invalid: shown in the form
        ack(response_action="errors", errors=_errors_of(error))
        return
    ack()


def record_payment(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    """After the ack: record the payment and run the matching engine, once per submission
    (the view id is claimed in the same transaction and is the payment's external id). The
    collector hears the outcome in the DM written with it (`payment_recorded`, the outbox);
    a refusal the checks before the ack could not see (a conflict, a role removed meanwhile)
    is told to them in a DM."""
    user_id = body["user"]["id"]
    form = read_form((view.get("state") or {}).get("values") or {})
    try:
        data = _payment(form, view, _now(context, user_id).tzinfo)
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="payment", actor=user_id)
            payment, _ = record_from_slack(session, data, user_id=user_id,
                                           apply_to=form["invoices"],
                                           names=deps_of(context).db.customer_names)
            receipts.remember(session, receipt, payment_id=payment.id)
    except receipts.AlreadyHandled:
        return  # a replay: recorded once, and the collector was told
    except DomainError as error:
        client.chat_postMessage(channel=user_id, text=describe_error(
            error, what="record the payment"))


def _payment(form: dict, view: dict, tz: tzinfo | None) -> PaymentIn:
    """The payment as every surface sends it (`workflows.inputs`); a field it refuses is a
    `ValidationFailed` naming it, shown under that field."""
    # the day the money arrived, at noon where the collector is
    received = datetime.combine(date.fromisoformat(form["date"][:10]), time(12, 0), tzinfo=tz)
    return build(PaymentIn, amount=form["amount"], currency=form["currency"],
                 received_at=received, payer_name=form["payer_name"],
                 reference=form["reference"], customer=form["customer"],
                 method="manual entry", external_id=f"slack-view:{view['id']}")


def _errors_of(error: DomainError) -> dict[str, str]:
    """A refusal as inline errors, each on the field it names (the amount field otherwise)."""
    errors: dict[str, str] = {}
    for e in error.errors:
        block = FIELD_BLOCKS.get(e.field, ids.PAY_AMOUNT_BLOCK)
        errors.setdefault(block, e.detail[:150])
    return errors or {ids.PAY_AMOUNT_BLOCK: error.detail[:150]}


def _now(context: BoltContext, user_id: str) -> datetime:
    """This moment where the collector is (their Slack time zone)."""
    return deps_of(context).clock.now_in(caller(context, user_id).timezone)


def may_record(session: Session, user_id: str) -> None:
    """The role `/o2c pay` needs (`handlers.commands.pay` checks it before the modal opens),
    checked again by each of its modal's selects: a collector whose role was taken while the
    modal was open sees no more customers or invoices (the refusal is audited by `checking`)."""
    require_role(session, user_id=user_id, roles=(Role.COLLECTOR,), action="payment.record",
                 entity_type="command", entity_id="pay")


def customer_options(ack: Ack, payload: dict, context: BoltContext) -> None:
    user_id = (payload.get("user") or {}).get("id") or ""
    query = (payload.get("value") or "").strip()
    options_for(ack, context, lambda s: may_record(s, user_id),
                lambda s: find_customer(s, query, limit=10) if query else None,
                lambda match: [customer_option(c)
                               for c in (match.candidates if match else [])])


def invoice_options(ack: Ack, payload: dict, context: BoltContext) -> None:
    user_id = (payload.get("user") or {}).get("id") or ""
    query = (payload.get("value") or "").strip()
    values = ((payload.get("view") or {}).get("state") or {}).get("values") or {}
    customer = (_value(values, ids.PAY_CUSTOMER_BLOCK, ids.PAY_CUSTOMER)
                .get("selected_option") or {}).get("value")

    def shown(found: list) -> list[dict]:
        fmt, _ = known_formats(context, user_id)
        return [invoice_option(inv, fmt=fmt) for inv in found]
    options_for(ack, context, lambda s: may_record(s, user_id),
                lambda s: open_invoice_choices(s, query, customer=customer), shown)


# -- "Refund or return…" on a payment nobody could place ------------------------------------------
def _return_form(view: dict) -> tuple[int, str]:
    reason = form_value(view, ids.CASHAPP_RETURN_REASON_BLOCK,
                        ids.CASHAPP_RETURN_REASON_INPUT).get("value") or ""
    return metadata_id(view_metadata(view), "payment_id"), reason


def check_return(ack: Ack, body: dict, view: dict, context: BoltContext) -> None:
    payment_id, reason = _return_form(view)
    try:
        with checking(context, in_ack=True) as session:
            cash_return_check(session, payment_id=payment_id, actor=body["user"]["id"],
                              reason=reason)
    except DomainError as error:
        ack(response_action="errors",
            errors={ids.CASHAPP_RETURN_REASON_BLOCK: describe_error(error, plain=True)})
        return
    ack()


def record_return(body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    payment_id, reason = _return_form(view)
    user_id = body["user"]["id"]
    channel = view_metadata(view).get("channel") or user_id
    fmt = formats_of(context, user_id, client)  # before any transaction
    try:
        with transaction(context) as session:
            receipt = receipts.claim(session, key=receipts.submission_key(view["id"]),
                                     kind="payment_return", actor=user_id)
            payment = return_payment(session, payment_id=payment_id, actor=user_id,
                                     reason=reason, now=now_of(context))
            receipts.remember(session, receipt, payment_id=payment_id)
            amount = fmt.money(payment.refunded_minor, payment.currency)
            payer = payment.payer_name
    except receipts.AlreadyHandled:
        return
    except DomainError as error:
        text = describe_error(error)
    else:
        text = (f":leftwards_arrow_with_hook: Refunded {amount} to "
                f"{esc(payer or 'the payer')} in the books. Now return it from your bank; the "
                "card in the AR channel says so.")
    if channel.startswith(("C", "G")):
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)
    else:
        client.chat_postMessage(channel=user_id, text=text)
