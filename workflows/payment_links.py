""""Pay now" links: one stable link per invoice, and the checkout session behind it.

What "replaced when the balance changes" means for a link already e-mailed: the link in the
e-mail (`<public url>/pay/<token>`) never changes and never expires; it always asks for the
invoice's balance *at the moment the customer clicks*. What is replaced is the provider's
checkout session behind it:

* the first click creates a session for the open balance (`plan_checkout` -> "create");
* a later click with the same balance reuses it while it is open ("reuse");
* when the balance changed (a partial payment, a credit note, a refund) the next click
  replaces it: a new session for the new balance, and the old one is expired at the
  provider so a checkout tab left open since cannot be paid for the old amount;
* when the balance changes while a session is open, the session is expired right away
  (`balance_changed`, called by invoicing), so a customer who pays by bank transfer and then
  finishes the old checkout tab is refused by Stripe instead of paying twice;
* a paid invoice (balance 0) shows "nothing to pay"; a session that completed but whose
  payment has not reached us yet shows "being processed" instead of a second checkout.

What the link asks for is the balance less what is in question (`payable`: open disputes,
a chargeback's hold), what the dunning e-mails carrying it ask for: a customer does not pay
through it what they dispute, nor an invoice a chargeback reopened while Stripe decides (paid
twice if Stripe rules for us). A dispute opening or closing moves it like a payment does
(`balance_changed`, from `disputes.refresh_invoice`).

Money still arriving for an old amount (a race the expiry cannot close) is recorded and
applied like any payment: the rest stays as unapplied credit, visible in the AR channel.

The token in the URL is never stored: the row keeps its SHA-256 (`token_hash`) and a click is
looked up by the hash of the token it brings. For the link to be shown again (each e-mail,
card or page rebuilds it) the token is derived, not random: HMAC-SHA256 of a server secret
(`O2C_PAY_LINK_SECRETS`, the caller passes them) and the invoice's id (`token_for`), so the
same URL comes back every time and a copy of the database (a backup, a replica) can neither
read nor make one. A link made before tokens were hashed (migration 0030) keeps its random
token's hash in `legacy_token_hash`, so the URLs already e-mailed keep working; the first
time such a link is shown again it gets a derived token (`payment_link.token_derived` in
the audit log), the URL shown from then on.

The token never leaves the process either: Stripe is given the link's id (metadata
`o2c_link_id`) and an idempotency key built from the token's hash and the generation
(`Checkout.idempotency_key`: the same for every click and retry of one generation, whichever
URL, old or new, the click came by), its return pages carry no token (`/pay/done`,
`/pay/back`). Sessions made before carried the token in their metadata (`o2c_link`) and return
URLs; their events are cleaned of it before anything keeps or logs them
(`workflows.stripe_events.scrub`).

Amounts go to Stripe in its API's units (`to_stripe`) and come back from it the same way
(`from_stripe`, used by `workflows.stripe_events`): our minor units (ISO 4217) except ISK,
which ISO 4217 gives no decimals but Stripe's API keeps two-decimal (100 = 1 krona, whole
kronur only). A three-decimal currency's amount reaches Stripe only with a last digit of 0
(card networks), so a balance such as KWD 12.345 is refused with a clear reason
(`card_refusal`) instead of a Stripe error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import Customer, Invoice, PaymentLink, money
from workflows import audit, outbox, policy
from workflows.errors import NotFound

SESSION_LIFETIME = timedelta(hours=23)  # Stripe allows 30 minutes to 24 hours
REUSE_MARGIN = timedelta(minutes=10)  # a session expiring sooner is not handed out again
_CACHE = "payment_links.open"
# https://docs.stripe.com/currencies: Stripe's units where they differ from ISO 4217's minor
# units (ISK "remains a two-decimal currency in the Stripe API": 100 = 1 krona) ...
STRIPE_SCALE = {"ISK": 100}
# ... and the three-decimal currencies, whose amounts Stripe takes only rounded to ten
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def to_stripe(amount_minor: int, currency: str) -> int:
    """Our minor units -> Stripe's API amount."""
    return amount_minor * STRIPE_SCALE.get(currency.upper(), 1)


