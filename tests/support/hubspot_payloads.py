"""HubSpot objects and webhook events shaped as HubSpot documents them (CRM v3 objects with
associations; webhooks v3 event arrays), and requests signed with HubSpot's signature v3
(the client library's own `Signature.get_signature`)."""

from __future__ import annotations

import json

from hubspot.utils.signature import Signature

from models.base import utcnow

CLIENT_SECRET = "hs-client-secret-" + "0123456789"
ACCESS_TOKEN = "pat-na1-" + "test-token"
PORTAL = 62515


def stamp() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def deal(deal_id: str, *, company_id: str | None, line_item_ids: list[str],
         **properties: str) -> dict:
    props = {"dealname": "Globex renewal", "dealstage": "closedwon", "pipeline": "default",
             "amount": "200.00", "deal_currency_code": "USD", "hubspot_owner_id": "910",
             "hs_object_id": deal_id, "createdate": stamp(), "hs_lastmodifieddate": stamp()}
    props.update(properties)
    associations = {}
    if company_id:
        associations["companies"] = {"results": [{"id": company_id,
                                                  "type": "deal_to_company"}]}
    if line_item_ids:
        associations["line items"] = {"results": [{"id": i, "type": "deal_to_line_item"}
                                                  for i in line_item_ids]}
    return {"id": deal_id, "properties": props, "createdAt": stamp(), "updatedAt": stamp(),
            "archived": False, "associations": associations}


def company(company_id: str, *, customer_id: str) -> dict:
    return {"id": company_id, "properties": {"name": "Globex", "o2c_customer_id": customer_id,
                                             "hs_object_id": company_id},
            "createdAt": stamp(), "updatedAt": stamp(), "archived": False}


def line_item(line_id: str, *, sku: str, quantity: int, price: str,
              discount: str | None = None, name: str | None = None,
              unit_discount: str | None = None) -> dict:
    props = {"name": name or f"Widget {sku}", "hs_sku": sku, "quantity": str(quantity),
             "price": price, "hs_product_id": "1645342", "hs_object_id": line_id}
    if discount is not None:
        props["hs_discount_percentage"] = discount
    if unit_discount is not None:  # HubSpot's "discount": an amount off each unit
        props["discount"] = unit_discount
    return {"id": line_id, "properties": props, "createdAt": stamp(), "updatedAt": stamp(),
            "archived": False}


def batch(results: list[dict]) -> dict:
    return {"status": "COMPLETE", "results": results, "startedAt": stamp(),
            "completedAt": stamp()}


def stage_changed(deal_id: str, stage: str = "closedwon", *, event_id: int) -> dict:
    ms = int(utcnow().timestamp() * 1000)
    return {"eventId": event_id, "subscriptionId": 4711, "portalId": PORTAL, "appId": 1160452,
            "occurredAt": ms, "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
            "objectId": int(deal_id), "propertyName": "dealstage", "propertyValue": stage,
            "changeSource": "CRM", "sourceId": "userId:910"}


def signed(url: str, events: list[dict], *, secret: str = CLIENT_SECRET,
           timestamp_ms: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events)
    timestamp = str(timestamp_ms if timestamp_ms is not None
                    else int(utcnow().timestamp() * 1000))
    signature = Signature.get_signature(secret, body, "v3", http_uri=url, http_method="POST",
                                        timestamp=timestamp)
    return body.encode(), {"Content-Type": "application/json",
                           "X-HubSpot-Signature-v3": signature,
                           "X-HubSpot-Request-Timestamp": timestamp}
