"""Secrets in settings: never in a repr, a validation error or a log line (SPEC §5.9)."""

from __future__ import annotations

import logging
import socket

import pytest

from bot.cli import main
from bot.server import build_deps
from bot.settings import SettingsError, load_settings

SECRETS = {
    "database_url": ("postgresql://o2c:hunter2@db.internal:5432/o2c", "hunter2"),
    "slack_bot_token": ("xoxb-bot-token-4711", "xoxb-bot-token-4711"),
    "slack_signing_secret": ("signing-secret-0815", "signing-secret-0815"),
    "slack_app_token": ("xapp-app-token-2342", "xapp-app-token-2342"),
    "o2c_api_token": ("api-token-1337", "api-token-1337"),
    "smtp_url": ("smtp://ar:mailpass99@mail.example:587", "mailpass99"),
    "stripe_api_key": ("sk_live_stripekey42", "sk_live_stripekey42"),
    "stripe_webhook_secret": ("whsec_stripehook42", "whsec_stripehook42"),
    "hubspot_access_token": ("pat-na1-hubtoken42", "pat-na1-hubtoken42"),
    "hubspot_client_secret": ("hub-client-secret42", "hub-client-secret42"),
}


def test_repr_of_settings_and_deps_shows_no_secret() -> None:
    # given
    settings = load_settings(**{name: value for name, (value, _) in SECRETS.items()})
    deps = build_deps(settings)
    # when
    shown = [repr(settings), str(settings), repr(deps), str(deps)]
    # then
    for text in shown:
        for name, (_, secret) in SECRETS.items():
            assert secret not in text, f"{name} leaks"
    assert settings.database_url == SECRETS["database_url"][0]  # still usable as it was


def test_an_invalid_database_url_is_named_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL") as refused:
        load_settings(database_url="mysql://o2c:hunter2@db/o2c")
    assert "hunter2" not in str(refused.value)


def test_migrate_against_an_unreachable_database_logs_no_password(monkeypatch, capsys,
                                                                  caplog) -> None:
    # given: a PostgreSQL URL with a password, pointing at a port nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://o2c:hunter2@127.0.0.1:{port}/o2c")
    caplog.set_level(logging.DEBUG)
    # when
    code = main(["migrate"])
    # then: one line saying what it could not reach, without the password
    out = capsys.readouterr()
    assert code == 3
    assert "hunter2" not in out.out + out.err + caplog.text
    assert "cannot reach the database postgresql://o2c:***@127.0.0.1" in out.err


def test_stripe_needs_the_public_url_and_the_mapping_is_checked() -> None:
    base = {"slack_bot_token": "xoxb-1", "slack_signing_secret": "s", "o2c_api_token": "t"}
    with pytest.raises(SettingsError, match="O2C_PUBLIC_URL") as refused:
        load_settings(**base, stripe_api_key="sk_test_hidden42").require_for_serve()
    assert "sk_test_hidden42" not in str(refused.value)
    # the Pay now links' tokens are derived from a secret (only their hash is stored)
    with pytest.raises(SettingsError, match="O2C_PAY_LINK_SECRETS"):
        load_settings(**base, stripe_api_key="sk_test_x",
                      o2c_public_url="https://o2c.example.com/").require_for_serve()
    with pytest.raises(SettingsError, match="O2C_PAY_LINK_SECRETS.*at least 32"):
        load_settings(o2c_pay_link_secrets="short")
    ready = load_settings(**base, stripe_api_key="sk_test_x",
                          o2c_pay_link_secrets="p" * 32 + ", " + "q" * 32,
                          o2c_public_url="https://o2c.example.com/").require_for_serve()
    assert ready.pay_link_secrets() == ["p" * 32, "q" * 32]
    assert load_settings(o2c_link_secrets="l" * 32).pay_link_secrets() == ["l" * 32]
    assert ready.stripe_enabled and ready.o2c_public_url == "https://o2c.example.com"
    with pytest.raises(SettingsError, match="O2C_PUBLIC_URL"):
        load_settings(o2c_public_url="o2c.example.com")
    with pytest.raises(SettingsError, match="O2C_HUBSPOT_MAPPING"):
        load_settings(o2c_hubspot_mapping="{not json")
    assert not load_settings(**base).stripe_enabled  # nothing set: the feature is off