def from_stripe(amount: int, currency: str, *, exact: bool = True) -> int | None:
    """Stripe's API amount -> our minor units. A fraction we cannot hold (fractional kronur,
    from before Stripe refused them) is None, or rounded down when not `exact`."""
    scale = STRIPE_SCALE.get(currency.upper(), 1)
    return amount // scale if amount % scale == 0 or not exact else None


def open_to_pay(invoice: Invoice) -> int:
    """The balance less what is in question (0: nothing to pay by link)."""
    from workflows.disputes import undisputed_open  # (disputes -> invoicing -> here)

    return undisputed_open(invoice)


def early_discount(invoice: Invoice, on: date) -> int:
    """The early-payment discount a card payment of the whole balance made on `on` (a business
    date, `today`: the day the invoice's own dates and the matching engine count in) earns
    under the invoice's `d/n NETm` terms:
    the engine's own rule (`matching.discount_of`: within n days of issue, nothing paid yet);
    none while anything of it is in question."""
    from workflows.matching import discount_of  # (matching -> invoicing -> here)

    return 0 if invoice.disputed_minor else discount_of(invoice, on)


def payable(invoice: Invoice, *, on: date) -> int:
    """What the link asks for on `on`: the balance less what is in question, less the
    early-payment discount the terms give on that day."""
    return open_to_pay(invoice) - early_discount(invoice, on)


def today(session: Session, now: datetime) -> date:
    """The day a click or a card payment at `now` counts on for the terms' discount: the
    business date (`policy.business_date`), the calendar the invoice's issue and due dates
    and the matching engine use. Books in Los Angeles: 11 Nov 17:00 there (12 Nov 01:00 UTC)
    is still 11 Nov, the last day of a discount window ending on 11 Nov."""
    return policy.business_date(session, now)


def offered_on(session: Session, expires_at: datetime | None) -> date | None:
    """The day a link's checkout session expiring at `expires_at` was planned (what it asks
    for was computed for that day, `today`), None when it has none."""
    if expires_at is None:
        return None
    return today(session, expires_at - SESSION_LIFETIME)


def card_refusal(amount_minor: int, currency: str) -> str | None:
    """Why a card cannot pay this amount through Stripe (None when it can)."""
    if currency.upper() in STRIPE_THREE_DECIMAL and amount_minor % 10:
        return (f"{money.format_money(amount_minor, currency)} cannot be paid by card: card "
                f"payments in {currency} must be a whole multiple of "
                f"{money.format_money(10, currency)}. Please pay by bank transfer.")
    return None


def hash_token(token: str) -> str:
    """What the database keeps of a link's token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def derive_token(secret: str, invoice_id: int) -> str:
    """The token of an invoice's link under `secret` (32 URL-safe characters)."""
    digest = hmac.new(secret.encode(), f"o2c-pay:{invoice_id}".encode(),
                      hashlib.sha256).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


def token_for(session: Session, invoice: Invoice, secrets: Sequence[str]) -> str:
    """The token of the invoice's link, for its URL: the link is made when first needed (a
    concurrent twin wins), and its token rebuilt from whichever of `secrets` made it. A link
    none of them made (one from before 0030, or whose secret was dropped) gets one derived
    from the first; the URL it carried before keeps working (`legacy_token_hash`) when it
    was the link's first."""
    if not secrets:
        raise ValueError("no secret to derive a payment link's token from")
    link = _link(session, invoice.id)
    if link is None:
        try:
            with session.begin_nested():
                link = PaymentLink(invoice_id=invoice.id,
                                   token_hash=hash_token(derive_token(secrets[0], invoice.id)))
                session.add(link)
                session.flush()
        except IntegrityError:
            link = _link(session, invoice.id)
    if (token := _made_by(link, secrets)) is not None:
        return token
    link = _link(session, invoice.id, lock=True)  # two renders at once: one re-derives
    if (token := _made_by(link, secrets)) is not None:
        return token
    token = derive_token(secrets[0], invoice.id)
    before = link.token_hash
    link.legacy_token_hash = link.legacy_token_hash or before
    link.token_hash = hash_token(token)
    session.add(link)
    session.flush()
    audit.record(session, actor="system", action="payment_link.token_derived",
                 entity_type="invoice", entity_id=invoice.id,
                 reason="the link's token was not made by a current secret; its first URL "
                        "keeps working" if link.legacy_token_hash == before else
                        "the link's token was made by a secret no longer configured")
    return token


