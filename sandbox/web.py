"""The browser sandbox: try the whole bot in a Slack-like page, no Slack workspace needed.

``mount_sandbox(app, runtime)`` (called by :func:`bot.server.create_app` only when
``O2C_SANDBOX=true``) mounts under ``/sandbox``, in the same process as the bot:

* ``/sandbox/slack/api/<method>`` -- the Slack stand-in's Web API (:class:`SlackWebAPI`); the
  bot's ``WebClient`` calls it because ``SLACK_API_URL`` points here;
* ``/sandbox/slack/response/<id>`` -- the response URLs the stand-in mints for interactions;
* ``/sandbox/api/...`` -- a small JSON API for the page: state (long-poll), slash commands,
  clicks, select options, modal submit/close, App Home, time travel. Every action reaches the
  bot as a Slack-signed request to ``POST /slack/events`` (:class:`~sandbox.driver.SlackDriver`);
* ``/sandbox/`` -- the page itself (``sandbox/static``: plain HTML, JS and CSS; no build step,
  nothing loaded from the network).

Safety rule -- the sandbox can never be reached in production by accident:

1. it is off unless ``O2C_SANDBOX=true``; off, nothing is mounted (``/sandbox*`` is 404) and
   this module is not even imported;
2. on, the app refuses to start unless ``SLACK_API_URL`` is this sandbox's own Web API on a
   loopback address (``http://127.0.0.1:<port>/sandbox/slack/api/``): a bot wired to a real
   Slack workspace can never have the sandbox, and vice versa; ``o2c serve`` also refuses a
   non-loopback ``--host`` (:func:`check_bind_host`);
3. on, the app also refuses to start unless ``DATABASE_URL`` is an SQLite file made by
   ``o2c demo`` (marked with ``PRAGMA application_id``, see :mod:`bot.demo`): whoever reaches
   the sandbox acts as any user, so it must never sit on real data -- not even behind a local
   reverse proxy that hides where requests come from (:func:`check_demo_database`);
4. every ``/sandbox*`` request must come from a loopback client *and* name a loopback ``Host``
   (stops remote clients and DNS-rebinding pages) *and* carry no proxy header
   (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``: a browser never sends them, a
   proxy does), else 404; page actions must be same-origin JSON (stops cross-site form posts).

Threads: sync routes run in the thread pool, so the bot's ``WebClient`` calling the stand-in
inside this same server never waits on the event loop; the long-poll is async and only reads a
counter. Nothing holds the stand-in's lock while calling the bot.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from datetime import date
from datetime import time as wall_time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bot.settings import Settings, SettingsError
from sandbox.driver import SlackDriver
from sandbox.webapi import SlackWebAPI
from sandbox.workspace import ActionFailed, Workspace

log = logging.getLogger("sandbox.web")

PREFIX = "/sandbox"
SLACK_API_PATH = f"{PREFIX}/slack/api/"
STATIC = Path(__file__).resolve().parent / "static"
LONG_POLL_MAX = 20.0
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: https: http:; script-src 'self'; "
     b"style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SandboxRefused(SettingsError):
    """The sandbox was switched on in a configuration where it would not be safe."""


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1`` (brackets and ports allowed)."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str) -> None:
    """``o2c serve --host``: with the sandbox on, listen on loopback only."""
    if not is_loopback_host(host):
        raise SandboxRefused(f"O2C_SANDBOX is on: refusing to listen on {host}; the sandbox is "
                             "for this computer only (use --host 127.0.0.1, or unset "
                             "O2C_SANDBOX)")


def sandbox_origin(settings: Settings) -> str:
    """``http://127.0.0.1:<port>`` from ``SLACK_API_URL``, which must point at this sandbox."""
    parts = urlsplit(settings.slack_api_url)
    if (parts.scheme != "http" or not is_loopback_host(parts.hostname)
            or parts.path != SLACK_API_PATH):
        raise SandboxRefused(
            "O2C_SANDBOX is on, so SLACK_API_URL must be the sandbox's own Web API on this "
            f"computer (http://127.0.0.1:<PORT>{SLACK_API_PATH}), never a real Slack; "
            "`o2c demo` sets this up")
    if not (settings.slack_bot_token or settings.oauth_enabled) \
            or not settings.slack_signing_secret:
        raise SandboxRefused("O2C_SANDBOX needs SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and "
                             "SLACK_CLIENT_SECRET) and SLACK_SIGNING_SECRET (any values; "
                             "`o2c demo` generates them)")
    return f"{parts.scheme}://{parts.netloc}"


