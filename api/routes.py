"""REST API `/api/v1` (SPEC §4): ingestion from ERPs, CRMs and payment providers, and lookups.

Routes are thin: parse (the request bodies are the domain's input models, `workflows.inputs`),
call one workflow inside `idempotency.run` (one transaction, one commit), answer with a
response model (`api.responses`, built by `api.serialize`). Each route declares the problems
it can answer with (`api.problems.responses`), so `/openapi.json` describes every answer. Sync
`def` routes run in FastAPI's thread pool.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from api import idempotency, serialize
from api import responses as out
from api.auth import token_ok
from api.problems import responses as problems
from models import Customer
from models.limits import MAX_RECORD_ID
from workflows import (
    cash_application,
    invoicing,
    masterdata,
    orders,
    periods,
    queries,
    revenue,
    shipping,
    subscriptions,
    users,
)
from workflows import kpis as kpi_workflow
from workflows.errors import Conflict, FieldError, NotFound, ValidationFailed
from workflows.inputs import (
    SLACK_USER_PATTERN,
    CustomerIn,
    Day,
    InvoiceIn,
    OrderIn,
    PaymentIn,
    ProductIn,
    ShipmentIn,
    SubscriptionCancelIn,
    SubscriptionRenewIn,
    UserIn,
)
from workflows.receivables import aging_by_currency, customer_position, held_for
from workflows.validation import in_years

API_ACTOR = "api"


class Unauthorized(Exception):
    pass


BEARER = HTTPBearer(auto_error=False, description="O2C_API_TOKEN")


def require_token(request: Request, _credentials: Annotated[
        HTTPAuthorizationCredentials | None, Security(BEARER)] = None) -> None:
    """Declares the bearer token (OpenAPI); `api.auth.BearerFirst` refused a wrong one before
    the body was read."""
    if not token_ok(request.app.state.deps.settings.o2c_api_token,
                    request.headers.get("authorization")):
        raise Unauthorized()


def known_query(request: Request) -> None:
    """Query parameters are strict like bodies: a typo (`?asof=`) would silently mean the
    default, so a parameter the route does not declare is a 422 naming it."""
    declared = {param.alias for param in request.scope["route"].dependant.query_params}
    unknown = [name for name in request.query_params if name not in declared]
    if unknown:
        raise ValidationFailed("; ".join(f"{name}: unknown query parameter" for name in unknown),
                               errors=[FieldError(name, "unknown query parameter")
                                       for name in unknown])


# Every route: a 401 without the token, a 422 for an unknown query parameter, a 503 while the
# database is unavailable.
router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token), Depends(known_query)],
                   responses=problems(401, 422, 503))
BODY = (400, 413, 422)  # a route with a JSON body: malformed, too large, invalid
CREATED: dict = {"status_code": 201, "response_description": "Created"}
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]
# Path keys: anything but a NUL (PostgreSQL cannot compare it) up to the column's length; an
# unknown key is a 404. An id beyond the id columns' range (a 22-digit id) is a 422, never an
# overflow in the database.
Key = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
RecordId = Annotated[int, Path(ge=1, le=MAX_RECORD_ID)]
SlackUserId = Annotated[str, Path(pattern=SLACK_USER_PATTERN)]
AsOf = Annotated[Day | None, Query()]


def _updated(model: type) -> dict:
    return {200: {"model": model, "description": "Updated (or unchanged)"}}


def _deps(request: Request):
    return request.app.state.deps


def _post(request: Request, key: str | None, body: dict, operation) -> JSONResponse:
    """`operation(session)` -> (status, answer model), once per Idempotency-Key."""
    deps = _deps(request)
    sent = len(request.headers.getlist("idempotency-key"))
    if sent > 1:  # FastAPI would take the first: a retry under the other one runs again
        raise ValidationFailed.of("Idempotency-Key",
                                  f"send one Idempotency-Key header, not {sent}")
    return idempotency.run(deps.db, scope=f"POST {request.url.path}", key=key, body=body,
                           operation=operation, on_commit=deps.notify_outbox)


def _upsert(request: Request, key: str | None, body: dict, operation) -> JSONResponse:
    """`_post` for master data, which a POST creates or updates: when another request created
    the same record at the same moment (two ERP workers syncing), the database refused our
    insert and stored nothing; run once more, as an update of that record, instead of
    answering 409."""
    try:
        return _post(request, key, body, operation)
    except idempotency.Clash:
        return _post(request, key, body, operation)


# -- users ---------------------------------------------------------------------------------------
@router.put("/users/{slack_user_id}", tags=["users"], response_model=out.UserOut,
            response_description="Updated",
            responses={201: {"model": out.UserOut, "description": "Created"},
                       **problems(409, *BODY)})
def put_user(slack_user_id: SlackUserId, body: UserIn, request: Request) -> JSONResponse:
    """A PUT is idempotent: when another request creates the same user (or grants the same
    role) at the same moment, the database refuses our insert; the PUT is then applied again
    to the user as that request left it, instead of answering 500."""
    deps = _deps(request)
    for attempt in range(2):
        try:
            with deps.db.transaction() as session:
                user, created = users.upsert_user(session, user_id=slack_user_id,
                                                  name=body.name, roles=body.roles,
                                                  email=body.email, timezone=body.timezone,
                                                  actor=API_ACTOR)
                data = serialize.user_out(user, users.roles_of(session, slack_user_id))
            break
        except IntegrityError:
            if attempt:
                raise Conflict("the user was changed by another request at the same time; "
                               "send the PUT again") from None
    return JSONResponse(data.model_dump(mode="json"), status_code=201 if created else 200)


# -- master data ---------------------------------------------------------------------------------
@router.post("/customers", tags=["customers"], **CREATED,
             response_model=out.CustomerOut,
             responses={**_updated(out.CustomerOut), **problems(409, *BODY)})
def post_customer(body: CustomerIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        customer, created, _ = masterdata.upsert_customer(session, body, actor=API_ACTOR)
        return (201 if created else 200), serialize.customer_out(customer)
    return _upsert(request, key, idempotency.request_of(body), op)


@router.post("/products", tags=["products"], **CREATED, response_model=out.ProductOut,
             responses={**_updated(out.ProductOut), **problems(409, *BODY)})
def post_product(body: ProductIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        product, created, _ = masterdata.upsert_product(session, body, actor=API_ACTOR)
        return (201 if created else 200), serialize.product_out(product)
    return _upsert(request, key, idempotency.request_of(body), op)


# -- orders and shipments ------------------------------------------------------------------------
@router.post("/orders", tags=["orders"], **CREATED, response_model=out.OrderOut,
             responses=problems(409, *BODY))
def post_order(body: OrderIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        order = orders.create_order(session, body, actor=API_ACTOR, source="api",
                                    now=_deps(request).clock.now())
        session.flush()
        return 201, serialize.order_out(queries.order_view(session, order.number))
    return _post(request, key, idempotency.request_of(body), op)


@router.post("/shipments", tags=["orders"], **CREATED, response_model=out.ShipmentOut,
             responses=problems(404, 409, *BODY))
def post_shipment(body: ShipmentIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        shipment = shipping.ship_order(session, order_number=body.order, carrier=body.carrier,
                                       tracking_number=body.tracking_number,
                                       shipped_at=body.shipped_at, lines=body.lines,
                                       actor=API_ACTOR, now=_deps(request).clock.now())
        return 201, serialize.shipment_out(shipment.id, queries.order_view(session, body.order))
    return _post(request, key, idempotency.request_of(body), op)


@router.get("/orders/{number}", tags=["orders"], responses=problems(404, 422))
def get_order(number: Key, request: Request) -> out.OrderOut:
    with _deps(request).db.read_session() as session:
        view = queries.order_view(session, number, with_history=True)
        if view is None:
            raise NotFound(f"no order {number}")
        return serialize.order_out(view)


# -- invoices ------------------------------------------------------------------------------------
@router.post("/invoices", tags=["invoices"], **CREATED, response_model=out.InvoiceOut,
             responses=problems(409, *BODY))
def post_invoice(body: InvoiceIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        invoice = invoicing.ingest_erp_invoice(session, body, actor=API_ACTOR)
        session.flush()
        return 201, serialize.invoice_out(queries.invoice_view(session, invoice.number))
    return _post(request, key, idempotency.request_of(body), op)


@router.get("/invoices/{number}", tags=["invoices"], responses=problems(404, 422))
def get_invoice(number: Key, request: Request) -> out.InvoiceOut:
    with _deps(request).db.read_session() as session:
        view = queries.invoice_view(session, number)
        if view is None:
            raise NotFound(f"no invoice {number}")
        return serialize.invoice_out(view)


# -- payments ------------------------------------------------------------------------------------
def payment_answer(session, payment) -> out.PaymentOut:
    view = queries.payment_view(session, payment)
    return serialize.payment_out(payment, view["allocations"], suggestions=view["suggestions"],
                                 matched_because=view["matched_because"])


@router.post("/payments", tags=["payments"], **CREATED, response_model=out.PaymentOut,
             responses={200: {"model": out.PaymentOut, "description": "Already recorded "
                              "under this external_id: the first one"},
                        **problems(409, *BODY)})
def post_payment(body: PaymentIn, request: Request, key: IdemKey = None) -> JSONResponse:
    def op(session):
        payment, created = cash_application.record_payment(
            session, body, actor=API_ACTOR, names=_deps(request).db.customer_names)
        session.flush()
        return (201 if created else 200), payment_answer(session, payment)
    # without a value_date, hashed as before the field existed: a retry across an upgrade
    # still replays its first answer
    unset = {"value_date"} if body.value_date is None else set()
    return _post(request, key, idempotency.request_of(body, exclude=unset), op)


@router.get("/payments/{payment_id}", tags=["payments"], responses=problems(404, 422))
def get_payment(payment_id: RecordId, request: Request) -> out.PaymentOut:
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
            moment = datetime.combine(date.fromisoformat(text), time.max, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.of("known_at", "must be a date (2026-07-01) or a datetime with "
                                  "its offset (2026-07-01T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise ValidationFailed.of("known_at", "needs a time zone, e.g. 2026-07-01T09:00:00Z")
    # in UTC within the years of `models.limits` (9999-12-31T23:59-12:00 is no moment of year
    # 9999 in UTC, and its day after is none at all)
    return in_years("known_at", in_years("known_at", moment).astimezone(UTC))


def _as_of(request: Request, as_of: date | None) -> date:
    """`?as_of=`, else today in the business time zone the books keep: the policy's (an admin
    may change it), as the revenue report, the jobs and the KPI snapshot take it."""
    return as_of or _deps(request).business_today()


# -- customers -----------------------------------------------------------------------------------
OPEN_INVOICES_LISTED = 200  # in a customer's answer; `open_invoice_count` says how many there are


@router.get("/customers/{external_id}", tags=["customers"], responses=problems(404, 422))
def get_customer(external_id: Key, request: Request, as_of: AsOf = None,
                 known_at: KnownAt = None) -> out.CustomerDetailOut:
    """The customer with its balances at the end of `as_of` (default today) by economic
    date; with `known_at`, as the books knew them then. Open invoices and `unapplied` (the
    payments not applied and the customer credit held for it, per currency) are today's."""
    known = known_at_of(known_at)
    with _deps(request).db.read_session() as session:
        customer = session.exec(select(Customer).where(
            Customer.external_id == external_id)).first()
        if customer is None:
            raise NotFound(f"no customer {external_id}")
        day = _as_of(request, as_of)
        position = customer_position(session, customer, day, known_at=known)
        return serialize.customer_detail_out(
            customer, position, as_of=day, known_at=known,
            open_invoices=queries.open_invoices(session, customer.id,
                                                limit=OPEN_INVOICES_LISTED),
            open_invoice_count=queries.open_invoice_count(session, customer.id),
            held=held_for(session, customer.id))