def _link(session: Session, invoice_id: int, *, lock: bool = False) -> PaymentLink | None:
    query = select(PaymentLink).where(PaymentLink.invoice_id == invoice_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.exec(query).first()


def _made_by(link: PaymentLink, secrets: Sequence[str]) -> str | None:
    """The link's token when one of `secrets` made it (compared in constant time)."""
    for secret in secrets:
        token = derive_token(secret, link.invoice_id)
        if hmac.compare_digest(hash_token(token), link.token_hash):
            return token
    return None


def _looks_like_token(token: str) -> bool:
    """Anything else is no link."""
    return 0 < len(token) <= 64


def _is(token: str) -> sa.ColumnElement[bool]:
    """The link a token opens: by its hash (current or pre-0030)."""
    table = PaymentLink.__table__
    digest = hash_token(token)
    return sa.or_(table.c.token_hash == digest, table.c.legacy_token_hash == digest)


def by_token(session: Session, token: str) -> tuple[PaymentLink, Invoice, Customer]:
    link = session.exec(select(PaymentLink).where(_is(token))).first() \
        if _looks_like_token(token) else None
    if link is None:
        raise NotFound("no such payment link")
    invoice = session.get(Invoice, link.invoice_id)
    return link, invoice, session.get(Customer, invoice.customer_id)


@dataclass(frozen=True)
class Checkout:
    """What a click on the link leads to."""

    action: str  # "paid", "reuse", "create", "processing", "refused", "disputed"
    url: str | None = None  # reuse: the open session's URL
    generation: int = 0  # create: the new session's generation (its idempotency key)
    amount_minor: int = 0
    currency: str = ""
    expires_at: datetime | None = None
    replaces: str | None = None  # create: the session replaced (its expiry queued)
    note: str | None = None  # refused: why, for the customer
    link_id: int | None = None  # create: the link (its id, what Stripe's metadata names)
    link_key: str = ""  # create: the link's token hash (never the token itself)

    @property
    def idempotency_key(self) -> str:
        """The provider's idempotency key of the session a "create" makes: one per link and
        generation (a generation is one amount), so a second click or a retry after a
        timeout gets the same session. Built from the token's hash, not the token: Stripe
        keeps and shows its keys, and a key is no way into the customer's page. (Unique per
        installation, as the hash is of a token derived from its own secret.)"""
        return f"o2c-pay-{self.link_key}-{self.generation}"


def plan_checkout(session: Session, *, token: str, now: datetime,
                  previous_status: str | None = None) -> Checkout:
    """Decide what a click leads to, claiming a new generation when a session is needed.

    `previous_status` is the provider's status of the link's current session when the caller
    looked it up ("open", "complete", "expired"), None when there is none. The link row is
    locked, so two clicks at once agree on one generation (and the provider's idempotency
    key, built from it, makes them one session)."""
    link = session.exec(select(PaymentLink).where(_is(token))
                        .with_for_update().execution_options(populate_existing=True)
                        ).first() if _looks_like_token(token) else None
    if link is None:
        raise NotFound("no such payment link")
    invoice = session.get(Invoice, link.invoice_id)
    if invoice.balance_minor == 0:
        return Checkout("paid", currency=invoice.currency)
    due = payable(invoice, on=today(session, now))
    if due == 0:  # all of it in question
        return Checkout("disputed", currency=invoice.currency)
    refusal = card_refusal(due, invoice.currency)
    if refusal is not None:
        return Checkout("refused", amount_minor=due, currency=invoice.currency, note=refusal)
    if link.session_id and previous_status == "complete":
        return Checkout("processing", amount_minor=link.amount_minor or 0,
                        currency=invoice.currency)
    reusable = (link.session_id and link.session_url and previous_status == "open"
                and link.amount_minor == due and link.currency == invoice.currency
                and link.expires_at is not None
                and link.expires_at > now + REUSE_MARGIN)
    if reusable:
        return Checkout("reuse", url=link.session_url, amount_minor=link.amount_minor,
                        currency=invoice.currency, generation=link.generation)
    if (link.session_id is None and link.amount_minor == due
            and link.expires_at is not None and link.expires_at > now + REUSE_MARGIN):
        # a generation claimed by a click whose session is being created right now
        return Checkout("create", generation=link.generation, amount_minor=link.amount_minor,
                        currency=invoice.currency, expires_at=link.expires_at,
                        link_id=link.id, link_key=link.token_hash)
    replaces = link.session_id if previous_status == "open" else None
    link.generation += 1
    link.amount_minor, link.currency = due, invoice.currency
    link.session_id = link.session_url = None
    link.expires_at = now + SESSION_LIFETIME
    session.add(link)
    if replaces:
        audit.record(session, actor="system", action="payment_link.replaced",
                     entity_type="invoice", entity_id=invoice.id, reason="the balance changed",
                     old_session=replaces, generation=link.generation)
        # expired at the provider through the outbox, committed with the claim: retried
        # until done, whatever happens to the new session's creation
        _expire_later(session, replaces, invoice)
    return Checkout("create", generation=link.generation, amount_minor=link.amount_minor,
                    currency=invoice.currency, expires_at=link.expires_at, replaces=replaces,
                    link_id=link.id, link_key=link.token_hash)


def store_session(session: Session, *, token: str, generation: int, session_id: str,
                  url: str) -> bool:
    """Remember the session made for `generation` (unless a newer one was claimed since)."""
    table = PaymentLink.__table__
    return session.execute(sa.update(table).where(
        _is(token), table.c.generation == generation).values(
        session_id=session_id, session_url=url)).rowcount == 1


def release(session: Session, *, token: str, generation: int) -> bool:
    """Give up a claimed generation whose session the provider failed to make (a 5xx: Stripe
    answers that error again to every retry under the same idempotency key for a day; or the
    key refused as used with other parameters: the customer's e-mail changed since a click
    whose session was made but not stored), so the next click claims a new one. Safe: a
    session it may have made was never handed to anyone (no URL of it is known). Not after a
    timeout, whose retry under the same key is what returns the session that may exist."""
    table = PaymentLink.__table__
    return session.execute(sa.update(table).where(
        _is(token), table.c.generation == generation,
        table.c.session_id.is_(None)).values(expires_at=None)).rowcount == 1


def balance_changed(session: Session, invoice: Invoice) -> None:
    """An invoice's balance (or what of it is in question) moved: a checkout session open for
    another amount is expired at the provider (outbox row "stripe", once per session) and
    forgotten here."""
    if not _any_open(session):
        return
    table = PaymentLink.__table__
    row = session.execute(sa.select(table.c.id, table.c.session_id, table.c.amount_minor,
                                    table.c.expires_at)
                          .where(table.c.invoice_id == invoice.id,
                                 table.c.session_id.is_not(None))).first()
    if row is None:
        return
    planned = offered_on(session, row.expires_at)
    if planned is not None and row.amount_minor == payable(invoice, on=planned):
        return
    session.execute(sa.update(table).where(table.c.id == row.id).values(
        session_id=None, session_url=None, expires_at=None))
    _expire_later(session, row.session_id, invoice)


def _expire_later(session: Session, session_id: str, invoice: Invoice) -> None:
    """The checkout session is expired at the provider (outbox row "stripe", once)."""
    key = f"stripe-expire:{session_id}"
    if not outbox.has_message(session, key):
        outbox._add(session, transport="stripe", method="session.expire", dedupe_key=key,
                    payload={"session_id": session_id, "invoice": invoice.number})


def any_open(session: Session) -> bool:
    """Whether any checkout session is open (`balance_changed` has nothing to do otherwise);
    read once per transaction."""
    return _any_open(session)


def _any_open(session: Session) -> bool:
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is None or cached[0] is not transaction:
        table = PaymentLink.__table__
        found = session.execute(sa.select(table.c.id).where(
            table.c.session_id.is_not(None)).limit(1)).first() is not None
        cached = (transaction, found)
        session.info[_CACHE] = cached
    return cached[1]
