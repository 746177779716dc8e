"""E-mail for the outbox: render a customer e-mail from its template, send it over SMTP.

`build_mailer(settings)` returns a callable `mailer(payload) -> dict` for the outbox worker, or
None when `SMTP_URL` is not set (e-mails then stay queued, and the worker posts a copy of each
to the AR channel so they are visible in Slack).

* `SMTP_URL`: `smtps://user:pass@host:465` (TLS from the start) or `smtp://user:pass@host:587`
  (STARTTLS); user and password are URL-quoted. With a user and password over `smtp://`,
  STARTTLS is required: a server that does not offer it (or a man in the middle who strips the
  offer) gets a permanent refusal and never sees the password. Only for a local test server
  can that be waived with `?insecure=true` (`smtp://user:pass@localhost:1025?insecure=true`).
  Without credentials, STARTTLS is used whenever it is offered. Certificates are verified
  against the system's CAs.
* From: `O2C_FROM_EMAIL`. Message-ID: derived from the outbox row's dedupe key (or id) and
  queue time, so a message re-sent after a crash carries the same id and mail clients show
  it once, and no other row's e-mail ever carries it.
* Templates: Jinja2 files in `bot/templates/<name>.j2`; the first line is `Subject: ...`, then a
  blank line, then the plain-text body. The invoice and credit-note e-mails are rendered from
  their rows (the outbox context only names them; the invoice's lists every detail of SPEC
  §3); their PDF (`bot/invoice_pdf.py`, fpdf2) is attached when the outbox row asks for it.
* Failures are classified for the worker: connection errors, timeouts and 4xx SMTP replies are
  temporary (`Retry`, with backoff); 5xx replies, a missing STARTTLS and an untrusted TLS
  certificate are permanent (`Permanent`, the row is kept as failed and listed by
  `o2c outbox`). So is a recipient that is not one valid address (`check_email`): nothing
  is sent.
"""

from __future__ import annotations

import functools
import hashlib
import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from bot.customer_links import CustomerLinks
from bot.outbox import Permanent, Retry
from bot.settings import Settings, smtp_insecure
from models import money
from models.base import utcnow
from workflows.validation import check_email

TEMPLATES = Path(__file__).parent / "templates"
TIMEOUT = 20.0


def _money(minor: int, currency: str) -> str:
    return money.format_money(int(minor), currency)


def _day(value: Any) -> str:
    from datetime import date

    if value is None:
        return "-"
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%d %b %Y")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=False,  # noqa: S701 - plain text
                      undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["money"] = _money
    env.filters["day"] = _day
    env.filters["pct"] = lambda bp: str(money.bp_to_pct(int(bp)))
    return env


ENV = _env()


def _invoice_context(number: str, session: Any) -> dict:
    from sqlmodel import select

    from bot.invoice_pdf import early_payment_text
    from models import Customer, Invoice, InvoiceLine

    invoice = session.exec(select(Invoice).where(Invoice.number == number)).first()
    if invoice is None:
        raise Permanent(f"invoice {number} not found for the invoice e-mail")
    lines = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
                         .order_by(InvoiceLine.line_no)).all()
    return {"invoice": invoice, "lines": lines,
            "customer": session.get(Customer, invoice.customer_id),
            "early_payment": early_payment_text(invoice)}


def _credit_note_context(number: str, session: Any) -> dict:
    from sqlmodel import select

    from models import CreditNote, Customer, Invoice
    from workflows.credit_notes import credit_by_line

    note = session.exec(select(CreditNote).where(CreditNote.number == number)).first()
    if note is None:
        raise Permanent(f"credit note {number} not found for its e-mail")
    invoice = session.get(Invoice, note.invoice_id)
    return {"note": note, "invoice": invoice, "lines": credit_by_line(session, note),
            "customer": session.get(Customer, invoice.customer_id)}


def _statement_context(spec: dict, session: Any) -> dict:
    from datetime import date

    from workflows.statements import by_external_id, statement

    try:
        customer = by_external_id(session, spec["customer"])
    except Exception as exc:
        raise Permanent(f"customer {spec.get('customer')} not found for the statement") from exc
    found = statement(session, customer, start=date.fromisoformat(spec["start"]),
                      end=date.fromisoformat(spec["end"]))
    return {"statement_data": found, "customer": customer, "start": found.start,
            "end": found.end, "currency": found.currency,
            "opening_minor": found.opening_minor, "closing_minor": found.closing_minor,
            "customer_credit_minor": found.customer_credit_minor,
            "unapplied_minor": found.unapplied_minor, "net_minor": found.net_minor}


