"""Collections surfaces: the daily digest DM, `/o2c worklist`, the App Home section, the
promise-to-pay and log-call modals, and the collections notifications.

Every builder takes the JSON snapshot a workflow wrote (`Worklist.snapshot()`, dunning and
promise contexts), so what the outbox stored is exactly what is rendered. Limits: at most
`TOP` accounts at two blocks each plus a handful of others stays far under 50 blocks, and
`render()` enforces the cap anyway; every text goes through `clip` (3000 per section).
"""

from __future__ import annotations

import json
from datetime import date

from slack_sdk.models.blocks import (
    DatePickerElement,
    InputBlock,
    PlainTextInputElement,
)

from blocks import ids
from blocks.common import (
    actions,
    button,
    context,
    divider,
    header,
    lines_text,
    render,
    section,
)
from blocks.i18n import ENGLISH, Formats
from blocks.integrations import link_button, pay_now_actions
from blocks.text import (
    MESSAGE_BLOCKS_MAX,
    SECTION_TEXT_MAX,
    VIEW_BLOCKS_MAX,
    clip,
    esc,
    fmt_datetime,
    fmt_money,
)
from models import AGING_BUCKETS

NAME_MAX = 80
MAX_CURRENCIES = 5


def _promise_text(promise: dict | None, *, fmt: Formats = ENGLISH) -> str:
    if not promise:
        return "no promise"
    amount = fmt.money(promise["amount_minor"], promise.get("currency") or "")
    return f"{promise['status']}: {amount} by {fmt.date(promise['date'])}"


def _totals_text(totals: dict, *, fmt: Formats = ENGLISH) -> str:
    rows = []
    for currency in sorted(totals)[:MAX_CURRENCIES]:
        buckets = totals[currency]
        overdue = sum(v for k, v in buckets.items() if k != "current")
        parts = " · ".join(f"{name} {fmt.money(buckets.get(name, 0), currency)}"
                           for name in AGING_BUCKETS)
        rows.append(f"*{currency}* overdue *{fmt.money(overdue, currency)}* — {parts}")
    if len(totals) > MAX_CURRENCIES:
        rows.append(f"_…and {len(totals) - MAX_CURRENCIES} more currencies_")
    return lines_text(rows)


def account_buttons(customer_id: int) -> dict:
    """Log call · Promise to pay · Send reminder · Snooze for one account (digest, worklist,
    App Home, broken-promise alert). Plain dicts: a digest renders 50 of these per run and
    slack_sdk's model objects cost ~10x more to serialise."""
    value = str(customer_id)
    return actions(button("Log call", ids.COLL_LOG_CALL, value),
                   button("Promise to pay", ids.COLL_PROMISE, value, style="primary"),
                   button("Send reminder", ids.COLL_REMINDER, value),
                   button("Snooze", ids.COLL_SNOOZE, value),
                   button("Dispute…", ids.DISPUTE_FROM_ACCOUNT, value),
                   block_id=f"{ids.COLL_ACCOUNT_BLOCK}:{value}")


def account_blocks(rank: int, account: dict, *, tz: str = "UTC",
                   fmt: Formats = ENGLISH) -> list[dict]:
    """Two blocks per account: the figures and the account buttons."""
    currency = account["currency"]
    promise = dict(account["promise"], currency=currency) if account.get("promise") else None
    last = (fmt_datetime(account["last_contact"], tz) if account.get("last_contact")
            else "never")
    text = (f"*{rank}. {esc(clip(account['name'], NAME_MAX))}* — "
            f"*{fmt.money(account['overdue_minor'], currency)}* overdue · oldest "
            f"{account['days_late']} days late\n"
            f"Last contact: {last} · Promise: {_promise_text(promise, fmt=fmt)}\n"
            f"_{_why_ranked(account)}_")
    done = [_done_text(item, tz) for item in account.get("done") or []]
    if done:
        text += "\n" + "\n".join(done)
    return [section(clip(text, 3000)), account_buttons(account["customer_id"])]


def _why_ranked(account: dict) -> str:
    """Why an account is this high, as a collector would say it (the score stays inside)."""
    reasons = []
    late, broken, disputes = (account.get("late_paid") or 0, account.get("broken_promises") or 0,
                              account.get("disputes") or 0)
    if late:
        reasons.append(f"paid late {late} time{'s' if late != 1 else ''} this year")
    if broken:
        reasons.append(f"{broken} broken promise{'s' if broken != 1 else ''}")
    if disputes:
        reasons.append(f"{disputes} dispute{'s' if disputes != 1 else ''}")
    head = "Ranked by how much is overdue and for how long"
    return head + ("; also " + ", ".join(reasons) if reasons else "")


