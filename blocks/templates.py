"""Notification templates: the outbox stores (template name, JSON context); the worker calls
`render()` at delivery to get the message's `text` and `blocks` (or a view for App Home).

A template is a pure function `context -> dict` returning `{"text": ..., "blocks": [...]}`
(messages) or `{"view": {...}}` (views.publish), listed by name in `TEMPLATES`. The name is
stored in outbox rows, so a name never changes meaning once released.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from blocks import (
    approvals,
    backoffice,
    cashapp,
    collections,
    integrations,
    kpi,
    notifications,
    reach,
    revenue,
)
from blocks.i18n import ENGLISH, Formats

Renderer = Callable[[dict], dict]

TEMPLATES: dict[str, Renderer] = {
    "approval_card": approvals.approval_card,
    "approval_decided": approvals.approval_decided,
    "discount_alert": approvals.discount_alert,
    "order_status": notifications.order_status,
    "backorder_notice": notifications.backorder_notice,
    "order_shipped": notifications.order_shipped,
    "text": notifications.plain_text,
    "cashapp_review": cashapp.review_card,
    "payment_recorded": cashapp.payment_recorded,
    "collections_digest": collections.collections_digest,
    "overdue_notice": collections.overdue_notice,
    "dunning_escalation": collections.dunning_escalation,
    "dunning_final": collections.dunning_final,
    "dunning_no_email": collections.dunning_no_email,
    "dunning_summary": collections.dunning_summary,
    "dunning_people": collections.dunning_people,
    "dunning_confirm": collections.dunning_confirm,
    "promise_broken": collections.promise_broken,
    "email_queued": collections.email_queued,
    "email_failed": collections.email_failed,
    "kpi_report": kpi.kpi_report,
    "revenue_close": revenue.revenue_close,
    "dispute_card": backoffice.dispute_card,
    "dispute_resolved": backoffice.dispute_resolved,
    "dispute_escalated": backoffice.dispute_escalated,
    "deduction_card": backoffice.deduction_card,
    "backoffice_approval_card": backoffice.backoffice_approval_card,
    "backoffice_approval_decided": backoffice.backoffice_approval_decided,
    "webhook_disabled": integrations.webhook_disabled,
    "provider_payment": integrations.provider_payment,
    "provider_refund": integrations.provider_refund,
    "provider_dispute": integrations.provider_dispute,
    "provider_dispute_closed": integrations.provider_dispute_closed,
    "crm_deal_refused": integrations.crm_deal_refused,
    "record_card": reach.record_card,
}


class UnknownTemplate(KeyError):
    pass


# The templates whose amounts and dates follow their reader's formats (`fmt=`): the worker
# passes the formats of the one person a message is for (a DM, an ephemeral, App Home).
PERSONAL = frozenset(name for name, func in TEMPLATES.items()
                     if "fmt" in inspect.signature(func).parameters)


def render(name: str, context: dict, *, fmt: Formats = ENGLISH) -> dict:
    """The message (or view) of a template; `fmt`: its one reader's formats, if it has one."""
    try:
        func = TEMPLATES[name]
    except KeyError:
        raise UnknownTemplate(name) from None
    if name in PERSONAL and fmt is not ENGLISH:
        return func(context, fmt=fmt)
    return func(context)


def names() -> list[str]:
    return sorted(TEMPLATES)
