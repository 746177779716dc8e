"""Public endpoints outside `/api/v1` (no bearer token; each authenticated its own way):

* `POST /webhooks/stripe` — Stripe's events, verified with Stripe's own signature check
  (`stripe.Webhook.construct_event`, `STRIPE_WEBHOOK_SECRET`, 5-minute tolerance) before
  anything is parsed or stored; a bad or missing signature is 400 and stores nothing. Then
  `workflows.stripe_events` (once per event id). Without the secret: 404.
* `GET /pay/<token>` — the page behind an invoice's "Pay now" link (the token is the
  capability: 32 random characters); `POST` to it opens checkout for the balance as it is
  now (`workflows.payment_links`), a Stripe Checkout Session, or in the sandbox its stand-in
  payment page. Without Stripe or the sandbox: 404. Stripe is never given the token (it
  keeps and shows what it is sent): its return pages are `/pay/done` and `/pay/back` (back to
  the link's page by a cookie of the customer's browser, `o2c_pay`, set with the redirect to
  Stripe; without it, a page saying to open the link again).
* `POST /webhooks/hubspot` — HubSpot's events, verified with its signature v3 (the client
  library's helper, `HUBSPOT_CLIENT_SECRET`, 5-minute tolerance) before anything is parsed;
  each event kept once (by its `eventId` with the account, subscription, object and moment:
  HubSpot's eventId alone is not unique), a won deal queued for import (`bot.hubspot`).
  Without the secret and the access token: 404.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bot.pages import unavailable_page_route
from models import Invoice, ProviderEvent, ProviderEventStatus, money
from workflows import outbox, payment_links, stripe_events
from workflows.errors import DomainError, NotFound, database_unavailable

log = logging.getLogger("o2c.inbound")

router = APIRouter(include_in_schema=False)
STRIPE_TOLERANCE = 300  # seconds (Stripe's default, and SPEC §5.1's five minutes)


def _deps(request: Request) -> Any:
    return request.app.state.deps


def _gateway(request: Request) -> Any:
    return getattr(request.app.state, "stripe", None)


# -- Stripe --------------------------------------------------------------------------------------
@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request) -> Response:
    deps = _deps(request)
    secret = deps.settings.secret("stripe_webhook_secret")
    if not secret:
        return JSONResponse({"error": "Stripe webhooks are not configured"}, status_code=404)
    import stripe  # here, not at the top: a server without Stripe never loads it (~0.3 s)

    body = await request.body()
    try:
        stripe.Webhook.construct_event(body, request.headers.get("stripe-signature"), secret,
                                       tolerance=STRIPE_TOLERANCE)
        event = json.loads(body)
    except (stripe.SignatureVerificationError, ValueError) as exc:  # UnicodeDecodeError too
        log.warning("refused a Stripe webhook from %s: %s",
                    request.client.host if request.client else "?", type(exc).__name__)
        return JSONResponse({"error": "invalid signature or payload"}, status_code=400)
    if not isinstance(event, dict):
        return JSONResponse({"error": "not an event"}, status_code=400)
    event = stripe_events.scrub(event)  # an old session's pay link token: kept nowhere
    try:
        outcome = await run_in_threadpool(_handle_stripe, deps, event,
                                          _gateway(request) is not None)
    except Exception as exc:
        if database_unavailable(exc):
            return JSONResponse({"error": "database unavailable"}, status_code=503,
                                headers={"Retry-After": "5"})
        raise  # a 500: Stripe retries it
    deps.notify_outbox()
    return JSONResponse({"received": True, "status": outcome.status})


def _handle_stripe(deps: Any, event: dict, fetch_fees: bool) -> stripe_events.Outcome:
    try:
        with deps.db.transaction() as session:
            return stripe_events.handle(session, event, now=deps.clock.now(),
                                        fetch_fees=fetch_fees)
    except IntegrityError:  # the same event, committed by another request meanwhile
        with deps.db.read_session() as session:
            if session.get(ProviderEvent, (stripe_events.PROVIDER, str(event.get("id"))[:255])):
                return stripe_events.Outcome("duplicate", "delivered before")
        raise
    except DomainError as refused:  # will not work on a retry either: keep it, tell AR
        return _failed(deps, event, refused.detail)


def _failed(deps: Any, event: dict, reason: str) -> stripe_events.Outcome:
    now = deps.clock.now()
    with deps.db.transaction() as session:
        if session.get(ProviderEvent, (stripe_events.PROVIDER, str(event["id"])[:255])) is None:
            session.add(ProviderEvent(provider=stripe_events.PROVIDER,
                                      event_id=str(event["id"])[:255],
                                      type=str(event.get("type"))[:100],
                                      status=ProviderEventStatus.FAILED, detail=reason[:500],
                                      payload=event, received_at=now, processed_at=now))
            outbox.post_to_channel(session, channel="ar", template="text", context={
                "text": f"A Stripe event ({event.get('type')}, {event.get('id')}) could not "
                        f"be applied: {reason[:300]}"},
                dedupe_key=f"stripe-failed:{event['id']}"[:200])
    log.warning("Stripe event %s not applied: %s", event.get("id"), reason)
    return stripe_events.Outcome("failed", reason)


# -- HubSpot -------------------------------------------------------------------------------------
HUBSPOT_TOLERANCE_MS = 300_000  # five minutes, as HubSpot asks
# characters HubSpot decodes in the request URI before signing (its v3 instructions)
_HUBSPOT_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                   "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def hubspot_uri(request: Request, public_url: str | None) -> str:
    """The URI HubSpot called (and signed): the public URL when set (behind a proxy the
    request's own URL is not what HubSpot saw), with HubSpot's decoded characters."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    uri = f"{public_url}{path}" if public_url else str(request.url)
    for encoded, plain in _HUBSPOT_DECODE.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def hubspot_signature_ok(request: Request, body: bytes, secret: str,
                         public_url: str | None, now_ms: int) -> bool:
    """HubSpot's signature v3, checked with the client library's own helper, and a timestamp
    within five minutes either way."""
    from hubspot.utils.signature import Signature

    signature = request.headers.get("x-hubspot-signature-v3")
    timestamp = request.headers.get("x-hubspot-request-timestamp")
    # ASCII digits only: str.isdigit() also says yes to "²" (a header's byte 0xB2), which
    # int() refuses
    if not signature or not timestamp or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now_ms - int(timestamp)) > HUBSPOT_TOLERANCE_MS:
        return False
    try:
        return Signature.is_valid(signature=signature, client_secret=secret,
                                  request_body=body.decode("utf-8"),
                                  http_uri=hubspot_uri(request, public_url),
                                  http_method=request.method, signature_version="v3",
                                  timestamp=timestamp)
    except Exception:
        return False


