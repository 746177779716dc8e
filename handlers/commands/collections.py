"""`/o2c worklist` (collectors) and `/o2c admin outbox` (admins)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from blocks.collections import worklist_blocks
from blocks.common import context, render, section
from blocks.text import esc, fmt_datetime
from handlers.commands import CommandCall, subcommand
from handlers.common import caller, transaction
from models import OutboxMessage, Role
from workflows import outbox
from workflows.collections import require_collector, worklist
from workflows.errors import DomainError
from workflows.users import require_role


def local_today(tz: str):  # noqa: ANN201
    try:
        return datetime.now(ZoneInfo(tz or "UTC")).date()
    except Exception:  # noqa: BLE001 - a bad tz falls back to UTC
        return datetime.now(ZoneInfo("UTC")).date()


def _allowed(call: CommandCall, check) -> bool:  # noqa: ANN001
    """Run a role check (a refusal is audited by `transaction`) and answer a refusal."""
    try:
        with transaction(call.context) as session:
            check(session)
    except DomainError as exc:
        call.answer(render([section(f":warning: {esc(exc.detail)}")]), "Not allowed")
        return False
    return True


@subcommand("worklist", usage="/o2c worklist",
            summary="your overdue accounts, ranked by collection priority (collectors)")
def worklist_command(call: CommandCall) -> None:
    user = caller(call.context, call.user_id, call.user_name, call.client)
    today = local_today(user.timezone)
    if not _allowed(call, lambda s: require_collector(s, user_id=call.user_id,
                                                      action="collections.worklist")):
        return
    with call.deps.db.read_session() as session:
        snapshot = worklist(session, call.user_id, today).snapshot()
    call.answer(worklist_blocks(snapshot, title="Your collections worklist", tz=user.timezone),
                f"Your worklist: {snapshot['total_accounts']} overdue account(s)")


def _row(row: OutboxMessage, tz: str) -> str:
    payload = row.payload or {}
    target = payload.get("to") or payload.get("channel") or payload.get("user_id") or "?"
    error = f" — {esc(row.last_error[:200])}" if row.last_error else ""
    return (f"• #{row.id} `{row.status}` {row.transport} `{esc(payload.get('template'))}` → "
            f"{esc(target)} · {row.attempts} attempt(s) · {fmt_datetime(row.created_at, tz)}"
            f"{error}")


@subcommand("admin", usage="/o2c admin outbox [retry <id|all>]",
            summary="admins: undelivered and failed notifications; queue failed ones again")
def admin(call: CommandCall) -> None:
    parts = call.args.split()
    user = caller(call.context, call.user_id, call.user_name, call.client)
    if not _allowed(call, lambda s: require_role(s, user_id=call.user_id, roles=(Role.ADMIN,),
                                                 action="admin.outbox")):
        return
    if not parts or parts[0].lower() != "outbox":
        call.answer(render([section("Usage: `/o2c admin outbox [retry <id|all>]`")]), "Usage")
        return
    db = call.deps.db
    if len(parts) >= 3 and parts[1].lower() == "retry":
        which = parts[2].lower()
        if which != "all" and not which.isdigit():
            call.answer(render([section("Usage: `/o2c admin outbox retry <id|all>`")]), "Usage")
            return
        with db.transaction() as session:
            count = outbox.requeue_failed(session, None if which == "all" else int(which))
        call.deps.notify_outbox()
        call.answer(render([section(f":repeat: {count} message(s) queued again.")]), "Retried")
        return
    with db.read_session() as session:
        failed, queued = outbox.failed(session, 20), outbox.queued(session, 20)
    blocks = [section("*Failed* (kept until retried)\n"
                      + ("\n".join(_row(r, user.timezone) for r in failed) or "none")),
              section("*Waiting for delivery*\n"
                      + ("\n".join(_row(r, user.timezone) for r in queued) or "none")),
              context("`/o2c admin outbox retry <id|all>` queues failed messages again; "
                      "e-mails wait here while `SMTP_URL` is not set.")]
    call.answer(render(blocks), f"Outbox: {len(failed)} failed, {len(queued)} waiting")
