"""HTTP front for the stand-in: ``http.server`` on a free local port, in a daemon thread.

Why separate: :class:`sandbox.webapi.SlackWebAPI` is framework-free (``dispatch_http`` maps raw
requests to responses); this module is only the stdlib server that tests and the bot talk to.
Any other server (e.g. a later browser sandbox) can front the same ``SlackWebAPI`` instead.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.webapi import SlackWebAPI

log = logging.getLogger("sandbox")


class _Handler(BaseHTTPRequestHandler):
    """Feeds raw requests to ``server.api.dispatch_http``; silent unlike the default."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self.server.api.dispatch_http(
                self.command, self.path, dict(self.headers.items()), body)
        except Exception:
            log.exception("stand-in failed on %s %s", self.command, self.path)
            status, headers, payload = 500, {"Content-Type": "text/plain"}, b"stand-in error"
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the caller gave up (timed out, or was killed)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: SlackWebAPI


class StandInServer:
    """Serves a :class:`SlackWebAPI` on ``127.0.0.1`` (free port) from a daemon thread.

    Point the bot at :attr:`api_url` (``SLACK_API_URL``); it ends with ``/`` because
    slack_sdk joins ``base_url`` and the method name with ``urljoin``. Starts immediately;
    usable as a context manager; :meth:`stop` is idempotent.
    """

    def __init__(self, api: SlackWebAPI | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if api is None:
            from sandbox.webapi import SlackWebAPI  # late: webapi re-exports this module

            api = SlackWebAPI()
        self.api = api
        self._httpd = _Server((host, port), _Handler)
        self._httpd.api = self.api
        self.host, self.port = host, self._httpd.server_address[1]
        self.api.base_url = self.base_url
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                         kwargs={"poll_interval": 0.05},
                                         name=f"slack-stand-in:{self.port}", daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StandInServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
