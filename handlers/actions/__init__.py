"""Button and select listeners (`block_actions`). One module per feature, each with
`register(app)`; add it to the tuple below."""

from __future__ import annotations

from slack_bolt import App

MODULES: tuple[str, ...] = ("approvals", "backorders", "cashapp", "collections", "credit_hold",
                            "links")


def register(app: App) -> None:
    import importlib

    for name in MODULES:
        importlib.import_module(f"handlers.actions.{name}").register(app)
