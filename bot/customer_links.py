"""Signed links for customers, and the links e-mails carry (issue 19).

A link's token is `<link id>.<MAC>`: MAC = HMAC-SHA256(secret, "o2c-link:<scope>:<id>"),
base64url, truncated to 128 bits. The scope is inside the MAC, so a page link cannot be used
as a backorder link or the other way round. `O2C_LINK_SECRETS` holds one or more secrets:
the first signs, every one verifies, so a secret is rotated by putting the new one first and
dropping the old one once its links have expired. What a link may do, until when, whether it
was revoked or used: the `customer_links` row (`workflows.customer_links`), never the token.

Tracking links come from per-carrier URL templates (`{tracking}` is replaced by the quoted
tracking number): the built-in ones below, completed or replaced by `O2C_TRACKING_URLS`
("carrier=url,carrier=url"). A carrier without a template gets no link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from bot.settings import Settings

MAC_BYTES = 16
TRACKING_URLS = {
    "ups": "https://www.ups.com/track?tracknum={tracking}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={tracking}",
    "dhl": "https://www.dhl.com/en/express/tracking.html?AWB={tracking}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking}",
}
CUSTOMER_TEMPLATES = ("notice_order_confirmation", "notice_backorder_notice",
                      "notice_shipment_notice", "notice_delivery_notice", "notice_page_link")


def parse_tracking_urls(value: str) -> dict[str, str]:
    """`carrier=url,carrier=url` -> {carrier (lower case): url}; ValueError naming the bad
    part."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (value or "").split(","))):
        carrier, sep, url = part.partition("=")
        carrier, url = carrier.strip().lower(), url.strip()
        parts = urlsplit(url)
        if not sep or not carrier or parts.scheme != "https" or not parts.netloc \
                or "{tracking}" not in url:
            raise ValueError(f"{part!r}: expected carrier=https://...{{tracking}}...")
        found[carrier] = url
    return found


def _mac(secret: str, scope: str, link_id: int) -> str:
    digest = hmac.new(secret.encode(), f"o2c-link:{scope}:{link_id}".encode(),
                      hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class LinkSigner:
    def __init__(self, secrets: list[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret")
        self.secrets = secrets

    def __repr__(self) -> str:  # never show a secret
        return f"LinkSigner({len(self.secrets)} secret(s))"

    def token(self, scope: str, link_id: int) -> str:
        return f"{link_id}.{_mac(self.secrets[0], scope, link_id)}"

    def verify(self, scope: str, token: str) -> int | None:
        """The link id a token carries when one of the secrets signed it for `scope`."""
        head, sep, mac = (token or "").partition(".")
        if not sep or not (head.isascii() and head.isdigit()) or len(head) > 12 or len(
                mac) > 64:  # (isdigit alone takes "²", which int() does not)
            return None
        link_id = int(head)
        ok = False
        for secret in self.secrets:  # all of them, so timing says nothing about which
            ok |= hmac.compare_digest(_mac(secret, scope, link_id).encode(), mac.encode())
        return link_id if ok else None


class CustomerLinks:
    """URLs for customers: signed page and choice links, carriers' tracking links."""

    def __init__(self, *, public_url: str | None, signer: LinkSigner | None,
                 tracking: dict[str, str] | None = None) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.signer = signer if public_url else None
        self.tracking = {**TRACKING_URLS, **(tracking or {})}

    @classmethod
    def for_settings(cls, settings: Settings) -> CustomerLinks:
        secrets = settings.secret("o2c_link_secrets")
        signer = LinkSigner([s.strip() for s in secrets.split(",")]) if secrets else None
        public_url = settings.o2c_public_url
        if public_url is None and settings.o2c_sandbox:  # the demo: this server, locally
            from sandbox.web import sandbox_origin

            public_url = sandbox_origin(settings)
        return cls(public_url=public_url, signer=signer,
                   tracking=parse_tracking_urls(settings.o2c_tracking_urls))

    def email_buttons(self, template: str, context: dict) -> list[tuple[str, str]]:
        """The links of a customer e-mail as (label, url), for its copy in Slack while it
        waits for SMTP (the sandbox's mail view: act as the customer by following them)."""
        values = self.email_values(template, context)
        found = []
        labels = {"ship_now": "Ship what is available now", "wait": "Wait for the rest",
                  "cancel_short": "Cancel the missing quantities"}
        for choice, url in (values.get("choice_urls") or {}).items():
            if url:
                found.append((labels[choice], url))
        if values.get("page_url"):
            found.append(("Open your account page", values["page_url"]))
        if values.get("tracking_url"):
            found.append(("Track the shipment", values["tracking_url"]))
        return found

    @property
    def enabled(self) -> bool:
        return self.signer is not None

    def tracking_url(self, carrier: str | None, number: str | None) -> str | None:
        template = self.tracking.get((carrier or "").strip().lower())
        if not template or not number:
            return None
        return template.replace("{tracking}", quote(number.strip(), safe=""))

    def portal_url(self, link_id: int) -> str | None:
        if self.signer is None:
            return None
        return f"{self.public_url}/c/{self.signer.token('portal', link_id)}"

    def choice_url(self, link_id: int, choice: str) -> str | None:
        if self.signer is None:
            return None
        return f"{self.public_url}/c/backorder/{self.signer.token('backorder', link_id)}/{choice}"

    def email_values(self, template: str, context: dict) -> dict:
        """Links for a customer notice's template (empty for other templates)."""
        if template not in CUSTOMER_TEMPLATES:
            return {}
        values: dict = {"tracking_url": self.tracking_url(context.get("carrier"),
                                                          context.get("tracking_number")),
                        "choice_urls": None, "choice_expires": context.get("link_expires_at"),
                        "opt_out_note": None}
        link_id = context.get("link_id")
        if template == "notice_backorder_notice" and link_id and self.signer is not None:
            values["choice_urls"] = {c: self.choice_url(int(link_id), c)
                                     for c in ("ship_now", "wait", "cancel_short")}
        if template == "notice_page_link":
            values["page_url"] = self.portal_url(int(link_id)) if link_id else None
        if template in ("notice_shipment_notice", "notice_delivery_notice"):
            values["opt_out_note"] = ("You receive shipment and delivery notices for your "
                                      "orders; reply \"essential only\" to stop them.")
        return values
