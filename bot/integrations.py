"""Which integration transports a process delivers with (the second outbox worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.outbox import Transport


def transports(deps: Deps, settings: Settings) -> list[Transport]:
    """Outbound webhooks always (rows exist only when someone subscribed); HubSpot with
    `HUBSPOT_ACCESS_TOKEN`; Stripe look-ups (fees) with `STRIPE_API_KEY`."""
    from bot.webhooks_out import WebhookTransport

    found: list[Transport] = [WebhookTransport(
        deps.db, allow_private=settings.o2c_webhooks_allow_private)]
    if settings.stripe_enabled:
        from bot.stripe_pay import StripeGateway, StripeTransport

        found.append(StripeTransport(deps.db, StripeGateway(
            settings.secret("stripe_api_key") or "")))
    if settings.secret("hubspot_access_token"):
        from bot.hubspot import HubSpotTransport

        found.append(HubSpotTransport(deps.db, settings))
    return found