HUBSPOT_MAX_EVENTS = 1000  # notifications taken in one request


@router.post("/webhooks/hubspot")
async def hubspot_webhook(request: Request) -> Response:
    deps = _deps(request)
    secret = deps.settings.secret("hubspot_client_secret")
    if not secret or not deps.settings.secret("hubspot_access_token"):
        return JSONResponse({"error": "HubSpot webhooks are not configured"}, status_code=404)
    body = await request.body()
    now_ms = int(deps.clock.now().timestamp() * 1000)
    if not hubspot_signature_ok(request, body, secret, deps.settings.o2c_public_url, now_ms):
        log.warning("refused a HubSpot webhook from %s: bad or stale signature",
                    request.client.host if request.client else "?")
        return JSONResponse({"error": "invalid signature"}, status_code=401)
    try:
        events = json.loads(body)
    except ValueError:
        return JSONResponse({"error": "not JSON"}, status_code=400)
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return JSONResponse({"error": "expected a list of events"}, status_code=400)
    if len(events) > HUBSPOT_MAX_EVENTS:  # (HubSpot sends at most 100): refused whole, not cut
        return JSONResponse({"error": f"at most {HUBSPOT_MAX_EVENTS} events in one request; "
                                      "none was taken"}, status_code=400)
    try:
        queued = await run_in_threadpool(_queue_hubspot, deps, events)
    except Exception as exc:
        if database_unavailable(exc):
            return JSONResponse({"error": "database unavailable"}, status_code=503,
                                headers={"Retry-After": "5"})
        raise
    deps.notify_outbox()
    return JSONResponse({"received": len(events), "queued": queued})


