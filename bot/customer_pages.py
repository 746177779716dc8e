"""The customer's pages (issue 19), behind signed links (`bot.customer_links`): the backorder
choice and the self-serve account page. No passwords: the link is the key, scoped to one
customer, expiring, revocable from Slack, and every access through it is logged.

* `GET /c/backorder/<token>/<choice>` shows what the customer is about to choose; only the
  form's POST records it (mail scanners follow GET links: a GET changes nothing). A second
  click, a forwarded e-mail after the choice, a backorder the sales rep decided in Slack
  first, an expired or revoked link get a clear page and change nothing; a tampered link is
  "not valid" (404).
* `GET /c/<token>`: open orders, shipments with tracking links, open invoices (PDF, "Pay now"
  where payment links are set up), the statement of account (PDF), and a "question about this
  invoice" form that opens a dispute in Slack (`workflows.disputes`). Nothing else changes
  anything.

Every page is rendered by Jinja2 with autoescaping, served with a strict Content-Security-
Policy (no scripts at all, styles from this server only, forms posting here only, never in a
frame), `no-store` and `no-referrer`. Without `O2C_LINK_SECRETS` and `O2C_PUBLIC_URL` every
`/c/` address answers 404.
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from bot.customer_links import CustomerLinks
from bot.pages import unavailable_page_route
from models import (
    BackorderChoice,
    Customer,
    CustomerLink,
    Invoice,
    InvoiceLine,
    LinkScope,
    Order,
    OrderStatus,
    Shipment,
    money,
)
from workflows import customer_links, disputes, policy, statements
from workflows.errors import DomainError
from workflows.fulfilment import short_lines
from workflows.inputs import DisputeOpenIn, build
from workflows.orders import order_lines

PAGES = Path(__file__).parent / "templates" / "pages"
log = logging.getLogger(__name__)
ENV = Environment(loader=FileSystemLoader(str(PAGES)), autoescape=select_autoescape(
    enabled_extensions=("html",), default=True))
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"content-security-policy": CSP, "cache-control": "no-store",
           "referrer-policy": "no-referrer", "x-content-type-options": "nosniff",
           "x-frame-options": "DENY"}
MAX_FORM = 8 * 1024
OPEN_ORDER_STATES = (OrderStatus.PENDING_APPROVAL, OrderStatus.APPROVED,
                     OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED,
                     OrderStatus.ON_HOLD)
QUESTION_REASONS = (("pricing", "the price"), ("quantity", "the quantity"),
                    ("damaged", "damaged goods"), ("not_received", "goods not received"),
                    ("duplicate", "a duplicate invoice"), ("tax", "tax"), ("other", "other"))
STATE_PAGES = {
    "unknown": (404, "This link is not valid",
                "Please use the link exactly as it was sent to you, or ask us for a new one."),
    "expired": (410, "This link has expired", "Please reply to our e-mail or ask us for a "
                "new link."),
    "revoked": (410, "This link was withdrawn", "Please ask us for a new link."),
}


def _unavailable() -> Response:
    return _message("unavailable", "This page is temporarily unavailable",
                    "This page is temporarily unavailable.", status=503, tone="bad",
                    detail="Nothing was changed. Please try again in a few minutes.")


router = APIRouter(include_in_schema=False, route_class=unavailable_page_route(
    _unavailable, where="/c/...", log=log))


def _deps(request: Request) -> Any:
    return request.app.state.deps


def _links(request: Request) -> CustomerLinks:
    deps = _deps(request)
    cached = getattr(request.app.state, "customer_links", None)
    if cached is None:
        cached = CustomerLinks.for_settings(deps.settings)
        request.app.state.customer_links = cached
    return cached


def _page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("customer_name", None)
    values.setdefault("seller", "Accounts receivable")
    return HTMLResponse(ENV.get_template(template).render(**values), status_code=status,
                        headers=HEADERS)


def _message(state: str, title: str, message: str, *, status: int = 200, tone: str = "",
             detail: str | None = None, **values: Any) -> HTMLResponse:
    return _page("message.html", status, title=title, message=message, state=state,
                 tone=tone, detail=detail, **values)


def _refused(status: str) -> HTMLResponse:
    code, title, detail = STATE_PAGES[status]
    return _message(status, title, title + ".", status=code, tone="bad", detail=detail)


def _money(minor: int, currency: str) -> str:
    return money.format_money(int(minor), currency)


def _day(value: Any) -> str:
    return value.strftime("%d %b %Y") if value else "-"


def _filename(value: str) -> str:
    """A document number as a safe file name (ERP numbers may hold anything)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:64] or "document"


