"""Notification templates: the outbox stores (template name, JSON context); the worker calls
`render()` at delivery to get the message's `text` and `blocks` (or a view for App Home).

Register a template with `@template("name")` on a pure function `context -> dict` returning
`{"text": ..., "blocks": [...]}` (messages) or `{"view": {...}}` (views.publish). Template
modules are imported at the bottom so registering one is one line there.
"""

from __future__ import annotations

from collections.abc import Callable

Renderer = Callable[[dict], dict]
_REGISTRY: dict[str, Renderer] = {}


class UnknownTemplate(KeyError):
    pass


def template(name: str) -> Callable[[Renderer], Renderer]:
    def register(func: Renderer) -> Renderer:
        if name in _REGISTRY and _REGISTRY[name] is not func:
            raise ValueError(f"template {name!r} registered twice")
        _REGISTRY[name] = func
        return func
    return register


def render(name: str, context: dict) -> dict:
    try:
        func = _REGISTRY[name]
    except KeyError:
        raise UnknownTemplate(name) from None
    return func(context)


def names() -> list[str]:
    return sorted(_REGISTRY)


# Template modules (each registers its templates on import).
from blocks import (  # noqa: E402,F401
    approvals,
    cashapp,
    collections,
    integrations,
    kpi,
    notifications,
)
