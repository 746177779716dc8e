"""Fixtures for the Slack stand-in tests: servers on free ports, a WebClient, a bolt app.

Why these helpers live here: the driver tests need something to receive its requests -- a
recorder that captures raw requests (to check signatures and exact payload fields) and a real
minimal ``slack_bolt.App`` behind ``http.server`` (to prove the whole loop works with the
library the bot uses).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # importlib import mode does not add the rootdir
    sys.path.insert(0, str(ROOT))

from sandbox.webapi import StandInServer  # noqa: E402

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"

Reply = tuple[int, dict, bytes]


class _LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> whose POSTs go to ``handle``."""

    def __init__(self, handle: Callable[[str, dict, bytes], Reply]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/slack/events"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class Recorder:
    """Captures every request the driver sends; answers with ``self.reply``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply: Reply = (200, {}, b"")
        self._server = _LocalServer(self._handle)
        self.url = self._server.url

    def _handle(self, path: str, headers: dict, body: bytes) -> Reply:
        self.requests.append({"path": path, "headers": {k.lower(): v for k, v in headers.items()},
                              "body": body.decode()})
        return self.reply

    @property
    def last(self) -> dict:
        return self.requests[-1]

    def stop(self) -> None:
        self._server.stop()


class BoltServer:
    """Serves a bolt ``App`` the way a production adapter would: ``app.dispatch(BoltRequest)``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._server = _LocalServer(self._handle)
        self.url = self._server.url

    def _handle(self, path: str, headers: dict, body: bytes) -> Reply:
        request = BoltRequest(body=body.decode(), query=urlsplit(path).query,
                              headers={k: [v] for k, v in headers.items()})
        response = self.app.dispatch(request)
        out = {k: v[0] for k, v in response.headers.items() if v}
        return response.status, out, (response.body or "").encode()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    """A stand-in with two users and an #approvals channel (plus the default #general)."""
    server = StandInServer()
    server.api.add_user("U1", "alice", real_name="Alice Doe", email="alice@example.com",
                        tz="America/New_York", tz_offset=-18000, tz_label="Eastern Time")
    server.api.add_user("U2", "bob", email="bob@example.com", is_admin=True)
    server.api.add_channel("C1", "approvals")
    yield server
    server.stop()


@pytest.fixture
def api(stand_in: StandInServer):
    return stand_in.api


@pytest.fixture
def client(stand_in: StandInServer) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=stand_in.api_url)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


@pytest.fixture
def serve_bolt() -> Iterator[Callable[[App], BoltServer]]:
    """Factory: ``bolt_server(app)`` serves ``app`` on a free port until the test ends."""
    started: list[BoltServer] = []

    def serve(app: App) -> BoltServer:
        started.append(BoltServer(app))
        return started[-1]

    yield serve
    for server in started:
        server.stop()


@pytest.fixture
def signing_secret() -> str:
    return SIGNING_SECRET


@pytest.fixture
def bolt_app(stand_in: StandInServer) -> App:
    """A bolt App whose WebClient talks to the stand-in (as the real bot is configured)."""
    return App(client=WebClient(token=BOT_TOKEN, base_url=stand_in.api_url),
               signing_secret=SIGNING_SECRET)