def _key(text: str) -> str:
    """An invoice number as typed into a URL or a form: one with a NUL is no number (and would
    be a database error on PostgreSQL)."""
    return "" if "\x00" in text else text


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


# -- static ---------------------------------------------------------------------------------------
@router.get("/c/static/customer.css")
def stylesheet() -> Response:
    return Response((PAGES / "customer.css").read_text(), media_type="text/css",
                    headers={"cache-control": "public, max-age=3600",
                             "x-content-type-options": "nosniff"})


# -- the backorder choice ------------------------------------------------------------------
def _choice_link(request: Request, token: str, choice: str) -> tuple[int | None, str | None]:
    links = _links(request)
    if not links.enabled:
        return None, None
    if choice not in {c.value for c in BackorderChoice}:
        return None, None
    return links.signer.verify(LinkScope.BACKORDER, token), choice


def _already(session: Any, link_id: int, status: str) -> HTMLResponse:
    """The page of a choice link whose backorder was decided: by the customer (`used`) or by
    their sales contact in Slack (`decided`); the first decision stands."""
    if status in ("used", "decided"):
        link = session.get(CustomerLink, link_id)
        session.refresh(link)
        order = session.get(Order, link.order_id)
        what = customer_links.decision_text(session, link)
        if status == "used":
            label = (customer_links.CHOICE_LABELS[BackorderChoice(link.choice)]
                     if link.choice else "a choice")
            return _message("used", "Your choice is already recorded",
                            f"Your choice is already recorded: {label}.", status=200,
                            tone="good", detail="Nothing was changed: the backorder of order "
                            f"{order.number} is decided. If you need something else, please "
                            "reply to our e-mail.")
        return _message("decided", "This backorder was already decided",
                        f"The backorder of order {order.number} was already decided: {what}.",
                        status=200, tone="good",
                        detail="Nothing was changed. If you need something else, please "
                               "reply to our e-mail.")
    return _refused(status)


@router.get("/c/backorder/{token}/{choice}")
def backorder_page(token: str, choice: str, request: Request) -> Response:
    link_id, choice = _choice_link(request, token, choice)
    if link_id is None:
        return _refused("unknown")
    deps = _deps(request)
    now = deps.clock.now()
    with deps.db.transaction() as session:
        state = customer_links.check(session, link_id, scope=LinkScope.BACKORDER, now=now)
        if state.link is not None:
            customer_links.seen(session, state.link, what=f"backorder choice page ({choice})",
                                now=now, client=_client(request))
        if state.status != "ok":
            return _already(session, link_id, state.status)
        order = session.get(Order, state.link.order_id)
        customer = session.get(Customer, order.customer_id)
        short = short_lines(order_lines(session, order.id))
        if not short:
            return _message("settled", "Nothing to choose any more",
                            f"Order {order.number} is no longer waiting for stock.",
                            customer_name=customer.name,
                            detail="Nothing was changed.")
        label = customer_links.CHOICE_LABELS[BackorderChoice(choice)]
        return _page("choice.html", title=f"Order {order.number}: your choice",
                     customer_name=customer.name, order_number=order.number,
                     short_lines=short, label=label[0].upper() + label[1:],
                     action=f"/c/backorder/{token}/{choice}",
                     # the books' day (a customer has no Slack zone), as its e-mail says
                     expires=_day(policy.business_date(session, state.link.expires_at)))