def test_an_unknown_hubspot_mapping_key_stops_the_server() -> None:
    settings = load_settings(slack_bot_token="xoxb-1", slack_signing_secret="s",
                             o2c_api_token="t", hubspot_access_token="pat-1",
                             o2c_hubspot_mapping='{"won_stage": ["closedwon"]}')
    with pytest.raises(SettingsError, match="won_stage"):
        settings.require_for_serve()


def test_oauth_install_needs_client_id_and_secret_instead_of_the_bot_token() -> None:
    base = {"slack_signing_secret": "s", "o2c_api_token": "t"}
    # both: OAuth mode, no SLACK_BOT_TOKEN needed
    ready = load_settings(**base, slack_client_id="1.2",
                          slack_client_secret="hidden-secret-9").require_for_serve()
    assert ready.oauth_enabled
    assert "hidden-secret-9" not in repr(ready)
    # one of the two, or together with a bot token or Socket Mode: refused, naming them
    with pytest.raises(SettingsError, match="SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"):
        load_settings(**base, slack_client_id="1.2").require_for_serve()
    with pytest.raises(SettingsError, match="not both"):
        load_settings(**base, slack_client_id="1.2", slack_client_secret="x",
                      slack_bot_token="xoxb-1").require_for_serve()
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN"):
        load_settings(**base, slack_client_id="1.2", slack_client_secret="x",
                      slack_app_token="xapp-1").require_for_serve()
    # neither: the bot token is required, as before
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        load_settings(**base).require_for_serve()
    assert not load_settings(**base, slack_bot_token="xoxb-1").oauth_enabled


@pytest.mark.parametrize(("mapping", "says"), [
    # a string where a list goes would match by substring: stage "won" in "closedwon"
    ('{"won_stages": "closedwon"}', "won_stages"),
    ('{"pipelines": "default"}', "pipelines"),
    ('{"won_stages": []}', "won_stages"),  # no deal could ever become an order
    ('{"won_stages": [1]}', "won_stages"),
    ('{"customer_object": "contact"}', "customer_object"),
    ('{"customer_property": ""}', "customer_property"),
    ('{"sku_property": ["hs_sku"]}', "sku_property"),
    ('{"sales_rep_by_owner": {"910": 7}}', "sales_rep_by_owner"),
    ('{"sales_rep_by_owner": ["U0123SAM"]}', "sales_rep_by_owner"),
    ('{"default_sales_rep": "sam"}', "default_sales_rep"),
    ('{"deal_properties": {"order_totl": "o2c_order_total"}}', "order_totl"),
    ('{"deal_properties": {"order_total": 5}}', "deal_properties"),
    ('["closedwon"]', "O2C_HUBSPOT_MAPPING"),
])
def test_a_hubspot_mapping_of_the_wrong_shape_stops_the_server(mapping, says) -> None:
    # given a mapping whose keys are known but whose values are not what they must be
    # when the server starts / then it refuses, naming the setting and the key
    with pytest.raises(SettingsError, match=says) as refused:
        load_settings(slack_bot_token="xoxb-1", slack_signing_secret="s", o2c_api_token="t",
                      hubspot_access_token="pat-1",
                      o2c_hubspot_mapping=mapping).require_for_serve()
    assert "O2C_HUBSPOT_MAPPING" in str(refused.value)


def test_a_hubspot_mapping_of_the_right_shape_is_taken() -> None:
    settings = load_settings(
        slack_bot_token="xoxb-1", slack_signing_secret="s", o2c_api_token="t",
        hubspot_access_token="pat-1", o2c_hubspot_mapping=(
            '{"pipelines": [], "won_stages": ["closedwon", "contractsigned"], '
            '"customer_object": "deal", "sales_rep_by_owner": {"910": "U0123SAM"}, '
            '"default_sales_rep": null, "deal_properties": {"order_number": "o2c_no"}}'))
    settings.require_for_serve()
    from bot.hubspot import Mapping

    mapping = Mapping.of(settings.o2c_hubspot_mapping)
    assert mapping.wins("anything", "contractsigned") and not mapping.wins("x", "won")


def test_holidays_the_library_does_not_know_stop_the_server_and_known_ones_are_read() -> None:
    with pytest.raises(SettingsError, match="O2C_HOLIDAYS") as refused:
        load_settings(o2c_holidays="US-XX")
    assert "US has no subdivision 'XX'" in str(refused.value)
    assert load_settings(o2c_holidays=" gb-sct,2026-12-24").policy().holidays == (
        "GB-SCT,2026-12-24")
