"""Pages people reach from a link in an e-mail — the customer's own pages (`/c/…`,
`bot.customer_pages`) and the "Pay now" page (`/pay/…`, `api.inbound`): while the database
is unreachable (restarting, down) they answer a private 503 page saying nothing was changed
and to come back, with `Retry-After`, not the API's JSON problem (which speaks of
Idempotency-Keys to a customer). Anything else goes on to the app's handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from bot import db


def unavailable_page_route(page: Callable[[], Response], *, where: str,
                           log: logging.Logger) -> type[APIRoute]:
    """A route class for an `APIRouter(route_class=…)` whose pages answer `page()` (a 503
    page) while the database is unreachable; `where` names them in the one warning line."""

    class PageRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def page_or_503(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    if not db.unavailable(exc):
                        raise
                    log.warning("database unavailable path=%s: %s", where,
                                str(getattr(exc, "orig", None) or exc).splitlines()[0][:200])
                    answer = page()
                    answer.headers["retry-after"] = str(db.RETRY_AFTER)
                    return answer

            return page_or_503

    return PageRoute
