"""REST API `/api/v1` (SPEC §4): ingestion from ERPs, CRMs and payment providers, and lookups.

Routes are thin: parse (pydantic), call one workflow inside `idempotency.run` (one
transaction, one commit), serialise. Sync `def` routes run in FastAPI's thread pool.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import select

from api import idempotency, serialize
from api.auth import token_ok
from api.schemas import (
    SLACK_USER_PATTERN,
    CustomerIn,
    Day,
    InvoiceIn,
    OrderIn,
    PaymentIn,
    ProductIn,
    ShipmentIn,
    UserIn,
)
from models import Customer
from models.limits import MAX_RECORD_ID
from workflows import (
    cash_application,
    invoicing,
    masterdata,
    orders,
    periods,
    queries,
    shipping,
    users,
)
from workflows import kpis as kpi_workflow
from workflows.errors import NotFound, ValidationFailed
from workflows.receivables import aging_by_currency, customer_position

API_ACTOR = "api"


class Unauthorized(Exception):
    pass


def require_token(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """Declares the bearer token (OpenAPI); `api.auth.BearerFirst` refused a wrong one before
    the body was read."""
    if not token_ok(request.app.state.deps.settings.o2c_api_token, authorization):
        raise Unauthorized()


router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)])
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]
# Path keys: anything but a NUL (PostgreSQL cannot compare it) up to the column's length; an
# unknown key is a 404. An id beyond the id columns' range (a 22-digit id) is a 422, never an
# overflow in the database.
Key = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
RecordId = Annotated[int, Path(ge=1, le=MAX_RECORD_ID)]
SlackUserId = Annotated[str, Path(pattern=SLACK_USER_PATTERN)]
AsOf = Annotated[Day | None, Query()]


def _deps(request: Request):  # noqa: ANN202
    return request.app.state.deps


def _post(request: Request, key: str | None, body: dict, operation) -> JSONResponse:  # noqa: ANN001
    deps = _deps(request)
    return idempotency.run(deps.db, scope=f"POST {request.url.path}", key=key, body=body,
                           operation=operation, on_commit=deps.notify_outbox)


# -- users ---------------------------------------------------------------------------------------
@router.put("/users/{slack_user_id}", tags=["users"])
def put_user(slack_user_id: SlackUserId, body: UserIn, request: Request) -> JSONResponse:
    deps = _deps(request)
    with deps.db.transaction() as session:
        user, created = users.upsert_user(session, user_id=slack_user_id, name=body.name,
                                          roles=body.roles, email=body.email,
                                          timezone=body.timezone, actor=API_ACTOR)
        data = serialize.user_json(user, users.roles_of(session, slack_user_id))
    return JSONResponse(data, status_code=201 if created else 200)


# -- master data ---------------------------------------------------------------------------------
@router.post("/customers", tags=["customers"], status_code=201)
def post_customer(body: CustomerIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        customer, created = masterdata.upsert_customer(
            session, masterdata.CustomerIn(**body.model_dump(exclude_unset=True)),
            actor=API_ACTOR)
        return (201 if created else 200), serialize.customer_json(customer)
    return _post(request, key, body.model_dump(mode="json"), op)


@router.post("/products", tags=["products"], status_code=201)
def post_product(body: ProductIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        product, created = masterdata.upsert_product(
            session, masterdata.ProductIn(**body.model_dump()), actor=API_ACTOR)
        return (201 if created else 200), serialize.product_json(product)
    return _post(request, key, body.model_dump(mode="json"), op)


# -- orders and shipments ------------------------------------------------------------------------
@router.post("/orders", tags=["orders"], status_code=201)
def post_order(body: OrderIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        data = orders.OrderIn(
            customer=body.customer, sales_rep=body.sales_rep, currency=body.currency,
            lines=[orders.LineIn(**line.model_dump()) for line in body.lines],
            external_id=body.external_id, order_date=body.order_date, notes=body.notes)
        order = orders.create_order(session, data, actor=API_ACTOR, source="api",
                                    now=_deps(request).clock.now())
        session.flush()
        return 201, serialize.order_json(queries.order_view(session, order.number))
    return _post(request, key, body.model_dump(mode="json"), op)


@router.post("/shipments", tags=["orders"], status_code=201)
def post_shipment(body: ShipmentIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        lines = ([shipping.ShipLineIn(sku=li.sku, quantity=li.quantity) for li in body.lines]
                 if body.lines is not None else None)
        shipment = shipping.ship_order(session, order_number=body.order, carrier=body.carrier,
                                       tracking_number=body.tracking_number,
                                       shipped_at=body.shipped_at, lines=lines, actor=API_ACTOR,
                                       now=_deps(request).clock.now())
        view = queries.order_view(session, body.order)
        invoice = next(i for i in view.invoices if i.shipment_id == shipment.id)
        return 201, {"id": shipment.id, "order": view.order.number,
                     "order_status": view.order.status, "invoice": invoice.number,
                     "invoice_total": serialize.amount(invoice.total_minor, invoice.currency),
                     "due_date": invoice.due_date.isoformat()}
    return _post(request, key, body.model_dump(mode="json"), op)


@router.get("/orders/{number}", tags=["orders"])
def get_order(number: Key, request: Request) -> dict:
    with _deps(request).db.read_session() as session:
        view = queries.order_view(session, number, with_history=True)
        if view is None:
            raise NotFound(f"no order {number}")
        return serialize.order_json(view)


# -- invoices ------------------------------------------------------------------------------------
@router.post("/invoices", tags=["invoices"], status_code=201)
def post_invoice(body: InvoiceIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        data = invoicing.ErpInvoiceIn(**{**body.model_dump(), "lines": [
            line.model_dump() for line in body.lines] if body.lines else None})
        invoice = invoicing.ingest_erp_invoice(session, data, actor=API_ACTOR)
        session.flush()
        return 201, serialize.invoice_json(queries.invoice_view(session, invoice.number))
    return _post(request, key, body.model_dump(mode="json"), op)


@router.get("/invoices/{number}", tags=["invoices"])
def get_invoice(number: Key, request: Request) -> dict:
    with _deps(request).db.read_session() as session:
        view = queries.invoice_view(session, number)
        if view is None:
            raise NotFound(f"no invoice {number}")
        return serialize.invoice_json(view)


# -- payments ------------------------------------------------------------------------------------
def payment_answer(session, payment) -> dict:  # noqa: ANN001
    view = queries.payment_view(session, payment)
    return serialize.payment_json(payment, view["allocations"])


@router.post("/payments", tags=["payments"], status_code=201)
def post_payment(body: PaymentIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):  # noqa: ANN001, ANN202
        payment, created = cash_application.record_payment(
            session, cash_application.PaymentIn(**body.model_dump()), actor=API_ACTOR)
        session.flush()
        return (201 if created else 200), payment_answer(session, payment)
    return _post(request, key, body.model_dump(mode="json"), op)


@router.get("/payments/{payment_id}", tags=["payments"])
def get_payment(payment_id: RecordId, request: Request) -> dict:
    with _deps(request).db.read_session() as session:
        payment = cash_application.get_payment(session, payment_id)
        return payment_answer(session, payment)


# -- as of a day, as known at a moment ----------------------------------------------------------
KnownAt = Annotated[str | None, Query(
    description="what the books said at this moment (an audit): only invoices and "
                "settlements recorded by then count. An ISO datetime with its offset "
                "(2026-07-01T09:00:00Z), or a date for the end of that day (UTC)")]


def known_at_of(text: str | None) -> datetime | None:
    """`?known_at=`: an aware ISO datetime, or a date meaning the end of that day (UTC)."""
    if text is None:
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.max, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.of("known_at", "must be a date (2026-07-01) or a datetime with "
                                  "its offset (2026-07-01T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise ValidationFailed.of("known_at", "needs a time zone, e.g. 2026-07-01T09:00:00Z")
    return moment


def _as_of(request: Request, as_of: date | None) -> date:
    return as_of or _deps(request).clock.business_today()


# -- customers -----------------------------------------------------------------------------------
@router.get("/customers/{external_id}", tags=["customers"])
def get_customer(external_id: Key, request: Request, as_of: AsOf = None,
                 known_at: KnownAt = None) -> dict:
    """The customer with its balances at the end of `as_of` (default today) by economic
    date; with `known_at`, as the books knew them then. Open invoices are today's."""
    known = known_at_of(known_at)
    with _deps(request).db.read_session() as session:
        customer = session.exec(select(Customer).where(
            Customer.external_id == external_id)).first()
        if customer is None:
            raise NotFound(f"no customer {external_id}")
        day = _as_of(request, as_of)
        position = customer_position(session, customer, day, known_at=known)
        data = serialize.customer_json(customer, position)
        data["balances"]["as_of"] = day.isoformat()
        if known is not None:
            data["balances"]["known_at"] = known.isoformat()
        data["open_invoices"] = [
            {"number": i.number, "due_date": i.due_date.isoformat(),
             "total": serialize.amount(i.total_minor, i.currency),
             "balance": serialize.amount(i.balance_minor, i.currency)}
            for i in queries.open_invoices(session, customer.id, limit=200)]
        return data


