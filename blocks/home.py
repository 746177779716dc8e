"""The App Home tab: a greeting with the person's roles in words, then a section per role
(issue 13, point 7): a sales rep's orders and customers' overdue, an approver's queue with
the same buttons as the cards, a collector's worklist and promises due, an admin's KPIs
with a trend. Pure functions of what `workflows.home` and the other workflows read."""

from __future__ import annotations

from blocks.common import context, divider, header, lines_text, render, section
from blocks.i18n import ENGLISH, Formats
from blocks.text import VIEW_BLOCKS_MAX, esc, status_label

ROLE_WORDS = {"sales": "sales rep", "credit_approver": "credit approver",
              "discount_approver": "discount approver", "collector": "collector",
              "admin": "admin"}
SPARKS = "▁▂▃▄▅▆▇█"


def role_list(roles: list[str]) -> str:
    names = [ROLE_WORDS.get(r, r.replace("_", " ")) for r in roles]
    if not names:
        return "none yet — ask an admin"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def home_view(name: str, roles: list[str], extra: list[dict] | None = None) -> dict:
    blocks = [
        header("Order to cash"),
        section(f"Hi {esc(name)}. Your roles: {role_list(roles)}."),
        context("Type `/o2c help` in any channel for commands."),
        divider(),
    ]
    # Slack refuses a Home of more than 100 blocks: beyond that the last one says how many
    # more there were (render), instead of the sections being cut without a word
    return {"type": "home", "blocks": render([*blocks, *(extra or [])], limit=VIEW_BLOCKS_MAX)}


def sparkline(values: list[int]) -> str:
    """A trend in text: ▁▂▃▅▇ from the lowest to the highest value."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARKS[3] * len(values)
    return "".join(SPARKS[(v - low) * (len(SPARKS) - 1) // (high - low)] for v in values)


def _order_row(o: dict, *, fmt: Formats = ENGLISH) -> str:
    return (f"• *{esc(o['number'])}* {esc(o['customer'])} — {status_label(o['status'])} — "
            f"{fmt.money(o['total_minor'], o['currency'])}")


def _more(shown: int, total: int) -> list[str]:
    return [f"_…and {total - shown} more_"] if total > shown else []


def rep_section(home: object, *, fmt: Formats = ENGLISH) -> list[dict]:
    """A sales rep's orders still moving, orders waiting for approval, customers' overdue."""
    blocks = [header("Your orders")]
    if home.waiting:
        rows = [_order_row(o, fmt=fmt) for o in home.waiting] + _more(len(home.waiting),
                                                             home.waiting_total)
        blocks.append(section(":hourglass_flowing_sand: *Waiting for approval*\n"
                              + lines_text(rows)))
    if home.open_orders:
        rows = [_order_row(o, fmt=fmt) for o in home.open_orders] + _more(len(home.open_orders),
                                                                 home.open_total)
        blocks.append(section(":package: *Open orders*\n" + lines_text(rows)))
    if not home.waiting and not home.open_orders:
        blocks.append(section("No open orders. `/o2c new` enters one."))
    if home.overdue:
        rows = [f"• *{esc(c['customer'])}* — {fmt.money(c['overdue_minor'], c['currency'])} "
                f"overdue, oldest {c['days_late']} days late" for c in home.overdue] + _more(
            len(home.overdue), home.overdue_total)
        blocks.append(section(":alarm_clock: *Your customers' overdue*\n" + lines_text(rows)))
    else:
        blocks.append(section(":white_check_mark: None of your customers is overdue."))
    blocks.append(divider())
    return render(blocks)


def approver_section(overview: object, *, buttons: object, fmt: Formats = ENGLISH) -> list[dict]:
    """An approver's queue, oldest first, each with the same buttons as its card."""
    from blocks.approvals import KIND_EMOJI

    blocks = [header("Waiting for your decision")]
    if not overview.to_decide:
        blocks.append(section(":tada: Nothing waits for your decision."))
    for item in overview.to_decide[:8]:
        a = item.approval
        reasons = "; ".join(r.get("text", "") for r in a.reasons or [])
        blocks.append(section(
            f"{KIND_EMOJI.get(a.kind, '')} *{esc(item.title)}* — {a.kind.replace('_', ' ')} "
            f"— {esc(item.customer.name)}, {fmt.money(item.amount_minor, item.currency)}"
            + (f"\n_{esc(reasons)}_" if reasons else "")))
        blocks.append(buttons(a.id))
    more = overview.to_decide_total - min(len(overview.to_decide), 8)
    if more > 0:
        blocks.append(context(f"…and {more} more: `/o2c approvals` lists them all."))
    blocks.append(divider())
    return render(blocks)


def promises_section(promises: list[dict], *, total: int = 0,
                     fmt: Formats = ENGLISH) -> list[dict]:
    """A collector's promises to pay due today or tomorrow (late ones first), and how many
    more there are (`total`: all of them)."""
    if not promises:
        return []
    rows = [f"• {':warning: ' if p['late'] else ''}*{esc(p['customer'])}* — "
            f"{fmt.money(p['amount_minor'], p['currency'])} by {fmt.date(p['date'])}"
            for p in promises] + _more(len(promises), total)
    return render([section(":handshake: *Promises to pay due*\n" + lines_text(rows)),
                   divider()])


def trend_text(values: list[int], currency: str | None, weeks: int, *,
               fmt: Formats = ENGLISH) -> str | None:
    if not values or not currency:
        return None
    change = values[-1] - values[0]
    direction = "up" if change > 0 else "down" if change < 0 else "flat"
    return (f"*Open AR, last {weeks} weeks* `{sparkline(values)}` "
            f"{fmt.money(values[-1], currency)} now, {direction} "
            f"{fmt.money(abs(change), currency)} since {weeks} weeks ago")