# -- reports -------------------------------------------------------------------------------------
def _csv(rows: list[list[str]]) -> Response:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return Response(out.getvalue(), media_type="text/csv")


CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}},
             "description": "JSON, or CSV with `format=csv`"}}


@router.get("/reports/aging", tags=["reports"], response_model=out.AgingReportOut,
            responses={**CSV, **problems(422)})
def report_aging(request: Request, as_of: AsOf = None, known_at: KnownAt = None,
                 format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
                 ) -> out.AgingReportOut | Response:
    """Open AR at the end of `as_of` (default today) by economic date: settlements count on
    the day the money moved, whenever they were recorded. `known_at`: as the books knew it."""
    known = known_at_of(known_at)
    as_of = _as_of(request, as_of)
    with _deps(request).db.read_session() as session:
        by_currency = aging_by_currency(session, as_of, known_at=known)
    if format == "csv":
        return _csv(serialize.aging_csv_rows(by_currency, as_of, known))
    return serialize.aging_report_out(as_of, known, by_currency)


@router.get("/reports/kpis", tags=["reports"], response_model=out.KpiReportOut,
            responses={**CSV, **problems(422)})
def report_kpis(request: Request, as_of: AsOf = None, known_at: KnownAt = None,
                format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
                ) -> out.KpiReportOut | Response:
    """The KPIs as of the end of `as_of` by economic date (`workflows.kpis`); `known_at`: as
    the books knew them then."""
    known = known_at_of(known_at)
    as_of = _as_of(request, as_of)
    with _deps(request).db.read_session() as session:
        report = kpi_workflow.compute(session, as_of, known_at=known, concurrently=True)
    data = kpi_workflow.to_json(report)
    if format == "csv":
        # a figure the JSON has as null (no home currency, nothing to rate) is an empty cell
        return _csv([["kpi", "value"], *([k, "" if v is None else str(v)]
                                         for k, v in kpi_workflow.flat(data).items())])
    return out.KpiReportOut.model_validate(data)


