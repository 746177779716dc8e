"""App Home: what the opening user can do, by role; later work adds worklists and KPIs."""

from __future__ import annotations

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from blocks.home import home_view
from handlers.common import caller, deps_of, now_of, today_for
from workflows.users import roles_of

# Sections contributed by features: callables (session, user, roles, today) -> list of blocks
# (dicts); `today` is the date in the user's Slack time zone, `now` the moment (UTC).
HOME_SECTIONS: list = []


def app_home_opened(event: dict, client: WebClient, context: BoltContext) -> None:
    if event.get("tab") not in (None, "home"):
        return
    user = caller(context, event["user"], client=client)
    deps = deps_of(context)
    today, now = today_for(context, user), now_of(context)
    with deps.db.read_session() as session:
        roles = sorted(roles_of(session, user.slack_user_id))
        extra = [block for section in HOME_SECTIONS
                 for block in section(session, user, roles, today, now)]
    client.views_publish(user_id=user.slack_user_id, view=home_view(user.name, roles, extra))


def register(app: App) -> None:
    app.event("app_home_opened")(app_home_opened)
