"""Stripe events, once each, into payments, refunds, fees and chargeback notices.

`bot`/`api` verify the signature (Stripe's own `Webhook.construct_event`, 5-minute
tolerance) and hand the event here as plain JSON; nothing here talks to Stripe.

* Exactly once: the event is claimed by its id (`provider_events`, primary key) in the
  transaction that acts on it, so a re-delivery, or the same event reaching two server
  processes, changes nothing further. A payment is keyed by its PaymentIntent id
  (`external_id` "stripe:pi_..."), so `checkout.session.completed` and
  `payment_intent.succeeded` for the same money record it once, whichever comes first.
* A completed payment (`checkout.session.completed` / `...async_payment_succeeded` with
  `payment_status` "paid", or `payment_intent.succeeded`) carrying our invoice number in its
  metadata (`o2c_invoice`, set on the Checkout Session and its PaymentIntent) is recorded
  through cash application and applied to exactly that invoice (the rest, if the balance
  moved meanwhile, stays as unapplied credit; an invoice paid already leaves it to the
  matching engine). Others (no `o2c_invoice`: not one of ours) are acknowledged and ignored.
  The gross amount is the payment: Stripe's fee is recorded apart as a fee
  (`payment_fees`, fetched from the charge's balance transaction by the outbox), never as a
  short payment.
* `charge.refunded`: the charge's cumulative `amount_refunded` minus what was refunded
  already (its refunds "stripe:<charge>:refunded:...", and what a collector returned by hand
  before such returns were refused, "return:<payment>"; never what a chargeback took: Stripe
  counts only refunds in `amount_refunded`) is given back (`workflows.refunds`: unapplied
  credit first, then the allocations), from the payment first, then from what won
  chargebacks gave back (a refund after a won chargeback). Two partial refunds delivered out
  of order give the same result. A refund that needs money a chargeback took back waits for
  that chargeback's close; one larger than what is held changes nothing and AR is told.
* `charge.dispute.created` (a chargeback): the bank takes the money back, so the payment
  gives it back as a refund would (`workflows.refunds`, keyed "stripe:<dispute>:withdrawn":
  unapplied credit first, then its invoices reopen), and a back-office dispute holds each
  reopened invoice out of dunning while Stripe decides (`disputes.external_id`
  "stripe:<dispute>", reason mapped from Stripe's). An inquiry (status `warning_*`) takes
  nothing back: announced only. Posted to the AR channel and the collector.
* `charge.dispute.funds_withdrawn`: the money is taken back as above. It is how an inquiry
  that becomes a chargeback takes the money (its `charge.dispute.created` was the inquiry's),
  and a chargeback reports it beside its `created`: whichever comes first takes the money
  (once per dispute), the other changes nothing and tells no one again.
* `charge.dispute.closed`: won — the money comes back as a payment (keyed
  "stripe:<dispute>:reinstated") applied to the invoices the chargeback reopened, and their
  disputes are closed as rejected by "stripe"; lost — the money stays with the customer and
  the disputes stay open for a person to accept (a credit note) or reject (collect again);
  both are announced. A won or lost close whose balance transactions show a withdrawal that
  no event of the chargeback took yet (an escalated inquiry's funds_withdrawn not delivered
  yet, or not subscribed to) takes it first, then closes.
* An event that needs a payment not recorded yet (a refund or dispute delivered before the
  payment) waits (`waiting`) and is processed when the payment arrives. Stripe does not
  deliver in order, so the same holds within a chargeback: a close (won or lost) delivered
  before its `charge.dispute.created` waits for it (a processed dispute event keeps its
  dispute id in `object_id`), so the chargeback ends the same whatever the order. The
  refund and dispute events of one payment lock its row first, so two of them processed at
  the same moment by two server processes run one after the other, the second seeing the
  first (a close never decides to wait while its chargeback is being committed). Likewise
  all events of one PaymentIntent (`_one_payment_at_a_time`): an event deciding to wait is
  committed before its payment's event looks for what waits for it.
* A refund or chargeback (any of its events) whose `currency` is not its payment's changes
  nothing: its amount is in other units (10,000 JPY is not 100.00 USD). It is kept as a
  failed event with the reason, audited, and AR is asked to look.
* An event whose charge, PaymentIntent or dispute id is not text or longer than
  `STRIPE_ID_MAX` (the keys made of it must fit their columns, which PostgreSQL enforces),
  or whose own id is longer than 255 (kept by its first 255 characters), changes nothing:
  kept as failed with the reason, audited, AR told; a re-delivery is a duplicate.
* Unknown event types are acknowledged and ignored.
* A session made before the pay link's token stopped going to Stripe carried the token (the
  key of the customer's page) in its metadata (`o2c_link`) and return URLs; its events are
  cleaned of it first (`scrub`: the metadata keeps the token's SHA-256, `o2c_link_hash`, the
  URLs `/pay/<link>`), so neither a kept event (waiting, failed) nor a log has it. They are
  applied as any other: by `o2c_invoice`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import (
    Customer,
    Dispute,
    DisputeStatus,
    Invoice,
    Payment,
    PaymentFee,
    PaymentLink,
    ProviderEvent,
    ProviderEventStatus,
    Refund,
    WriteOffReason,
    money,
)
from workflows import audit, outbox, payment_links, policy, refunds
from workflows.cash_application import (
    PaymentIn,
    payment_allocations,
    record_payment,
    write_off,
)
from workflows.errors import Conflict

PROVIDER = "stripe"
NAME = "Stripe"
ACTOR = "stripe"
PAID_SESSION = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@dataclass(frozen=True)
class Outcome:
    status: str  # processed, ignored, waiting, failed, duplicate
    detail: str = ""
    payment_id: int | None = None
    # what a waiting event waits for (a PaymentIntent or dispute id); of a processed dispute
    # event, its dispute (the events waiting for it are processed next)
    object_id: str | None = None


def external_id_of(payment_intent: str) -> str:
    return f"stripe:{payment_intent}"


def payment_of(session: Session, payment_intent: str | None) -> Payment | None:
    if not payment_intent:
        return None
    return session.exec(select(Payment).where(
        Payment.external_id == external_id_of(payment_intent))).first()


# a pay link's page in a URL (an old session's success_url and cancel_url)
_PAY_PATH = re.compile(r"(/pay/)(?!done\b|back\b)[^/?#\s]+")
_RETURN_URLS = frozenset({"success_url", "cancel_url", "return_url"})


def scrub(event: Any) -> Any:
    """The event without any pay link token in it (sessions made before the token stopped going
    to Stripe carried it: metadata `o2c_link`, the return URLs): the metadata keeps the token's
    hash (`o2c_link_hash`, what the database keeps of it), a URL shows `/pay/<link>`. A NUL
    character in any text or key (a customer's name typed with one) becomes U+FFFD: PostgreSQL
    stores no NUL, and an event it could not keep (waiting, failed) would answer 500 and be
    retried by Stripe for days. Anything else as it was (a copy; `event` itself is left
    alone)."""
    tokens: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            meta = value.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("o2c_link"), str) \
                    and len(meta["o2c_link"]) >= 16:  # (a real one: 32 characters or more)
                tokens.add(meta["o2c_link"])
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def clean(value: Any, key: object = None) -> Any:
        if isinstance(value, dict):
            out = {_no_nul(k): clean(v, k) for k, v in value.items() if k != "o2c_link"}
            if isinstance(value.get("o2c_link"), str) and "o2c_link_hash" not in value:
                out["o2c_link_hash"] = payment_links.hash_token(value["o2c_link"])
            return out
        if isinstance(value, list):
            return [clean(item) for item in value]
        if isinstance(value, str):
            for token in tokens:
                value = value.replace(token, "<link>")
            value = _no_nul(value)
            return _PAY_PATH.sub(r"\1<link>", value) if key in _RETURN_URLS else value
        return value

    collect(event)
    return clean(event)


def _no_nul(value: Any) -> Any:
    """A text without NUL characters (each one U+FFFD); anything else as it is."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def handle(session: Session, event: dict, *, now: datetime, fetch_fees: bool) -> Outcome:
    """Claim and process one verified Stripe event (see the module docstring)."""
    event = scrub(event)  # (`api.inbound` scrubbed it already: this holds for any caller)
    event_id = str(event.get("id") or "")
    event_type = str(event.get("type") or "")
    if not event_id or not isinstance((event.get("data") or {}).get("object"), dict):
        return Outcome("ignored", "not an event")
    if session.get(ProviderEvent, (PROVIDER, event_id[:EVENT_ID_MAX])) is not None:
        return Outcome("duplicate", "delivered before")
    row = ProviderEvent(provider=PROVIDER, event_id=event_id[:EVENT_ID_MAX],
                        type=event_type[:100], status=ProviderEventStatus.PROCESSED,
                        received_at=now)
    session.add(row)
    session.flush()  # a concurrent twin blocks here, then fails on the primary key
    if len(event_id) > EVENT_ID_MAX:  # kept by its first 255 characters: a re-delivery
        outcome = _id_refused(session, event, f"its id is {len(event_id)} characters long "
                              f"(at most {EVENT_ID_MAX}): nothing was changed", now)
        _settle(row, outcome, event, now)  # finds it (a duplicate), nothing is applied
        return outcome
    return _apply(session, row, event, now=now, fetch_fees=fetch_fees)


def _apply(session: Session, row: ProviderEvent, event: dict, *, now: datetime,
           fetch_fees: bool) -> Outcome:
    """Process the event of `row` and record how it went; when it was processed and names
    its object (a chargeback's dispute), the events waiting for that object are processed
    next."""
    row.status, row.object_id = ProviderEventStatus.PROCESSED, None  # not waiting any more:
    session.add(row)  # what it releases cannot pick it up again
    session.flush()
    outcome = _dispatch(session, event, now=now, fetch_fees=fetch_fees)
    _settle(row, outcome, event, now)
    session.add(row)
    if outcome.status == ProviderEventStatus.PROCESSED and outcome.object_id:
        session.flush()  # seen by the events it releases (`_recorded`)
        _process_waiting(session, outcome.object_id, now=now)
    return outcome


def _settle(row: ProviderEvent, outcome: Outcome, event: dict, now: datetime) -> None:
    row.status = outcome.status
    row.detail = outcome.detail[:500] or None
    row.object_id = outcome.object_id
    row.payload = event if outcome.status in (ProviderEventStatus.WAITING,
                                              ProviderEventStatus.FAILED) else {}
    row.processed_at = now


def _recorded(session: Session, event_type: str, object_id: str) -> bool:
    """Whether an event of this type about this object (a dispute id) was processed."""
    return session.exec(select(ProviderEvent.event_id).where(
        ProviderEvent.provider == PROVIDER, ProviderEvent.type == event_type,
        ProviderEvent.object_id == object_id,
        ProviderEvent.status == ProviderEventStatus.PROCESSED)).first() is not None


# Stripe's ids (pi_..., ch_..., dp_...) are 27 to 66 characters today; the keys made of them
# must fit their columns: a refund's "stripe:<charge>:refunded:<total>:<dispute>" 255
# (`Refund.external_id`), a payment's "stripe:<dispute>:reinstated" 200, outbox keys 200
STRIPE_ID_MAX = 100
EVENT_ID_MAX = 255  # `ProviderEvent.event_id`


def _ids_of(event_type: object, obj: dict) -> dict[str, object]:
    """The Stripe ids an event of this type writes into our rows and keys, by name."""
    if event_type in PAID_SESSION:
        return {"payment_intent": obj.get("payment_intent")}
    if event_type == "payment_intent.succeeded":
        return {"payment intent id": obj.get("id")}
    if event_type == "charge.refunded" or str(event_type).startswith("charge.dispute."):
        return {"id": obj.get("id"), "payment_intent": obj.get("payment_intent")}
    return {}


def _bad_id(event_type: object, obj: dict) -> str | None:
    """Why an id of the event cannot be kept (not text, longer than our columns hold), or
    None. A Stripe id never is; a forged-but-signed or garbled event may be, and would fail
    on PostgreSQL (which enforces the lengths) with a 500 that Stripe retries for days."""
    for name, value in _ids_of(event_type, obj).items():
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            return f"its {name} is not a Stripe id: nothing was changed"
        if len(value) > STRIPE_ID_MAX:
            return (f"its {name} is {len(value)} characters long (a Stripe id is at most "
                    f"{STRIPE_ID_MAX} here): nothing was changed")
    return None


def _id_refused(session: Session, event: dict, detail: str, now: datetime) -> Outcome:
    """An event with an id we cannot keep: kept as failed with the reason (`_settle`),
    audited, AR told; nothing else changes."""
    event_id, event_type = str(event.get("id") or ""), str(event.get("type") or "")[:100]
    return _refused(session, detail, action="provider_event.refused",
                    entity_type="provider_event", entity_id=event_id[:64],
                    what=f"A Stripe event ({event_type}, {event_id[:80]})",
                    key=f"stripe-id-refused:{event_id}", at=now, type=event_type)


def _refused(session: Session, detail: str, *, action: str, entity_type: str,
             entity_id: object, what: str, key: str, payment_id: int | None = None,
             **data: object) -> Outcome:
    """A Stripe event that cannot be applied: audited (`action`, with `data`), AR asked to look
    ("<what> could not be applied: <detail>.", once per `key`), kept as failed; nothing else
    changes."""
    audit.record(session, actor=ACTOR, action=action, entity_type=entity_type,
                 entity_id=entity_id, reason=detail, **data)
    outbox.post_to_channel(session, channel="ar", template="text", context={
        "text": f"{what} could not be applied: {detail}."}, dedupe_key=key[:200])
    return Outcome("failed", detail, payment_id)


def _dispatch(session: Session, event: dict, *, now: datetime, fetch_fees: bool) -> Outcome:
    event_type = event.get("type")
    obj = event["data"]["object"]
    created = _moment(event.get("created"), now)
    refused = _bad_id(event_type, obj)
    if refused is not None:
        return _id_refused(session, event, refused, now)
    _one_payment_at_a_time(session, obj.get("id") if event_type == "payment_intent.succeeded"
                           else obj.get("payment_intent"))
    if event_type in PAID_SESSION:
        if obj.get("mode") not in (None, "payment"):
            return Outcome("ignored", f"a {obj.get('mode')} session")
        if obj.get("payment_status") != "paid":
            return Outcome("ignored", f"payment_status {obj.get('payment_status')}: not paid "
                           "yet (an async method reports async_payment_succeeded)")
        details = obj.get("customer_details") or {}
        return _paid(session, payment_intent=obj.get("payment_intent"),
                     amount_minor=obj.get("amount_total"), currency=obj.get("currency"),
                     metadata=obj.get("metadata") or {},
                     fallback_invoice=obj.get("client_reference_id"),
                     payer_name=details.get("name"), received_at=created, now=now,
                     fetch_fees=fetch_fees)
    if event_type == "payment_intent.succeeded":
        return _paid(session, payment_intent=obj.get("id"),
                     amount_minor=obj.get("amount_received"), currency=obj.get("currency"),
                     metadata=obj.get("metadata") or {}, fallback_invoice=None,
                     payer_name=None, received_at=created, now=now, fetch_fees=fetch_fees)
    if event_type == "charge.refunded":
        return _refunded(session, obj, created)
    if event_type == "charge.dispute.created":
        inquiry = str(obj.get("status") or "").startswith("warning_")
        return _disputed(session, obj, created, now, take=not inquiry)
    if event_type == "charge.dispute.funds_withdrawn":
        return _disputed(session, obj, created, now, take=True)
    if event_type == "charge.dispute.closed":
        return _dispute_closed(session, obj, created, now)
    return Outcome("ignored", f"{event_type} is not used")


# pg_advisory_xact_lock(class, key) class of a PaymentIntent's events ("o2cS"; the two-key
# space, apart from the period close's one-key lock)
PAYMENT_LOCK_CLASS = 0x6F326353


def _one_payment_at_a_time(session: Session, payment_intent: object) -> None:
    """The events of one PaymentIntent are processed one at a time across server processes
    (PostgreSQL: a transaction-scoped advisory lock, taken before anything is read). Else a
    refund or chargeback finding no payment could commit "waiting" just after the payment's
    own transaction looked for what waits for it: left waiting for ever. (SQLite writes one
    transaction at a time, each event's claim first.)"""
    if isinstance(payment_intent, str) and payment_intent \
            and session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            PAYMENT_LOCK_CLASS, sa.func.hashtext(payment_intent))))


