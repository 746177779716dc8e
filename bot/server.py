"""The HTTP server: Slack at `POST /slack/events`, the REST API, health checks, and (only
when `O2C_SANDBOX` is on) the local sandbox. Background work — the outbox worker and the
scheduler — starts and stops with the app.

Every request body is limited to `MAX_BODY` bytes (1 MiB): a larger one is answered 413 as soon
as its Content-Length (or, for a chunked body, the bytes received so far) says so, without
reading the rest. The Bolt `App` is synchronous; it is dispatched in the thread pool so
concurrent Slack requests never wait for one another, and the event loop only ever awaits the
request body. A Slack request is verified before anything parses it (`bot.slack_request`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api import problems
from api.auth import BearerFirst
from api.backoffice import router as backoffice_router
from api.customer import router as customer_router
from api.inbound import pages as pay_pages
from api.inbound import router as inbound_router
from api.routes import Unauthorized
from api.routes import router as api_router
from api.webhooks import router as webhooks_router
from bot import observability
from bot.customer_pages import router as customer_pages_router
from bot.db import RETRY_AFTER, Database
from bot.deps import Deps, build_deps
from bot.outbox import OutboxWorker, make_integrations_worker, make_worker
from bot.settings import Settings
from bot.slack_app import LISTENER_THREADS, create_bolt_app
from bot.slack_request import MAX_BODY, Refused, check_headers, parse, verify
from workflows.errors import database_unavailable
from workflows.users import bootstrap_admins

log = logging.getLogger("o2c.server")


@dataclass
class Runtime:
    deps: Deps
    bolt: App
    listeners: ThreadPoolExecutor  # where Bolt runs the work after the acks (lazy listeners)
    worker: OutboxWorker | None = None
    integrations: OutboxWorker | None = None  # webhooks, HubSpot, Stripe (bot/integrations)
    scheduler: object | None = None
    extras: dict = field(default_factory=dict)


def build_runtime(settings: Settings, *, db: Database | None = None,
                  client: WebClient | None = None) -> Runtime:
    deps = build_deps(settings, db=db, client=client)
    listeners = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="o2c-listener")
    deps.background = listeners
    return Runtime(deps=deps, bolt=create_bolt_app(deps, listeners), listeners=listeners)


ADMINS_RETRY_SECONDS = 5.0


def bootstrap_admins_when_reachable(deps: Deps) -> None:
    """Make the `O2C_ADMINS` admins, now or — when the database cannot be reached at start-up
    (a restart of both, an outage) — as soon as it can, from a background thread. The server
    starts either way: `/readyz` says it is not ready, the API answers 503, one line is logged."""
    def attempt() -> bool:
        for tries_left in (1, 0):
            try:
                with deps.db.transaction() as session:
                    bootstrap_admins(session, deps.settings.o2c_admins)
                return True
            except IntegrityError:
                # another server starting at the same moment made the same admin first: the
                # next attempt sees its row
                if not tries_left:
                    raise
            except Exception as error:
                if not database_unavailable(error):
                    raise
                return False
        return False

    if attempt():
        return
    log.warning("database unreachable at start-up; serving anyway (/readyz: not ready), "
                "admins are set up once it answers")

    def retry() -> None:
        stop = deps.stopping
        while not stop.wait(ADMINS_RETRY_SECONDS):
            try:
                if attempt():
                    log.info("database reachable: admins set up")
                    return
            except Exception:
                log.exception("could not set up the admins")
                return

    threading.Thread(target=retry, name="o2c-bootstrap-admins", daemon=True).start()


def _parse_and_dispatch(bolt: App, text: str, query: str, headers: dict, request_id: str):
    """A verified body parsed (`Refused(400)` if it cannot be), then Bolt's dispatch up to the
    ack, timed and logged under the request id."""
    bolt_request = parse(text, query, headers)
    # (Bolt copies the context into the lazy listener's request)
    bolt_request.context[observability.CONTEXT_KEY] = request_id
    kind, command = observability.label_of(bolt_request.body)
    with observability.request_scope(request_id), \
            observability.timed(observability.ACK_SECONDS, kind, command):
        return bolt.dispatch(bolt_request)


def bolt_endpoint(bolt: App, signing_secret: str):
    """An ASGI endpoint that hands a Slack request to a sync Bolt app in the thread pool.

    A plain Starlette route (no FastAPI dependency solving): Slack's 3-second clock runs from
    here. The headers are checked before the body is read, the signature before the body is
    decoded or parsed (`bot.slack_request`); a refusal is one warning line, never a traceback.
    The event loop only awaits the body; parsing, Bolt's own verification and the listener's
    ack happen in a worker thread, so concurrent Slack requests never wait for one another;
    the work after the ack goes on in Bolt's listener executor (`bot.slack_app`)."""
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def slack_events(request: Request) -> Response:
        try:
            timestamp, signature = check_headers(request.headers)
            if verifier is None:
                raise Refused(401, "SLACK_SIGNING_SECRET is not set")
            body = await request.body()  # at most MAX_BODY bytes (the app's body limit)
            text = verify(verifier, body, timestamp, signature)
            request_id = observability.new_request_id(request.headers.get("x-request-id"))
            # one trip to a worker thread: parsing and Bolt's dispatch up to the ack (each
            # trip waits for the GIL again when the lazy listeners keep the CPUs busy)
            bolt_response = await run_in_threadpool(
                _parse_and_dispatch, bolt, text, request.url.query,
                dict(request.headers.items()), request_id)
        except Refused as refused:
            log.warning("refused a Slack request from %s: %s (%d)",
                        request.client.host if request.client else "?", refused.reason,
                        refused.status)
            return Response(status_code=refused.status)
        headers = {k: v[0] for k, v in bolt_response.headers.items()
                   if v and k.lower() != "content-length"}
        headers["X-Request-Id"] = request_id
        return Response(content=bolt_response.body, status_code=bolt_response.status,
                        headers=headers)

    return slack_events