def hubspot_event_key(event: dict) -> str:
    """What makes a HubSpot notification itself, so that a re-delivery (the same notification,
    `attemptNumber` aside) is found and a different one never is: HubSpot documents `eventId`
    as "not guaranteed to be unique", so it is qualified with the account, the subscription,
    the object and the moment. Empty without an `eventId`."""
    if not event.get("eventId"):
        return ""
    parts = (event.get(name) for name in ("portalId", "subscriptionId", "eventId", "objectId",
                                           "occurredAt"))
    return ":".join(str(part if part is not None else "")[:40] for part in parts)


def _queue_hubspot(deps: Any, events: list[dict]) -> int:
    """Each event once (`hubspot_event_key`); a deal moved to a won stage is queued for import
    (the worker reads the deal and checks the stage and pipeline against the mapping), a deal
    that became an order and moved to another stage for a look (`crm.report_left_won`)."""
    from bot.hubspot import PROVIDER, Mapping
    from workflows import crm

    mapping = Mapping.of(deps.settings.o2c_hubspot_mapping)
    queued = 0
    for event in events:
        event_id = hubspot_event_key(event)
        kind = event.get("subscriptionType")
        staged = kind == "deal.propertyChange" and event.get("propertyName") == "dealstage"
        won = staged and event.get("propertyValue") in mapping.won_stages
        deal_id = str(event.get("objectId") or "")
        # a deal id is ASCII digits ("²" is a digit to str.isdigit, not to HubSpot)
        valid = deal_id.isascii() and deal_id.isdigit() and len(deal_id) <= 40
        if not event_id:
            continue
        try:
            with deps.db.transaction() as session:
                if session.get(ProviderEvent, (PROVIDER, event_id)) is not None:
                    continue
                wanted = valid and (won or kind == "deal.creation")
                # a deal that became an order moved to another stage (lost, reopened): the
                # worker reads it and tells AR if it is no longer won
                left = (valid and staged and not won
                        and crm.imported(session, PROVIDER, deal_id) is not None)
                session.add(ProviderEvent(
                    provider=PROVIDER, event_id=event_id, type=str(kind)[:100],
                    object_id=deal_id[:255] or None,
                    status=ProviderEventStatus.PROCESSED if wanted or left
                    else ProviderEventStatus.IGNORED,
                    received_at=deps.clock.now(), processed_at=deps.clock.now()))
                session.flush()
                if wanted or left:
                    kind_of = "import" if wanted else "left"
                    outbox._add(session, transport=PROVIDER,
                                method="deal.import" if wanted else "deal.left_won",
                                dedupe_key=f"hubspot-{kind_of}:{deal_id}:" + hashlib.sha256(
                                    event_id.encode()).hexdigest()[:40],
                                payload={"deal_id": deal_id, "event_id": event_id})
                    queued += 1
        except IntegrityError:  # the same event, stored by another request meanwhile
            continue
    return queued


# -- the "Pay now" page --------------------------------------------------------------------------
def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1d1c1d}button{font-size:1.1rem;"
        "padding:.6rem 1.4rem;border:0;border-radius:6px;background:#007a5a;color:#fff;"
        "cursor:pointer}dt{color:#616061}dd{margin:0 0 .6rem}</style></head><body>"
        f"{body}</body></html>", status_code=status,
        headers={"cache-control": "no-store", "referrer-policy": "no-referrer",
                 "x-content-type-options": "nosniff",
                 "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                            "form-action 'self' https://checkout.stripe.com; "
                                            "frame-ancestors 'none'"})


def _unavailable() -> Response:
    return _page("Temporarily unavailable", (
        "<h1>This page is temporarily unavailable</h1><p>Nothing was changed. Please try "
        "again in a few minutes.</p>"), 503)


# /pay/<token>: a private 503 page while the database is unreachable
pages = APIRouter(include_in_schema=False, route_class=unavailable_page_route(
    _unavailable, where="/pay/...", log=log))
# the link a browser went to Stripe's checkout from, for Stripe's "back" (`/pay/back`): the
# return URLs Stripe is given carry no token
RETURN_COOKIE = "o2c_pay"


def _enabled(request: Request) -> bool:
    return _gateway(request) is not None or _deps(request).settings.o2c_sandbox


