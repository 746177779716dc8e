"""manifest.yml creates the app as the code needs it: the command, the events we listen to,
interactivity, Socket Mode, and no scope beyond what the Web API calls we make require."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())

# Web API method -> bot scopes it needs (https://api.slack.com/methods).
SCOPE_OF = {"chat.postMessage": {"chat:write"}, "chat.update": {"chat:write"},
            "chat.postEphemeral": {"chat:write"}, "chat.delete": {"chat:write"},
            "users.info": {"users:read"}, "views.open": set(), "views.update": set(),
            "views.push": set(), "views.publish": set(), "auth.test": set(),
            # the outbox looks for its own earlier post after an unknown outcome (a timeout,
            # a crash): in public and private channels and in DMs, which it opens to find
            "conversations.history": {"channels:history", "groups:history", "im:history"},
            "conversations.open": {"im:write"}, "chat.unfurl": {"links:write"},
            "functions.completeSuccess": set(), "functions.completeError": set()}
# Events API event -> bot scopes it needs (https://api.slack.com/events).
EVENT_SCOPES = {"app_home_opened": set(), "app_uninstalled": set(), "tokens_revoked": set(),
                "message.channels": {"channels:history"}, "message.groups": {"groups:history"},
                "link_shared": {"links:read"}, "function_executed": set(),
                "message.im": {"im:history"}}


def methods_used() -> set[str]:
    """Web API methods named in the code (client.<method_name>() calls and outbox methods)."""
    found: set[str] = set()
    for folder in ("bot", "handlers", "workflows", "api"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text()
            found.update(m.replace("_", ".", 1) for m in re.findall(
                r"client\.(chat_\w+|views_\w+|users_\w+|conversations_\w+)\(", source))
            found.update(re.findall(r'method="((?:chat|views|users)\.\w+)"', source))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(
                        r"^(chat|views|users|conversations|functions)\.[a-zA-Z]+$", node.value):
                    found.add(node.value)
    return {re.sub(r"_(\w)", lambda m: m.group(1).upper(), m) for m in found}


def test_slash_command_and_escaping() -> None:
    (command,) = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/o2c"
    assert command["should_escape"] is True  # mentions arrive as <@U…>, parsed by `role`


def test_events_interactivity_and_socket_mode() -> None:
    settings = MANIFEST["settings"]
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    urls = {settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"],
            MANIFEST["features"]["slash_commands"][0]["url"]}
    assert all(url.endswith("/slack/events") for url in urls)


def test_scopes_are_exactly_what_the_code_needs() -> None:
    used = methods_used()
    unknown = used - SCOPE_OF.keys()
    assert not unknown, f"add these methods to SCOPE_OF and maybe the manifest: {unknown}"
    events = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert not set(events) - EVENT_SCOPES.keys(), "add the event to EVENT_SCOPES"
    needed = set().union(*(SCOPE_OF[m] for m in used), *(EVENT_SCOPES[e] for e in events)) \
        | {"commands"}
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == needed


def test_oauth_install_asks_for_the_manifest_scopes_and_redirects_back() -> None:
    from bot.slack_oauth import BOT_SCOPES

    assert set(BOT_SCOPES) == set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert MANIFEST["oauth_config"]["redirect_urls"] == [
        "https://o2c.example.com/slack/oauth_redirect"]
    assert {"app_uninstalled", "tokens_revoked"} <= set(
        MANIFEST["settings"]["event_subscriptions"]["bot_events"])


def test_shortcuts_are_the_ones_the_app_listens_to() -> None:
    from blocks import ids

    shortcuts = {s["callback_id"]: s["type"] for s in MANIFEST["features"]["shortcuts"]}
    assert shortcuts == {ids.SHORTCUT_DISPUTE: "message", ids.SHORTCUT_NEW_ORDER: "global"}
    assert all(len(s["name"]) <= 24 for s in MANIFEST["features"]["shortcuts"])


def test_workflow_steps_are_declared_with_the_inputs_read_and_outputs_given() -> None:
    from workflows import workflow_steps

    functions = MANIFEST["functions"]
    assert set(functions) == set(workflow_steps.STEPS)
    for step in functions.values():
        # the person who ran the workflow: a builder cannot type one in (workflow_steps)
        assert step["input_parameters"]["requested_by"]["type"] == "slack#/types/user_context"
    outputs = {name: set(f["output_parameters"]) for name, f in functions.items()}
    assert outputs == {"request_credit_approval": {"decision", "approver", "note",
                                                   "credit_limit", "limit_raised"},
                       "look_up_customer_balance": {"open_ar", "overdue", "credit_available"},
                       "log_collection_activity": {"activity_id"}}
    settings = MANIFEST["settings"]
    assert settings["org_deploy_enabled"] is True and settings["function_runtime"] == "remote"
