"""The Apply button and the customer select on a payment suggestion card (AR channel).

The role is checked on the server (collector or admin); the workflow claims the payment with a
conditional UPDATE, so a double click, a replay or two collectors clicking at once apply it
once. Whoever is refused, or comes second, gets an ephemeral explanation (escaped: error details
may quote ERP invoice numbers). Both teach the engine how that customer pays. Both are acked
at once and run after the ack (registered in `handlers.actions`).

The card's two searchable selects ("Find customer…", "Apply to invoices…") answer their
options in the ack, and only to whoever may then choose (collector or admin): the card sits in
a channel, so anyone there can type into them. Anyone else gets no options (customer names,
invoice numbers and open amounts are not theirs to see), and the refusal is audited."""

from __future__ import annotations

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from blocks import cashapp as answers
from handlers.common import (
    checking,
    click_key,
    describe_error,
    formats_of,
    known_formats,
    now_of,
    options_for,
    tell_user,
    transaction,
)
from handlers.deps import deps_of
from models import Payment, Role, money
from workflows import receipts
from workflows.cash_application import (
    apply_suggestion,
    assign_customer,
    correct_application,
    open_invoice_choices,
    payment_allocations,
    refuse_stripe_return,
)
from workflows.errors import AlreadyDecided, DomainError, NotFound, PermissionDenied
from workflows.lookup import find_customer
from workflows.users import require_role


def on_apply(body: dict, action: dict, respond: Respond, client: WebClient,
             context: BoltContext) -> None:
    user_id = body["user"]["id"]
    fmt = formats_of(context, user_id, client)  # before any transaction
    try:  # "<payment>:<rank>:<round>" ("<payment>:<rank>" on cards made before rounds)
        parts = [int(part) for part in str(action.get("value", "")).split(":")]
        payment_id, rank, round_ = (*parts, None)[:3] if len(parts) in (2, 3) else ()
    except ValueError:
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    try:
        with transaction(context) as session:
            payment = apply_suggestion(session, payment_id=payment_id, rank=rank,
                                       actor=user_id, now=now_of(context), round_=round_,
                                       names=deps_of(context).db.customer_names)
            decision = (payment.match_details or {}).get("decision") or {}
            text = answers.applied_answer(payment_id=payment_id, rank=rank,
                                          status=payment.status,
                                          invoices=decision.get("invoices", []),
                                          currency=payment.currency,
                                          learned=decision.get("learned"), fmt=fmt)
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except AlreadyDecided as done:
        text = answers.already_applied_answer(done.decided_by, done.decision)
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)


def on_assign(body: dict, action: dict, respond: Respond, client: WebClient,
              context: BoltContext) -> None:
    user_id = body["user"]["id"]
    fmt = formats_of(context, user_id, client)  # before any transaction
    customer = (action.get("selected_option") or {}).get("value")
    try:
        payment_id = int(str(action.get("block_id", "")).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    if not customer:
        return
    try:
        with transaction(context) as session:
            payment = assign_customer(session, payment_id=payment_id, customer=customer,
                                      actor=user_id, now=now_of(context),
                                      names=deps_of(context).db.customer_names)
            identified = (payment.match_details or {}).get("identified") or {}
            invoices = [{"invoice": inv.number,
                         "amount": money.to_str(a.amount_minor, payment.currency)}
                        for a, inv in payment_allocations(session, payment.id)]
            text = answers.identified_answer(
                payment_id=payment.id, customer_name=identified.get("customer_name") or customer,
                status=payment.status, invoices=invoices, currency=payment.currency,
                learned=identified.get("learned"), fmt=fmt)
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except AlreadyDecided as done:
        text = answers.already_applied_answer(done.decided_by, done.decision)
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)


