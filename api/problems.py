"""RFC 9457 problem details for every error the REST API returns.

`errors` names the bad fields as dotted paths (`lines[0].quantity`), so an integration can
point at the exact input it must fix. Nothing here leaks internals: unexpected errors become a
500 with a reference id that is also in the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot import db
from bot.observability import LINK_TOKEN
from workflows.errors import DomainError

log = logging.getLogger("o2c.api")
PROBLEM = "application/problem+json"


class FieldProblem(BaseModel):
    field: str = Field(description="the input at fault: `lines[0].quantity`, a header "
                       "(`Idempotency-Key`), a query parameter, or `body`")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`), the body of every error."""

    model_config = ConfigDict(extra="allow")  # RFC 9457 extension members

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldProblem] | None = None


WHEN = {
    400: "Malformed JSON: the body is not valid JSON",
    401: "No bearer token, or the wrong one (`Authorization: Bearer <O2C_API_TOKEN>`)",
    403: "The Slack user named in the body (`by`, `opened_by`, `requested_by`) may not do "
         "this; the refusal is audited",
    404: "No such record",
    409: "Conflict: the Idempotency-Key was used with another body, the record exists or "
         "its state does not allow this; nothing was changed",
    413: "The request body is too large",
    422: "Invalid input; `errors` names each field at fault. Nothing was stored",
    503: "The database is unavailable; nothing was stored: retry after `Retry-After` seconds",
}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait before retrying",
                          "schema": {"type": "string"}}},
}


def responses(*statuses: int) -> dict[int | str, dict]:
    """The problems a route can answer with, for its OpenAPI description (`responses=`)."""
    return {status: {"model": Problem, "description": WHEN[status],
                     **({"headers": HEADERS[status]} if status in HEADERS else {})}
            for status in statuses}


def document(app: FastAPI) -> dict:
    """The OpenAPI document, with every error described as what it is: a `Problem` in
    `application/problem+json` (FastAPI would list it as `application/json`)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for operation in (op for path in schema.get("paths", {}).values()
                          for op in path.values()):
            answers = operation.get("responses", {})
            for status, response in answers.items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM] = content.pop("application/json")
            operation["responses"] = dict(sorted(answers.items()))
    return app.openapi_schema


def problem(status: int, title: str, detail: str | None = None, *,
            errors: list[dict] | None = None, type_: str = "about:blank",
            instance: str | None = None, headers: dict | None = None,
            **extra: object) -> JSONResponse:
    body: dict = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: tuple | list) -> str:
    """('body', 'lines', 0, 'quantity') -> 'lines[0].quantity'."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


class TooLargeAsProblem:
    """FastAPI's body limit (`max_body_size`, Starlette's `RequestBodyLimitMiddleware`) answers
    413 itself in `text/plain`, outside every middleware and exception handler of the app.
    Wrapped around the whole stack, this turns that answer into the problem every other error
    is (the limiter's other headers kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_problem(message: dict) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = message.get("headers", [])
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if not content_type.startswith(PROBLEM.encode()):
                    replaced = True
                    body = json.dumps({"type": "about:blank", "title": "Content Too Large",
                                       "status": 413, "detail": "the request body is over "
                                       "the limit", "instance": scope.get("path")}).encode()
                    kept = [(k, v) for k, v in headers
                            if k.lower() not in (b"content-type", b"content-length")]
                    await send({**message, "headers": [
                        *kept, (b"content-type", PROBLEM.encode()),
                        (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            if not replaced:  # else the limiter's own text body, already answered
                await send(message)

        await self.app(scope, receive, send_problem)


def install(app: FastAPI) -> None:
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    build_stack = app.build_middleware_stack  # outermost: around the body limit too
    app.build_middleware_stack = lambda: TooLargeAsProblem(build_stack())  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                return problem(400, "Malformed JSON", "the request body is not valid JSON",
                               errors=[{"field": "body", "detail": err.get("msg", "")}],
                               instance=request.url.path)
            errors.append({"field": field_path(err.get("loc", ())),
                           "detail": err.get("msg", "invalid")})
        detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors)
        return problem(422, "Invalid input", detail, errors=errors, instance=request.url.path)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        errors = [{"field": e.field, "detail": e.detail} for e in exc.errors]
        return problem(exc.status, exc.title, exc.detail, errors=errors or None,
                       instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None),
                       instance=request.url.path)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not db.unavailable(exc):
            return await _unexpected(request, exc)
        log.warning("database unavailable path=%s: %s", _logged(request.url.path),
                    str(getattr(exc, "orig", None) or exc).splitlines()[0][:200])
        return service_unavailable(request.url.path)

    app.add_exception_handler(sa.exc.DBAPIError, _database)
    app.add_exception_handler(sa.exc.TimeoutError, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled API error ref=%s path=%s", ref, _logged(request.url.path))
        return problem(500, "Internal error", f"reference {ref}", instance=request.url.path)


def _logged(path: str) -> str:
    """A path as a log line shows it: a customer link's token left out (`/pay/<link>`)."""
    return LINK_TOKEN.sub(r"\1<link>", path)


def service_unavailable(path: str | None = None) -> JSONResponse:
    """503 while the database is unreachable (e.g. restarting): nothing was stored, retry."""
    return problem(503, "Service unavailable", "the database is unavailable; retry in "
                   f"{db.RETRY_AFTER} seconds (a POST with the same Idempotency-Key)",
                   instance=path,
                   headers={"Retry-After": str(db.RETRY_AFTER)})
