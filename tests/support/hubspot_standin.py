"""A HubSpot CRM API stand-in on 127.0.0.1 for tests (`HUBSPOT_API_URL` points here).

The official `hubspot-api-client` sends its requests with urllib3, which neither `responses`
(requests) nor `respx` (httpx) intercepts, so its HTTP is answered by a real local server
instead: the v3 endpoints the connector uses, with bodies shaped as HubSpot documents them
(SimplePublicObjectWithAssociations, BatchResponseSimplePublicObject), every request
recorded, and failures injectable."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support import hubspot_payloads as hp


@dataclass
class Call:
    method: str
    path: str
    query: dict
    body: dict | None
    headers: dict


class HubSpotStandIn:
    def __init__(self) -> None:
        self.deals: dict[str, dict] = {}
        self.companies: dict[str, dict] = {}
        self.line_items: dict[str, dict] = {}
        self.calls: list[Call] = []
        self.faults: list[int] = []  # statuses to answer next, once each
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: dict | None) -> None:
                body = json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json;charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(self.command, parts.path, parse_qs(parts.query),
                            json.loads(raw) if raw else None,
                            {k.lower(): v for k, v in self.headers.items()})
                with standin.lock:
                    standin.calls.append(call)
                    fault = standin.faults.pop(0) if standin.faults else None
                if fault:
                    self._answer(fault, {"status": "error", "message": "injected",
                                         "category": "RATE_LIMITS" if fault == 429
                                         else "INTERNAL_ERROR"})
                    return
                status, payload = standin.route(call)
                self._answer(status, payload)

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True)  # shutdown() returns within the poll

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubSpotStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the CRM's data ----------------------------------------------------------------------
    def add_deal(self, deal_id: str, *, company: tuple[str, str] | None, lines: list[dict],
                 **properties: str) -> None:
        with self.lock:
            line_ids = []
            for n, line in enumerate(lines, start=1):
                line_id = f"{deal_id}{n:02d}"
                self.line_items[line_id] = hp.line_item(line_id, **line)
                line_ids.append(line_id)
            if company is not None:
                self.companies[company[0]] = hp.company(company[0], customer_id=company[1])
            self.deals[deal_id] = hp.deal(deal_id, company_id=company[0] if company else None,
                                          line_item_ids=line_ids, **properties)

    def route(self, call: Call) -> tuple[int, dict]:
        segments = call.path.strip("/").split("/")
        with self.lock:
            if call.path == "/crm/v3/objects/line_items/batch/read":
                ids = [i["id"] for i in call.body["inputs"]]
                return 200, hp.batch([self.line_items[i] for i in ids if i in self.line_items])
            if segments[:4] == ["crm", "v3", "objects", "deals"] and len(segments) == 5:
                deal = self.deals.get(segments[4])
                if deal is None:
                    return 404, {"status": "error", "message": "Object not found",
                                 "category": "OBJECT_NOT_FOUND"}
                if call.method == "PATCH":
                    deal["properties"].update(call.body["properties"])
                    deal["updatedAt"] = hp.stamp()
                    return 200, {k: v for k, v in deal.items() if k != "associations"}
                return 200, deal
            if segments[:4] == ["crm", "v3", "objects", "companies"] and len(segments) == 5:
                company = self.companies.get(segments[4])
                return (200, company) if company else (404, {"status": "error"})
        return 404, {"status": "error", "message": f"no route {call.method} {call.path}"}

    def updates(self, deal_id: str) -> list[dict]:
        with self.lock:
            return [c.body["properties"] for c in self.calls
                    if c.method == "PATCH" and c.path.endswith(f"/deals/{deal_id}")]

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "it"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; calls: "
                             f"{[(c.method, c.path) for c in self.calls]}")
