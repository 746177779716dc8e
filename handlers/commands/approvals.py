"""`/o2c approvals`: what waits for the caller — decisions (approvers) and their own requests
(reps) — and `/o2c policy [set <key> <value>]` (admins change policy values, audited)."""

from __future__ import annotations

from blocks.approvals import pending_list, refusal
from blocks.policy import policy_message
from handlers.commands.call import CommandCall, claim_command
from handlers.common import record_channel_workspace, transaction
from workflows import approvals, policy, policy_admin, receipts
from workflows.errors import DomainError


def pending(call: CommandCall) -> None:
    with call.deps.db.read_session() as session:
        overview = approvals.pending_overview(session, call.user_id, now=call.deps.clock.now())
    call.answer(pending_list(overview, fmt=call.fmt), "Pending approvals")


POLICY_USAGE = "/o2c policy [set <key> <value>]"


def policy_values(call: CommandCall) -> None:
    parts = call.args.split(None, 2)
    if not parts:
        with call.deps.db.read_session() as session:
            current = policy.current(session)
            invalid = policy.invalid_overrides(session)
        call.answer(policy_message(current, usage=POLICY_USAGE, invalid=invalid), "Policy")
        return
    if parts[0].lower() != "set" or len(parts) != 3:
        call.answer(refusal(f"Usage: {POLICY_USAGE}"), "Usage")
        return
    try:
        with transaction(call.context) as session:
            claim_command(session, call, "policy")  # a replay cannot undo a later change
            current = policy_admin.change(session, actor=call.user_id, key=parts[1],
                                          value=parts[2])
            if parts[1].strip().lower() == "disputes_channel":  # its posts: this workspace's
                record_channel_workspace(session, call.context, current.disputes_channel)
    except receipts.AlreadyHandled:
        with call.deps.db.read_session() as session:
            current = policy.current(session)
    except DomainError as error:
        call.answer(refusal(error.detail), "Not changed")
        return
    call.answer(policy_message(current, usage=POLICY_USAGE, changed=parts[1].lower()),
                "Policy changed")
