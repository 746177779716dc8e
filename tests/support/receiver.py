"""A webhook receiver on 127.0.0.1 for tests: records every request (headers and raw body)
and answers from a script (status codes, or holding the answer until the test releases it);
after the script, 200."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None = None


@dataclass
class Step:
    status: int = 200
    hold: bool = False  # answer only once the test calls `release()` (a hanging receiver)
    headers: dict[str, str] = field(default_factory=dict)
    # answer its status line, then one header line every `trickle` seconds, `trickle_lines`
    # times (each read of the client's well within its read timeout, the answer never done)
    trickle: float = 0.0
    trickle_lines: int = 0


class Receiver:
    def __init__(self, script: list[Step | int] | None = None) -> None:
        self.script = [s if isinstance(s, Step) else Step(s) for s in script or []]
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                item = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                body)
                with receiver.lock:
                    receiver.requests.append(item)
                    step = receiver.script.pop(0) if receiver.script else Step(200)
                receiver.arrived.set()
                if step.hold:
                    receiver.released.wait(120)
                if step.trickle:
                    try:
                        self.wfile.write(f"HTTP/1.1 {step.status} OK\r\n".encode())
                        for n in range(step.trickle_lines):
                            self.wfile.flush()
                            if receiver.released.wait(step.trickle):
                                break
                            self.wfile.write(f"x-slow-{n}: .\r\n".encode())
                        self.wfile.write(b"content-length: 0\r\n\r\n")
                        self.wfile.flush()
                    except OSError:
                        pass  # the client gave up on it
                    return
                try:
                    self.send_response(step.status)
                    for name, value in step.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    item.answered = step.status
                except OSError:
                    pass  # the client went away (killed mid-request)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # a short poll: `shutdown()` returns within it (the default half second, per test)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/o2c"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        """Answer the held requests (and any later one at once)."""
        self.released.set()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} webhook request(s), got {len(self.requests)}")