@router.post("/c/backorder/{token}/{choice}")
def backorder_choose(token: str, choice: str, request: Request) -> Response:
    link_id, choice = _choice_link(request, token, choice)
    if link_id is None:
        return _refused("unknown")
    deps = _deps(request)
    now = deps.clock.now()
    try:
        with deps.db.transaction() as session:
            state = customer_links.check(session, link_id, scope=LinkScope.BACKORDER, now=now)
            if state.link is not None:
                customer_links.seen(session, state.link, what=f"backorder choice ({choice})",
                                    now=now, client=_client(request))
            result = customer_links.choose_backorder(session, link_id=link_id, choice=choice,
                                                     now=now)
            if result != "ok":
                return _already(session, link_id, result)
            order = session.get(Order, state.link.order_id)
            number = order.number
    except DomainError as exc:  # nothing short any more, nothing reserved to ship ...
        with deps.db.transaction() as session:  # the refused attempt is logged all the same
            link = session.get(CustomerLink, link_id)
            customer_links.seen(session, link, now=now, client=_client(request),
                                what=f"backorder choice ({choice}): refused: {exc}"[:200])
        return _message("refused", "Nothing was changed", str(exc), status=409, tone="bad",
                        detail="Please reply to our e-mail; your sales contact will help.")
    deps.notify_outbox()
    label = customer_links.CHOICE_LABELS[BackorderChoice(choice)]
    return _message("chosen", "Thank you", f"We will {label} for order {number}.",
                    tone="good", detail="Your sales contact and our billing team have been "
                                        "told.")


# -- the self-serve page -------------------------------------------------------------------
def _portal(request: Request, token: str, session: Any, *, what: str):
    """The link's customer, or the page saying why not (the access is logged either way)."""
    links = _links(request)
    link_id = links.signer.verify(LinkScope.PORTAL, token) if links.enabled else None
    if link_id is None:
        return None, _refused("unknown")
    now = _deps(request).clock.now()
    state = customer_links.check(session, link_id, scope=LinkScope.PORTAL, now=now)
    if state.link is not None:
        customer_links.seen(session, state.link, what=what, now=now, client=_client(request))
    if state.status != "ok":
        return None, _refused(state.status)
    return session.get(Customer, state.link.customer_id), None


def _portal_values(request: Request, session: Any, customer: Customer, token: str) -> dict:
    links = _links(request)
    deps = _deps(request)
    cur = customer.currency
    orders = list(session.exec(select(Order).where(
        Order.customer_id == customer.id, Order.status.in_(list(OPEN_ORDER_STATES)))
        .order_by(Order.order_date.desc(), Order.id.desc()).limit(50)))
    since = deps.clock.now() - timedelta(days=90)
    shipments = session.exec(select(Shipment, Order.number).join(
        Order, Order.id == Shipment.order_id).where(
        Order.customer_id == customer.id, Shipment.shipped_at >= since)
        .order_by(Shipment.shipped_at.desc()).limit(50)).all()
    invoices = list(session.exec(select(Invoice).where(
        Invoice.customer_id == customer.id, Invoice.balance_minor > 0)
        .order_by(Invoice.due_date, Invoice.id).limit(100)))
    books = policy.business_zone(session)
    pay_links = getattr(request.app.state, "customer_pay_links", False)
    if pay_links is False:
        from bot.paylinks import PayLinks

        pay_links = PayLinks.for_settings(deps.settings, deps.db)
        request.app.state.customer_pay_links = pay_links
    base = f"/c/{token}"
    return {
        "title": f"Your account with us — {customer.name}", "customer_name": customer.name,
        "orders": [{"number": o.number, "date": _day(o.order_date),
                    "status": o.status.replace("_", " "),
                    "total": _money(o.total_minor - o.cancelled_minor, o.currency)}
                   for o in orders],
        # the books' day (a customer has no Slack zone), as the shipment e-mail says
        "shipments": [{"order": number, "shipped": _day(s.shipped_at.astimezone(books)),
                       "carrier": s.carrier,
                       "tracking": s.tracking_number, "status": s.status.replace("_", " "),
                       "url": links.tracking_url(s.carrier, s.tracking_number)}
                      for s, number in shipments],
        "invoices": [{"number": i.number, "issued": _day(i.issue_date), "due": _day(i.due_date),
                      "balance": _money(i.balance_minor, cur), "disputed": i.disputed_minor > 0,
                      "pdf": f"{base}/invoices/{i.number}",
                      "pay": pay_links.url_for(i.number, session=session)
                      if pay_links is not None else None} for i in invoices],
        "statement_url": f"{base}/statement", "question_action": f"{base}/question",
        "reasons": QUESTION_REASONS, "flash": None,
    }


