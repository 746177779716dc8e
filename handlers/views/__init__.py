"""Modal listeners (`view_submission`, `view_closed`, `block_suggestion`). One module per
feature, each with `register(app)`; add it to the tuple below."""

from __future__ import annotations

from slack_bolt import App

MODULES: tuple[str, ...] = ("approvals", "backoffice", "collections", "order_entry", "payment")


def register(app: App) -> None:
    import importlib

    for name in MODULES:
        importlib.import_module(f"handlers.views.{name}").register(app)