def check_demo_database(url: str) -> None:
    """The sandbox only ever runs on a database ``o2c demo`` created (never on real data)."""
    from sqlalchemy.engine import make_url

    from bot.demo import _is_demo_database

    try:
        parsed = make_url(url)
        path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    except Exception:
        path = None
    if not path or path == ":memory:" or not _is_demo_database(Path(path)):
        raise SandboxRefused("O2C_SANDBOX is on, so DATABASE_URL must be an SQLite database "
                             "created by `o2c demo` (the sandbox lets anyone act as any user, "
                             "so it never runs on real data); run `make demo`, or unset "
                             "O2C_SANDBOX")


def mount_sandbox(app: FastAPI, runtime: Any) -> Workspace:
    """Mount the stand-in, the page and its JSON API under ``/sandbox`` (see module doc)."""
    settings = runtime.deps.settings
    origin = sandbox_origin(settings)
    for url in {settings.database_url, runtime.deps.db.url}:
        check_demo_database(url)
    # OAuth install (`o2c demo --oauth`): no static bot token; the app installs itself at
    # /slack/install through the sandbox's authorize page (/sandbox/oauth/authorize)
    static_token = (settings.slack_bot_token.get_secret_value() if settings.slack_bot_token
                    else "xoxb-never-issued-" + secrets.token_urlsafe(16))
    api = SlackWebAPI(bot_token=static_token, base_url=f"{origin}{PREFIX}/slack")
    if settings.oauth_enabled:
        api.enable_oauth(settings.slack_client_id or "",
                         settings.secret("slack_client_secret") or "", expires_in=12 * 3600)
    driver = SlackDriver(f"{origin}/slack/events",
                         settings.slack_signing_secret.get_secret_value(), api=api,
                         team_id=api.team_id, api_app_id=api.app_id,
                         team_domain=api.team_domain, bot_user_id=api.bot_user_id)
    workspace = Workspace(api, driver, runtime.deps)
    workspace.ensure_channels()
    workspace.sync_directory()
    app.mount(PREFIX, LocalOnly(build_sandbox_app(workspace, origin)))
    app.state.sandbox = workspace
    runtime.extras["sandbox"] = workspace
    log.warning("local Slack sandbox enabled at %s/ (loopback only; never in production)",
                PREFIX)
    return workspace


PROXY_HEADERS = {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                 b"x-real-ip", b"via"}


class LocalOnly:
    """ASGI wrapper: 404 unless the client and the ``Host`` are loopback and no proxy header
    is present; adds a strict CSP."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                     if k == b"host"), None)
        proxied = any(k in PROXY_HEADERS for k, _ in scope.get("headers", ()))
        if proxied or not (is_loopback_host(client) and is_loopback_host(host)):
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin_json(request: Request) -> None:
    """Page actions: JSON only, from this origin (a cross-site form or fetch is refused)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ActionFailed(415, "send application/json")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise ActionFailed(403, "cross-origin request refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ActionFailed(403, "cross-site request refused")


# -- request bodies ------------------------------------------------------------------------

class Surface(BaseModel):
    """Where an element is: a channel message, one of the user's ephemerals, or a view."""

    kind: Literal["message", "ephemeral", "view"]
    channel: str | None = None
    ts: str | None = None
    view_id: str | None = None


class UserIn(BaseModel):
    user: str


class TextIn(UserIn):
    channel: str
    text: str  # its length is checked by the workspace, with a short answer


class ClickIn(UserIn):
    surface: Surface
    action_id: str
    block_id: str | None = None
    value: Any = None
    selected: Any = None
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)


class SuggestIn(UserIn):
    surface: Surface
    action_id: str
    block_id: str | None = None
    value: str = ""


class ViewIn(UserIn):
    view_id: str
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TimeTravelIn(UserIn):
    job: str
    as_of: date
    at: wall_time = wall_time(9)  # wall time in the admin's own time zone


