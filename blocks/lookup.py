"""`/o2c` lookup answers: an order, a customer's orders, a customer's position, AR, and the
"did you mean" list for names that match nothing or several customers."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from blocks.common import context, divider, fields, header, lines_text, render, section
from blocks.i18n import ENGLISH, Formats
from blocks.text import esc, fmt_datetime, status_label
from models import AGING_BUCKETS, Order, invoice_status, money

if TYPE_CHECKING:  # view models only; blocks never call workflows
    from workflows.lookup import Candidate
    from workflows.queries import CustomerView, OrderView
    from workflows.receivables import Aging, CustomerBalance, Held

STATUS_EMOJI = {
    "draft": ":pencil2:", "pending_approval": ":hourglass_flowing_sand:",
    "approved": ":white_check_mark:", "backordered": ":package:",
    "partially_shipped": ":truck:", "shipped": ":truck:", "invoiced": ":receipt:",
    "paid": ":moneybag:", "closed": ":lock:", "rejected": ":no_entry:",
    "cancelled": ":x:", "on_hold": ":double_vertical_bar:",
}


def _status(status: str) -> str:
    return f"{STATUS_EMOJI.get(status, '')} {status_label(status)}".strip()


def order_card(view: OrderView, *, tz: str = "UTC", fmt: Formats = ENGLISH) -> list[dict]:
    order, customer = view.order, view.customer
    cur = order.currency
    blocks = [
        header(f"Order {order.number}"),
        fields([
            ("Status", _status(order.status)),
            ("Customer", esc(customer.name)),
            ("Order date", fmt.date(order.order_date)),
            ("Total", _current_total(order, fmt=fmt)),
            ("Invoiced", fmt.money(view.invoiced_minor, cur)),
            ("Balance due", fmt.money(view.balance_minor, cur)),
        ]),
    ]
    rows = []
    for line in view.lines:
        discount = f" −{money.bp_to_pct(line.discount_bp)}%" if line.discount_bp else ""
        rows.append(f"`{esc(line.sku)}` {esc(line.description)} — {line.quantity} × "
                    f"{fmt.money(line.unit_price_minor, cur)}{discount} = "
                    f"*{fmt.money(line.line_total_minor, cur)}*\n      {_quantities(line)}")
    blocks.append(section("*Lines*\n" + lines_text(rows)))
    totals = (f"Subtotal {fmt.money(order.subtotal_minor, cur)} · Discount "
              f"{fmt.money(order.discount_minor, cur)} · Tax {fmt.money(order.tax_minor, cur)}")
    if order.cancelled_minor:
        totals += (f" · Ordered {fmt.money(order.total_minor, cur)} · Cancelled "
                   f"−{fmt.money(order.cancelled_minor, cur)}")
    blocks.append(context(totals))
    if view.approvals:
        rows = []
        for approval in view.approvals:
            who = f" by <@{approval.decided_by}>" if approval.decided_by else ""
            when = f" {fmt_datetime(approval.decided_at, tz)}" if approval.decided_at else ""
            rows.append(f"• {approval.kind}: *{status_label(approval.status)}*{who}{when}")
        blocks.append(section("*Approvals*\n" + lines_text(rows)))
    if view.shipments:
        rows = [f"• {fmt_datetime(s.shipped_at, tz)} — {esc(s.carrier)} "
                f"`{esc(s.tracking_number)}` · {status_label(s.status)}"
                + (f" {fmt_datetime(s.delivered_at, tz)}" if s.delivered_at else "")
                + (f", signed by {esc(s.pod_signed_by)}" if s.pod_signed_by else "")
                for s in view.shipments]
        blocks.append(section("*Shipments*\n" + lines_text(rows)))
    if view.invoices:
        rows = [f"• {esc(inv.number)} — {fmt.money(inv.total_minor, cur)}, due "
                f"{fmt.date(inv.due_date)}, balance {fmt.money(inv.balance_minor, cur)} "
                f"({status_label(invoice_status(inv))})" for inv in view.invoices]
        blocks.append(section("*Invoices*\n" + lines_text(rows)))
    if view.customer_choice:
        blocks.append(section(f"*Customer's backorder choice:* "
                              f"{status_label(view.customer_choice)}"))
    if view.notices:
        rows = [f"• {fmt_datetime(n['at'], tz)} — {status_label(n['kind'])}"
                + (f" to {esc(n['to'])}" if n["sent"] else f": not sent ({esc(n['why'])})")
                for n in view.notices]
        blocks.append(section("*Customer notices*\n" + lines_text(rows)))
    blocks.append(context(f"Sales rep <@{order.sales_rep_id}> · source {esc(order.source)}"))
    return render(blocks)


def _current_total(order: Order, *, fmt: Formats = ENGLISH) -> str:
    """What the customer still owes for: the total less what was cancelled."""
    current = fmt.money(order.total_minor - order.cancelled_minor, order.currency)
    if not order.cancelled_minor:
        return current
    return f"{current} (ordered {fmt.money(order.total_minor, order.currency)})"


def _quantities(line: object) -> str:
    """Ordered, shipped, cancelled and open quantities of a line (and what is backordered)."""
    parts = [f"ordered {line.quantity}", f"shipped {line.qty_shipped}",
             f"cancelled {line.qty_cancelled}", f"open {line.qty_open}"]
    if line.qty_backordered:
        parts.append(f"backordered {line.qty_backordered}")
    return " · ".join(parts)


def orders_list(customer_name: str, orders: list[Order], total: int, *,
                fmt: Formats = ENGLISH) -> list[dict]:
    blocks = [header(f"Orders — {customer_name}")]
    if not orders:
        blocks.append(section("No orders yet."))
        return render(blocks)
    rows = [f"• *{esc(o.number)}* {fmt.date(o.order_date)} — {_status(o.status)} — "
            f"{_current_total(o, fmt=fmt)}" for o in orders]
    blocks.append(section(lines_text(rows)))
    if total > len(orders):
        blocks.append(context(f"Latest {len(orders)} of {total} orders."))
    return render(blocks)


def aging_fields(aging: Aging, *, fmt: Formats = ENGLISH) -> list[tuple[str, str]]:
    cur = aging.currency or "USD"
    fields_ = [(name if name != "current" else "Current", fmt.money(aging.buckets[name], cur))
               for name in AGING_BUCKETS]
    if aging.disputed:
        fields_.append(("In dispute", fmt.money(aging.disputed, cur)))
    return fields_


def held_fields(held: list[Held], *, fmt: Formats = ENGLISH) -> list[tuple[str, str]]:
    """Unapplied cash (on no invoice): payments not applied and customer credit, each in
    every currency it is held in, in the reader's formats; nothing when none is held."""
    found = []
    for title, part in (("Unapplied payments", "unapplied_minor"),
                        ("Customer credit", "customer_credit_minor")):
        amounts = [fmt.money(getattr(h, part), h.currency) for h in held if getattr(h, part)]
        if amounts:
            found.append((title, " · ".join(amounts)))
    return found