def _moment(unix: object, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(unix), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return default


# -- money in ------------------------------------------------------------------------------------
def _paid(session: Session, *, payment_intent: str | None, amount_minor: object,
          currency: object, metadata: dict, fallback_invoice: str | None,
          payer_name: str | None, received_at: datetime, now: datetime,
          fetch_fees: bool) -> Outcome:
    number = metadata.get("o2c_invoice") or fallback_invoice
    if not number:
        return Outcome("ignored", "no o2c_invoice in its metadata: not one of our links")
    if not payment_intent or not isinstance(amount_minor, int) or amount_minor <= 0 \
            or not isinstance(currency, str):
        return Outcome("failed", "a paid event without payment_intent, amount or currency")
    amount_minor = payment_links.from_stripe(amount_minor, currency)  # Stripe's units: ours
    if amount_minor is None:
        return Outcome("failed", "a paid amount in fractions of its currency's minor unit")
    # the money arrived whatever its texts say: they are kept within what `PaymentIn` holds
    # (a longer name was a ValidationError, a 500 Stripe retried for days)
    payer_name = payer_name[:300] if isinstance(payer_name, str) else None
    number = str(number)[:500]  # (Stripe's metadata values are at most 500 characters)
    existing = payment_of(session, payment_intent)
    if existing is not None:
        return Outcome("processed", "recorded before", existing.id)
    currency = currency.upper()
    invoice = session.exec(select(Invoice).where(Invoice.number == str(number))).first()
    customer = session.get(Customer, invoice.customer_id) if invoice else None
    exact = (invoice is not None and invoice.currency == currency
             and invoice.balance_minor > 0)
    data = PaymentIn(amount=money.to_str(amount_minor, currency), currency=currency,
                     received_at=received_at, payer_name=payer_name,
                     reference=f"Stripe payment for {number}",
                     # the invoice's customer paid it, even when it was paid meanwhile (by
                     # bank, twice): then the money is their credit, not nobody's
                     customer=customer.external_id if customer
                     and customer.currency == currency else None,
                     method="stripe", external_id=external_id_of(payment_intent),
                     # Stripe says when (a Unix time), not on which day: the books' day
                     value_date=policy.business_date(session, received_at))
    discount = _discount_taken(session, invoice, amount_minor, received_at) if exact else 0
    try:
        payment, created = record_payment(session, data, actor=ACTOR, source=PROVIDER,
                                          apply_to=[invoice.number] if exact else None)
    except Conflict:
        twin = payment_of(session, payment_intent)  # the same money, another event first
        if twin is not None and twin.amount_minor == amount_minor and \
                twin.currency == currency:
            return Outcome("processed", "recorded before", twin.id)
        raise
    if not created:
        return Outcome("processed", "recorded before", payment.id)
    if discount:
        _write_off_discount(session, payment, invoice, discount)
    note = None
    if invoice is None:
        note = f"No invoice {number} here: left to the matching engine."
    elif not exact:
        note = (f"{invoice.number} was already paid or is in {invoice.currency}: left to the "
                f"matching engine, as {customer.name}'s money.")
    elif discount:
        note = (f"The early-payment discount of {money.format_money(discount, currency)} "
                f"({invoice.payment_terms}) was written off: {invoice.number} is paid.")
    _announce(session, "provider_payment", customer, {
        "provider_name": NAME, "payment_id": payment.id, "amount_minor": payment.amount_minor,
        "currency": currency, "customer_name": customer.name if customer else payer_name,
        "invoice": str(number), "unapplied_minor": payment.unapplied_minor,
        "external_id": payment.external_id, "note": note,
        "applied": [{"invoice": inv.number, "amount": money.to_str(a.amount_minor, currency)}
                    for a, inv in payment_allocations(session, payment.id)]},
        key=f"stripe-payment:{payment.id}")
    if fetch_fees:
        outbox._add(session, transport=PROVIDER, method="fee.fetch",
                    dedupe_key=f"stripe-fee:{payment.id}",
                    payload={"payment_id": payment.id, "payment_intent": payment_intent})
    _process_waiting(session, payment_intent, now=now)
    return Outcome("processed", f"recorded as payment {payment.id}", payment.id)


def _discount_taken(session: Session, invoice: Invoice, amount_minor: int,
                    received_at: datetime) -> int:
    """The early-payment discount a card payment of `amount_minor` for the invoice's whole
    balance takes: the discount its terms give on the day it was received, or on the day the
    link's checkout session was planned (the page offered that amount then, and the session
    stays payable for up to a day) — when the amount is the balance less exactly that."""
    link = session.exec(select(PaymentLink).where(
        PaymentLink.invoice_id == invoice.id)).first()
    days = [payment_links.today(session, received_at)]
    if link is not None and link.amount_minor == amount_minor and \
            (planned := payment_links.offered_on(session, link.expires_at)) is not None:
        days.append(planned)
    for day in days:
        discount = payment_links.early_discount(invoice, day)
        if discount and amount_minor == invoice.balance_minor - discount:
            return discount
    return 0


def _write_off_discount(session: Session, payment: Payment, invoice: Invoice,
                        discount: int) -> None:
    """The discount the card payment took, written off as the matching engine writes off an
    early-payment discount (dated by the payment), closing the invoice the payment paid."""
    session.refresh(invoice)
    if payment.unapplied_minor or invoice.balance_minor != discount:
        return  # not applied as planned (cannot happen in one transaction): left as it is
    write_off(session, invoice=invoice, amount_minor=discount, actor=ACTOR, payment=payment,
              reason=WriteOffReason.EARLY_PAYMENT_DISCOUNT)
    payment.match_details = {**(payment.match_details or {}), "write_off_minor": discount}
    session.add(payment)


def record_fee(session: Session, *, payment_id: int, external_id: str, fee_minor: int,
               currency: str, net_minor: int | None, description: str | None) -> bool:
    """Stripe's fee on a payment (its balance transaction), once; True when recorded now."""
    if session.exec(select(PaymentFee.id).where(
            PaymentFee.external_id == external_id)).first() is not None:
        return False
    session.add(PaymentFee(payment_id=payment_id, provider=PROVIDER, external_id=external_id,
                           amount_minor=fee_minor, currency=currency.upper(),
                           net_minor=net_minor, description=description))
    audit.record(session, actor=ACTOR, action="payment.provider_fee", entity_type="payment",
                 entity_id=payment_id, amount_minor=fee_minor, currency=currency.upper(),
                 external_id=external_id, reason="kept by Stripe; the invoice is paid in full")
    return True


# -- money back, chargebacks ---------------------------------------------------------------------
def _refunded(session: Session, charge: dict, created: datetime) -> Outcome:
    payment_intent = charge.get("payment_intent")
    payment = payment_of(session, payment_intent)
    if payment is None:
        return Outcome("waiting", "its payment is not recorded yet", object_id=payment_intent)
    total = charge.get("amount_refunded")
    charge_id = str(charge.get("id") or "")
    if not isinstance(total, int) or total < 0 or not charge_id:
        return Outcome("failed", "a refund without amount_refunded or charge id")
    if _other_currency(charge, payment):
        return _currency_refused(session, payment, charge, f"the refund of charge {charge_id}",
                                 key=f"{charge_id}:refunded:{total}")
    total = payment_links.from_stripe(total, payment.currency)
    if total is None:
        return Outcome("failed", "a refund in fractions of its currency's minor unit")
    payment = refunds.lock_payment(session, payment.id)
    # `amount_refunded` counts refunds only; what a chargeback took (and gave back when won)
    # is the dispute's own money, not a refund of the charge
    sources = _held_for(session, payment)
    new = total - _refunded_before(session, charge_id) - _returned_by_hand(session, sources)
    if new <= 0:
        return Outcome("processed", "refunded before", payment.id)
    held = sum(p.amount_minor - p.refunded_minor for p, _ in sources)
    if new > held:
        waiting_for = _open_chargeback(session, payment)
        if waiting_for:  # the rest comes back as a payment when Stripe closes it as won
            return Outcome("waiting", f"refund of {money.to_str(new, payment.currency)} "
                           f"needs what chargeback {waiting_for} took back: waits for its "
                           "close", payment.id, object_id=waiting_for)
        return _refund_refused(session, payment, charge_id, new, held)
    if len(sources) > 1:
        # the invoices of every payment it may give back, locked in id order first: each
        # refund below locks its own in id order, but the payment's (invoice 2) then what a
        # won chargeback reinstated (invoice 1) would not be, and could deadlock against a
        # correction locking 1 then 2 (`refunds.refund_payment`)
        from workflows.invoicing import lock_invoices

        lock_invoices(session, [invoice.id for source, _ in sources
                                for invoice, _ in refunds.applied_by_invoice(session, source.id)])
    given: list[tuple[Refund, list[dict]]] = []
    for source, dispute_id in sources:
        take = min(new - sum(r.amount_minor for r, _ in given),
                   source.amount_minor - source.refunded_minor)
        if take <= 0:
            continue
        done = refunds.refund_payment(
            session, payment=source, amount_minor=take,
            value_date=policy.business_date(session, created),
            external_id=f"stripe:{charge_id}:refunded:{total}"
                        + (f":{dispute_id}" if dispute_id else ""), actor=ACTOR,
            reason=f"Stripe refund of charge {charge_id}"
                   + (f" (reinstated by chargeback {dispute_id})" if dispute_id else ""))
        if done is not None:
            given.append(done)
    if not given:
        return Outcome("processed", "refunded before", payment.id)
    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    _announce(session, "provider_refund", customer, {
        "provider_name": NAME, "payment_id": payment.id, "amount_minor": new,
        "currency": payment.currency, "customer_name": customer.name if customer else None,
        "from_unapplied_minor": sum(r.from_unapplied_minor for r, _ in given),
        "reopened": [item for _, reopened in given for item in reopened]},
        key=f"stripe-refund:{given[0][0].id}")
    return Outcome("processed", f"refunded {money.to_str(new, payment.currency)}", payment.id)


def _other_currency(obj: dict, payment: Payment) -> bool:
    """Whether a charge's or dispute's `currency` (Stripe's lower case; none given: the
    payment's) is not the currency the payment was received in."""
    currency = obj.get("currency")
    return currency is not None and str(currency).upper() != payment.currency


def _currency_refused(session: Session, payment: Payment, obj: dict, what: str, *,
                      key: str) -> Outcome:
    """A refund or chargeback in another currency than its payment's: its amount cannot be
    taken from the payment (100 JPY read as 1.00 USD, 10,000 JPY as 100.00 USD). Nothing
    changes; the event is kept (failed) with the reason, audited, and AR is asked to look."""
    currency = str(obj.get("currency"))[:12].upper()
    detail = (f"{what} is in {currency}, but payment {payment.id} was received in "
              f"{payment.currency}: nothing was changed")
    return _refused(session, detail, action="payment.provider_currency_refused",
                    entity_type="payment", entity_id=payment.id, what="A Stripe event",
                    key=f"stripe-currency-refused:{key}", payment_id=payment.id,
                    currency=currency, object=str(obj.get("id") or "")[:255])


def _refunded_before(session: Session, charge_id: str) -> int:
    """What Stripe refunded of this charge that we gave back already: the refunds keyed
    "stripe:<charge>:refunded:<amount_refunded>[:<dispute>]", never a chargeback's
    withdrawal ("stripe:<dispute>:withdrawn")."""
    total = session.exec(select(sa.func.coalesce(sa.func.sum(Refund.amount_minor), 0)).where(
        Refund.external_id.startswith(f"stripe:{charge_id}:refunded:", autoescape=True))).one()
    return int(total)  # PostgreSQL's SUM of a bigint is a NUMERIC (a Decimal here)


def _returned_by_hand(session: Session, sources: list[tuple[Payment, str | None]]) -> int:
    """What a collector's "Refund or return" booked of this charge's money (the refunds
    "return:<payment>"), before such returns of Stripe payments were refused
    (`cash_application.refuse_stripe_return`): that money went back through Stripe, so it is
    part of Stripe's `amount_refunded` and is not given back a second time."""
    keys = [f"return:{source.id}" for source, _ in sources]
    total = session.exec(select(sa.func.coalesce(sa.func.sum(Refund.amount_minor), 0)).where(
        Refund.external_id.in_(keys))).one()
    return int(total)


def _chargebacks(session: Session, payment: Payment) -> list[str]:
    """The disputes that took money back from this payment, in the order they did."""
    rows = session.exec(select(Refund.external_id).where(Refund.payment_id == payment.id)
                        .order_by(Refund.id)).all()
    return [key[len("stripe:"):-len(":withdrawn")] for key in rows
            if key.startswith("stripe:") and key.endswith(":withdrawn")]


def _held_for(session: Session, payment: Payment) -> list[tuple[Payment, str | None]]:
    """Where a charge's money is now, locked: its payment, then what each chargeback won gave
    back (the payment "stripe:<dispute>:reinstated"), with the dispute."""
    held: list[tuple[Payment, str | None]] = [(payment, None)]
    for dispute_id in _chargebacks(session, payment):
        back = session.exec(select(Payment.id).where(
            Payment.external_id == f"stripe:{dispute_id}:reinstated")).first()
        if back is not None:
            held.append((refunds.lock_payment(session, back), dispute_id))
    return held


def _open_chargeback(session: Session, payment: Payment) -> str | None:
    """A chargeback of this payment that took money back and is not closed yet."""
    return next((d for d in _chargebacks(session, payment)
                 if not _recorded(session, "charge.dispute.closed", d)), None)


def _refund_refused(session: Session, payment: Payment, charge_id: str, new: int,
                    held: int) -> Outcome:
    """Stripe refunded more than this charge's money that is still ours: nothing changes,
    and AR is asked to look (a person reconciles it with the Stripe dashboard)."""
    detail = (f"Stripe refunded {money.to_str(new, payment.currency)} more of charge "
              f"{charge_id}, but only {money.to_str(held, payment.currency)} of its money is "
              "still held here: nothing was changed")
    return _refused(session, detail, action="payment.refund_refused", entity_type="payment",
                    entity_id=payment.id, what=f"A Stripe refund (charge {charge_id})",
                    key=f"stripe-refund-refused:{charge_id}:{new}", payment_id=payment.id,
                    amount_minor=new, held_minor=held, charge=charge_id)


def _disputed(session: Session, dispute: dict, created: datetime, now: datetime, *,
              take: bool) -> Outcome:
    """A chargeback (`take`: `charge.dispute.created` of a chargeback, or
    `charge.dispute.funds_withdrawn`, which is also how an inquiry that became a chargeback
    takes the money) or an inquiry (announced only). The money is taken once per dispute,
    whichever of its events comes first: the others find it taken and change nothing."""
    payment_intent = dispute.get("payment_intent")
    payment = payment_of(session, payment_intent)
    if payment is None:
        return Outcome("waiting", "its payment is not recorded yet", object_id=payment_intent)
    payment = refunds.lock_payment(session, payment.id)  # one dispute event at a time
    dispute_id = str(dispute.get("id") or "")
    if _other_currency(dispute, payment):
        return _currency_refused(session, payment, dispute, f"chargeback {dispute_id}",
                                 key=f"{dispute_id}")
    if dispute_id and _taken(session, dispute_id) is not None:
        return Outcome("processed", f"chargeback {dispute_id}: its money was taken back "
                       "before", payment.id, object_id=dispute_id)
    held = _take_back(session, payment, dispute, created, now, take=take)
    taken = money.to_str(sum(h["amount_minor"] for h in held), payment.currency)
    return Outcome("processed", f"chargeback {dispute_id} "
                   + (f"took back {taken}" if take else "announced (an inquiry)"), payment.id,
                   object_id=dispute_id or None)  # its close may wait for it


def _taken(session: Session, dispute_id: str) -> Refund | None:
    """What this chargeback took back (the refund "stripe:<dispute>:withdrawn")."""
    return session.exec(select(Refund).where(
        Refund.external_id == f"stripe:{dispute_id}:withdrawn")).first()


def _withdrawal_listed(dispute: dict) -> bool:
    """Whether the dispute's balance transactions show money withdrawn from the account (a
    chargeback; an inquiry has none)."""
    listed = dispute.get("balance_transactions")
    return isinstance(listed, list) and any(
        isinstance(t, dict) and isinstance(t.get("amount"), int) and t["amount"] < 0
        for t in listed)


def _take_back(session: Session, payment: Payment, dispute: dict, created: datetime,
               now: datetime, *, take: bool) -> list[dict]:
    """Take the chargeback's money back (`take`; an inquiry takes nothing), audit it and
    tell AR and the collector (once per dispute and kind). What was held (see `_hold`)."""
    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    invoices = [inv.number for a, inv in payment_allocations(session, payment.id)
                if a.amount_minor > 0]
    due = (dispute.get("evidence_details") or {}).get("due_by")
    amount = dispute.get("amount") if isinstance(dispute.get("amount"), int) else 0
    # (Stripe's units: ours; a legacy fraction of a krona is left with the customer)
    amount = payment_links.from_stripe(amount, payment.currency, exact=False)
    held = _hold(session, payment, dispute, amount, created, now) if take else []
    audit.record(session, actor=ACTOR, action="payment.chargeback", entity_type="payment",
                 entity_id=payment.id, reason=str(dispute.get("reason") or "")[:500],
                 amount_minor=amount, dispute=dispute.get("id"), invoices=invoices,
                 status=dispute.get("status"), held=held)
    key = f"stripe-dispute:{dispute.get('id')}" + (":withdrawn" if take else "")
    if not outbox.has_message(session, f"{key}:ar"):  # AR told already
        _announce(session, "provider_dispute", customer, {
            **_dispute_context(payment, customer, dispute, amount),
            "invoice": ", ".join(invoices) or None, "inquiry": not take, "held": held,
            "due_by": _deadline(session, _moment(due, created)) if due else None}, key=key)
    return held


def _deadline(session: Session, moment: datetime) -> str:
    """A provider's deadline as the books read it: the business date with the time and the
    zone ("2026-03-20 16:59 America/Los_Angeles"). Not the UTC date, which is the next day
    for a deadline in a Los Angeles evening; nor the business date alone, which would give a
    whole day more to a deadline at 00:59 Berlin time (Stripe's 23:59 UTC)."""
    zone = policy.business_zone(session)
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M} {getattr(zone, 'key', 'UTC')}"


