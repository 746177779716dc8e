"""Events API listeners. One module per feature, each with `register(app)`."""

from __future__ import annotations

from slack_bolt import App

MODULES: tuple[str, ...] = ("app_home", "collections", "kpi_home")


def register(app: App) -> None:
    import importlib

    for name in MODULES:
        importlib.import_module(f"handlers.events.{name}").register(app)
