"""App Home: what the opening user can do, by role, then each feature's section for them."""

from __future__ import annotations

from slack_bolt import BoltContext
from slack_sdk import WebClient

from blocks.home import home_view
from handlers.common import caller, deps_of, locale_of, now_of, today_for
from handlers.events.collections import collector_home
from handlers.events.kpi_home import kpi_home
from handlers.events.people_home import approver_home, rep_home
from workflows.users import roles_of

# The sections features add, in this order: callables (session, user, roles, today, now) ->
# blocks (dicts), an empty list when the section is not for this user. `today` is the date in
# the user's Slack time zone, `now` the moment (UTC).
HOME_SECTIONS = (rep_home, approver_home, collector_home, kpi_home)


def app_home_opened(event: dict, client: WebClient, context: BoltContext) -> None:
    if event.get("tab") not in (None, "home"):
        return
    publish_home(client, context, event["user"])


def publish_home(client: WebClient, context: BoltContext, user_id: str) -> None:
    """Build and publish the user's App Home (also after a decision taken on it), with
    amounts and dates in their Slack locale (looked up once: `locale_of`)."""
    locale_of(context, user_id, client)
    user = caller(context, user_id, client=client)
    deps = deps_of(context)
    today, now = today_for(context, user), now_of(context)
    with deps.db.read_session() as session:
        roles = sorted(roles_of(session, user.slack_user_id))
        extra = [block for section in HOME_SECTIONS
                 for block in section(session, user, roles, today, now)]
    client.views_publish(user_id=user.slack_user_id, view=home_view(user.name, roles, extra))