# -- reports -------------------------------------------------------------------------------------
def _csv(rows: list[list[str]]) -> Response:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return Response(out.getvalue(), media_type="text/csv")


@router.get("/reports/aging", tags=["reports"], response_model=None)
def report_aging(request: Request, as_of: AsOf = None, known_at: KnownAt = None,
                 format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",  # noqa: A002
                 ) -> dict | Response:
    """Open AR at the end of `as_of` (default today) by economic date: settlements count on
    the day the money moved, whenever they were recorded. `known_at`: as the books knew it."""
    known = known_at_of(known_at)
    as_of = _as_of(request, as_of)
    with _deps(request).db.read_session() as session:
        by_currency = aging_by_currency(session, as_of, known_at=known)
    if format == "csv":
        from models import AGING_BUCKETS

        rows = [["currency", *AGING_BUCKETS, "total", "in_dispute"]]
        rows += [[cur, *(serialize.amount(a.buckets[b], cur) for b in AGING_BUCKETS),
                  serialize.amount(a.total, cur), serialize.amount(a.disputed, cur)]
                 for cur, a in sorted(by_currency.items())]
        return _csv(rows)
    return {"as_of": as_of.isoformat(),
            **({"known_at": known.isoformat()} if known is not None else {}),
            "currencies": {
        cur: {"buckets": {b: serialize.amount(v, cur) for b, v in a.buckets.items()},
              "invoices": a.counts, "total": serialize.amount(a.total, cur),
              "overdue": serialize.amount(a.overdue, cur),
              "in_dispute": {b: serialize.amount(v, cur) for b, v in a.in_dispute.items()}}
        for cur, a in sorted(by_currency.items())}}