# Stripe's dispute reasons in the back office's words (the rest: "other", Stripe's own reason
# is in the note)
CHARGEBACK_REASONS = {"product_not_received": "not_received", "duplicate": "duplicate",
                      "product_unacceptable": "damaged", "incorrect_account_details": "other"}


def _dispute_context(payment: Payment, customer: Customer | None, dispute: dict,
                     amount: int) -> dict:
    return {"provider_name": NAME, "payment_id": payment.id, "amount_minor": amount,
            "currency": str(dispute.get("currency") or payment.currency).upper(),
            "customer_name": customer.name if customer else None,
            "reason": dispute.get("reason"), "dispute_id": dispute.get("id")}


def _hold(session: Session, payment: Payment, dispute: dict, amount: int, created: datetime,
          now: datetime) -> list[dict]:
    """The money taken back: out of the payment (a refund keyed by the dispute), and a
    back-office dispute on each invoice that reopened. [{"invoice", "amount_minor",
    "dispute"}] — "dispute" None when the invoice had an open dispute already (it holds)."""
    from workflows import disputes
    from workflows.inputs import DisputeOpenIn

    payment = refunds.lock_payment(session, payment.id)
    take = min(amount, payment.amount_minor - payment.refunded_minor)
    if take <= 0:
        return []
    dispute_id = str(dispute.get("id") or "")
    try:
        with session.begin_nested():
            done = refunds.refund_payment(
                session, payment=payment, amount_minor=take,
                value_date=policy.business_date(session, created),
                external_id=f"stripe:{dispute_id}:withdrawn", actor=ACTOR,
                reason=f"Stripe chargeback {dispute_id}: the customer's bank took it back")
    except Conflict:  # its allocations were written off or moved: announced, nothing held
        return []
    if done is None:
        return []
    held = []
    reason = CHARGEBACK_REASONS.get(str(dispute.get("reason") or ""), "other")
    for item in done[1]:
        number = item["invoice"]
        minor = money.parse_amount(item["amount"], payment.currency)
        opened = None
        try:
            with session.begin_nested():
                opened = disputes.open_dispute(
                    session, number, DisputeOpenIn(
                        reason=reason, amount=item["amount"],
                        note=(f"Card chargeback {dispute_id} at Stripe (reason: "
                              f"{dispute.get('reason') or 'not given'}); answer it in the "
                              "Stripe dashboard.")[:2000]),
                    actor=ACTOR, now=now, source="chargeback",
                    external_id=f"stripe:{dispute_id}")
        except Conflict:  # the invoice is in dispute already: that one holds it
            pass
        held.append({"invoice": number, "amount_minor": minor,
                     "dispute": opened.id if opened else None})
    return held


