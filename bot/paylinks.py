""""Pay now" links as they go into e-mails and Slack cards (`workflows.payment_links` has the
rules).

A link exists when customers can pay through it: with `STRIPE_API_KEY` (and
`O2C_PUBLIC_URL`, where customers reach this server), or in the local sandbox, which stands
in for Stripe's payment page. Otherwise `PayLinks.for_settings` is None and no e-mail or card
changes. Links are made when a message that shows one is delivered (the first invoice e-mail,
dunning e-mail or invoice card of an invoice), so invoices issued before the feature was
switched on get one too; the link itself never changes (`workflows.payment_links`): its
token is derived from `O2C_PAY_LINK_SECRETS` (or `O2C_LINK_SECRETS`) each time it is shown,
the database keeping only its hash.
"""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db import Database
from bot.settings import PAY_SECRETS_MISSING, Settings, SettingsError
from models import Invoice
from workflows import payment_links

# e-mail templates that show a link: the invoice, every dunning level, the collector's
# reminder (one link per overdue invoice)
EMAIL_TEMPLATES = ("invoice", "dunning_friendly", "dunning_reminder", "dunning_firm",
                   "dunning_final", "collections_reminder", "dunning_statement")
SLACK_TEMPLATES = ("order_shipped",)  # the invoice card


class PayLinks:
    def __init__(self, db: Database, base_url: str, secrets: list[str]) -> None:
        if not secrets:
            raise SettingsError(PAY_SECRETS_MISSING)
        self.db = db
        self.base_url = base_url.rstrip("/")
        self.secrets = secrets

    def __repr__(self) -> str:  # never show a secret
        return f"PayLinks({self.base_url!r}, {len(self.secrets)} secret(s))"

    @classmethod
    def for_settings(cls, settings: Settings, db: Database) -> PayLinks | None:
        if settings.stripe_enabled:
            return cls(db, settings.o2c_public_url or "", settings.pay_link_secrets())
        if settings.o2c_sandbox and settings.pay_link_secrets():
            # the sandbox's stand-in for Stripe's payment page
            from sandbox.web import sandbox_origin

            return cls(db, sandbox_origin(settings), settings.pay_link_secrets())
        return None

    def url_for(self, invoice_number: str | None, *, session: Session | None = None
                ) -> str | None:
        """The invoice's link (made now if it has none), or None when it has nothing to pay
        (paid, or all of it in question: `payment_links.open_to_pay`).
        In its own short transaction, or in `session` (a write transaction already open:
        SQLite has one writer, so a second transaction would wait for this one)."""
        if not invoice_number:
            return None
        if session is not None:
            return self._url(session, invoice_number)
        with self.db.transaction() as own:
            return self._url(own, invoice_number)

    def _url(self, session: Session, invoice_number: str) -> str | None:
        invoice = session.exec(select(Invoice).where(Invoice.number == invoice_number)).first()
        if invoice is None or payment_links.open_to_pay(invoice) == 0:
            return None
        return f"{self.base_url}/pay/{payment_links.token_for(session, invoice, self.secrets)}"

    def email_values(self, template: str, context: dict, *,
                     session: Session | None = None) -> dict:
        """`pay_url` / `pay_urls` for an e-mail template's context (empty when none)."""
        if template not in EMAIL_TEMPLATES:
            return {}
        if template in ("collections_reminder", "dunning_statement"):
            urls = {inv.get("number"): self.url_for(inv.get("number"), session=session)
                    for inv in context.get("invoices") or [] if isinstance(inv, dict)}
            return {"pay_urls": {n: u for n, u in urls.items() if u}}
        invoice = context.get("invoice")
        number = invoice.get("number") if isinstance(invoice, dict) else \
            context.get("invoice_number")
        return {"pay_url": self.url_for(number, session=session)}
