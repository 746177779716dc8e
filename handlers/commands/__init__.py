"""`/o2c <subcommand> ...`: one slash command, one table of subcommands.

The command is acked at once with an empty 200 (nothing shows until the answer arrives); the
subcommand then runs after the ack as a Bolt lazy listener and answers ephemerally through
`respond` (a response_url is valid for 30 minutes). Subcommands that open a modal do it there
too: the lazy listener starts right after the ack, well within the trigger's 3 seconds.
Unknown subcommands get help. A new subcommand is one row in `SUBCOMMANDS`, in the order
`/o2c help` lists them.
"""

from __future__ import annotations

from slack_bolt import App, BoltContext, Respond
from slack_sdk import WebClient

from blocks import ids
from blocks.help import help_message
from handlers.commands import (
    approvals,
    backoffice,
    backorder,
    cashapp,
    channel,
    collections,
    customer_links,
    kpi,
    lookups,
    order_entry,
    pay,
    revenue,
    roles,
)
from handlers.commands.call import ANY_ROLE, CommandCall, Subcommand
from handlers.common import acknowledge, after_ack, checking
from models import Role
from workflows.users import has_role, require_role, roles_of

__all__ = ["SUBCOMMANDS", "CommandCall", "Subcommand", "answer", "register"]


def show_help(call: CommandCall) -> None:
    """`/o2c help`, and the answer to anything unknown: only what the caller may run."""
    unknown = call.name if call.name not in SUBCOMMANDS else None
    with checking(call.context) as session:
        entries = [(sub.usage, sub.summary) for sub in SUBCOMMANDS.values()
                   if may_run(session, call.user_id, sub)]
        no_role = not roles_of(session, call.user_id)
    call.answer(help_message(entries, unknown=unknown, no_role=no_role), "o2c commands")


# Who may run the subcommands that check their role themselves (`Subcommand.roles` unset),
# for `/o2c help`: the help lists only what the caller may run.
HELP_ROLES: dict[str, tuple[str, ...]] = {
    "new": (Role.SALES,), "worklist": (Role.COLLECTOR,),
    "pay": (Role.COLLECTOR,), "role": (Role.ADMIN,), "admin": (Role.ADMIN,),
}


def may_run(session, user_id: str, sub: Subcommand) -> bool:
    roles = sub.roles or HELP_ROLES.get(sub.name)
    return not roles or has_role(session, user_id, *roles)