def _dispute_closed(session: Session, dispute: dict, created: datetime, now: datetime
                    ) -> Outcome:
    from workflows import disputes

    payment_intent = dispute.get("payment_intent")
    payment = payment_of(session, payment_intent)
    if payment is None:
        return Outcome("waiting", "its payment is not recorded yet", object_id=payment_intent)
    # after its chargeback when that is being processed too: then it is seen here
    payment = refunds.lock_payment(session, payment.id)
    dispute_id = str(dispute.get("id") or "")
    if _other_currency(dispute, payment):
        return _currency_refused(session, payment, dispute,
                                 f"the close of chargeback {dispute_id}",
                                 key=f"{dispute_id}:closed")
    status = str(dispute.get("status") or "")
    taken = _taken(session, dispute_id)
    decided = status in ("won", "lost")
    if decided and taken is None and dispute_id and _withdrawal_listed(dispute):
        # the close says the money was withdrawn, and no event of this chargeback took it
        # yet (an inquiry that became a chargeback, its funds_withdrawn not delivered yet or
        # not subscribed to): taken now, as that event would have, then closed
        _take_back(session, payment, dispute, created, now, take=True)
        taken = _taken(session, dispute_id)
    if decided and taken is None and dispute_id \
            and not _recorded(session, "charge.dispute.created", dispute_id):
        # Stripe does not deliver in order: decided before we heard of the chargeback.
        # Closing now would find nothing taken back, and the chargeback arriving after would
        # take the money for good; so it waits, and is applied right after the chargeback.
        audit.record(session, actor=ACTOR, action="payment.chargeback_closed",
                     entity_type="payment", entity_id=payment.id, to_state="waiting",
                     dispute=dispute_id, status=status,
                     reason="closed before charge.dispute.created arrived: applied after it")
        return Outcome("waiting", f"chargeback {dispute_id} closed ({status}) before "
                       "charge.dispute.created: waits for it", payment.id,
                       object_id=dispute_id)
    if not decided or taken is None:
        audit.record(session, actor=ACTOR, action="payment.chargeback_closed",
                     entity_type="payment", entity_id=payment.id, to_state=status,
                     dispute=dispute_id, status=status, reason="nothing was taken back")
        return Outcome("processed", f"chargeback {dispute_id} closed ({status}); nothing was "
                       "taken back", payment.id, object_id=dispute_id or None)
    ours = session.exec(select(Dispute).where(Dispute.external_id == f"stripe:{dispute_id}")
                        .order_by(Dispute.id)).all()
    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    back = None
    if status == "won":
        back = _reinstate(session, payment, taken, customer, dispute_id, ours, created)
        for held in ours:
            if held.status == DisputeStatus.OPEN:
                disputes.resolve(session, dispute_id=held.id, outcome="rejected", by=ACTOR,
                                 now=now, system=True,
                                 note=f"Chargeback {dispute_id} won at Stripe: the money is "
                                      "back.")
    still_open = [d.id for d in ours if d.status == "open"]
    audit.record(session, actor=ACTOR, action="payment.chargeback_closed",
                 entity_type="payment", entity_id=payment.id, to_state=status,
                 dispute=dispute_id, status=status, amount_minor=taken.amount_minor,
                 payment_back=back, disputes_open=still_open,
                 reason="won: the money is back" if back else "lost: a person decides")
    _announce(session, "provider_dispute_closed", customer, {
        **_dispute_context(payment, customer, dispute, taken.amount_minor), "status": status,
        "payment_back": back, "disputes": still_open},
        key=f"stripe-dispute-closed:{dispute_id}")
    return Outcome("processed", f"chargeback {dispute_id} {status}", payment.id,
                   object_id=dispute_id)  # a refund of the reinstated money may wait for it


