"""The REST API's bearer token, checked before anything else.

`BearerFirst` is a plain ASGI middleware: a request to `/api/v1` without the right
`Authorization: Bearer <O2C_API_TOKEN>` gets its 401 before its body is read or parsed (SPEC
§5.1 spirit: an unauthenticated caller reaches no parser, whatever it sends). The router's
`require_token` dependency checks the same and declares it in the OpenAPI description.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import SecretStr

from api import problems

PREFIX = "/api/v1"
DETAIL = "send Authorization: Bearer <O2C_API_TOKEN>"


def token_ok(expected: SecretStr | None, authorization: str | None) -> bool:
    """Constant-time check of an `Authorization` header against the configured token."""
    scheme, _, token = (authorization or "").partition(" ")
    return (expected is not None and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode()))


class BearerFirst:
    def __init__(self, app: Callable[..., Awaitable[None]], *,
                 token: Callable[[], SecretStr | None]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"),
                          b"")
            if not token_ok(self.token(), header.decode("latin-1")):
                response = problems.problem(401, "Unauthorized", DETAIL,
                                            headers={"WWW-Authenticate": "Bearer"},
                                            instance=path)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
