"""A real SMTP server for tests (aiosmtpd on a free local port) that keeps what it receives
and can refuse chosen recipients with a temporary (4xx) or permanent (5xx) reply; optionally
with AUTH (recording every login, and whether it came over TLS), STARTTLS or TLS from the start
(certificates from `self_signed_tls`, made with the openssl command)."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, owner: LocalSmtp) -> None:
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.owner.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.owner.lock:
            self.owner.messages.append(message)
        return "250 Message accepted for delivery"


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a certificate of 127.0.0.1."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


class LocalSmtp:
    def __init__(self, *, credentials: tuple[str, str] | None = None,
                 starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None) -> None:
        self.port = _free_port()
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}  # address -> reply, e.g. "550 5.1.1 no such user"
        self.logins: list[tuple[str, str, bool]] = []  # (user, password, over TLS)
        self.credentials = credentials
        self.implicit_tls = implicit_tls is not None
        self.lock = threading.Lock()
        options: dict = {}
        if credentials is not None:  # AUTH offered even without TLS: the client must refuse
            options.update(authenticator=self._authenticate, auth_require_tls=False)
        if starttls is not None:
            options.update(tls_context=starttls)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     ssl_context=implicit_tls, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.logins.append((user, password, over_tls))
        return AuthResult(success=(user, password) == self.credentials)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        login = ""
        if self.credentials is not None:
            login = f"{quote(self.credentials[0], safe='')}:{quote(self.credentials[1], safe='')}@"
        return f"{scheme}://{login}127.0.0.1:{self.port}"

    def start(self) -> LocalSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} e-mail(s), got {len(self.received())}")