def build_sandbox_app(ws: Workspace, origin: str) -> FastAPI:
    from sandbox import checkout

    sub = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    acting = [Depends(same_origin_json)]

    @sub.exception_handler(ActionFailed)
    async def _failed(request: Request, exc: ActionFailed) -> JSONResponse:
        return JSONResponse({"ok": False, "error": exc.detail}, status_code=exc.status)

    # the stand-in's Web API and response URLs (the bot's WebClient and Bolt's respond())
    @sub.api_route("/slack/api/{method}", methods=["GET", "POST"], include_in_schema=False)
    def slack_web_api(method: str, request: Request, body: bytes = Depends(_body)) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return _raw(ws.api.dispatch_http(request.method, f"/api/{method}{query}",
                                         dict(request.headers), body))

    @sub.post("/slack/response/{url_id}", include_in_schema=False)
    def slack_response_url(url_id: str, request: Request,
                           body: bytes = Depends(_body)) -> Response:
        return _raw(ws.api.dispatch_http("POST", f"/response/{url_id}", dict(request.headers),
                                         body))

    # Slack's "Allow" page of an OAuth install (`o2c demo --oauth`): the sandbox's admin (or
    # `?user=`) allows it at once and is sent back to the app's redirect URL with a code
    @sub.get("/oauth/authorize", include_in_schema=False)
    def oauth_authorize(state: str = "", client_id: str = "", scope: str = "",
                        user: str = "") -> Response:
        if not ws.deps.settings.oauth_enabled or client_id != ws.deps.settings.slack_client_id:
            raise ActionFailed(404, "this sandbox does not install apps with that client id")
        admins = ws.deps.settings.o2c_admins
        installer = ws._user(user or (admins[0] if admins else ""))
        code = ws.api.authorize(installer, scopes=scope or "chat:write")
        query = urlencode({"code": code, "state": state})
        return RedirectResponse(f"{origin}/slack/oauth_redirect?{query}", status_code=302)

    # the page
    @sub.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    sub.mount("/static", StaticFiles(directory=STATIC), name="static")

    # the page's JSON API
    @sub.get("/api/state")
    async def state(request: Request, since: int = -1, wait: float = LONG_POLL_MAX) -> dict:
        """The whole workspace; with ``since``, waits (up to 20 s) for a newer version.
        A page that goes away ends its wait (so the server can shut down promptly)."""
        deadline = time.monotonic() + min(max(wait, 0.0), LONG_POLL_MAX)
        while ws.api.version <= since and time.monotonic() < deadline:
            if await request.is_disconnected():
                return {}
            await asyncio.sleep(0.1)
        return await run_in_threadpool(ws.state)

    @sub.get("/api/jobs")
    def list_jobs() -> dict:
        return {"jobs": ws.jobs(), "clock": ws.clock()}

    @sub.post("/api/slash", dependencies=acting)
    def slash(body: TextIn) -> dict:
        return ws.slash(body.user, body.channel, body.text)

    @sub.post("/api/message", dependencies=acting)
    def message(body: TextIn) -> dict:
        return ws.post(body.user, body.channel, body.text)

    @sub.post("/api/click", dependencies=acting)
    def click(body: ClickIn) -> dict:
        return ws.click(body.user, body.surface.model_dump(), body.action_id,
                        block_id=body.block_id, value=body.value, selected=body.selected,
                        values=body.values)

    @sub.post("/api/suggest", dependencies=acting)
    def suggest(body: SuggestIn) -> dict:
        return ws.suggest(body.user, body.surface.model_dump(), body.action_id, body.value,
                          block_id=body.block_id)

    @sub.post("/api/submit", dependencies=acting)
    def submit(body: ViewIn) -> dict:
        return ws.submit(body.user, body.view_id, body.values)

    @sub.post("/api/close", dependencies=acting)
    def close(body: ViewIn) -> dict:
        return ws.close(body.user, body.view_id)

    @sub.post("/api/page-loaded", dependencies=acting)
    def page_loaded() -> dict:
        return ws.page_loaded()

    @sub.post("/api/home", dependencies=acting)
    def home(body: UserIn) -> dict:
        return ws.open_home(body.user)

    @sub.post("/api/time-travel", dependencies=acting)
    def time_travel(body: TimeTravelIn) -> dict:
        return ws.time_travel(body.user, body.job, body.as_of, body.at)

    @sub.post("/api/time-travel/reset", dependencies=acting)
    def back_to_now(body: UserIn) -> dict:
        return ws.back_to_now(body.user)

    # the stand-in for Stripe's payment page behind "Pay now" links (sandbox/checkout.py)
    @sub.get("/checkout/{token}", include_in_schema=False)
    def checkout_page(token: str) -> FileResponse:
        return FileResponse(STATIC / "checkout.html", media_type="text/html")

    @sub.get("/api/checkout/{token}")
    def checkout_info(token: str) -> dict:
        return checkout.checkout_info(ws.deps, token)

    @sub.post("/api/checkout/{token}/pay", dependencies=acting)
    def checkout_pay(token: str) -> dict:
        return checkout.pay(ws.deps, origin, token)

    return sub


async def _body(request: Request) -> bytes:
    return await request.body()


def _raw(answer: tuple[int, dict, bytes]) -> Response:
    status, headers, payload = answer
    media = headers.pop("Content-Type", None)
    return Response(content=payload, status_code=status, headers=headers, media_type=media)