@router.get("/reports/kpis", tags=["reports"], response_model=None)
def report_kpis(request: Request, as_of: AsOf = None, known_at: KnownAt = None,
                format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",  # noqa: A002
                ) -> dict | Response:
    """The KPIs as of the end of `as_of` by economic date (`workflows.kpis`); `known_at`: as
    the books knew them then."""
    known = known_at_of(known_at)
    as_of = _as_of(request, as_of)
    with _deps(request).db.read_session() as session:
        report = kpi_workflow.compute(session, as_of, known_at=known)
    data = kpi_workflow.to_json(report)
    if format == "csv":
        return _csv([["kpi", "value"], *([k, str(v)] for k, v in kpi_workflow.flat(data)
                                          .items())])
    return data


# -- closed periods ------------------------------------------------------------------------------
@router.post("/periods/{period}/close", tags=["periods"], status_code=201)
def close_period(period: str, request: Request, key: IdemKey = None) -> JSONResponse:
    """Close an AR month (and every month before it): from now on a settlement dated inside
    it is booked on the first day of the first open month. 201 when this closed it, 200 when
    it was already closed (by this close or a later one)."""
    deps = _deps(request)

    def op(session):  # noqa: ANN001, ANN202
        row, created = periods.close_period(session, period=period, actor=API_ACTOR,
                                            now=deps.clock.now())
        return (201 if created else 200), serialize.period_json(row, requested=period,
                                                                created=created)
    return _post(request, key, {"period": period}, op)


@router.get("/periods", tags=["periods"])
def get_periods(request: Request) -> dict:
    with _deps(request).db.read_session() as session:
        rows = periods.closed_periods(session)
        return {"closed_through": rows[-1].period if rows else None,
                "closes": [serialize.period_json(row) for row in rows]}
