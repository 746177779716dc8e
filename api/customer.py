"""REST API of the customer in the loop (issue 19): carrier events on shipments.

`POST /shipments/{id}/events`: in transit, out for delivery, delivered (optionally with proof
of delivery: who signed, a link to the POD document), exception. Thin like `api.routes`: one
workflow call inside `idempotency.run` (one transaction; `Idempotency-Key` honoured).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

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
from models import Order
from workflows import shipment_tracking
from workflows.inputs import ShipmentEventIn

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token), Depends(known_query)],
                   responses=problems(401, 422, 503))


@router.post("/shipments/{shipment_id}/events", tags=["orders"], **CREATED,
             response_model=out.ShipmentEventOut, responses=problems(404, 409, *BODY))
def post_shipment_event(shipment_id: RecordId, body: ShipmentEventIn, request: Request,
                        key: IdemKey = None) -> JSONResponse:
    def op(session):
        event = shipment_tracking.record_event(session, shipment_id=shipment_id, data=body,
                                               actor=API_ACTOR, now=_deps(request).clock.now())
        shipment = shipment_tracking.lock_shipment(session, shipment_id)
        order = session.get(Order, shipment.order_id)
        return 201, out.ShipmentEventOut(
            id=event.id, shipment=shipment.id, order=order.number, kind=event.kind,
            occurred_at=event.occurred_at, shipment_status=shipment.status,
            delivered_at=shipment.delivered_at, pod_signed_by=shipment.pod_signed_by,
            pod_document_url=shipment.pod_document_url)
    return _post(request, key, idempotency.request_of(body), op)
