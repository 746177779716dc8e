"""RFC 9457 problem details for every error the REST API returns.

`errors` names the bad fields as dotted paths (`lines[0].quantity`), so an integration can
point at the exact input it must fix. Nothing here leaks internals: unexpected errors become a
500 with a reference id that is also in the log.
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot import db
from workflows.errors import DomainError

log = logging.getLogger("o2c.api")
PROBLEM = "application/problem+json"


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


def install(app: FastAPI) -> None:
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
        log.warning("database unavailable path=%s: %s", request.url.path,
                    str(getattr(exc, "orig", None) or exc).splitlines()[0][:200])
        return service_unavailable(request.url.path)

    app.add_exception_handler(sa.exc.DBAPIError, _database)
    app.add_exception_handler(sa.exc.TimeoutError, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled API error ref=%s path=%s", ref, request.url.path)
        return problem(500, "Internal error", f"reference {ref}", instance=request.url.path)


def service_unavailable(path: str | None = None) -> JSONResponse:
    """503 while the database is unreachable (e.g. restarting): nothing was stored, retry."""
    return problem(503, "Service unavailable", "the database is unavailable; retry in "
                   f"{db.RETRY_AFTER} seconds (a POST with the same Idempotency-Key)",
                   instance=path,
                   headers={"Retry-After": str(db.RETRY_AFTER)})