def _to_checkout(url: str, token: str, base: str | None) -> Response:
    """To Stripe's page, remembering in this browser which link it came from (`/pay/back`)."""
    answer = RedirectResponse(url, status_code=303)
    answer.set_cookie(RETURN_COOKIE, token, max_age=int(
        payment_links.SESSION_LIFETIME.total_seconds()), path="/pay", httponly=True,
        samesite="lax", secure=(base or "").startswith("https://"))
    return answer


@pages.get("/pay/done")
def pay_done(request: Request) -> Response:
    """Stripe's success page (`success_url`)."""
    if not _enabled(request):
        return _page("Not found", "<h1>Not found</h1>", 404)
    return _thanks()


@pages.get("/pay/back")
def pay_back(request: Request) -> Response:
    """Stripe's "back" (`cancel_url`): to the page of the link this browser came from."""
    if not _enabled(request):
        return _page("Not found", "<h1>Not found</h1>", 404)
    token = request.cookies.get(RETURN_COOKIE) or ""
    if token:
        try:
            with _deps(request).db.read_session() as session:
                payment_links.by_token(session, token)
            return RedirectResponse(f"/pay/{token}", status_code=303)
        except NotFound:
            pass
    return _page("Not paid", "<h1>Nothing was paid</h1><p>To pay, open the \"Pay now\" link "
                 "in your e-mail again.</p>")


@pages.get("/pay/{token}")
def pay_page(token: str, request: Request) -> Response:
    if not _enabled(request):
        return _page("Not found", "<h1>Not found</h1>", 404)
    deps = _deps(request)
    try:
        with deps.db.read_session() as session:
            _, invoice, customer = payment_links.by_token(session, token)
            today = payment_links.today(session, deps.clock.now())
    except NotFound:
        return _page("Not found", "<h1>This payment link does not exist</h1>", 404)
    seller = html.escape(deps.settings.o2c_from_email.split("@")[-1])
    number = html.escape(invoice.number)
    if invoice.balance_minor == 0:
        return _page(f"Invoice {invoice.number}",
                     f"<h1>Invoice {number} is paid</h1><p>Nothing to pay. Thank you!</p>")
    due = payment_links.payable(invoice, on=today)
    if (cannot := _cannot_pay(invoice, due)) is not None:
        return cannot
    amount = html.escape(money.format_money(due, invoice.currency))
    in_question = html.escape(money.format_money(invoice.disputed_minor, invoice.currency))
    left_out = "" if not invoice.disputed_minor else (
        f"<dt>In question</dt><dd>{in_question} (left out until we have answered your "
        "question)</dd>")
    if discount := payment_links.early_discount(invoice, today):
        left_out += (f"<dt>Early-payment discount</dt><dd>"
                     f"{html.escape(money.format_money(discount, invoice.currency))} "
                     f"({html.escape(invoice.payment_terms or '')}: paid today)</dd>")
    return _page(f"Pay invoice {invoice.number}", (
        f"<h1>Pay invoice {number}</h1><dl><dt>From</dt><dd>{seller}</dd>"
        f"<dt>To</dt><dd>{html.escape(customer.name)}</dd>"
        f"<dt>Due</dt><dd>{invoice.due_date.isoformat()}</dd>{left_out}"
        f"<dt>Amount due</dt><dd><strong>{amount}</strong></dd></dl>"
        f"<form method=post action='/pay/{html.escape(token)}'>"
        f"<button type=submit>Pay {amount} now</button></form>"
        "<p><small>The amount is the invoice's balance when you click.</small></p>"))


