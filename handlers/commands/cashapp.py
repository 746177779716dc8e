"""`/o2c payment <id> [apply <invoices> | customer <name>]` (collectors) and `/o2c rules
[remove <id>]` (admins): correcting cash application by hand, and what it learned from that.

Both are rows of the subcommand table (`handlers.commands`) and run after the ack. Every
change runs in a transaction with the role checked on the server (the workflows check it
again); refusals are audited (`handlers.common.transaction`). A change runs once per
invocation (`claim_command`): a replayed old `/o2c payment 7 apply ...` cannot undo a later
correction."""

from __future__ import annotations

from blocks import lookup
from blocks.cashapp import payment_view, rules_view
from blocks.common import render, section
from blocks.text import esc
from handlers.commands.call import CommandCall, claim_command
from handlers.common import checking, describe_error, now_of, transaction
from models import Customer, money
from models.limits import record_id
from workflows import cash_rules, receipts
from workflows.cash_application import (
    assign_customer,
    correct_application,
    get_payment,
    matched_because,
    payment_allocations,
    suggestions_of,
)
from workflows.errors import DomainError
from workflows.lookup import find_customer

PAYMENT_USAGE = ("/o2c payment <id> [apply <invoice> [<invoice> ...] | "
                 "customer <name or id>]")
RULES_USAGE = "/o2c rules [all | remove <id>]"


def _payment_data(session, payment) -> dict:
    customer = session.get(Customer, payment.customer_id) if payment.customer_id else None
    return {"id": payment.id, "amount_minor": payment.amount_minor,
            "currency": payment.currency, "status": payment.status,
            "payer_name": payment.payer_name, "reference": payment.reference,
            "received_at": payment.received_at.isoformat(),
            "customer_name": customer.name if customer else None,
            "unapplied_minor": payment.unapplied_minor,
            "allocations": [{"invoice": inv.number,
                             "amount": money.to_str(a.amount_minor, payment.currency)}
                            for a, inv in payment_allocations(session, payment.id)],
            "matched_because": matched_because(session, payment),
            "suggestions": len(suggestions_of(session, payment))}


def _usage(call: CommandCall, usage: str) -> None:
    call.answer(render([section(f"Usage: `{esc(usage)}`")]), "Usage")


def payment(call: CommandCall) -> None:
    parts = call.args.split()
    payment_id = record_id(parts[0].lstrip("#")) if parts else None
    if payment_id is None:
        _usage(call, PAYMENT_USAGE)
        return
    verb, rest = (parts[1:2] or [""])[0].lower(), parts[2:]
    note = None
    try:
        if verb == "apply" and rest:
            with transaction(call.context) as session:
                claim_command(session, call, "payment.correct")
                done = correct_application(session, payment_id=payment_id, invoices=rest,
                                           actor=call.user_id, now=now_of(call.context),
                                           names=call.deps.db.customer_names)
                learned = (done.match_details.get("decision") or {}).get("learned") or []
                note = ":white_check_mark: Applied as you said." + "".join(
                    f"\n:bulb: Learned: next time, {esc(t)}." for t in learned)
        elif verb == "customer" and rest:
            with call.deps.db.read_session() as session:
                match = find_customer(session, " ".join(rest))
            if match.customer is None:
                call.answer(lookup.candidates(" ".join(rest), match.candidates,
                                              usage=PAYMENT_USAGE), "No unique customer")
                return
            with transaction(call.context) as session:
                claim_command(session, call, "payment.identify")
                done = assign_customer(session, payment_id=payment_id,
                                       customer=match.customer.external_id,
                                       actor=call.user_id, now=now_of(call.context),
                                       names=call.deps.db.customer_names)
                learned = ((done.match_details or {}).get("identified") or {}).get("learned")
                note = (f":white_check_mark: It is {esc(match.customer.name)}'s." + "".join(
                    f"\n:bulb: Learned: next time, {esc(t)}." for t in learned or []))
        elif verb:
            _usage(call, PAYMENT_USAGE)
            return
    except receipts.AlreadyHandled:
        note = ":information_source: This command was handled already; nothing changed again."
    except DomainError as error:
        call.answer(render([section(describe_error(error))]), "Not done")
        return
    try:
        with call.deps.db.read_session() as session:
            data = _payment_data(session, get_payment(session, payment_id))
    except DomainError as error:
        call.answer(render([section(describe_error(error))]), "Not done")
        return
    call.answer(payment_view(data, usage=PAYMENT_USAGE, note=note, fmt=call.fmt),
                f"Payment #{payment_id}")


def rules(call: CommandCall) -> None:
    parts = call.args.split()
    note = None
    try:
        if parts[:1] == ["remove"]:
            rule_id = record_id(parts[1].lstrip("#")) if len(parts) == 2 else None
            if rule_id is None:
                _usage(call, RULES_USAGE)
                return
            with transaction(call.context) as session:
                claim_command(session, call, "rule.remove")
                rule = cash_rules.remove(session, actor=call.user_id, rule_id=rule_id,
                                         now=now_of(call.context))
                note = (f":white_check_mark: Rule `#{rule.id}` removed; it no longer counts "
                        "(it stays in the audit log).")
    except receipts.AlreadyHandled:
        note = ":information_source: This command was handled already; nothing changed again."
    except DomainError as error:
        call.answer(render([section(describe_error(error))]), "Not done")
        return
    try:
        if parts and parts[0] not in ("all", "remove"):
            _usage(call, RULES_USAGE)
            return
        with checking(call.context) as session:  # (a refused list is audited too)
            found, total = cash_rules.list_rules(session, actor=call.user_id,
                                                 include_removed=parts[:1] == ["all"])
            data = [{"id": r.id, "customer": c.name, "kind": r.kind, "shown": r.shown,
                     "seen_on": r.seen_on.isoformat(), "taught_by": r.taught_by,
                     "taught_at": r.taught_at.isoformat(), "source": r.source,
                     "payment_id": r.payment_id, "active": r.active,
                     "removed_by": r.removed_by} for r, c in found]
    except DomainError as error:
        call.answer(render([section(describe_error(error))]), "Not done")
        return
    call.answer(rules_view(data, total, usage=RULES_USAGE, note=note), "Learned rules")
