"""No internals on screen (issue 13, point 3): every `/o2c` subcommand run by each demo role
against the demo company, the App Home of each, and every card, digest, DM and modal the demo
posts — no database ids (a bare "(93)"), Slack view ids, `id=`, raw scores or file names in
anything a person reads."""

from __future__ import annotations

import re

from sqlmodel import select

from models import Customer, Invoice, Order, OutboxMessage, Payment
from tests.support.demo_seed import (
    ADMIN,
    COLLECTOR,
    CREDIT_APPROVER,
    DISCOUNT_APPROVER,
    SALES,
)

ROLES = (ADMIN, SALES, CREDIT_APPROVER, DISCOUNT_APPROVER, COLLECTOR)
# what only a program should see, in what a person reads
LEAKS = (re.compile(r"(?<![\w$])\(\d+\)"),  # a bare "(93)": a row id
         re.compile(r"slack-view:|\bV[0-9A-Z]{8,}\b"),  # a Slack view id
         re.compile(r"\bid=\d"), re.compile(r"\bconfidence \d"),
         re.compile(r"workflows/\w+\.py"), re.compile(r"\bpriority \d"),
         re.compile(r"Approval #\d"))  # (a payment's, a dispute's number is its handle)
HIDDEN_KEYS = {"value", "block_id", "action_id", "private_metadata", "callback_id",
               "external_id", "url", "image_url", "initial_value", "response_url", "ts",
               "channel", "user", "id"}


def visible(node: object, out: list[str]) -> list[str]:
    """The strings of a message or view that a person sees (not ids, values, metadata)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HIDDEN_KEYS:
                continue
            if isinstance(value, str) and key in ("text", "title", "placeholder", "label",
                                                  "alt_text", "fallback"):
                out.append(value)
            else:
                visible(value, out)
    elif isinstance(node, list):
        for item in node:
            visible(item, out)
    return out


def commands(db) -> list[str]:
    with db.read_session() as s:
        order = s.exec(select(Order.number).order_by(Order.id)).first()
        invoice = s.exec(select(Invoice.number).order_by(Invoice.id)).first()
        customer = s.exec(select(Customer.name).order_by(Customer.id)).first()
        payment = s.exec(select(Payment.id).order_by(Payment.id.desc())).first()
    return ["help", f"order {order}", f"order {order.split('-')[-1]}", f"orders {customer}",
            f"customer {customer}", "customer zzzzzz", "ar", f"ar {customer}",
            f"invoice {invoice}", "approvals", "worklist", "disputes", "kpi", "revenue",
            "policy", "rules", "rules all", "admin outbox", f"payment {payment}",
            f"statement {customer}", f"customer-page {customer}", "channel", "role",
            f"backorder {order}", "nonsense"]


def emails(db) -> list[str]:
    """Every e-mail the demo queued, rendered as it would be sent."""
    from bot.mailer import render_email

    with db.read_session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.transport == "email")).all()
        return ["\n".join(render_email(r.payload["template"], r.payload["context"],
                                        from_email="ar@demo.example", session=s))
                for r in rows]


def test_no_internal_ids_in_anything_a_person_reads(sandbox) -> None:
    ws = sandbox.ws
    sandbox.wait_until_quiet()
    # when each role runs every subcommand and opens the App Home
    asked = commands(sandbox.server.db)
    for user in ROLES:
        for text in asked:
            answer = ws.driver.slash(user, text)
            assert answer.status_code == 200, (user, text, answer.text)
        ws.driver.app_home_opened(user)
    ws.api.wait_for(lambda: len(ws.api.responses) + len(ws.api.ephemerals())
                    >= len(ROLES) * len(asked) or None, 60, "an answer to every command")
    ws.api.wait_for(lambda: all(ws.api.home_view(u) for u in ROLES), 20, "every App Home")
    sandbox.wait_until_quiet()
    # then nothing a person reads shows an internal id
    seen = visible(ws.api.snapshot(), [])
    leaks = sorted({m.group(0) + " in: " + text[max(0, m.start() - 60):m.end() + 30]
                    for text in seen for pattern in LEAKS for m in pattern.finditer(text)})
    assert len(seen) > 200
    assert leaks == []
    # and neither does an e-mail the demo sends
    sent = emails(sandbox.server.db)
    assert sent and [m.group(0) for text in sent for pattern in LEAKS
                     for m in pattern.finditer(text)] == []