# Every subcommand, in the order people need them: lookups, then entering and deciding, admin.
SUBCOMMANDS: dict[str, Subcommand] = {sub.name: sub for sub in (
    Subcommand("help", "/o2c help", "this list", show_help),
    Subcommand("order", "/o2c order <number>",
               "an order: status, lines, approvals, shipments, invoices, balance",
               lookups.order, roles=ANY_ROLE, reads=True),
    Subcommand("orders", "/o2c orders <customer>", "a customer's latest orders",
               lookups.orders, roles=ANY_ROLE, reads=True),
    Subcommand("customer", "/o2c customer <name or id>",
               "credit limit, exposure, open AR, overdue and aging for a customer",
               lookups.customer, roles=ANY_ROLE, reads=True),
    Subcommand("ar", "/o2c ar [customer]",
               "receivables: aging overall, or one customer's open invoices",
               lookups.ar, roles=ANY_ROLE, reads=True),
    Subcommand("invoice", "/o2c invoice <number>",
               "an invoice: balance, lines, credit notes, disputes, late fees",
               backoffice.invoice, roles=ANY_ROLE),
    Subcommand("new", "/o2c new", "enter an order in a form (sales reps)",
               order_entry.new_order),
    Subcommand("approvals", "/o2c approvals",
               "pending approvals: yours to decide, or your requests still waiting",
               approvals.pending, roles=ANY_ROLE),
    Subcommand("worklist", "/o2c worklist",
               "your overdue accounts, ranked by collection priority (collectors)",
               collections.worklist_command),
    Subcommand("disputes", "/o2c disputes", "open disputes, oldest first",
               backoffice.open_disputes, roles=ANY_ROLE),
    Subcommand("backorder", backorder.USAGE,
               "choose for a backorder with a reason, overriding the customer's choice, or "
               "cancel what is left to ship of a partly shipped order (reps)",
               backorder.backorder, roles=(Role.SALES, Role.ADMIN)),
    Subcommand("customer-page", customer_links.PAGE_USAGE,
               "e-mail a customer the link to their own page, or revoke it (collectors)",
               customer_links.customer_page, roles=customer_links.ROLES),
    Subcommand("statement", customer_links.STATEMENT_USAGE,
               "e-mail a customer their statement of account, PDF (collectors)",
               customer_links.statement, roles=customer_links.ROLES),
    Subcommand("pay", "/o2c pay",
               "record an incoming payment (collectors); it is matched to invoices", pay.pay),
    Subcommand("payment", cashapp.PAYMENT_USAGE,
               "a payment; apply it to other invoices or name its customer (collectors)",
               cashapp.payment, roles=(Role.COLLECTOR,)),
    Subcommand("kpi", "/o2c kpi", "DSO, CEI, aging, auto-match rate, cycle times", kpi.kpi,
               roles=(Role.ADMIN, Role.CREDIT_APPROVER, Role.DISCOUNT_APPROVER,
                      Role.COLLECTOR)),
    Subcommand("revenue", "/o2c revenue [YYYY-MM]",
               "revenue recognised, deferred and unbilled; when deferred revenue is earned "
               "(admins)", revenue.revenue_report, roles=(Role.ADMIN,)),
    Subcommand("role", roles.USAGE, "grant or remove a role (admins)", roles.role),
    Subcommand("policy", approvals.POLICY_USAGE, "policy values; admins change them",
               approvals.policy_values, roles=ANY_ROLE),
    Subcommand("rules", cashapp.RULES_USAGE,
               "what cash application learned from people; remove a rule (admins)",
               cashapp.rules, roles=(Role.ADMIN,)),
    Subcommand("channel", channel.USAGE,
               "how SO-/INV-/CN- numbers mentioned in this channel are answered (admins "
               "change it)", channel.channel, roles=(Role.ADMIN,)),
    Subcommand("dunning", collections.DUNNING_USAGE,
               "admins: let a large dunning run (an imported book) send its e-mails",
               collections.dunning_command, roles=(Role.ADMIN,)),
    Subcommand("admin", "/o2c admin outbox [retry <id|all>]",
               "admins: undelivered and failed notifications; queue failed ones again",
               collections.admin),
)}


def parse(text: str) -> tuple[str, str]:
    parts = (text or "").strip().split(None, 1)
    if not parts:
        return "help", ""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""


def answer(command: dict, respond: Respond, client: WebClient, context: BoltContext) -> None:
    """Run the subcommand, after the ack. Its role is checked first (a refusal is audited);
    an error goes to the app's error handler, which tells the caller (`after_ack`)."""
    name, args = parse(command.get("text", ""))
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        sub, args = SUBCOMMANDS["help"], command.get("text", "")
    call = CommandCall(name=name, args=args, user_id=command["user_id"],
                       user_name=command.get("user_name", ""),
                       channel_id=command.get("channel_id", ""),
                       trigger_id=command.get("trigger_id", ""), respond=respond,
                       client=client, context=context, command=command)
    if sub.roles:
        with checking(context) as session:
            require_role(session, user_id=call.user_id, roles=sub.roles,
                         action=f"command.{sub.name}")
            if sub.reads:  # one transaction for the check and the lookup
                call.session = session
                sub.func(call)
        if sub.reads:
            call.send_held()
            return
    sub.func(call)


def register(app: App) -> None:
    app.command(ids.COMMAND)(ack=acknowledge, lazy=[after_ack(answer)])
