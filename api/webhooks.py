"""`/api/v1/webhooks`: outbound webhook subscriptions (SPEC §4; `workflows.webhooks`).

`POST` answers with the signing `secret` once (an `Idempotency-Key` replay of that request
gives the same first answer); `GET` lists subscriptions without their secrets; `DELETE`
removes one (its log stays); `GET /webhooks/{id}/deliveries` is its delivery log;
`POST /webhooks/{id}/rotate-secret` answers a new secret once (the old one signs beside it
for the grace period).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from api import idempotency
from api import responses as out
from api.problems import responses as problems
from api.routes import (
    API_ACTOR,
    BODY,
    CREATED,
    IdemKey,
    RecordId,
    _deps,
    _post,
    known_query,
    require_token,
)
from models import EVENT_TYPES, WebhookDelivery, WebhookEvent, WebhookSubscription
from workflows import webhooks
from workflows.inputs import WebhookIn

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token), Depends(known_query)],
                   tags=["webhooks"], responses=problems(401, 422, 503))


def subscription_out(row: WebhookSubscription) -> out.WebhookOut:
    return out.WebhookOut(id=row.id, url=row.url, events=list(row.events),
                          description=row.description, status=row.status,
                          created_at=row.created_at, failing_since=row.failing_since,
                          disabled_at=row.disabled_at, disabled_reason=row.disabled_reason)


def delivery_out(row: WebhookDelivery, event: WebhookEvent) -> out.WebhookDeliveryOut:
    return out.WebhookDeliveryOut(
        id=row.id, event=out.WebhookEventOut(id=event.id, webhook_id=event.uid,
                                             type=event.type, timestamp=event.occurred_at),
        attempt=row.attempt, attempted_at=row.attempted_at, ok=row.ok,
        status_code=row.status_code, error=row.error, duration_ms=row.duration_ms)


@router.post("/webhooks", **CREATED, response_model=out.WebhookCreatedOut,
             responses=problems(409, *BODY))
def post_webhook(body: WebhookIn, request: Request, key: IdemKey = None) -> JSONResponse:
    """Subscribe a URL to event types. The answer carries the signing `secret` (Standard
    Webhooks, `whsec_...`): store it, it is not shown again."""
    allow_private = _deps(request).settings.o2c_webhooks_allow_private
    # the name's addresses are looked up (up to seconds) before the transaction, which on
    # SQLite holds the one write lock once the Idempotency-Key is written
    webhooks.check_url(body.url, allow_private=allow_private)

    def op(session):
        row = webhooks.subscribe(session, url=body.url, events=body.events,
                                 description=body.description, actor=API_ACTOR,
                                 allow_private=allow_private, resolve=False)
        return 201, out.WebhookCreatedOut(**subscription_out(row).model_dump(),
                                          secret=row.secret)
    return _post(request, key, idempotency.request_of(body), op)


@router.post("/webhooks/{subscription_id}/rotate-secret", **CREATED,
             response_model=out.WebhookSecretOut, responses=problems(404))
def rotate_secret(subscription_id: RecordId, request: Request,
                  key: IdemKey = None) -> JSONResponse:
    """A new signing secret, answered once (as at creation); the previous one keeps signing
    beside it for `O2C_WEBHOOKS_SECRET_GRACE_HOURS` (default 24), so each delivery carries
    both signatures meanwhile (Standard Webhooks rotation)."""
    deps = _deps(request)
    grace = timedelta(hours=deps.settings.o2c_webhooks_secret_grace_hours)

    def op(session):
        row = webhooks.rotate_secret(session, subscription_id=subscription_id,
                                     actor=API_ACTOR, now=deps.clock.now(), grace=grace)
        return 201, out.WebhookSecretOut(id=row.id, secret=row.secret,
                                         previous_secret_until=row.previous_secret_until)
    return _post(request, key, {"subscription": subscription_id}, op)


@router.get("/webhooks", response_model=out.WebhookListOut)
def get_webhooks(request: Request) -> out.WebhookListOut:
    with _deps(request).db.read_session() as session:
        return out.WebhookListOut(
            webhooks=[subscription_out(row) for row in webhooks.subscriptions(session)],
            event_types=list(EVENT_TYPES))


@router.delete("/webhooks/{subscription_id}", status_code=204, response_class=Response,
               responses=problems(404))
def delete_webhook(subscription_id: RecordId, request: Request) -> Response:
    with _deps(request).db.transaction() as session:
        webhooks.delete_subscription(session, subscription_id=subscription_id,
                                     actor=API_ACTOR)
    return Response(status_code=204)


@router.get("/webhooks/{subscription_id}/deliveries", response_model=out.WebhookDeliveriesOut,
            responses=problems(404))
def get_deliveries(subscription_id: RecordId, request: Request,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   before: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None
                   ) -> out.WebhookDeliveriesOut:
    """Every delivery attempt, newest first (`?before=<id>` pages back)."""
    with _deps(request).db.read_session() as session:
        rows = webhooks.deliveries(session, subscription_id, limit=limit, before_id=before)
        return out.WebhookDeliveriesOut(deliveries=[delivery_out(d, e) for d, e in rows])
