"""The Apply button on a payment suggestion card (AR channel).

The role is checked on the server (collector or admin); the workflow claims the payment with a
conditional UPDATE, so a double click, a replay or two collectors clicking at once apply it
once. Whoever is refused, or comes second, gets an ephemeral explanation."""

from __future__ import annotations

from slack_bolt import Ack, App, BoltContext, Respond

from blocks import ids
from handlers.common import transaction
from workflows.cash_application import apply_suggestion
from workflows.errors import AlreadyDecided, DomainError, PermissionDenied


def _tell(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


def on_apply(ack: Ack, body: dict, action: dict, respond: Respond,
             context: BoltContext) -> None:
    ack()
    user_id = body["user"]["id"]
    try:
        payment_id, rank = (int(part) for part in str(action.get("value", "")).split(":", 1))
    except ValueError:
        _tell(respond, ":warning: That button is broken; nothing was applied.")
        return
    try:
        with transaction(context) as session:
            payment = apply_suggestion(session, payment_id=payment_id, rank=rank,
                                       actor=user_id)
            status = payment.status
    except PermissionDenied as refused:
        _tell(respond, f":no_entry: {refused.detail} Applying payments is for collectors "
                       "and admins; nothing was applied.")
        return
    except AlreadyDecided as done:
        _tell(respond, f":information_source: {done.detail}")
        return
    except DomainError as error:
        _tell(respond, f":warning: {error.detail} Nothing was applied.")
        return
    _tell(respond, f":white_check_mark: Payment #{payment_id} applied (suggestion {rank}); "
                   f"it is now {status.replace('_', ' ')}.")


def register(app: App) -> None:
    app.action(ids.CASHAPP_APPLY)(on_apply)