def oauth_endpoint(handle):
    """`/slack/install` and `/slack/oauth_redirect`: a GET handed to Bolt's OAuth flow
    (`slack_bolt.oauth.OAuthFlow`: the `state` cookie and value issued and verified there) in
    the thread pool (it reads and writes the database and calls oauth.v2.access)."""

    async def endpoint(request: Request) -> Response:
        bolt_request = BoltRequest(body="", query=request.url.query,
                                   headers=dict(request.headers.items()))
        bolt_response = await run_in_threadpool(handle, bolt_request)
        response = Response(content=bolt_response.body, status_code=bolt_response.status)
        for name, values in bolt_response.headers.items():
            if name.lower() != "content-length":
                for value in values:
                    response.headers.append(name, value)
        return response

    return endpoint


def create_app(settings: Settings, *, db: Database | None = None,
               client: WebClient | None = None, background: bool = True) -> FastAPI:
    runtime = build_runtime(settings, db=db, client=client)
    deps = runtime.deps

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        bootstrap_admins_when_reachable(deps)
        if background and settings.o2c_outbox_worker:
            runtime.worker = make_worker(deps, settings, poll_interval=1.0)
            runtime.worker.start()
            runtime.integrations = make_integrations_worker(deps, settings,
                                                            poll_interval=2.0)
            runtime.integrations.start()
        if background and settings.o2c_scheduler:
            from bot.scheduler import build_scheduler

            runtime.scheduler = build_scheduler(deps)
            runtime.scheduler.start()
        try:
            yield
        finally:
            deps.stopping.set()
            if runtime.scheduler is not None:
                runtime.scheduler.shutdown(wait=False)
            # answers still being built finish first (their commits wake the worker)
            await run_in_threadpool(runtime.listeners.shutdown, wait=True)
            if runtime.worker is not None:
                runtime.worker.stop()
            if runtime.integrations is not None:
                runtime.integrations.stop()

    app = FastAPI(title="o2c-bot", version="0.1.0", lifespan=lifespan,
                  description="Order-to-cash in Slack: REST ingestion API (SPEC §4). Request "
                  f"bodies are limited to {MAX_BODY // 1024} KiB (413 beyond).",
                  max_body_size=MAX_BODY)
    app.state.deps = deps
    app.state.runtime = runtime
    problems.install(app)
    app.add_middleware(BearerFirst, token=lambda: settings.o2c_api_token)  # 401 before the body

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return problems.problem(401, "Unauthorized", "send Authorization: Bearer <O2C_API_TOKEN>",
                                headers={"WWW-Authenticate": "Bearer"},
                                instance=request.url.path)

    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret \
        else ""
    app.add_route("/slack/events", bolt_endpoint(runtime.bolt, secret), methods=["POST"])
    if runtime.bolt.oauth_flow is not None:  # OAuth install (SLACK_CLIENT_ID/SECRET)
        flow = runtime.bolt.oauth_flow
        app.add_route(flow.install_path, oauth_endpoint(flow.handle_installation),
                      methods=["GET"])
        app.add_route(flow.redirect_uri_path, oauth_endpoint(flow.handle_callback),
                      methods=["GET"])

    add_health_checks(app, deps)
    add_metrics(app, deps)
    app.include_router(api_router)
    app.include_router(backoffice_router)
    app.include_router(webhooks_router)
    app.include_router(customer_router)  # issue 19: shipment events
    app.include_router(customer_pages_router)  # issue 19: the customer's pages, /c/...
    app.include_router(inbound_router)  # /webhooks/stripe, /webhooks/hubspot
    app.include_router(pay_pages)  # /pay/<token>
    app.state.stripe = None
    if settings.stripe_enabled:
        from bot.stripe_pay import StripeGateway

        app.state.stripe = StripeGateway(settings.secret("stripe_api_key") or "")

    if settings.o2c_sandbox:
        from sandbox.web import mount_sandbox  # only imported when explicitly enabled

        mount_sandbox(app, runtime)
    return app