def customer_card(view: CustomerView, *, as_of: date, actions: list | None = None,
                  fmt: Formats = ENGLISH
                  ) -> list[dict]:
    pos = view.position
    c = pos.customer
    cur = c.currency
    flags = []
    if c.credit_hold:
        flags.append(":octagonal_sign: *on credit hold*")
    if not c.credit_reviewed:
        flags.append(":new: not credit reviewed")
    blocks = [
        header(f"{c.name}"),
        context(f"`{esc(c.external_id)}` · terms {esc(c.payment_terms)} · "
                + (f"collector <@{c.collector_id}>" if c.collector_id else "no collector")
                + (f" · rep <@{c.sales_rep_id}>" if c.sales_rep_id else "")),
        fields([
            ("Credit limit", fmt.money(c.credit_limit_minor, cur)),
            ("Exposure", fmt.money(pos.exposure_minor, cur)),
            ("Available", fmt.money(pos.available_credit_minor, cur)),
            ("Open AR", fmt.money(pos.aging.total, cur)),
            ("Overdue", fmt.money(pos.aging.overdue, cur)
             + (f" (+{fmt.money(pos.aging.disputed, cur)} in dispute)"
                if pos.aging.disputed else "")),
            ("Oldest past due", f"{pos.oldest_days_past_due} days"),
        ] + held_fields(view.held, fmt=fmt), text=" · ".join(flags) if flags else None),
        section("*Aging*"),
        fields(aging_fields(pos.aging, fmt=fmt)),
    ]
    if view.open_invoices:
        rows = [f"• {esc(inv.number)} — due {fmt.date(inv.due_date)} — "
                f"{fmt.money(inv.balance_minor, inv.currency)}"
                + (f" :warning: {fmt.money(inv.disputed_minor, inv.currency)} in dispute"
                   if inv.disputed_minor else "")
                + (" · late fee" if inv.fee_for_invoice_id else "")
                for inv in view.open_invoices]
        blocks.append(section("*Open invoices* (oldest first)\n" + lines_text(rows)))
    if actions:
        blocks.append(divider())
        blocks.extend(actions)
    blocks.append(context(f"As of {fmt.date(as_of)}"))
    return render(blocks)


def ar_overview(aging_by_currency: dict[str, Aging], top: list[CustomerBalance], *,
                as_of: date, fmt: Formats = ENGLISH) -> list[dict]:
    blocks = [header("Accounts receivable")]
    if not aging_by_currency:
        blocks.append(section("No open invoices. :tada:"))
        return render(blocks)
    for currency, aging in sorted(aging_by_currency.items()):
        held = (f", in dispute {fmt.money(aging.disputed, currency)}" if aging.disputed
                else "")
        blocks.append(section(f"*{currency}* — open {fmt.money(aging.total, currency)}, "
                              f"overdue {fmt.money(aging.overdue, currency)}{held}"))
        blocks.append(fields(aging_fields(aging, fmt=fmt)))
    if top:
        rows = [f"• *{esc(b.name)}* — overdue {fmt.money(b.overdue_minor, b.currency)} of "
                f"{fmt.money(b.open_minor, b.currency)} open" for b in top]
        blocks.append(section("*Most overdue customers*\n" + lines_text(rows)))
    blocks.append(context(f"As of {fmt.date(as_of)} · `/o2c ar &lt;customer&gt;` for one account"))
    return render(blocks)


def candidates(query: str, found: list[Candidate], *, usage: str) -> list[dict]:
    """No unique customer for what was typed: say so, and list the closest names."""
    if not found:
        text = f"No customer matches “{esc(query)}”."
    elif len(found) == 1:
        text = f"No customer is called “{esc(query)}”. Did you mean:"
    else:
        text = f"Several customers could be “{esc(query)}”. Which one?"
    blocks = [section(text)]
    if found:
        rows = [f"• *{esc(c.name)}* (`{esc(c.external_id)}`)" for c in found]
        blocks.append(section(lines_text(rows)))
    if found:
        blocks.append(context(f"Try `{esc(usage)}` with the exact name or id."))
    else:
        blocks.append(context(f"Check the spelling, or try part of the name or the customer id "
                              f"(`{esc(usage)}`)."))
    return render(blocks)


def not_found(what: str, hint: str) -> list[dict]:
    return render([section(f"{what}"), context(hint)])