def _reinstate(session: Session, payment: Payment, taken: Refund, customer: Customer | None,
               dispute_id: str, held: list[Dispute], created: datetime) -> int:
    """The money Stripe gives back after a won chargeback: a payment of what was taken,
    applied to the invoices the chargeback reopened that are still open."""
    numbers = []
    for d in held:
        invoice = session.get(Invoice, d.invoice_id)
        if invoice.balance_minor > 0 and invoice.number not in numbers:
            numbers.append(invoice.number)
    data = PaymentIn(amount=money.to_str(taken.amount_minor, taken.currency),
                     currency=taken.currency, received_at=created,
                     reference=f"Stripe chargeback {dispute_id} won",
                     customer=customer.external_id if customer else None, method="stripe",
                     external_id=f"stripe:{dispute_id}:reinstated",
                     value_date=policy.business_date(session, created))
    back, _ = record_payment(session, data, actor=ACTOR, source=PROVIDER,
                             apply_to=numbers or None)
    return back.id


def _process_waiting(session: Session, object_id: str, *, now: datetime) -> None:
    """Events that arrived before what they need (this payment, or this chargeback), in
    arrival order. One may wait again, for something else (a close that was waiting for
    its payment now waits for its chargeback)."""
    rows = session.exec(select(ProviderEvent).where(
        ProviderEvent.provider == PROVIDER, ProviderEvent.object_id == object_id,
        ProviderEvent.status == ProviderEventStatus.WAITING)
        .order_by(ProviderEvent.received_at, ProviderEvent.event_id)).all()
    for row in rows:
        if row.status != ProviderEventStatus.WAITING or row.object_id != object_id:
            continue  # processed meanwhile: released by an event processed before it here
        _apply(session, row, row.payload, now=now, fetch_fees=False)


def _announce(session: Session, template: str, customer: Customer | None, context: dict, *,
              key: str) -> None:
    """To the AR channel, and to the customer's collector."""
    outbox.post_to_channel(session, channel="ar", template=template, context=context,
                           dedupe_key=f"{key}:ar")
    if customer is not None and customer.collector_id:
        outbox.post_to_user(session, user_id=customer.collector_id, template=template,
                            context=context, dedupe_key=f"{key}:{customer.collector_id}")


def waiting(session: Session) -> int:
    table = ProviderEvent.__table__
    return session.execute(sa.select(sa.func.count()).select_from(table).where(
        table.c.status == ProviderEventStatus.WAITING)).scalar() or 0

