"""OAuth install mode: the app is uninstalled (`app_uninstalled`) or its tokens are revoked
(`tokens_revoked`). Bolt's own listeners delete the tokens from the installation store; the
event is audited. O2C data is never touched, and with no token left the outbox waits
(bot.slack_oauth). Registered only when the app has an installation store."""

from __future__ import annotations

from slack_bolt import BoltContext
from slack_bolt.listener.builtins import TokenRevocationListeners

from handlers.deps import deps_of
from workflows import audit


def app_uninstalled(event: dict, context: BoltContext) -> None:
    store = deps_of(context).installations.store
    TokenRevocationListeners(store).handle_app_uninstalled_events(context)
    _audit(context, "slack.uninstalled", tokens=None)


def tokens_revoked(event: dict, context: BoltContext) -> None:
    store = deps_of(context).installations.store
    TokenRevocationListeners(store).handle_tokens_revoked_events(event, context)
    _audit(context, "slack.tokens_revoked", tokens=event.get("tokens"))


def _audit(context: BoltContext, action: str, *, tokens: object) -> None:
    deps = deps_of(context)
    with deps.db.transaction() as session:
        audit.record(session, actor="slack", action=action, entity_type="slack_workspace",
                     entity_id=context.team_id or context.enterprise_id,
                     enterprise_id=context.enterprise_id, team_id=context.team_id,
                     tokens=tokens)
    deps.installations.store.forget()