# Templates rendered from the database (the outbox context only names the document), with
# the PDF attachment each may carry.
FROM_DATABASE = {"invoice": ("invoice_number", _invoice_context, "invoice_pdf"),
                 "credit_note": ("credit_note_number", _credit_note_context, "credit_note_pdf"),
                 "statement": ("statement", _statement_context, "statement_pdf")}


def render_email(template: str, context: dict, *, from_email: str, session: Any = None,
                 pay_links: Any = None, write_session: Any = None,
                 customer_links: Any = None) -> tuple[str, str]:
    """(subject, body) for an outbox e-mail payload's template and context; with
    `pay_links` (`bot.paylinks.PayLinks`), the invoice's "Pay now" link(s) too (made in
    `write_session` when the caller holds one open)."""
    values = {"pay_url": None, "pay_urls": {}, **context}
    if pay_links is not None:
        values.update(pay_links.email_values(template, context, session=write_session))
    # order notices: tracking and backorder-choice links (`bot.customer_links`); without
    # settings, the built-in carriers' tracking links and no signed links
    links = customer_links or CustomerLinks(public_url=None, signer=None)
    values.update(links.email_values(template, context))
    if template in FROM_DATABASE:
        if session is None:
            raise Permanent(f"the {template} e-mail needs the database")
        key, load, _ = FROM_DATABASE[template]
        values.update(load(context[key], session))
        values.setdefault("seller", from_email.split("@")[-1])
        values.setdefault("attached", False)
    values["from_email"] = from_email
    subject, body = _parts(template)
    # one line whatever the values hold (a carrier or a name with a line break would make
    # the header refused, and the e-mail fail for good); rendered apart from the body, so a
    # blank line in a value cannot end the subject early and spill the rest into the body
    return " ".join(subject.render(**values).split()), body.render(**values).strip() + "\n"


@functools.cache
def _parts(template: str) -> tuple[Template, Template]:
    """A template's Subject line and body, each compiled on its own (the template's first
    line is `Subject: ...`, then a blank line)."""
    source = ENV.loader.get_source(ENV, f"{template}.j2")[0]  # type: ignore[union-attr]
    head, _, body = source.partition("\n\n")
    if not head.startswith("Subject: "):
        raise Permanent(f"template {template} has no Subject line")
    return ENV.from_string(head[len("Subject: "):]), ENV.from_string(body)


def message_id(payload: dict, domain: str) -> str:
    """The same on every attempt of one outbox row (a re-send after a crash is recognisable),
    and never another row's, even another database's with the same dedupe key or id (a
    trial's, a restored backup's): the row's queue time is part of it, as in Slack markers."""
    key = payload.get("dedupe_key") or f"outbox-{payload.get('outbox_id')}"
    key = f"{key}|{payload.get('queued_at') or ''}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<o2c.{digest}@{domain}>"