DONE_WORDS = {"call": ":telephone_receiver: Call logged", "reminder": ":email: Reminder sent",
              "promise": ":handshake: Promise recorded", "snooze": ":zzz: Snoozed"}


def _done_text(item: dict, tz: str) -> str:
    what = DONE_WORDS.get(item.get("kind"), ":white_check_mark: Done")
    by = f" by <@{esc(item['by'])}>" if item.get("by") else ""
    when = f" {fmt_datetime(item['at'], tz)}" if item.get("at") else ""
    note = f" — {esc(clip(item['note'], 200))}" if item.get("note") else ""
    return f"{what}{by}{when}{note}"


def worklist_blocks(snapshot: dict, *, title: str, tz: str = "UTC",
                    limit: int = MESSAGE_BLOCKS_MAX, fmt: Formats = ENGLISH) -> list[dict]:
    head: list = [header(title)]
    if snapshot.get("totals"):
        head.append(section("*Open receivables by aging bucket*\n"
                            + _totals_text(snapshot["totals"], fmt=fmt)))
    accounts = snapshot.get("accounts") or []
    if not accounts:
        head.append(section(":tada: Nothing overdue on your accounts."))
        return render(head, limit=limit)
    head.append(divider())
    blocks = render(head, limit=limit)
    # two blocks per account; leave room for the "and N more" line
    room = max((limit - len(blocks) - 1) // 2, 0)
    shown = accounts[:room]
    for rank, account in enumerate(shown, start=1):
        blocks.extend(account_blocks(rank, account, tz=tz, fmt=fmt))
    more = int(snapshot.get("more") or 0) + len(accounts) - len(shown)
    notes = []
    if more:
        notes.append(f"…and {more} more account{'s' if more != 1 else ''}")
    if snapshot.get("snoozed"):
        notes.append(f"{snapshot['snoozed']} snoozed")
    if notes:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": " · ".join(notes)}]})
    return blocks[:limit]


def collections_digest(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A collector's digest DM, or (`unassigned`) the AR channel's digest of the accounts of
    customers with no collector."""
    day = fmt.date(ctx["as_of"])
    accounts = ctx.get("accounts") or []
    name = ("Unassigned accounts (no collector)" if ctx.get("unassigned")
            else "Collections digest")
    text = (f"{name} for {day}: {ctx.get('total_accounts', 0)} overdue account(s)"
            if accounts else f"{name} for {day}: nothing overdue")
    return {"text": text, "blocks": worklist_blocks(ctx, title=f"{name} — {day}",
                                                    tz=ctx.get("tz") or "UTC", fmt=fmt)}


def home_section(snapshot: dict, *, tz: str = "UTC", room: int = VIEW_BLOCKS_MAX,
                 fmt: Formats = ENGLISH) -> list[dict]:
    return worklist_blocks(snapshot, title="Your collections worklist", tz=tz,
                           limit=min(room, MESSAGE_BLOCKS_MAX), fmt=fmt)


# -- modals --------------------------------------------------------------------------------------
def _metadata(customer_id: int, channel: str | None = None) -> str:
    return json.dumps({"customer_id": customer_id, "channel": channel})


def promise_modal(customer: dict, *, today: date, channel: str | None = None,
                  fmt: Formats = ENGLISH) -> dict:
    """`customer`: {"id", "name", "currency", "overdue_minor"}."""
    # the input's value is typed back as a number: the app's own format, never the reader's
    suggested = fmt_money(customer.get("overdue_minor") or 0, customer["currency"]).split(" ")[-1]
    blocks = [
        section(f"Promise to pay from *{esc(clip(customer['name'], NAME_MAX))}*."),
        InputBlock(block_id=ids.PROMISE_AMOUNT_BLOCK,
                   label=f"Amount ({customer['currency']})",
                   element=PlainTextInputElement(action_id=ids.PROMISE_AMOUNT_INPUT,
                                                 initial_value=suggested.replace(",", ""),
                                                 max_length=20)),
        InputBlock(block_id=ids.PROMISE_DATE_BLOCK, label="Promised payment date",
                   element=DatePickerElement(action_id=ids.PROMISE_DATE_INPUT,
                                             initial_date=today.isoformat())),
        InputBlock(block_id=ids.PROMISE_NOTE_BLOCK, label="Note", optional=True,
                   element=PlainTextInputElement(action_id=ids.PROMISE_NOTE_INPUT,
                                                 multiline=True, max_length=2000)),
    ]
    return {"type": "modal", "callback_id": ids.PROMISE_MODAL,
            "title": {"type": "plain_text", "text": "Promise to pay"},
            "submit": {"type": "plain_text", "text": "Save promise"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "private_metadata": _metadata(customer["id"], channel),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


def call_modal(customer: dict, *, channel: str | None = None) -> dict:
    blocks = [
        section(f"Call with *{esc(clip(customer['name'], NAME_MAX))}*."),
        InputBlock(block_id=ids.CALL_NOTE_BLOCK, label="What was said or agreed",
                   element=PlainTextInputElement(action_id=ids.CALL_NOTE_INPUT, multiline=True,
                                                 max_length=2000)),
    ]
    return {"type": "modal", "callback_id": ids.CALL_MODAL,
            "title": {"type": "plain_text", "text": "Log a call"},
            "submit": {"type": "plain_text", "text": "Save"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "private_metadata": _metadata(customer["id"], channel),
            "blocks": render(blocks, limit=VIEW_BLOCKS_MAX)}


# -- notifications -------------------------------------------------------------------------------
def _invoice_line(ctx: dict, *, fmt: Formats = ENGLISH) -> str:
    inv = ctx["invoice"]
    held = (f" ({fmt.money(inv['in_dispute_minor'], inv['currency'])} more in dispute)"
            if inv.get("in_dispute_minor") else "")
    fee = ctx.get("late_fee")
    charged = ""
    if fee:
        amount = fmt.money(fee["amount_minor"], fee["currency"])
        charged = f" · late fee {esc(fee['number'])} {amount} charged"
    return (f"*{esc(inv['number'])}* of *{esc(ctx['customer_name'])}* — "
            f"{fmt.money(inv['amount_due_minor'], inv['currency'])} due "
            f"{fmt.date(inv['due_date'])}{held}{charged}")


def _more(ctx: dict) -> list[dict]:
    """The customer's other invoices at the same level in this run (one message for all)."""
    more = ctx.get("more") or []
    if not more:
        return []
    shown = ", ".join(esc(n) for n in more[:10])
    rest = f" and {len(more) - 10} more" if len(more) > 10 else ""
    return [context(f"Also at this level for this customer: {shown}{rest}.")]


def overdue_notice(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    days = ctx["days_past_due"]
    text = f"Invoice {esc(ctx['invoice']['number'])} is overdue ({days} day(s))"
    blocks = [section(f":alarm_clock: {_invoice_line(ctx, fmt=fmt)} is now overdue "
                      f"({days} day{'s' if days != 1 else ''} past due)."),
              context(f"Dunning level {ctx['level']:+d}: the customer was reminded by e-mail.")]
    blocks += _more(ctx)
    return {"text": text, "blocks": render(blocks)}


def dunning_escalation(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    days = ctx["days_past_due"]
    text = f"Escalation: invoice {esc(ctx['invoice']['number'])} is {days} days overdue"
    blocks = [section(f":rotating_light: Escalation: {_invoice_line(ctx, fmt=fmt)} is {days} days "
                      "past due. Please talk to your contact at the customer."),
              context(f"Dunning level {ctx['level']:+d}.")]
    blocks += _more(ctx)
    return {"text": text, "blocks": render(blocks)}


def dunning_final(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    days = ctx["days_past_due"]
    text = (f"Final notice sent for {esc(ctx['invoice']['number'])}; "
            f"{esc(ctx['customer_name'])} is on credit hold")
    blocks = [section(f":no_entry: Final notice: {_invoice_line(ctx, fmt=fmt)} is {days} days past "
                      f"due. *{esc(ctx['customer_name'])}* is now on credit hold."),
              context(f"Dunning level {ctx['level']:+d}. New orders need a credit approval.")]
    blocks += _more(ctx)
    return {"text": text, "blocks": render(blocks)}


def dunning_no_email(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    text = f"No billing e-mail for {esc(ctx['customer_name'])}: dunning {ctx['level']:+d} not sent"
    blocks = [section(f":email: {_invoice_line(ctx, fmt=fmt)}: dunning level {ctx['level']:+d} "
                      f"({ctx['kind']}) could not be e-mailed — the customer has no billing "
                      "e-mail on file. Please contact them another way.")]
    return {"text": text, "blocks": render(blocks)}


def _amounts(amounts: list[dict], fmt: Formats) -> str:
    return " + ".join(fmt.money(a["amount_minor"], a["currency"]) for a in amounts)


def _names(names: list[str], count: int) -> str:
    shown = ", ".join(esc(clip(n, NAME_MAX)) for n in names)
    return shown + (f" and {count - len(names)} more" if count > len(names) else "")


def dunning_summary(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The AR channel's one post per dunning run."""
    notices, customers, emails = ctx["notices"], ctx["customers"], ctx["emails"]
    text = (f"Dunning {fmt.date(ctx['as_of'])}: {notices} reminder{'s' if notices != 1 else ''}"
            f" sent to {customers} customer{'s' if customers != 1 else ''}")
    levels = ", ".join(f"{int(k):+d}: {v}" for k, v in ctx["by_level"].items())
    blocks = [section(f":envelope: *{text}* ({emails} e-mail"
                      f"{'s' if emails != 1 else ''}; by level {levels}).")]
    if ctx["top"]:
        blocks.append(section(f"Top {len(ctx['top'])} by amount due: " + "; ".join(
            f"*{esc(clip(c['name'], NAME_MAX))}* {_amounts(c['amounts'], fmt)}"
            for c in ctx["top"])))
    if ctx["no_email_count"]:
        blocks.append(section(f":email: No billing e-mail on file, not e-mailed — please "
                              f"contact them another way: "
                              f"{_names(ctx['no_email'], ctx['no_email_count'])}."))
    if ctx["credit_hold_count"]:
        blocks.append(section(f":no_entry: Final notice sent, now on credit hold: "
                              f"{_names(ctx['credit_holds'], ctx['credit_hold_count'])}."))
    notes = []
    if ctx.get("skipped"):
        notes.append(f"{ctx['skipped']} earlier level(s) skipped (only the latest due level "
                     "of each invoice is sent)")
    if ctx.get("late_fees"):
        notes.append(f"{ctx['late_fees']} late fee(s) charged")
    if notes:
        blocks.append(context("; ".join(notes) + "."))
    return {"text": text, "blocks": render(blocks)}


PEOPLE_HEADS = {
    "reminder": ":alarm_clock: *Now overdue* — the customer was reminded by e-mail",
    "escalation": ":rotating_light: *Escalation* — please talk to your contact at the customer",
    "final": ":no_entry: *Final notice sent* — the customer is on credit hold; new orders "
             "need a credit approval",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _people_line(c: dict, kind: str, *, fmt: Formats) -> str:
    first = c["first"]
    line = (f"• *{esc(clip(c['name'], NAME_MAX))}* — {esc(clip(first['number'], NAME_MAX))} "
            f"{fmt.money(first['amount_due_minor'], first['currency'])} due "
            f"{fmt.date(first['due_date'])} ({_plural(first['days_past_due'], 'day')} past due)")
    fee = first.get("late_fee")
    if fee:
        line += (f" · late fee {esc(clip(fee['number'], NAME_MAX))} "
                 f"{fmt.money(fee['amount_minor'], fee['currency'])} charged")
    if c["invoices"] > 1:
        line += (f" +{c['invoices'] - 1} more, "
                 f"{_amounts(c['amounts'][:MAX_CURRENCIES], fmt)} in all")
    if kind == "final" and not c.get("credit_hold"):
        line += " (no longer on credit hold)"
    return line


def dunning_people(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A sales rep's or collector's one message per dunning run: per kind (overdue,
    escalation, final notice and credit hold) their customers, the top ones by amount with
    their first invoice, the totals by currency and how many more customers. Bounded: a few
    blocks per kind, each section's lines cut by `lines_text`."""
    customers = ctx["customers"]
    whose = f"{customers} of your customers" if customers != 1 else "one of your customers"
    text = (f"Dunning {fmt.date(ctx['as_of'])}: {_plural(ctx['notices'], 'overdue invoice')} "
            f"of {whose}")
    blocks = [section(f":envelope: *{text}*.")]
    for kind in ctx["kinds"][:5]:
        totals = kind["totals"]
        total = _amounts(totals[:MAX_CURRENCIES], fmt) + (
            f" and {len(totals) - MAX_CURRENCIES} more currencies"
            if len(totals) > MAX_CURRENCIES else "")
        head = PEOPLE_HEADS.get(kind["kind"], f"*Dunning level {kind['level']:+d}*")
        blocks.append(section(f"{head} (level {kind['level']:+d}): "
                              f"{_plural(kind['customers'], 'customer')}, "
                              f"{_plural(kind['invoices'], 'invoice')}, {total} due."))
        lines: list[str] = []
        size = 0
        for c in kind["top"]:  # as many as fit, with room left for the count of the rest
            line = _people_line(c, kind["kind"], fmt=fmt)
            if size + len(line) + 1 > SECTION_TEXT_MAX - 80:
                break
            lines.append(line)
            size += len(line) + 1
        more = kind["customers"] - len(lines)
        if more > 0:
            lines.append(f"_…and {fmt.number(more)} more customer{'s' if more != 1 else ''}_")
        blocks.append(section("\n".join(lines)))
    blocks.append(context("One message for the whole dunning run: each invoice is dunned at "
                          "each level once, ever."))
    return {"text": text, "blocks": render(blocks)}


def dunning_confirm(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    """A dunning run too large to send without an admin (`/o2c dunning confirm`)."""
    text = (f"Dunning {fmt.date(ctx['as_of'])} waits for an admin: {ctx['emails']} e-mails "
            f"to {ctx['customers']} customers")
    blocks = [section(f":hourglass_flowing_sand: *{text}* ({ctx['notices']} notices; more than the "
                      f"{ctx['threshold']} e-mails a run may send by itself). Nothing is sent "
                      "until an admin confirms."),
              actions(button("Confirm and send", ids.DUNNING_CONFIRM, str(ctx["id"]),
                             style="primary")),
              context("Admins only (or `/o2c dunning confirm`); the next dunning run then "
                      "sends them. Without it, the next day's run asks again.")]
    return {"text": text, "blocks": render(blocks)}


def promise_broken(ctx: dict, *, fmt: Formats = ENGLISH) -> dict:
    cur = ctx["currency"]
    text = (f"Broken promise: {esc(ctx['customer'])} did not pay by "
            f"{fmt.date(ctx['promised_date'])}")
    note = f"\n> {esc(clip(ctx['note'], 500))}" if ctx.get("note") else ""
    blocks = [section(f":broken_heart: *{esc(ctx['customer'])}* promised "
                      f"{fmt.money(ctx['amount_minor'], cur)} by "
                      f"{fmt.date(ctx['promised_date'])} and paid "
                      f"{fmt.money(ctx['paid_minor'], cur)}.{note}"),
              context(f"Promise taken by <@{ctx['taken_by']}>. The customer's risk rises in "
                      "the collections priority."),
              account_buttons(ctx["customer_id"])]
    return {"text": text, "blocks": render(blocks)}


def email_queued(ctx: dict) -> dict:
    """A customer e-mail waits in the outbox because no SMTP server is configured."""
    text = f"E-mail to {esc(ctx['to'])} queued (SMTP_URL is not set): {esc(ctx['subject'])}"
    body = clip(ctx.get("summary") or "", 2500)
    blocks = [section(f":outbox_tray: E-mail to *{esc(ctx['to'])}* is queued, not sent — "
                      f"`SMTP_URL` is not set.\n*{esc(ctx['subject'])}*"
                      + (f"\n```{esc(body)}```" if body else "")),
              context(f"Outbox #{ctx['outbox_id']} · it goes out once SMTP is configured · "
                      "`o2c outbox` lists the queue")]
    if ctx.get("pay_url"):  # the e-mail's "Pay now" link (in the sandbox: its payment page)
        blocks[1:1] = pay_now_actions(ctx["pay_url"])
    if ctx.get("links"):  # the e-mail's other links (issue 19: choices, page, tracking)
        # one button per actions block: their action ids are all `open_link`
        blocks[1:1] = [actions(link_button(label[:75], url))
                       for label, url in ctx["links"][:5]]
    return {"text": text, "blocks": render(blocks)}


def email_failed(ctx: dict) -> dict:
    """A customer e-mail the outbox gave up on (the address was refused, the server said no
    for good, or it kept failing for a day): the customer was NOT told, so AR must know."""
    who = esc(ctx.get("customer") or "the customer")
    to = esc(ctx.get("to") or "no address")
    kind = esc(ctx.get("kind") or "e-mail")
    numbers = ", ".join(f"*{esc(n)}*" for n in ctx.get("invoices") or []) or "none named"
    text = f"The {kind} e-mail to {who} ({to}) could not be sent"
    blocks = [section(f":warning: The *{kind}* e-mail to *{who}* ({to}) could not be sent — "
                      f"they have *not* received it.\nInvoice(s): {numbers}\n"
                      f"> {esc(clip(ctx.get('reason') or '', 500))}"),
              context(f"Outbox #{ctx['outbox_id']} · once the cause is fixed, "
                      f"`o2c outbox --retry {ctx['outbox_id']}` sends it again to this address")]
    return {"text": text, "blocks": render(blocks)}