@router.get("/reports/revenue", tags=["reports"], response_model=out.RevenueReportOut,
            responses={**CSV, **problems(422)})
def report_revenue(request: Request,
                   from_: Annotated[str | None, Query(alias="from", max_length=7,
                                                      description="first month, YYYY-MM "
                                                      "(default: 11 months before `to`)")
                                    ] = None,
                   to: Annotated[str | None, Query(max_length=7, description="last month, "
                                                   "YYYY-MM (default: this month)")] = None,
                   format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
                   ) -> out.RevenueReportOut | Response:
    """Revenue recognition (SPEC §3) per month and currency: recognised (total and by revenue
    type), deferred and unbilled at month end (closed months as the close recorded them, open
    ones as the books stand now), and the waterfall of today's deferred balance by the month
    it will be recognised (`later`: not on any schedule)."""
    today = _deps(request).business_today()  # the policy's business time zone, as the close
    last = periods.parse_period(to, "to") if to else today.replace(day=1)
    first = periods.parse_period(from_, "from") if from_ else _months_before(last, 11)
    if first > last:
        raise ValidationFailed.of("from", "must not be after `to`")
    if len(revenue.month_firsts(first, last)) > revenue.MAX_REPORT_MONTHS:
        raise ValidationFailed.of("from", f"at most {revenue.MAX_REPORT_MONTHS} months at a "
                                  "time")
    with _deps(request).db.read_session() as session:
        data = revenue.to_json(revenue.report(session, first=first, last=last, today=today))
    if format == "csv":
        return _csv(revenue.to_rows(data))
    return out.RevenueReportOut.model_validate(data)