def _payment_of_block(action: dict) -> int | None:
    try:
        return int(str(action.get("block_id", "")).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def on_apply_invoices(body: dict, action: dict, respond: Respond, client: WebClient,
                      context: BoltContext) -> None:
    """"Apply to invoices…" on a payment nobody could place: applied to the invoices picked
    (one customer's), the engine learns how that customer pays; the card shows who did it.

    Each pick moves the payment again (a correction undoes what was applied before), so the
    click is claimed by its `action_ts` (`workflows.receipts`) in the same transaction: a
    replay of an old pick, arriving after a later correction, cannot move it back; it is told
    the first answer."""
    user_id = body["user"]["id"]
    fmt = formats_of(context, user_id, client)  # before any transaction
    payment_id = _payment_of_block(action)
    numbers = [str(o.get("value")) for o in action.get("selected_options") or []
               if isinstance(o, dict) and o.get("value")]
    if payment_id is None:
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    if not numbers:
        return  # the last invoice was taken out of the select: nothing to do
    key = click_key(body)
    try:
        with transaction(context) as session:
            receipt = (receipts.claim(session, key=key, kind="payment_correct", actor=user_id)
                       if key else None)
            payment = correct_application(session, payment_id=payment_id, invoices=numbers,
                                          actor=user_id, now=now_of(context),
                                          names=deps_of(context).db.customer_names)
            invoices = [{"invoice": inv.number,
                         "amount": money.to_str(a.amount_minor, payment.currency)}
                        for a, inv in payment_allocations(session, payment.id)]
            text = answers.picked_answer(payment_id=payment.id, status=payment.status,
                                         invoices=invoices, currency=payment.currency,
                                         fmt=fmt)
            if receipt is not None:
                receipts.remember(session, receipt, answer=text)
    except receipts.AlreadyHandled as done:  # a replay: the same answer as the first time
        text = done.result.get("answer") or "Those invoices were picked already; nothing changed."
    except PermissionDenied as refused:
        text = answers.refused_answer(describe_error(refused))
    except DomainError as error:
        text = answers.failed_answer(describe_error(error))
    tell_user(body, respond, client, text)


def customer_choices(ack: Ack, payload: dict, context: BoltContext) -> None:
    """The options of "Find customer…": customers whose name or id looks like the query, for
    whoever may name the payment's customer (`on_assign`); none for anyone else (audited)."""
    query = (payload.get("value") or "").strip()
    options_for(ack, context, _may_place(payload, "payment.identify"),
                lambda s: find_customer(s, query, limit=10) if query else None,
                lambda match: [answers.customer_option(c)
                               for c in (match.candidates if match else [])])


def invoice_choices(ack: Ack, payload: dict, context: BoltContext) -> None:
    """The options of "Apply to invoices…": open invoices whose number contains the query, for
    whoever may apply the payment to them (`on_apply_invoices`); none for anyone else
    (audited)."""
    query = (payload.get("value") or "").strip()

    def shown(found: list) -> list[dict]:
        fmt, _ = known_formats(context, (payload.get("user") or {}).get("id") or "")
        return [answers.invoice_option(inv, fmt=fmt) for inv in found]
    options_for(ack, context, _may_place(payload, "payment.correct"),
                lambda s: open_invoice_choices(s, query), shown)


def _may_place(payload: dict, action: str):
    """The check of a card select's search: the role of the action it belongs to (collector
    or admin), refused against the card's payment."""
    user_id = (payload.get("user") or {}).get("id") or ""

    def allowed(session) -> None:
        require_role(session, user_id=user_id, roles=(Role.COLLECTOR,), action=action,
                     entity_type="payment", entity_id=_payment_of_block(payload) or "-")
    return allowed


def on_return(body: dict, respond: Respond, client: WebClient, context: BoltContext) -> None:
    """"Refund or return…": asks why in a modal (role checked first)."""
    from handlers.common import open_modal_for

    user_id = body["user"]["id"]
    try:
        payment_id = int(str((body.get("actions") or [{}])[0].get("value", "")))
    except ValueError:
        tell_user(body, respond, client, answers.BROKEN_BUTTON)
        return
    try:
        with checking(context) as session:
            require_role(session, user_id=user_id, roles=(Role.COLLECTOR,),
                         action="payment.return", entity_type="payment", entity_id=payment_id)
            payment = session.get(Payment, payment_id)
            if payment is None:
                raise NotFound(f"no payment {payment_id}")
            refuse_stripe_return(payment, actor=user_id)  # refunded in Stripe, not here
            minor, currency = payment.amount_minor, payment.currency
            payer = payment.payer_name
    except DomainError as error:
        tell_user(body, respond, client, describe_error(error))
        return
    channel = (body.get("container") or {}).get("channel_id")
    open_modal_for(context, client, body.get("trigger_id"), user_id,
                   lambda fmt: answers.return_modal(payment_id=payment_id,
                                                    amount=fmt.money(minor, currency),
                                                    payer=payer, channel=channel))
