"""`/api/v1/webhooks`: outbound webhook subscriptions (SPEC §4; `workflows.webhooks`).

`POST` answers with the signing `secret` once (an `Idempotency-Key` replay of that request
gives the same first answer); `GET` lists subscriptions without their secrets; `DELETE`
removes one (its log stays); `GET /webhooks/{id}/deliveries` is its delivery log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, StrictStr, StringConstraints

from api.routes import API_ACTOR, IdemKey, RecordId, _deps, _post, require_token
from api.schemas import Strict
from models import EVENT_TYPES, WebhookDelivery, WebhookEvent, WebhookSubscription
from workflows import webhooks

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)],
                   tags=["webhooks"])

EventType = Annotated[StrictStr, StringConstraints(max_length=64),
                      Field(json_schema_extra={"enum": list(EVENT_TYPES)})]


class WebhookIn(Strict):
    url: Annotated[StrictStr, StringConstraints(min_length=1, max_length=webhooks.MAX_URL)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
    description: Annotated[StrictStr, StringConstraints(max_length=500)] | None = None


def subscription_json(row: WebhookSubscription, *, secret: bool = False) -> dict:
    data = {"id": row.id, "url": row.url, "events": list(row.events),
            "description": row.description, "status": row.status,
            "created_at": row.created_at.isoformat(),
            "failing_since": row.failing_since.isoformat() if row.failing_since else None,
            "disabled_at": row.disabled_at.isoformat() if row.disabled_at else None,
            "disabled_reason": row.disabled_reason}
    if secret:
        data["secret"] = row.secret
    return data


def delivery_json(row: WebhookDelivery, event: WebhookEvent) -> dict:
    return {"id": row.id, "event": {"id": event.id, "webhook_id": event.uid,
                                    "type": event.type,
                                    "timestamp": event.occurred_at.isoformat()},
            "attempt": row.attempt, "attempted_at": row.attempted_at.isoformat(),
            "ok": row.ok, "status_code": row.status_code, "error": row.error,
            "duration_ms": row.duration_ms}


@router.post("/webhooks", status_code=201)
def post_webhook(body: WebhookIn, request: Request, key: IdemKey = None) -> JSONResponse:
    """Subscribe a URL to event types. The answer carries the signing `secret` (Standard
    Webhooks, `whsec_...`): store it, it is not shown again."""
    def op(session):  # noqa: ANN001, ANN202
        row = webhooks.subscribe(session, url=body.url, events=body.events,
                                 description=body.description, actor=API_ACTOR)
        return 201, subscription_json(row, secret=True)
    return _post(request, key, body.model_dump(mode="json"), op)


@router.get("/webhooks")
def get_webhooks(request: Request) -> dict:
    with _deps(request).db.read_session() as session:
        return {"webhooks": [subscription_json(row) for row in webhooks.subscriptions(session)],
                "event_types": list(EVENT_TYPES)}


@router.delete("/webhooks/{subscription_id}", status_code=204)
def delete_webhook(subscription_id: RecordId, request: Request) -> Response:
    with _deps(request).db.transaction() as session:
        webhooks.delete_subscription(session, subscription_id=subscription_id,
                                     actor=API_ACTOR)
    return Response(status_code=204)


@router.get("/webhooks/{subscription_id}/deliveries")
def get_deliveries(subscription_id: RecordId, request: Request,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   before: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None) -> dict:
    """Every delivery attempt, newest first (`?before=<id>` pages back)."""
    with _deps(request).db.read_session() as session:
        rows = webhooks.deliveries(session, subscription_id, limit=limit, before_id=before)
        return {"deliveries": [delivery_json(d, e) for d, e in rows]}