def _months_before(first: date, count: int) -> date:
    from workflows.revenue_schedule import add_months

    return add_months(first, -count)


# -- subscriptions -------------------------------------------------------------------------------
@router.post("/orders/{number}/lines/{line_no}/cancellation", tags=["subscriptions"],
             response_model=out.OrderOut, responses=problems(404, 409, *BODY))
def cancel_subscription(number: Key, line_no: Annotated[int, Path(ge=1, le=200)],
                        body: SubscriptionCancelIn, request: Request,
                        key: IdemKey = None) -> JSONResponse:
    """Stop a subscription billed by period from the first day of a period not invoiced yet
    (`effective`, default the next period to start after today: one under way is still
    invoiced): no later period is invoiced or recognised. 409 while a renewal of the line
    stands (naming that order, to be withdrawn first)."""
    deps = _deps(request)

    def op(session):
        subscriptions.cancel_subscription(
            session, order_number=number, line_no=line_no, reason=body.reason,
            effective=body.effective, actor=body.by or API_ACTOR, now=deps.clock.now())
        session.flush()
        return 200, serialize.order_out(queries.order_view(session, number))
    return _post(request, key, idempotency.request_of(body), op)


@router.post("/orders/{number}/lines/{line_no}/renewal", tags=["subscriptions"], **CREATED,
             response_model=out.OrderOut, responses=problems(404, 409, *BODY))
def renew_subscription(number: Key, line_no: Annotated[int, Path(ge=1, le=200)],
                       body: SubscriptionRenewIn, request: Request,
                       key: IdemKey = None) -> JSONResponse:
    """Renew a subscription line: a new order for the next term (from the day after it
    ends, as long as it, or to `service_end`), through the credit and discount checks. A line
    is renewed once (409 naming the renewal)."""
    deps = _deps(request)

    def op(session):
        renewed = subscriptions.renew_subscription(
            session, order_number=number, line_no=line_no, service_end=body.service_end,
            external_id=body.external_id, actor=body.by or API_ACTOR, now=deps.clock.now())
        session.flush()
        return 201, serialize.order_out(queries.order_view(session, renewed.number))
    return _post(request, key, idempotency.request_of(body), op)


# -- closed periods ------------------------------------------------------------------------------
@router.post("/periods/{period}/close", tags=["periods"], **CREATED,
             response_model=out.PeriodCloseOut,
             responses={200: {"model": out.PeriodCloseOut, "description": "Already closed (by "
                              "this close or a later one)"}, **problems(409, 422)})
def close_period(period: Key, request: Request, key: IdemKey = None) -> JSONResponse:
    """Close an AR month (and every month before it): from now on a settlement dated inside
    it is booked on the first day of the first open month. 201 when this closed it, 200 when
    it was already closed (by this close or a later one)."""
    deps = _deps(request)

    def op(session):
        row, created = periods.close_period(session, period=period, actor=API_ACTOR,
                                            now=deps.clock.now())
        return (201 if created else 200), serialize.period_close_out(row, requested=period,
                                                                     created=created)
    return _post(request, key, {"period": period}, op)


@router.get("/periods", tags=["periods"])
def get_periods(request: Request) -> out.PeriodsOut:
    with _deps(request).db.read_session() as session:
        rows = periods.closed_periods(session)
        return out.PeriodsOut(closed_through=rows[-1].period if rows else None,
                              closes=[serialize.period_out(row) for row in rows])