class SmtpMailer:
    def __init__(self, url: str, from_email: str, *,
                 session_factory: Callable[[], Any] | None = None,
                 timeout: float = TIMEOUT, ssl_context: ssl.SSLContext | None = None,
                 pay_links: Any = None, customer_links: Any = None,
                 clock: Any = None) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "smtps"
        self.insecure = smtp_insecure(parts.query)  # only for local test servers
        self.ssl_context = ssl_context  # None: the system's CAs (tests pass their own)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.from_email = from_email
        self.domain = from_email.rsplit("@", 1)[-1] or "o2c.local"
        self.session_factory = session_factory
        self.timeout = timeout
        self.pay_links = pay_links  # bot.paylinks.PayLinks, or None (no "Pay now" links)
        self.customer_links = customer_links  # bot.customer_links.CustomerLinks
        self.clock = clock  # bot.clock.Clock (the sandbox's Time travel moves it), or None

    def __repr__(self) -> str:  # never show the password
        return f"SmtpMailer({'smtps' if self.tls else 'smtp'}://{self.host}:{self.port})"

    def compose(self, payload: dict) -> EmailMessage:
        template, context = payload["template"], payload.get("context") or {}
        try:  # one valid address, as the inputs require (a row older than that check may
            # hold "a@x, b@y": a customer's e-mail must never go to a second party)
            to = check_email(str(payload.get("to") or ""))
        except ValueError as exc:
            raise Permanent(f"recipient {str(payload.get('to'))[:200]!r}: {exc}") from None
        files: list[tuple[str, bytes]] = []
        if template in FROM_DATABASE and self.session_factory is not None:
            key, _, kind = FROM_DATABASE[template]
            with self.session_factory() as session:
                wants_pdf = any(a.get("kind") == kind
                                for a in payload.get("attachments") or [])
                subject, body = render_email(template, {**context, "attached": wants_pdf},
                                             from_email=self.from_email, session=session,
                                             pay_links=self.pay_links,
                                             customer_links=self.customer_links)
                if wants_pdf:
                    render_pdf = {"invoice_pdf": self._invoice_pdf,
                                  "credit_note_pdf": self._credit_note_pdf,
                                  "statement_pdf": self._statement_pdf}[kind]
                    files.append(render_pdf(context[key], session))
        else:
            subject, body = render_email(template, context, from_email=self.from_email,
                                         pay_links=self.pay_links,
                                         customer_links=self.customer_links)
        message = EmailMessage()
        message["From"] = formataddr(("Accounts receivable", self.from_email))
        message["To"] = to
        message["Subject"] = subject
        # the app's moment (`deps.clock`), as the dates inside the e-mail are
        message["Date"] = format_datetime(
            (self.clock.now() if self.clock is not None else utcnow()).astimezone(UTC),
            usegmt=True)
        message["Message-ID"] = message_id(payload, self.domain)
        message.set_content(body)
        for filename, data in files:
            message.add_attachment(data, maintype="application", subtype="pdf",
                                   filename=filename)
        return message

    def _invoice_pdf(self, number: str, session: Any) -> tuple[str, bytes]:
        from bot.invoice_pdf import render_invoice_pdf

        values = _invoice_context(number, session)
        data = render_invoice_pdf(values["invoice"], values["lines"], values["customer"],
                                  seller=self.domain, from_email=self.from_email)
        return f"{number}.pdf", data

    def _credit_note_pdf(self, number: str, session: Any) -> tuple[str, bytes]:
        from bot.invoice_pdf import render_credit_note_pdf

        values = _credit_note_context(number, session)
        data = render_credit_note_pdf(values["note"], values["invoice"], values["lines"],
                                      values["customer"], seller=self.domain,
                                      from_email=self.from_email)
        return f"{number}.pdf", data

    def _statement_pdf(self, spec: dict, session: Any) -> tuple[str, bytes]:
        from bot.invoice_pdf import render_statement_pdf

        found = _statement_context(spec, session)["statement_data"]
        data = render_statement_pdf(found, seller=self.domain, from_email=self.from_email)
        return f"statement-{spec['customer']}-{spec['end']}.pdf", data

    def __call__(self, payload: dict) -> dict:
        try:
            message = self.compose(payload)
        except (Permanent, Retry):
            raise
        except Exception as exc:
            raise Permanent(f"render failed: {exc!r}") from exc
        try:
            self._send(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            reason = f"recipient refused: {exc.recipients}"
            if codes and all(code >= 500 for code in codes):
                raise Permanent(reason) from exc
            raise Retry(30.0, reason) from exc
        except smtplib.SMTPResponseException as exc:
            reason = f"smtp {exc.smtp_code}: {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                raise Permanent(reason) from exc
            raise Retry(30.0, reason) from exc  # 4xx, or no code (connect/helo trouble)
        except smtplib.SMTPNotSupportedError as exc:
            raise Permanent(f"smtp: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise Permanent(f"smtp: the TLS certificate of {self.host} is not trusted: "
                            f"{exc.verify_message}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused, timeouts
            raise Retry(30.0, f"smtp: {type(exc).__name__}: {exc}") from exc
        return {"ok": True, "message_id": message["Message-ID"], "to": payload["to"]}

    def _send(self, message: EmailMessage) -> None:
        context = self.ssl_context or ssl.create_default_context()
        if self.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            self._transact(client, context, message)
        except BaseException:
            client.close()  # no QUIT on a connection in an unknown state
            raise
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message was accepted: a failed goodbye must not send it again
        finally:
            client.close()

    def _transact(self, client: smtplib.SMTP, context: ssl.SSLContext,
                  message: EmailMessage) -> None:
        client.ehlo()
        if not self.tls:
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif self.username and not self.insecure:
                raise Permanent(
                    f"smtp: {self.host}:{self.port} does not offer STARTTLS; refusing to "
                    "send the SMTP password in clear text (use smtps://, fix the server, "
                    "or add ?insecure=true to SMTP_URL for a local test server only)")
        if self.username:
            client.login(self.username, self.password or "")
        client.send_message(message)


def build_mailer(settings: Settings, db: Any = None, clock: Any = None) -> SmtpMailer | None:
    """The outbox's e-mail transport, or None when SMTP_URL is not set. `clock`: the app's
    (`deps.clock`), which dates the messages."""
    if settings.smtp_url is None or not settings.smtp_url.get_secret_value():
        return None
    from bot.db import Database
    from bot.paylinks import PayLinks

    db = db or Database(settings.database_url)
    return SmtpMailer(settings.smtp_url.get_secret_value(), settings.o2c_from_email,
                      session_factory=db.read_session,
                      pay_links=PayLinks.for_settings(settings, db),
                      customer_links=CustomerLinks.for_settings(settings), clock=clock)
