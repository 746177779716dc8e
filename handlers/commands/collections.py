"""`/o2c worklist` (collectors), `/o2c admin outbox` and `/o2c dunning confirm` (admins)."""

from __future__ import annotations

from blocks.collections import worklist_blocks
from blocks.common import context, lines_text, render, section
from blocks.text import SECTION_TEXT_MAX, esc, fmt_datetime
from handlers.commands.call import CommandCall, claim_command
from handlers.common import caller, checking, describe_error, today_for, transaction
from models import OutboxMessage, Role
from models.limits import record_id
from workflows import audit, dunning, outbox, receipts
from workflows.collections import require_collector, worklist
from workflows.errors import DomainError
from workflows.users import require_role

LISTED = 20  # outbox rows per section of `/o2c admin outbox`


def _refused(call: CommandCall, exc: DomainError) -> None:
    call.answer(render([section(describe_error(exc))]), "Not allowed")


def worklist_command(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    today = today_for(call.context, user)
    try:
        with checking(call.context) as session:  # a refusal is audited
            require_collector(session, user_id=call.user_id, action="collections.worklist")
            snapshot = worklist(session, call.user_id, today).snapshot()
    except DomainError as exc:
        _refused(call, exc)
        return
    call.answer(worklist_blocks(snapshot, title="Your collections worklist", tz=user.timezone,
                                fmt=call.fmt),
                f"Your worklist: {snapshot['total_accounts']} overdue account(s)")


def _row(row: OutboxMessage, tz: str) -> str:
    payload = row.payload or {}
    target = payload.get("to") or payload.get("channel") or payload.get("user_id") or "?"
    error = f" — {esc(row.last_error[:200])}" if row.last_error else ""
    return (f"• #{row.id} `{row.status}` {row.transport} `{esc(payload.get('template'))}` → "
            f"{esc(target)} · {row.attempts} attempt(s) · {fmt_datetime(row.created_at, tz)}"
            f"{error}")


def _require_admin(session, user_id: str, action: str) -> None:
    require_role(session, user_id=user_id, roles=(Role.ADMIN,), action=action,
                 entity_type="outbox")


def _retry(call: CommandCall, which: str) -> None:
    """Re-queue failed messages (one or all), audited with the admin as the actor; the role is
    checked again in the transaction that changes the rows."""
    row_id = None if which == "all" else int(which)
    try:
        with transaction(call.context) as session:
            _require_admin(session, call.user_id, "admin.outbox.retry")
            receipt = claim_command(session, call, "outbox.retry")  # once per command
            count = outbox.requeue_failed(session, row_id)
            if count:
                audit.record(session, actor=call.user_id, action="outbox.requeue",
                             entity_type="outbox", entity_id=which, from_state="failed",
                             to_state="pending", count=count)
            if receipt is not None:
                receipts.remember(session, receipt, count=count)
    except receipts.AlreadyHandled as done:  # a replay: told what the first one was told
        count = int(done.result.get("count") or 0)
    call.answer(render([section(f":repeat: {count} message(s) queued again.")]), "Retried")


def admin(call: CommandCall) -> None:
    parts = call.args.lower().split()
    user = caller(call.context, call.user_id, call.user_name, call.client)
    listing = parts == ["outbox"]
    try:
        with checking(call.context) as session:  # a refusal is audited
            _require_admin(session, call.user_id, "admin.outbox")
            if listing:
                failed, queued = outbox.failed(session, LISTED), outbox.queued(session, LISTED)
    except DomainError as exc:
        _refused(call, exc)
        return
    if len(parts) == 3 and parts[:2] == ["outbox", "retry"] and (
            parts[2] == "all" or record_id(parts[2]) is not None):
        _retry(call, parts[2])
        return
    if not listing:
        call.answer(render([section("Usage: `/o2c admin outbox [retry &lt;id|all&gt;]`")]), "Usage")
        return
    blocks = [_listing("*Failed* (kept until retried)", failed, user.timezone),
              _listing("*Waiting for delivery*", queued, user.timezone),
              context(f"At most {LISTED} of each: the newest failed, the oldest waiting. "
                      "`/o2c admin outbox retry &lt;id|all&gt;` queues failed messages again; "
                      "e-mails wait here while `SMTP_URL` is not set.")]
    call.answer(render(blocks), f"Outbox: {len(failed)} failed, {len(queued)} waiting")


def _listing(title: str, rows: list[OutboxMessage], tz: str) -> dict:
    """One section; rows that would not fit are counted ("…and N more"), never cut."""
    head = title + "\n"
    body = lines_text((_row(r, tz) for r in rows), limit=SECTION_TEXT_MAX - len(head))
    return section(head + (body or "none"))


DUNNING_USAGE = "/o2c dunning confirm"


def dunning_command(call: CommandCall) -> None:
    """`/o2c dunning confirm`: an admin lets the waiting (large) dunning run send; the role is
    checked in the transaction that confirms, and the confirmation audited
    (`workflows.dunning.confirm`)."""
    if call.args.lower().split() != ["confirm"]:
        call.answer(render([section(f"Usage: `{esc(DUNNING_USAGE)}`")]), "Usage")
        return
    fmt = call.fmt  # before the transaction: a first look-up of the locale writes
    try:
        with transaction(call.context) as session:
            request = dunning.confirm(session, user_id=call.user_id,
                                      now=call.deps.clock.now())
            answer = (f":white_check_mark: Dunning of {fmt.date(request.as_of)} confirmed: "
                      f"{fmt.number(request.emails)} e-mail(s) to "
                      f"{fmt.number(request.customers)} customer(s) go out with the next "
                      "dunning run.")
    except DomainError as exc:
        _refused(call, exc)
        return
    call.answer(render([section(answer)]), "Dunning confirmed")
