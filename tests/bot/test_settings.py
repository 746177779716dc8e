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


def test_migrate_against_an_unreachable_database_logs_no_password(monkeypatch, capsys,  # noqa: ANN001
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
