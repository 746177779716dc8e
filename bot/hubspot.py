"""The HubSpot connector: won deals become orders, orders keep their deal up to date.

Everything that calls HubSpot goes through the official `hubspot-api-client` (its host is
`HUBSPOT_API_URL`, so tests and demos can point it at a stand-in) and runs in the outbox's
integrations worker (kind "hubspot"), never in a request: the webhook only verifies, stores
the event once and queues the work (`api.inbound`), so HubSpot gets its answer at once.

* `deal.import` — read the deal (with its company and line items), check its pipeline and
  stage against the mapping, and make the order (`workflows.crm.import_deal`: credit- and
  discount-checked as any other, once per deal). A deal that cannot become an order is
  refused: AR is told, and the deal shows why.
* `deal.update` — write the order's state onto the deal (`workflows.crm.deal_status`, read at
  delivery, so a late or repeated update still shows the latest state; a refusal delivered
  after the deal became an order writes the order).

`O2C_HUBSPOT_MAPPING` (JSON) is the configuration; every key is optional:

    {"pipelines": ["default"],          deals of these pipelines only ([] = any)
     "won_stages": ["closedwon"],       the stages that mean "won"
     "customer_property": "o2c_customer_id",   where our customer id is...
     "customer_object": "company",      ...on the deal's company, or on the "deal" itself
     "sku_property": "hs_sku",          the line item property holding our SKU
     "sales_rep_by_owner": {"123": "U0123SAM"},  HubSpot owner id -> Slack user id
     "default_sales_rep": "U0123SAM",
     "deal_properties": {"order_number": "o2c_order_number", ...}}   what is written back

`deal_properties` maps each of `order_number`, `order_status`, `approval_status`,
`rejection_reason`, `invoice_numbers`, `payment_status`, `order_total` to a deal property
(create them in HubSpot as single-line text); leave one out to not write it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hubspot import HubSpot
from hubspot.crm.deals import SimplePublicObjectInput
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId, SimplePublicObjectId
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot.db import Database
from bot.outbox import Permanent, RateLimited, Retry, retry_after
from bot.settings import Settings
from models import CrmDeal, OutboxMessage
from models.base import utcnow
from workflows import crm
from workflows.errors import DomainError
from workflows.validation import SLACK_USER_ID

if TYPE_CHECKING:
    from bot.outbox import OutboxWorker

log = logging.getLogger("o2c.hubspot")

PROVIDER = "hubspot"
DEAL_PROPERTIES = ("dealname", "dealstage", "pipeline", "amount", "deal_currency_code",
                   "hubspot_owner_id")
# "discount" is HubSpot's unit discount (an amount off each unit), "hs_discount_percentage"
# its percentage; both apply to "price"
LINE_PROPERTIES = ("name", "quantity", "price", "discount", "hs_discount_percentage",
                   "hs_product_id")


# what the connector can write back onto a deal (`crm.deal_status`, and a refusal)
WRITTEN = ("order_number", "order_status", "approval_status", "rejection_reason",
           "invoice_numbers", "payment_status", "order_total")


@dataclass
class Mapping:
    pipelines: list[str] = field(default_factory=lambda: ["default"])
    won_stages: list[str] = field(default_factory=lambda: ["closedwon"])
    customer_property: str = "o2c_customer_id"
    customer_object: str = "company"  # or "deal"
    sku_property: str = "hs_sku"
    sales_rep_by_owner: dict[str, str] = field(default_factory=dict)
    default_sales_rep: str | None = None
    deal_properties: dict[str, str] = field(default_factory=lambda: {
        "order_number": "o2c_order_number", "order_status": "o2c_order_status",
        "approval_status": "o2c_approval_status", "rejection_reason": "o2c_rejection_reason",
        "invoice_numbers": "o2c_invoice_numbers", "payment_status": "o2c_payment_status",
        "order_total": "o2c_order_total"})

    @classmethod
    def of(cls, data: dict) -> Mapping:
        """The mapping from `O2C_HUBSPOT_MAPPING`'s JSON, every key checked for its shape: a
        wrong one stops the server with a message naming it (a string where a list goes would
        otherwise match stages by substring, a misspelt deal property never be written)."""
        from bot.settings import SettingsError

        def refuse(problem: str) -> SettingsError:
            return SettingsError(f"O2C_HUBSPOT_MAPPING: {problem}")

        if not isinstance(data, dict):
            raise refuse("must be a JSON object such as {\"won_stages\": [\"closedwon\"]}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise refuse(f"unknown key(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")

        def names(value: object) -> bool:
            return isinstance(value, str) and bool(value.strip())

        for key in ("pipelines", "won_stages"):
            if key in data and not (isinstance(data[key], list)
                                    and all(names(x) for x in data[key])):
                raise refuse(f"{key} must be a list of names, e.g. [\"closedwon\"]")
        if "won_stages" in data and not data["won_stages"]:
            raise refuse("won_stages must name at least one stage (no deal would ever be won)")
        for key in ("customer_property", "sku_property"):
            if key in data and not names(data[key]):
                raise refuse(f"{key} must be a property name")
        if data.get("customer_object", "company") not in ("company", "deal"):
            raise refuse("customer_object must be \"company\" or \"deal\"")
        reps = data.get("sales_rep_by_owner", {})
        if not (isinstance(reps, dict) and all(
                isinstance(rep, str) and SLACK_USER_ID.match(rep) for rep in reps.values())):
            raise refuse("sales_rep_by_owner must map HubSpot owner ids to Slack user ids, "
                         "e.g. {\"910\": \"U0123SAM\"}")
        rep = data.get("default_sales_rep")
        if rep is not None and not (isinstance(rep, str) and SLACK_USER_ID.match(rep)):
            raise refuse("default_sales_rep must be a Slack user id such as U0123SAM")
        written = data.get("deal_properties", {})
        if not (isinstance(written, dict) and all(names(x) for x in written.values())):
            raise refuse("deal_properties must map each value written back to a deal "
                         "property name, e.g. {\"order_number\": \"o2c_order_number\"}")
        wrong = sorted(set(written) - set(WRITTEN))
        if wrong:
            raise refuse(f"deal_properties: unknown value(s) {', '.join(wrong)}; known: "
                         f"{', '.join(WRITTEN)}")
        return cls(**data)

    def wins(self, pipeline: str | None, stage: str | None) -> bool:
        return stage in self.won_stages and (not self.pipelines or pipeline in self.pipelines)


class HubSpotTransport:
    kind = PROVIDER
    retry_for = timedelta(days=1)

    def __init__(self, db: Database, settings: Settings, *, client: Any = None) -> None:
        self.db = db
        self.mapping = Mapping.of(settings.o2c_hubspot_mapping)
        self.client = client or HubSpot(access_token=settings.secret("hubspot_access_token"),
                                        host=settings.hubspot_api_url)

    def __repr__(self) -> str:  # never the token
        return "HubSpotTransport()"

    def backoff(self, attempts: int) -> float:
        return min(10.0 * (2 ** max(attempts - 1, 0)), 1800.0)

    def send(self, row: OutboxMessage, worker: OutboxWorker) -> dict:
        payload = row.payload or {}
        try:
            if row.method == "deal.import":
                return self._import(str(payload["deal_id"]), worker)
            if row.method == "deal.left_won":
                return self._left(str(payload["deal_id"]))
            if row.method == "deal.update":
                return self._update(payload)
        except Exception as exc:
            problem = classify(exc, worker.now())
            if problem is None:
                raise
            raise problem from exc
        raise Permanent(f"unknown hubspot outbox method {row.method}")

    # -- a won deal ---------------------------------------------------------------------------
    def _import(self, deal_id: str, worker: OutboxWorker) -> dict:
        # read even when imported before: a deal won again with other lines is reported
        # (`crm.report_changes`), never a second order
        deal = self.read_deal(deal_id)
        if deal is None:
            return {"ok": True, "note": "not a won deal of a mapped pipeline"}
        try:
            with self.db.transaction() as session:
                link, created = crm.import_deal(session, deal, now=worker.now())
                return {"ok": True, "order_id": link.order_id, "created": created}
        except IntegrityError:  # the same deal imported by another process meanwhile
            return {"ok": True, "note": "imported by another process"}
        except DomainError as refused:
            with self.db.transaction() as session:
                crm.refuse_deal(session, deal, refused.detail)
            return {"ok": True, "refused": refused.detail[:500]}

    def _left(self, deal_id: str) -> dict:
        """A deal that became an order moved to another stage: read as it is now (won again
        meanwhile: nothing to say), else AR is told (`crm.report_left_won`)."""
        found = self.client.crm.deals.basic_api.get_by_id(
            deal_id, properties=["dealstage", "pipeline"]).to_dict()
        props = found.get("properties") or {}
        if self.mapping.wins(props.get("pipeline"), props.get("dealstage")):
            return {"ok": True, "note": "won (again)"}
        with self.db.transaction() as session:
            told = crm.report_left_won(session, provider=PROVIDER, deal_id=deal_id,
                                       stage=str(props.get("dealstage") or "unknown"))
        return {"ok": True, "reported": told}

    def read_deal(self, deal_id: str) -> crm.DealIn | None:
        """The deal as the mapping reads it; None when it is not won (any more) or not in a
        mapped pipeline."""
        wanted = list(DEAL_PROPERTIES)
        if self.mapping.customer_object == "deal":
            wanted.append(self.mapping.customer_property)
        found = self.client.crm.deals.basic_api.get_by_id(
            deal_id, properties=wanted, associations=["companies", "line_items"]).to_dict()
        props = found.get("properties") or {}
        if not self.mapping.wins(props.get("pipeline"), props.get("dealstage")):
            return None
        associations = found.get("associations") or {}
        customer = props.get(self.mapping.customer_property) \
            if self.mapping.customer_object == "deal" else None
        companies = _ids(associations, "companies")
        if customer is None and companies:
            company = self.client.crm.companies.basic_api.get_by_id(
                companies[0], properties=[self.mapping.customer_property]).to_dict()
            customer = (company.get("properties") or {}).get(self.mapping.customer_property)
        lines = []
        line_ids = _ids(associations, "line items") or _ids(associations, "line_items")
        if line_ids:
            batch = self.client.crm.line_items.batch_api.read(
                BatchReadInputSimplePublicObjectId(
                    inputs=[SimplePublicObjectId(id=i) for i in line_ids],
                    properties=[*LINE_PROPERTIES, self.mapping.sku_property],
                    properties_with_history=[])).to_dict()
            order = {i: n for n, i in enumerate(line_ids)}
            for item in sorted(batch.get("results") or [],
                               key=lambda r: order.get(str(r.get("id")), 0)):
                p = item.get("properties") or {}
                lines.append(crm.DealLine(sku=p.get(self.mapping.sku_property),
                                          quantity=p.get("quantity"), price=p.get("price"),
                                          discount_pct=p.get("hs_discount_percentage"),
                                          discount=p.get("discount"), name=p.get("name")))
        owner = props.get("hubspot_owner_id")
        rep = self.mapping.sales_rep_by_owner.get(str(owner)) if owner else None
        return crm.DealIn(provider=PROVIDER, deal_id=str(found.get("id") or deal_id),
                          name=props.get("dealname"), customer=customer,
                          sales_rep=rep or self.mapping.default_sales_rep,
                          currency=props.get("deal_currency_code"), lines=lines)

    # -- the deal follows the order -----------------------------------------------------------
    def _update(self, payload: dict) -> dict:
        names = self.mapping.deal_properties
        order_id = payload.get("order_id")
        with self.db.read_session() as session:
            if order_id is None:  # a refusal: unless the deal became an order since
                link = session.exec(select(CrmDeal).where(
                    CrmDeal.provider == PROVIDER,
                    CrmDeal.deal_id == str(payload["deal_id"]))).first()
                order_id = link.order_id if link is not None else None
            values = (crm.deal_status(session, order_id) if order_id is not None else
                      {"order_status": "refused", "rejection_reason": payload.get("refused")})
        properties = {names[k]: str(v if v is not None else "") for k, v in values.items()
                      if k in names}
        if not properties:
            return {"ok": True, "note": "no deal properties mapped"}
        self.client.crm.deals.basic_api.update(
            str(payload["deal_id"]), SimplePublicObjectInput(properties=properties))
        return {"ok": True, "properties": properties}


def _ids(associations: dict, key: str) -> list[str]:
    found = associations.get(key) or {}
    return [str(r.get("id")) for r in found.get("results") or [] if r.get("id")]


RATE_LIMIT_DEFAULT = 10.0  # seconds: HubSpot's burst limits are per ten seconds


def classify(exc: Exception, now: datetime | None = None) -> Exception | None:
    """A HubSpot API error as RateLimited (429: wait its `Retry-After`, between 1 s and an
    hour, `RATE_LIMIT_DEFAULT` without a usable one, without counting an attempt), Retry (5xx,
    network) or Permanent (the rest); None when it is not one (let the worker handle it)."""
    status = getattr(exc, "status", None)
    if type(exc).__name__ == "ApiException" or status is not None:
        status = int(status or 0)
        reason = f"hubspot {status} {getattr(exc, 'reason', '')}".strip()
        if status == 429:
            header = (getattr(exc, "headers", None) or {}).get("Retry-After")
            return RateLimited(retry_after(header, now=now or utcnow(),
                                           default=RATE_LIMIT_DEFAULT, cap=3600.0),
                               reason[:500])
        if status == 0 or status >= 500:
            return Retry(10.0, reason)
        return Permanent(reason[:500])
    import urllib3

    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return Retry(10.0, f"hubspot: network: {exc}"[:500])
    return None
