"""The sandbox's "Pay now" needs no provider key: `o2c demo` gives the server a random Stripe
webhook secret (the stand-in payment page signs its webhook with it) and no Stripe or HubSpot
key. The whole flow, in a browser — from the AR channel's copy of a queued invoice e-mail,
through the bot's pay page and the stand-in for Stripe's payment page, to the payment in
Slack — is `test_browser.py::test_pay_now_in_the_browser_pays_the_invoice_through_a_signed_webhook`.
"""

from __future__ import annotations

from bot.demo import demo_settings


def test_the_demo_has_a_webhook_secret_and_no_provider_keys(tmp_path) -> None:
    settings = demo_settings(3999, f"sqlite:///{tmp_path / 'demo.db'}")
    assert (settings.secret("stripe_webhook_secret") or "").startswith("whsec_")
    assert settings.stripe_api_key is None and not settings.stripe_enabled
    assert settings.hubspot_access_token is None
    assert settings.o2c_public_url is None