@pages.post("/pay/{token}")
def pay_now(token: str, request: Request) -> Response:
    if not _enabled(request):
        return _page("Not found", "<h1>Not found</h1>", 404)
    import stripe

    deps = _deps(request)
    gateway = _gateway(request)
    try:
        with deps.db.read_session() as session:
            link, invoice, customer = payment_links.by_token(session, token)
            today = payment_links.today(session, deps.clock.now())
    except NotFound:
        return _page("Not found", "<h1>This payment link does not exist</h1>", 404)
    if gateway is None:  # the sandbox: its stand-in for Stripe's payment page
        if (cannot := _cannot_pay(invoice, payment_links.payable(invoice, on=today))) \
                is not None:
            return cannot
        return RedirectResponse(f"/sandbox/checkout/{token}", status_code=303)
    base = deps.settings.o2c_public_url
    plan = None
    try:
        previous = gateway.session_status(link.session_id) if link.session_id else None
        with deps.db.transaction() as session:
            plan = payment_links.plan_checkout(session, token=token, now=deps.clock.now(),
                                               previous_status=previous)
        if plan.replaces:  # the old session's expiry, queued with the plan, goes out now
            deps.notify_outbox()
        if plan.action == "paid":
            return RedirectResponse(f"/pay/{token}", status_code=303)
        if plan.action == "refused":
            return _no_card(invoice.number, plan.note)
        if plan.action == "disputed":
            return _in_question(invoice.number)
        if plan.action == "processing":
            return _page("Payment received", "<h1>Your payment is being processed</h1>"
                         "<p>We received it from the card processor; the invoice shows it "
                         "as paid in a moment. Thank you!</p>")
        if plan.action == "reuse":
            return _to_checkout(plan.url, token, base)
        session_id, url = gateway.create_session(  # the token stays here (module docstring)
            link_id=plan.link_id, generation=plan.generation,
            idempotency_key=plan.idempotency_key, invoice_number=invoice.number,
            amount_minor=plan.amount_minor, currency=plan.currency,
            expires_at=plan.expires_at, customer_email=customer.billing_email,
            success_url=f"{base}/pay/done", cancel_url=f"{base}/pay/back")
        with deps.db.transaction() as session:
            payment_links.store_session(session, token=token, generation=plan.generation,
                                        session_id=session_id, url=url)
    except stripe.StripeError as exc:
        log.warning("Stripe refused a checkout for %s: %s %s", invoice.number,
                    type(exc).__name__, getattr(exc, "code", None))
        if plan is not None and plan.action == "create" and (
                isinstance(exc, stripe.IdempotencyError) or (isinstance(exc, stripe.APIError)
                and (getattr(exc, "http_status", None) or 0) >= 500)):
            with deps.db.transaction() as session:  # a new key for the next click
                payment_links.release(session, token=token, generation=plan.generation)
        if getattr(exc, "code", None) in STRIPE_AMOUNT_CODES:  # retrying cannot help
            return _no_card(invoice.number, STRIPE_AMOUNT_CODES[exc.code].format(
                amount=money.format_money(plan.amount_minor if plan is not None else
                                          payment_links.open_to_pay(invoice),
                                          invoice.currency)))
        return _page("Try again", "<h1>The payment page is not available right now</h1>"
                     "<p>Please try again in a few minutes.</p>", 502)
    return _to_checkout(url, token, base)


# Stripe's refusals of an amount (its error codes): the balance cannot be paid by card at all
STRIPE_AMOUNT_CODES = {
    "amount_too_small": "{amount} is below the smallest amount a card payment can be. "
                        "Please pay by bank transfer.",
    "amount_too_large": "{amount} is above the largest amount a card payment can be. "
                        "Please pay by bank transfer.",
}


def _cannot_pay(invoice: Invoice, due: int) -> HTMLResponse | None:
    """The page for a balance no card payment can settle (`due`: `payment_links.payable`):
    all of it in question, or an amount a card cannot pay; None when it can be paid."""
    if due == 0:
        return _in_question(invoice.number)
    refusal = payment_links.card_refusal(due, invoice.currency)
    return _no_card(invoice.number, refusal) if refusal is not None else None


def _in_question(number: str) -> HTMLResponse:
    return _page(f"Invoice {number}", f"<h1>Invoice {html.escape(number)} is in question"
                 "</h1><p>Nothing to pay through this link while we answer your question "
                 "about it.</p>")


def _no_card(number: str, why: str) -> HTMLResponse:
    return _page(f"Invoice {number}", f"<h1>Invoice {html.escape(number)} cannot be paid by "
                 f"card</h1><p>{html.escape(why)}</p>", 422)


@pages.get("/pay/{token}/done")
def pay_done_of(token: str, request: Request) -> Response:
    """The success page of sessions made before `/pay/done` (and the sandbox's)."""
    if not _enabled(request):
        return _page("Not found", "<h1>Not found</h1>", 404)
    return _thanks()


def _thanks() -> Response:
    return _page("Thank you", "<h1>Thank you!</h1><p>Your payment was received. The invoice "
                 "shows it as paid once the card processor confirms it (usually within a "
                 "minute).</p>")
