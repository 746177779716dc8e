"""`/o2c role add|remove <@user> <role>` — admins only; every change and refusal audited."""

from __future__ import annotations

import re

from slack_sdk import WebClient

from blocks.common import context, render, section
from blocks.text import esc, refusal
from handlers.commands.call import CommandCall, claim_command
from handlers.common import SLACK_UNREACHABLE, describe_error, transaction, users_info
from models import Role
from workflows import receipts
from workflows.errors import DomainError
from workflows.users import change_role, has_role

USAGE = "/o2c role <add|remove> <@user> <" + "|".join(r.value for r in Role) + ">"
MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$|^@?([UW][A-Z0-9]{2,})$")


def role(call: CommandCall) -> None:
    parts = call.args.split()
    if len(parts) != 3 or parts[0].lower() not in ("add", "remove"):
        call.answer(render([section(f"Usage: `{esc(USAGE)}`")]), "Usage")
        return
    verb, who, role_name = parts[0].lower(), parts[1], parts[2].lower()
    match = MENTION.match(who)
    if not match:
        call.answer(render([section(refusal(f"`{esc(who)}` is not a user mention",
                                            what="change a role")),
                             context(f"Usage: `{esc(USAGE)}`")]), "Not done")
        return
    target = match.group(1) or match.group(2)
    if role_name not in Role.__members__.values():
        call.answer(render([section(refusal(f"there is no role `{esc(role_name)}`",
                                            what="change a role")),
                            context("Roles: " + ", ".join(r.value for r in Role))]),
                    "Not done")
        return
    if verb == "add":
        with call.deps.db.read_session() as session:
            by_admin = has_role(session, call.user_id, Role.ADMIN)
        # (a non-admin is refused, and audited, by change_role: Slack is not asked for them)
        problem = not_a_member(call.client, target) if by_admin else None
        if problem is not None:
            call.answer(render([section(refusal(problem, what=f"give <@{target}> a role"))]),
                        "Not done")
            return
    try:
        with transaction(call.context) as session:
            # once per command: a replayed old "add" cannot undo a later "remove"
            receipt = claim_command(session, call, "role")
            changed = change_role(session, actor=call.user_id, user_id=target, role=role_name,
                                  add=verb == "add")
            if receipt is not None:
                receipts.remember(session, receipt, changed=changed)
    except receipts.AlreadyHandled as done:  # a replay: told what the first one was told
        changed = bool(done.result.get("changed"))
    except DomainError as exc:
        call.answer(render([section(describe_error(exc))]), "Not done")
        return
    if not changed:
        text = (f"<@{target}> already has `{role_name}`." if verb == "add"
                else f"<@{target}> did not have `{role_name}`.")
    else:
        text = (f":white_check_mark: <@{target}> now has `{role_name}`." if verb == "add"
                else f":white_check_mark: <@{target}> no longer has `{role_name}`.")
    call.answer(render([section(text)]), "Role updated")


def not_a_member(client: WebClient, user_id: str) -> str | None:
    """Why `user_id` cannot be given a role (Slack's `users.info`): not in the workspace,
    deactivated, or a bot; or Slack could not say now (then nothing is granted blindly).
    None for an active person of the workspace."""
    info, error = users_info(client, user_id)
    if error in ("user_not_found", "users_not_found"):
        return f"there is no user `{esc(user_id)}` in this workspace"
    if error == SLACK_UNREACHABLE:
        return (f"Slack could not be reached to check who `{esc(user_id)}` is; try again in "
                "a moment")
    if error:
        return (f"Slack could not say who `{esc(user_id)}` is right now ({esc(error)}); "
                "try again in a moment")
    if info is None:
        return (f"Slack could not say who `{esc(user_id)}` is right now; try again in a "
                "moment")
    if info.get("deleted"):
        return f"<@{user_id}> has been deactivated in Slack"
    if info.get("is_bot") or info.get("is_workflow_bot") or user_id == "USLACKBOT":
        return f"<@{user_id}> is a bot, not a person"
    return None
