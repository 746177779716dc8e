"""Issue 19: the customer's page and statements, from Slack (collectors and admins).

* `/o2c customer-page <customer>` e-mails the customer a new signed link to their page;
  `/o2c customer-page revoke <customer>` withdraws every live link of theirs (page and
  unused backorder choices).
* `/o2c statement <customer> [YYYY-MM]` e-mails their statement of account (PDF) for that
  month, or for the last 12 months up to today.

Each runs once per invocation (`claim_command`); the role is checked on the server by the
subcommand table and again by the workflow; every send and revoke is audited.
"""

from __future__ import annotations

import re
from datetime import date

from blocks.common import context, render, section
from blocks.text import esc, refusal
from handlers.commands.call import CommandCall, claim_command
from handlers.commands.lookups import _resolve_customer
from handlers.common import caller, describe_error, today_for, transaction
from models import Role
from workflows import customer_links, periods, receipts, statements
from workflows.errors import DomainError, ValidationFailed
from workflows.workcalendar import zone_or_utc

PAGE_USAGE = "/o2c customer-page [revoke] <customer>"
STATEMENT_USAGE = "/o2c statement <customer> [YYYY-MM]"
ROLES = (Role.COLLECTOR, Role.ADMIN)
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _say(call: CommandCall, text: str, fallback: str, note: str | None = None) -> None:
    """`text` is mrkdwn (user text escaped in it); `fallback`, the notification's plain text,
    has user text as it is (`call.answer` escapes it once)."""
    blocks = [section(text)] + ([context(note)] if note else [])
    call.answer(render(blocks), fallback)


def customer_page(call: CommandCall) -> None:
    words = call.args.split(None, 1)
    revoking = bool(words) and words[0].lower() == "revoke"
    if revoking:
        call.args = words[1] if len(words) > 1 else ""
    if not revoking and not call.deps.customer_links_enabled:
        _say(call, refusal("customer pages are off: an admin sets `O2C_LINK_SECRETS` and "
                           "`O2C_PUBLIC_URL` to turn them on", what="send a customer page"),
             "Customer pages are off")
        return
    now = call.deps.clock.now()
    try:
        with transaction(call.context) as session:
            customer = _resolve_customer(call, session, PAGE_USAGE)
            if customer is None:
                return
            receipt = claim_command(session, call, "customer.page")
            if revoking:
                count = customer_links.revoke(session, customer=customer, actor=call.user_id,
                                              now=now)
                result = {"revoked": count, "name": customer.name}
            else:
                link, to = customer_links.send_portal_link(session, customer=customer,
                                                           actor=call.user_id, now=now)
                # the day it expires in the collector's own zone (not UTC's)
                zone = zone_or_utc(caller(call.context, call.user_id, call.user_name,
                                          call.client).timezone)
                result = {"to": to, "name": customer.name,
                          "expires": link.expires_at.astimezone(zone).date().isoformat()}
            if receipt is not None:
                receipts.remember(session, receipt, **result)
    except receipts.AlreadyHandled as done:
        result = done.result
    except DomainError as exc:
        _say(call, describe_error(exc), "Not done")
        return
    call.deps.notify_outbox()
    if "revoked" in result:
        _say(call, f":lock: {result['revoked']} live link(s) of *{esc(result['name'])}* "
                   "revoked; they now show “This link was withdrawn”.",
             f"{result['revoked']} live link(s) of {result['name']} revoked")
    else:
        _say(call, f":envelope: A link to their page is on its way to *{esc(result['name'])}* "
                   f"({esc(result['to'])}), valid until "
                   f"{call.fmt.date(date.fromisoformat(result['expires']))}.",
             f"A link to their page is on its way to {result['name']}",
             f"Withdraw it with `/o2c customer-page revoke {esc(result['name'])}`.")


def _period(call: CommandCall, words: list[str]) -> tuple[date, date] | None:
    today = today_for(call.context, caller(call.context, call.user_id, call.user_name,
                                           call.client))
    if words and MONTH.match(words[-1]):
        try:
            start = periods.parse_period(words[-1], "month")
        except ValidationFailed:  # 2026-13, year 0 or 9999
            return None
        return start, min(periods.last_day_of(start), today)
    return date(today.year - 1, today.month, 1), today


def statement(call: CommandCall) -> None:
    words = call.args.split()
    period = _period(call, words)
    if period is None:
        _say(call, f"Usage: `{esc(STATEMENT_USAGE)}`", "Usage")
        return
    if words and MONTH.match(words[-1]):
        call.args = " ".join(words[:-1])
    start, end = period
    now = call.deps.clock.now()
    try:
        with transaction(call.context) as session:
            customer = _resolve_customer(call, session, STATEMENT_USAGE)
            if customer is None:
                return
            receipt = claim_command(session, call, "customer.statement")
            message = statements.send_statement(session, customer=customer, start=start,
                                                end=end, actor=call.user_id, now=now)
            if message is None:
                raise ValidationFailed.of("billing_email", f"{customer.name} has no billing "
                                          "e-mail address")
            result = {"to": message.payload["to"], "name": customer.name}
            if receipt is not None:
                receipts.remember(session, receipt, **result)
    except receipts.AlreadyHandled as done:
        result = done.result
    except DomainError as exc:
        _say(call, describe_error(exc), "Not done")
        return
    call.deps.notify_outbox()
    _say(call, f":page_facing_up: The statement of account of *{esc(result['name'])}* "
               f"({call.fmt.date(start)} – {call.fmt.date(end)}) is on its way to "
               f"{esc(result['to'])}.",
         f"The statement of account of {result['name']} is on its way")