@router.get("/c/{token}")
def portal_page(token: str, request: Request) -> Response:
    deps = _deps(request)
    with deps.db.transaction() as session:
        customer, refused = _portal(request, token, session, what="account page")
        if refused is not None:
            return refused
        return _page("portal.html", **_portal_values(request, session, customer, token))


@router.get("/c/{token}/invoices/{number}")
def portal_invoice(token: str, number: str, request: Request) -> Response:
    from bot.invoice_pdf import render_invoice_pdf

    deps = _deps(request)
    number = _key(number)
    with deps.db.transaction() as session:
        customer, refused = _portal(request, token, session, what=f"invoice {number[:64]}")
        if refused is not None:
            return refused
        invoice = session.exec(select(Invoice).where(Invoice.number == number,
                                                     Invoice.customer_id == customer.id)).first()
        if invoice is None:  # someone else's invoice looks like no invoice at all
            return _message("missing", "No such invoice", "We have no such invoice for you.",
                            status=404, tone="bad", customer_name=customer.name)
        lines = list(session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
                                  .order_by(InvoiceLine.line_no)))
        from_email = deps.settings.o2c_from_email
        data = render_invoice_pdf(invoice, lines, customer, seller=from_email.split("@")[-1],
                                  from_email=from_email)
    return Response(data, media_type="application/pdf", headers={
        **HEADERS, "content-disposition": f'inline; filename="{_filename(invoice.number)}.pdf"'})


@router.get("/c/{token}/statement")
def portal_statement(token: str, request: Request) -> Response:
    from bot.invoice_pdf import render_statement_pdf

    deps = _deps(request)
    with deps.db.transaction() as session:  # the link checked, the access logged
        customer, refused = _portal(request, token, session, what="statement of account")
        if refused is not None:
            return refused
        customer_id = customer.id
    end = deps.business_today()
    start = date(end.year - 1, end.month, 1)
    # read in one snapshot (a read session): its lines, closing balance, aging and open
    # invoices agree even while a payment is applied meanwhile
    with deps.db.read_session() as session:
        found = statements.statement(session, session.get(Customer, customer_id), start=start,
                                     end=end)
        from_email = deps.settings.o2c_from_email
        data = render_statement_pdf(found, seller=from_email.split("@")[-1],
                                    from_email=from_email)
    return Response(data, media_type="application/pdf", headers={
        **HEADERS, "content-disposition": f'inline; filename="statement-{end}.pdf"'})


@router.post("/c/{token}/question")
async def portal_question(token: str, request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_FORM:
        return _message("refused", "Too long", "Your question is too long.", status=413,
                        tone="bad")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    return await run_in_threadpool(_ask, request, token, form)


def _ask(request: Request, token: str, form: dict[str, str]) -> Response:
    deps = _deps(request)
    number = _key(form.get("invoice") or "")[:64]
    reason = form.get("reason") or "other"
    note = (form.get("note") or "").strip()
    with deps.db.transaction() as session:
        customer, refused = _portal(request, token, session, what=f"question on {number}")
        if refused is not None:
            return refused
        invoice = session.exec(select(Invoice).where(Invoice.number == number,
                                                     Invoice.customer_id == customer.id)).first()
        problem = None
        if invoice is None:
            problem = "We have no such invoice for you."
        elif reason not in dict(QUESTION_REASONS):
            problem = "Please choose what your question is about."
        elif not note:
            problem = "Please write your question."
        if problem is None:
            try:
                with session.begin_nested():
                    disputes.open_dispute(session, invoice.number, build(
                        DisputeOpenIn,
                        reason=reason, note=f"From the customer's page: {note}"[:1000]),
                        actor="customer", now=deps.clock.now(), source="portal")
            except DomainError as exc:
                problem = str(exc)
        values = _portal_values(request, session, customer, token)
        if problem is not None:
            return _message("refused", "Your question was not sent", problem, status=422,
                            tone="bad", customer_name=customer.name,
                            detail="Please go back and try again.")
        values["flash"] = (f"Thank you. Your question about {invoice.number} was sent; "
                           "we will get back to you.")
        page = _page("portal.html", **values)
    deps.notify_outbox()
    return page