def schema_heads() -> tuple[str, set[str | None]]:
    """This code's migration head, and the revisions before it (a database at one of them, or
    at none, is behind). A revision this code does not know is newer: during a rolling
    upgrade (migrate first, then restart the processes) the old processes stay ready."""
    from alembic.script import ScriptDirectory

    from bot.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    return head, {None} | {r.revision for r in script.walk_revisions() if r.revision != head}


def add_health_checks(app: FastAPI, deps: Deps) -> None:
    """`/healthz` (the process answers) and `/readyz` (its database is reachable and
    migrated), both outside the OpenAPI description."""

    head, behind = schema_heads()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            with deps.db.read_session() as session:
                session.exec(sa.text("SELECT 1"))
                version = session.exec(sa.text("SELECT version_num FROM alembic_version")).first()
        except Exception as exc:
            log.warning("not ready: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable or not "
                                 "migrated (run o2c migrate)"}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER)})
        schema = version[0] if version else None
        if schema in behind:  # a revision this code knows, older than its head
            log.warning("not ready: database schema %s, this code needs %s", schema, head)
            return JSONResponse({"status": "unavailable", "schema": schema, "needs": head,
                                 "database": "migrations are behind (run o2c migrate)"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
        return JSONResponse({"status": "ready", "schema": schema})


def add_metrics(app: FastAPI, deps: Deps) -> None:
    """`/metrics` in Prometheus' text format (`bot.observability`), outside the OpenAPI
    description: this process's latencies, deliveries and jobs, and the outbox's depth."""
    observability.stamp_outbox_rows()
    observability.watch_outbox(deps.db, deps.clock)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = observability.exposition()
        return Response(content=body, media_type=content_type)
